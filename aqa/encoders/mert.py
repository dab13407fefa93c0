"""MERT-v1 music encoders (m-a-p/MERT-v1-95M) built on ``transformers``' HuBERT classes.

The published ``modeling_MERT.py`` defines ``MERTModel(HubertModel)``: the same HuBERT feature encoder,
feature projection (optional layer norm + Linear), positional conv embedding and post-norm transformer
encoder, plus two options the v1 checkpoints leave off (``feature_extractor_cqt`` and ``deepnorm`` /
``attention_relax``). With those off, its parameter names are exactly ``HubertModel``'s, so the checkpoint
loads into a plain ``HubertModel`` and no remote code runs.

MERT-v1-95M: 7 conv layers (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2 -> 320x downsampling, 75 frames/s
at 24 kHz), 512 -> 768 projection, conv positional embedding (kernel 128, 16 groups), 12 transformer layers
of 768 dims, 12 heads, FFN 3072; 13 hidden states (embedding output + 12 layers).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import HubertConfig, HubertModel

from aqa.encoders.base import EncoderOutput, apply_adapter, frame_lengths, freeze

HUB_ID = "m-a-p/MERT-v1-95M"

# Published MERT-v1-95M architecture (config.json of m-a-p/MERT-v1-95M), in HubertConfig field names.
MERT_V1_95M_ARCH: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "activation_dropout": 0.1,
    "attention_dropout": 0.1,
    "feat_proj_layer_norm": True,
    "feat_proj_dropout": 0.1,
    "layer_norm_eps": 1e-5,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
}

# config.json fields (MERTConfig names, which are HubertConfig's) that shape the model or its dropout.
_ARCH_KEYS = (*MERT_V1_95M_ARCH, "conv_pos_batch_norm", "initializer_range")
# Always off: layer drop and SpecAugment would change the number / content of hidden states in train mode.
_NO_STOCHASTIC_DEPTH = {"layerdrop": 0.0, "mask_time_prob": 0.0, "mask_feature_prob": 0.0}
_MODEL_TYPES = ("mert_model", "music_hubert", "hubert")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WRAPPER_PREFIXES = ("hubert.", "mert_model.", "model.")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def mert_config(**arch: Any) -> HubertConfig:
    """A ``HubertConfig`` for a MERT-v1 backbone: the published 95M values overridden by ``arch``.

    ``layerdrop``, ``mask_time_prob`` and ``mask_feature_prob`` are forced to 0 so every forward returns
    ``num_hidden_layers + 1`` hidden states, also in training mode.

    Args:
        **arch: ``HubertConfig`` fields, e.g. ``hidden_size=32, num_hidden_layers=2``.
    """
    fields = {**MERT_V1_95M_ARCH, **_plain(arch), **_NO_STOCHASTIC_DEPTH}
    return HubertConfig(**fields)


class MERTEncoder(nn.Module):
    """MERT-v1 as an ``aqa`` encoder: waveform (B, T) at 24 kHz -> every hidden state (B, F, D).

    Builds random weights from ``config``; use :func:`load_mert` for the published checkpoint.

    Args:
        config: the backbone's ``HubertConfig`` (see :func:`mert_config`).
        sample_rate: input sample rate in Hz (MERT-v1: 24000).
        normalize: normalise each clip to zero mean / unit variance over its valid samples before the
            backbone, as ``do_normalize`` in the checkpoint's ``preprocessor_config.json`` asks (true for
            m-a-p/MERT-v1-95M).
    """

    def __init__(self, config: HubertConfig, sample_rate: int = 24000, normalize: bool = True) -> None:
        super().__init__()
        if config.layerdrop or config.mask_time_prob or config.mask_feature_prob:
            raise ValueError(
                "MERTEncoder needs layerdrop=0, mask_time_prob=0, mask_feature_prob=0 (use mert_config)"
            )
        self.model = HubertModel(config)
        self.conv_kernel = [int(k) for k in config.conv_kernel]
        self.conv_stride = [int(s) for s in config.conv_stride]
        self.sample_rate = int(sample_rate)
        self.normalize = bool(normalize)
        self.output_dim = int(config.hidden_size)
        self.num_layers = int(config.num_hidden_layers) + 1
        self.downsample_rate = math.prod(self.conv_stride)
        self.frame_rate = self.sample_rate / self.downsample_rate
        # samples one output frame sees: r <- (r - 1) * stride + kernel, from the last layer down
        self.receptive_field = 1
        for kernel, stride in zip(reversed(self.conv_kernel), reversed(self.conv_stride), strict=True):
            self.receptive_field = (self.receptive_field - 1) * stride + kernel

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a batch of waveforms.

        Args:
            wav: (B, T) float waveform at ``sample_rate`` Hz, right-padded.
            lengths: (B,) long number of valid samples per clip, or None when all T samples are valid.
                Padding samples are zeroed and masked out of attention.

        Returns:
            ``EncoderOutput`` with ``num_layers`` tensors of (B, F, ``output_dim``), F ~= T * 75 / 24000,
            and (B,) valid frame counts.
        """
        if wav.dim() != 2:
            raise ValueError(f"expected wav of shape (B, T), got {tuple(wav.shape)}")
        batch, samples = wav.shape
        wav = wav.float()
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=wav.device)
            attention_mask = None
        else:
            lengths = lengths.to(device=wav.device, dtype=torch.long)
            if lengths.shape != (batch,) or bool((lengths > samples).any()) or bool((lengths < 1).any()):
                raise ValueError(f"lengths must be (B,) in [1, {samples}], got {lengths.tolist()}")
            attention_mask = torch.arange(samples, device=wav.device)[None, :] < lengths[:, None]  # (B, T)
            wav = wav.masked_fill(~attention_mask, 0.0)
        if self.normalize:
            wav = _normalize(wav, lengths, attention_mask)

        frames = frame_lengths(lengths, self.conv_kernel, self.conv_stride)
        if bool((frames < 1).any()):
            raise ValueError(
                f"every clip needs at least {self.receptive_field} samples for one frame, got lengths {lengths.tolist()}"
            )
        # transformers asks the input for a gradient whenever the feature encoder is in training mode (for
        # gradient checkpointing); skip that backward pass through the CNN when none of its weights train.
        extractor = self.model.feature_extractor
        if hasattr(extractor, "_requires_grad"):
            extractor._requires_grad = any(p.requires_grad for p in extractor.parameters())

        out = self.model(
            wav,
            attention_mask=None if attention_mask is None else attention_mask.long(),
            output_hidden_states=True,
            return_dict=True,
        )
        layers = list(out.hidden_states)
        return EncoderOutput(layers=layers, lengths=frames.clamp_max(layers[0].shape[1]))


def _normalize(wav: Tensor, lengths: Tensor, mask: Tensor | None) -> Tensor:
    # Wav2Vec2FeatureExtractor's zero-mean unit-variance: (x - mean) / sqrt(var + 1e-7) over valid samples
    # (population variance), padding kept at 0.
    count = lengths.to(wav.dtype)[:, None]
    mean = wav.sum(dim=1, keepdim=True) / count
    centred = wav - mean
    if mask is not None:
        centred = centred.masked_fill(~mask, 0.0)
    var = centred.pow(2).sum(dim=1, keepdim=True) / count
    return centred / torch.sqrt(var + 1e-7)


# ----------------------------------------------------------------------------------------------------------
# Loading the published checkpoint


def load_mert(checkpoint: str | Path, cache_dir: str | Path | None = None) -> MERTEncoder:
    """Load a MERT-v1 checkpoint in the published Hugging Face layout into a :class:`MERTEncoder`.

    Never downloads and never runs the checkpoint's ``modeling_MERT.py``.

    Args:
        checkpoint: a local directory holding ``config.json`` and ``model.safetensors`` or
            ``pytorch_model.bin`` (plus optionally ``preprocessor_config.json``), or a hub id such as
            ``m-a-p/MERT-v1-95M`` already in the local Hugging Face cache.
        cache_dir: Hugging Face cache to look hub ids up in (default: the standard one).

    Raises:
        FileNotFoundError: no such directory / cached snapshot, or it lacks config.json or weights.
        ValueError: the config asks for a MERT variant this loader does not implement, or the weights do
            not match the architecture (the message lists missing and unexpected keys).
    """
    directory = _resolve_checkpoint(str(checkpoint), cache_dir)
    weights = _weights_file(directory, str(checkpoint))
    published = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    config, sample_rate = _hubert_config_from_published(published, directory)
    # Wav2Vec2FeatureExtractor (MERT's preprocessor) normalises unless do_normalize is false; the published
    # preprocessor_config.json has do_normalize true (its fairseq pre-training config had normalize: false).
    preprocessor = _read_json(directory / "preprocessor_config.json") or {}
    normalize = bool(preprocessor.get("do_normalize", True))
    sample_rate = int(preprocessor.get("sampling_rate", sample_rate))

    state = _read_weights(weights)
    encoder = MERTEncoder(config, sample_rate=sample_rate, normalize=normalize)
    expected = encoder.model.state_dict()
    state = _remap_published_keys(state, expected.keys())
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights in {weights} do not match the MERT/HuBERT architecture of {directory / 'config.json'}: "
            f"missing keys {_preview(missing)}; unexpected keys {_preview(unexpected)}"
        )
    wrong_shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong_shapes:
        raise ValueError(
            f"weights in {weights} have the wrong shapes for {directory / 'config.json'}: {_preview(wrong_shapes)}"
        )
    encoder.model.load_state_dict(state, strict=True)
    return encoder


def _missing_checkpoint(checkpoint: str, reason: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"MERT checkpoint {checkpoint!r} not found: {reason}. Set encoder.checkpoint=/path/to/MERT-v1-95M "
        "(a directory with config.json and model.safetensors or pytorch_model.bin, e.g. from "
        f"`hf download {HUB_ID} config.json preprocessor_config.json pytorch_model.bin --local-dir MERT-v1-95M`), "
        f"or put {HUB_ID} in the local Hugging Face cache; nothing is downloaded at run time."
    )


def _resolve_checkpoint(checkpoint: str, cache_dir: str | Path | None = None) -> Path:
    # A local directory, else a hub id resolved from the local cache only.
    path = Path(checkpoint).expanduser()
    if path.exists():
        if not path.is_dir():
            raise _missing_checkpoint(checkpoint, f"{path} is a file, not a directory")
        return path
    if not _HUB_ID_RE.match(checkpoint):
        raise _missing_checkpoint(checkpoint, f"no directory {path.resolve()}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        snapshot = snapshot_download(
            checkpoint, local_files_only=True, cache_dir=None if cache_dir is None else str(cache_dir)
        )
    except (FileNotFoundError, HFValidationError, OSError, ValueError) as err:
        raise _missing_checkpoint(
            checkpoint, f"no directory {path.resolve()} and no cached snapshot of hub repo {checkpoint}"
        ) from err
    return Path(snapshot)


def _weights_file(directory: Path, checkpoint: str) -> Path:
    if not (directory / "config.json").is_file():
        raise _missing_checkpoint(checkpoint, f"{directory} has no config.json")
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    sharded = [p.name for p in directory.glob("*.index.json")]
    reason = f"{directory} has no {' or '.join(_WEIGHT_FILES)}"
    if sharded:
        reason += f" (sharded weights {sharded} are not supported)"
    raise _missing_checkpoint(checkpoint, reason)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _hubert_config_from_published(published: Mapping[str, Any], directory: Path) -> tuple[HubertConfig, int]:
    # Map MERTConfig's config.json onto HubertConfig, refusing the MERT options HubertModel lacks.
    where = directory / "config.json"
    model_type = published.get("model_type")
    if model_type not in _MODEL_TYPES:
        raise ValueError(
            f"{where}: model_type {model_type!r} is not a MERT/HuBERT model; expected one of {_MODEL_TYPES}"
        )
    if published.get("feature_extractor_cqt", False):
        raise ValueError(
            f"{where}: feature_extractor_cqt=true (CQT features concatenated before the projection, needs nnAudio) "
            "is not supported; MERT-v1-95M/330M have it off"
        )
    if published.get("deepnorm", False):
        raise ValueError(
            f"{where}: deepnorm=true (scaled residuals, and attention_relax={published.get('attention_relax')}) "
            "is not supported; MERT-v1-95M has deepnorm=false"
        )
    # attention_relax only acts inside the deepnorm layers of the published code, so with deepnorm off it is inert.
    arch = {k: published[k] for k in _ARCH_KEYS if k in published}
    sample_rate = int(published.get("sample_rate", 24000))
    return mert_config(**arch), sample_rate


def _read_weights(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return dict(state)


def _remap_published_keys(state: Mapping[str, Tensor], expected: Any) -> dict[str, Tensor]:
    # Published layout -> this HubertModel's state_dict keys:
    #  - a wrapper prefix (hubert. / mert_model. / model.) shared by every key is dropped;
    #  - the positional conv's weight norm: old torch.nn.utils.weight_norm names (weight_g, weight_v, as in
    #    m-a-p/MERT-v1-95M's pytorch_model.bin) <-> parametrizations.weight.original0/1 (current torch);
    #  - masked_spec_embed (SpecAugment's mask vector) is dropped when the model has no masking.
    expected = set(expected)
    state = dict(state)
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            break
    renames = {
        ".weight_g": ".parametrizations.weight.original0",
        ".weight_v": ".parametrizations.weight.original1",
    }
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for old, new in renames.items():
            if key.endswith(old) and key not in expected and key[: -len(old)] + new in expected:
                key = key[: -len(old)] + new
            elif key.endswith(new) and key not in expected and key[: -len(new)] + old in expected:
                key = key[: -len(new)] + old
        out[key] = value
    if "masked_spec_embed" not in expected:
        out.pop("masked_spec_embed", None)
    return out


def _preview(keys: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... ({len(keys) - limit} more)' if len(keys) > limit else ''}]" if keys else "[]"


def _plain(value: Any) -> Any:
    # OmegaConf containers -> dict / list, so strict config dataclasses and peft accept them.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------------
# Builders (registered in aqa.encoders.ENCODERS)


def _finish(encoder: MERTEncoder, freeze_backbone: bool, adapter: Mapping[str, Any] | None) -> MERTEncoder:
    # Freeze first, then add adapters: freeze + LoRA trains only LoRA; freeze alone trains nothing.
    if freeze_backbone:
        freeze(encoder)
    apply_adapter(encoder.model, None if adapter is None else _plain(adapter))
    return encoder


def build_mert_v1_95m(
    checkpoint: str | None = None, freeze: bool = False, adapter: Mapping[str, Any] | None = None
) -> MERTEncoder:
    """MERT-v1-95M: the published weights from ``checkpoint``, or random weights when it is None.

    Args:
        checkpoint: local directory or cached hub id (see :func:`load_mert`); None builds the full-size
            architecture with random weights (parameter counts, benchmarks).
        freeze: stop gradients for the whole backbone (applied before the adapter).
        adapter: ``{name: lora, r, alpha, dropout, target_modules}`` or None for no adapter.
    """
    encoder = MERTEncoder(mert_config()) if checkpoint is None else load_mert(checkpoint)
    return _finish(encoder, freeze, adapter)


def build_mert_v1_95m_tiny(
    arch: Mapping[str, Any],
    checkpoint: str | None = None,
    freeze: bool = False,
    adapter: Mapping[str, Any] | None = None,
) -> MERTEncoder:
    """A small random-weight MERT for tests and demos, same 320x / 75 Hz framing as the full model.

    Args:
        arch: ``HubertConfig`` fields overriding the 95M values (e.g. hidden_size 32, 2 layers); may hold
            ``sample_rate`` (Hz, default 24000).
        checkpoint: must be None (random weights only; load real checkpoints with ``mert_v1_95m``).
        freeze: stop gradients for the whole backbone (applied before the adapter).
        adapter: ``{name: lora, r, alpha, dropout, target_modules}`` or None for no adapter.
    """
    if checkpoint is not None:
        raise ValueError(
            "mert_v1_95m_tiny has random weights; load a checkpoint with the mert_v1_95m encoder"
        )
    arch = dict(_plain(arch))
    sample_rate = int(arch.pop("sample_rate", 24000))
    return _finish(MERTEncoder(mert_config(**arch), sample_rate=sample_rate), freeze, adapter)


__all__ = [
    "HUB_ID",
    "MERTEncoder",
    "MERT_V1_95M_ARCH",
    "build_mert_v1_95m",
    "build_mert_v1_95m_tiny",
    "load_mert",
    "mert_config",
]
