"""wav2vec 2.0-style encoders on ``transformers`` classes: HuBERT/MERT, WavLM and wav2vec 2.0.

All three share one design: a 7-layer strided conv feature encoder on the raw waveform (kernels
10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: 320x downsampling, receptive field 400 samples), a projection to the
model width, a convolutional positional embedding and a transformer (post-norm, or pre-norm "stable layer
norm" for the large models). This module holds everything they share, written once:

- :class:`HFEncoder`, the ``aqa`` encoder around any of these models (contract in :mod:`aqa.encoders.base`):
  per-clip input normalisation over valid samples, attention masks, a masked first GroupNorm so that
  padding never changes a clip's output, chunked inference, and the pre-norm models' last hidden state
  taken after the final LayerNorm (as ``transformers`` 4.x returned it);
- :func:`load_hf_encoder`: resolving a local directory or a hub id at a pinned revision (cached, else downloaded
  on first use through :func:`aqa.hub.fetch_hf`), reading ``config.json`` /
  ``preprocessor_config.json`` / ``model.safetensors`` or ``pytorch_model.bin`` (``weights_only``),
  remapping the published key layout (wrapper prefixes, old weight-norm names, pre-training heads) and
  loading strictly;
- the WavLM (microsoft/wavlm-base-plus, microsoft/wavlm-large) and wav2vec 2.0 (facebook/wav2vec2-base)
  variants, and :func:`build_hf_encoder`, the one builder of every variant (MERT's variants live in
  :mod:`aqa.encoders.mert`).
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from aqa.encoders.base import (
    EncoderOutput,
    check_min_length,
    chunked_forward,
    finish,
    frame_lengths,
    load_state_strict,
    plain,
    random_arch,
)
from aqa.hub import Report, WeightsUnavailable, fetch_hf, is_hub_id

# Always off: layer drop and SpecAugment would change the number / content of hidden states in train mode.
NO_STOCHASTIC_DEPTH = {"layerdrop": 0.0, "mask_time_prob": 0.0, "mask_feature_prob": 0.0}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# config.json fields that shape every family's model (besides each variant's own architecture keys).
_COMMON_ARCH_KEYS = ("conv_pos_batch_norm", "initializer_range", "num_buckets", "max_bucket_distance")


@dataclass(frozen=True)
class HFVariant:
    """One published checkpoint family member: which ``transformers`` classes, which architecture.

    Attributes:
        name: registry name, e.g. ``wavlm_base_plus``.
        hub_id: the published Hugging Face repository.
        config_cls / model_cls: ``transformers`` classes (e.g. ``WavLMConfig`` / ``WavLMModel``).
        arch: the published architecture in ``config_cls`` field names.
        model_types: ``model_type`` values of ``config.json`` this variant's loader accepts.
        sample_rate: input rate in Hz.
        normalize: per-clip zero-mean unit-variance input normalisation when the checkpoint has no
            ``preprocessor_config.json`` (its ``do_normalize`` wins otherwise).
        ignored_prefixes: checkpoint keys of pre-training heads that the encoder does not use (dropped).
        wrapper_prefixes: a prefix shared by all remaining keys that is stripped (``wav2vec2.``, ...).
        check: raises ``ValueError`` for published configs this loader cannot represent.
    """

    name: str
    hub_id: str
    config_cls: type[PretrainedConfig]
    model_cls: type[PreTrainedModel]
    arch: Mapping[str, Any]
    model_types: tuple[str, ...]
    sample_rate: int = 16000
    normalize: bool = True
    ignored_prefixes: tuple[str, ...] = ()
    wrapper_prefixes: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any], Path], None] | None = field(default=None, compare=False)

    def config(self, **arch: Any) -> PretrainedConfig:
        """The published architecture overridden by ``arch``; layer drop and SpecAugment forced off; attention
        through ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU)
        where the class supports it, whatever the installed ``transformers``' default (WavLM, which does not
        declare it, takes the same path through :func:`_attention_through_modules`)."""
        config = self.config_cls(**{**self.arch, **plain(arch), **NO_STOCHASTIC_DEPTH})
        if getattr(self.model_cls, "_supports_sdpa", False):
            config._attn_implementation = "sdpa"
        return config


# ----------------------------------------------------------------------------------------------------------
# The encoder


class MaskedGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose statistics skip padding frames when ``valid`` (B,) frame counts are set.

    wav2vec 2.0-base, HuBERT-base, MERT and WavLM-base+ normalise their first conv layer's output per
    channel over all of time, padding included, so a zero-padded clip would get different features. The
    encoder sets ``valid`` for the duration of one forward; with ``valid`` None this is ``nn.GroupNorm``.
    Parameter names are ``nn.GroupNorm``'s, so checkpoints load unchanged.
    """

    valid: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, C, T). Returns (B, C, T)."""
        if self.valid is None:
            return super().forward(x)
        batch, channels, frames = x.shape
        groups = self.num_groups
        mask = (torch.arange(frames, device=x.device)[None, :] < self.valid[:, None]).to(x.dtype)
        mask = mask[:, None, None, :]  # (B, 1, 1, T)
        xg = x.reshape(batch, groups, channels // groups, frames)
        count = (mask.sum(dim=-1, keepdim=True) * (channels // groups)).clamp_min(1.0)
        mean = (xg * mask).sum(dim=(-2, -1), keepdim=True) / count
        var = ((xg - mean) * mask).pow(2).sum(dim=(-2, -1), keepdim=True) / count
        y = ((xg - mean) * torch.rsqrt(var + self.eps)).reshape(batch, channels, frames)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y


def _attention_through_modules(
    self: nn.Module, hidden_states: Tensor, attention_mask: Tensor | None, gated_position_bias: Tensor
) -> tuple[Tensor, None]:
    # WavLMAttention's own path hands q_proj.weight etc. to F.multi_head_attention_forward, bypassing the
    # modules' forward, so LoRA wrappers on q_proj / v_proj would never run. Same computation with module
    # calls: softmax(q k^T / sqrt(d) + gated relative position bias, padded keys masked) v, then out_proj.
    batch, frames, _ = hidden_states.shape
    heads, head_dim = self.num_heads, self.head_dim

    def split(x: Tensor) -> Tensor:
        return x.view(batch, frames, heads, head_dim).transpose(1, 2)

    q, k, v = split(self.q_proj(hidden_states)), split(self.k_proj(hidden_states)), split(self.v_proj(hidden_states))
    bias = gated_position_bias.view(batch, heads, frames, frames).to(q.dtype)
    if attention_mask is not None:
        bias = bias.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
    return self.out_proj(out.transpose(1, 2).reshape(batch, frames, heads * head_dim)), None


class HFEncoder(nn.Module):
    """A wav2vec 2.0-style ``transformers`` model as an ``aqa`` encoder: (B, T) waveform -> every hidden state.

    Builds random weights from ``config``; :func:`load_hf_encoder` loads a published checkpoint.

    Args:
        model_cls: ``HubertModel``, ``WavLMModel`` or ``Wav2Vec2Model``.
        config: its config (layer drop and SpecAugment must be off; see :meth:`HFVariant.config`).
        sample_rate: input rate in Hz.
        normalize: normalise each clip to zero mean / unit variance over its valid samples first
            (``do_normalize`` of ``Wav2Vec2FeatureExtractor``).
        max_chunk_s: clips longer than this many seconds run in chunks (see
            :func:`aqa.encoders.base.chunked_forward`); None runs every clip in one pass.
        name: used in error messages.
    """

    def __init__(
        self,
        model_cls: type[PreTrainedModel],
        config: PretrainedConfig,
        sample_rate: int,
        normalize: bool = True,
        max_chunk_s: float | None = None,
        name: str = "encoder",
    ) -> None:
        super().__init__()
        if config.layerdrop or config.mask_time_prob or config.mask_feature_prob:
            raise ValueError(f"{name} needs layerdrop=0, mask_time_prob=0, mask_feature_prob=0")
        self.name = name
        self.model = model_cls(config)
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
        self.min_samples = self.receptive_field
        self.max_chunk_s = None if max_chunk_s is None else float(max_chunk_s)
        self.stable_layer_norm = bool(config.do_stable_layer_norm)

        first = self.model.feature_extractor.conv_layers[0]
        self._masked_norm: MaskedGroupNorm | None = None
        if isinstance(getattr(first, "layer_norm", None), nn.GroupNorm):
            old = first.layer_norm
            new = MaskedGroupNorm(old.num_groups, old.num_channels, eps=old.eps, affine=old.affine)
            new.load_state_dict(old.state_dict())
            first.layer_norm = new
            self._masked_norm = new
        for module in self.model.modules():
            if hasattr(module, "torch_multi_head_self_attention") and hasattr(module, "q_proj"):
                module.torch_multi_head_self_attention = types.MethodType(_attention_through_modules, module)

    @property
    def max_chunk_samples(self) -> int | None:
        """Chunk length in samples: ``max_chunk_s`` rounded down to whole frames (None: no chunking)."""
        if self.max_chunk_s is None:
            return None
        hops = int(self.max_chunk_s * self.sample_rate) // self.downsample_rate
        return max(hops, 1) * self.downsample_rate

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a batch of waveforms.

        Args:
            wav: (B, T) float waveform at ``sample_rate`` Hz, right-padded.
            lengths: (B,) long number of valid samples per clip, or None when all T samples are valid.
                Padding never changes a clip's valid frames (zeroed input, masked first GroupNorm,
                attention masks).

        Returns:
            ``EncoderOutput`` with ``num_layers`` tensors of (B, F, ``output_dim``) -- the embedding output
            (after the positional conv) first -- and (B,) valid frame counts,
            ``floor((L - 400) / 320) + 1`` for L samples.

        Raises:
            ValueError: bad shapes or lengths, or a clip shorter than ``min_samples`` (400 samples).
        """
        if wav.dim() != 2:
            raise ValueError(f"expected wav of shape (B, T), got {tuple(wav.shape)}")
        batch, samples = wav.shape
        wav = wav.float()
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=wav.device).long()
            if lengths.shape != (batch,) or bool((lengths > samples).any()) or bool((lengths < 0).any()):
                raise ValueError(f"lengths must be (B,) in [0, {samples}], got {lengths.tolist()}")
        check_min_length(
            lengths if lengths is not None else torch.tensor([samples]), self.min_samples, self.sample_rate, self.name
        )
        chunk = self.max_chunk_samples
        overlap = self.receptive_field - self.downsample_rate
        if chunk is not None and samples > chunk + overlap:
            return chunked_forward(self._encode, wav, lengths, chunk, overlap, self.min_samples)
        return self._encode(wav, lengths)

    def _encode(self, wav: Tensor, lengths: Tensor | None) -> EncoderOutput:
        batch, samples = wav.shape
        if lengths is not None and bool((lengths == samples).all()):
            lengths = None  # nothing padded: the plain (faster) path gives the same result
        mask = None
        if lengths is not None:
            mask = torch.arange(samples, device=wav.device)[None, :] < lengths[:, None]  # (B, T)
            wav = wav.masked_fill(~mask, 0.0)
        full = lengths if lengths is not None else torch.full((batch,), samples, device=wav.device)
        if self.normalize:
            wav = normalize_waveform(wav, full, mask)
        frames = frame_lengths(full, self.conv_kernel, self.conv_stride)

        # transformers asks the input for a gradient whenever the feature encoder is in training mode (for
        # gradient checkpointing); skip that backward pass through the CNN when none of its weights train.
        extractor = self.model.feature_extractor
        if hasattr(extractor, "_requires_grad"):
            extractor._requires_grad = any(p.requires_grad for p in extractor.parameters())
        norm = self._masked_norm
        if norm is not None and lengths is not None:
            norm.valid = frame_lengths(lengths, self.conv_kernel[:1], self.conv_stride[:1])
        try:
            out = self.model(
                wav,
                attention_mask=None if mask is None else mask.long(),
                output_hidden_states=True,
                return_dict=True,
            )
        finally:
            if norm is not None:
                norm.valid = None
        layers = list(out.hidden_states)
        if self.stable_layer_norm:
            # pre-norm transformer: the last state is the one after the encoder's final LayerNorm
            layers[-1] = out.last_hidden_state
        return EncoderOutput(layers=layers, lengths=frames.clamp_max(layers[0].shape[1]))


def normalize_waveform(wav: Tensor, lengths: Tensor, mask: Tensor | None) -> Tensor:
    """``Wav2Vec2FeatureExtractor``'s zero-mean unit-variance normalisation over each clip's valid samples.

    ``(x - mean) / sqrt(var + 1e-7)`` with the population variance; padding stays 0.

    Args:
        wav: (B, T); lengths: (B,) valid samples; mask: (B, T) bool valid-sample mask or None (all valid).
    """
    count = lengths.to(wav.dtype)[:, None]
    mean = wav.sum(dim=1, keepdim=True) / count
    centred = wav - mean
    if mask is not None:
        centred = centred.masked_fill(~mask, 0.0)
    var = centred.pow(2).sum(dim=1, keepdim=True) / count
    return centred / torch.sqrt(var + 1e-7)


# ----------------------------------------------------------------------------------------------------------
# Loading the published checkpoints


def missing_checkpoint(checkpoint: str, reason: str, variant: HFVariant | None = None) -> FileNotFoundError:
    """The error for absent weights: what was expected, and how to provide it."""
    hub_id = variant.hub_id if variant else "OWNER/NAME"
    local = hub_id.split("/")[-1]
    label = variant.name if variant else "encoder"
    return FileNotFoundError(
        f"{label} checkpoint {checkpoint!r} not found: {reason}. Set encoder.checkpoint=/path/to/{local} "
        "(a directory with config.json and model.safetensors or pytorch_model.bin, e.g. from "
        f"`hf download {hub_id} config.json preprocessor_config.json pytorch_model.bin --local-dir {local}`), "
        f"or encoder.checkpoint={hub_id} (downloaded on first use; `aqa download {label}` pre-fetches it)."
    )


def resolve_checkpoint(
    checkpoint: str,
    cache_dir: str | Path | None = None,
    variant: HFVariant | None = None,
    revision: str | None = None,
    report: Report | None = None,
    name: str | None = None,
    optional: Sequence[str] = ("preprocessor_config.json",),
) -> Path:
    """A local directory as given, else a hub id's snapshot at ``revision``: from the Hugging Face cache, or
    downloaded on first use (``config.json``, ``optional`` files the revision has, and
    ``model.safetensors`` or else ``pytorch_model.bin``; :func:`aqa.hub.fetch_hf`).

    Args:
        checkpoint: a directory or ``owner/name``.
        cache_dir: the hub cache (default: ``huggingface_hub``'s, ``HF_HOME`` / ``HF_HUB_CACHE``).
        variant: names the encoder in messages; ``name`` does when there is no variant (MuQ).
        revision: commit hash (the encoder YAML pins one), branch or tag; None: ``main``.
        report: see :func:`aqa.hub.fetch_hf` (``aqa download`` prints it).

    Raises:
        FileNotFoundError: no such directory (the message says how to provide the weights), or
            :class:`aqa.hub.WeightsUnavailable`: a hub id not cached and offline or unreachable (one line
            naming the repo, the cache and the ``aqa download`` command).
    """
    checkpoint = str(checkpoint)
    path = Path(checkpoint).expanduser()
    if path.exists():
        if not path.is_dir():
            raise missing_checkpoint(checkpoint, f"{path} is a file, not a directory", variant)
        return path
    if not is_hub_id(checkpoint):
        raise missing_checkpoint(checkpoint, f"no directory {path.resolve()}", variant)
    label = variant.name if variant else (name or "ENCODER")
    try:
        return fetch_hf(
            checkpoint,
            revision,
            required=("config.json",),
            optional=optional,
            one_of=WEIGHT_FILES,
            cache_dir=cache_dir,
            hint=f"aqa download {label}",
            report=report,
        )
    except WeightsUnavailable as err:
        raise type(err)(f"{err} (or set encoder.checkpoint=/path/to/a/local/copy)", err.missing) from err


def weights_file(directory: Path, checkpoint: str, variant: HFVariant | None = None) -> Path:
    """``model.safetensors`` or ``pytorch_model.bin`` in ``directory`` (which must hold ``config.json``)."""
    if not (directory / "config.json").is_file():
        raise missing_checkpoint(checkpoint, f"{directory} has no config.json", variant)
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    sharded = [p.name for p in directory.glob("*.index.json")]
    reason = f"{directory} has no {' or '.join(WEIGHT_FILES)}"
    if sharded:
        reason += f" (sharded weights {sharded} are not supported)"
    raise missing_checkpoint(checkpoint, reason, variant)


def read_json(path: Path) -> dict[str, Any] | None:
    """The parsed JSON file, or None when it does not exist."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file read with ``weights_only=True``."""
    if path.suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return dict(state)


def remap_published_keys(
    state: Mapping[str, Tensor],
    expected: Any,
    wrapper_prefixes: Sequence[str] = (),
    ignored_prefixes: Sequence[str] = (),
) -> dict[str, Tensor]:
    """Published checkpoint keys -> the model's ``state_dict`` keys.

    - keys of unused pre-training heads (``ignored_prefixes``, e.g. ``quantizer.``) are dropped;
    - a wrapper prefix (``wav2vec2.``, ``hubert.``, ...) shared by every remaining key is stripped;
    - the positional conv's weight norm: old ``weight_g`` / ``weight_v`` names (``torch.nn.utils.weight_norm``,
      as in the published ``pytorch_model.bin`` files) <-> ``parametrizations.weight.original0/1``;
    - ``masked_spec_embed`` (SpecAugment's mask vector) is dropped when the model has no masking.
    Anything else is kept as is, so a strict load names every key that does not fit.
    """
    expected = set(expected)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignored_prefixes))}
    for prefix in wrapper_prefixes:
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


def load_hf_encoder(
    checkpoint: str | Path,
    variant: HFVariant,
    cache_dir: str | Path | None = None,
    max_chunk_s: float | None = None,
    revision: str | None = None,
) -> HFEncoder:
    """Load a checkpoint in the published Hugging Face layout into an :class:`HFEncoder`, strictly.

    A hub id not yet cached is downloaded at ``revision`` (see :func:`resolve_checkpoint`); no code from the
    checkpoint is ever run. The architecture comes from its
    ``config.json`` (so one loader serves e.g. WavLM base+ and large); ``do_normalize`` and
    ``sampling_rate`` from ``preprocessor_config.json`` when present.

    Args:
        checkpoint: a directory with ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``,
            or a hub id (``microsoft/wavlm-base-plus``): from the Hugging Face cache, else downloaded.
        variant: the model family to build (classes, accepted ``model_type`` values, key layout).
        cache_dir: Hugging Face cache to look hub ids up in (default: the standard one).
        max_chunk_s: see :class:`HFEncoder`.
        revision: the hub id's commit (the encoder YAML pins one); None: ``main``.

    Raises:
        FileNotFoundError: no such directory, or it lacks config.json or weights; a hub id not cached and
            offline or unreachable (:class:`aqa.hub.WeightsUnavailable`).
        ValueError: a config this loader cannot represent, or weights that do not match it (the message
            names the missing, unexpected or mis-shaped keys).
    """
    directory = resolve_checkpoint(str(checkpoint), cache_dir, variant, revision)
    weights = weights_file(directory, str(checkpoint), variant)
    where = directory / "config.json"
    published = json.loads(where.read_text(encoding="utf-8"))
    model_type = published.get("model_type")
    if model_type not in variant.model_types:
        raise ValueError(
            f"{where}: model_type {model_type!r} is not a {variant.name} model; expected one of {variant.model_types}"
        )
    if variant.check is not None:
        variant.check(published, where)
    keys = (*variant.arch, *_COMMON_ARCH_KEYS)
    config = variant.config(**{k: published[k] for k in keys if k in published})
    preprocessor = read_json(directory / "preprocessor_config.json") or {}
    sample_rate = int(preprocessor.get("sampling_rate", published.get("sample_rate", variant.sample_rate)))
    normalize = bool(preprocessor.get("do_normalize", variant.normalize))

    encoder = HFEncoder(variant.model_cls, config, sample_rate, normalize, max_chunk_s, variant.name)
    state = remap_published_keys(
        read_weights(weights), encoder.model.state_dict().keys(), variant.wrapper_prefixes, variant.ignored_prefixes
    )
    load_state_strict(encoder.model, state, weights, where)
    return encoder


# ----------------------------------------------------------------------------------------------------------
# Builders (registered in aqa.encoders.ENCODERS)


def build_hf_encoder(
    variant: HFVariant,
    checkpoint: str | None = None,
    freeze: bool = False,
    adapter: Mapping[str, Any] | None = None,
    max_chunk_s: float | None = None,
    arch: Mapping[str, Any] | None = None,
    revision: str | None = None,
) -> HFEncoder:
    """An encoder of ``variant``: the published weights from ``checkpoint``, or random weights when it is None.

    Args:
        variant: which model (bound by the registry: ``functools.partial(build_hf_encoder, WAVLM_BASE_PLUS)``).
        checkpoint: local directory or hub id (see :func:`load_hf_encoder`); None builds random weights
            of the published architecture overridden by ``arch`` (parameter counts, benchmarks, tiny twins).
        freeze: stop gradients for the whole backbone (applied before the adapter).
        adapter: ``{name: lora, r, alpha, dropout, target_modules}`` or None for no adapter.
        max_chunk_s: run clips longer than this in chunks (None: one pass).
        arch: config fields overriding the published ones (e.g. hidden_size 32, 2 layers; the tiny YAMLs);
            may hold ``sample_rate`` (Hz) and ``normalize``. Random weights only: must be empty with a
            ``checkpoint``, whose ``config.json`` gives the architecture.
        revision: the hub id's commit hash (pinned in the encoder YAML; None: ``main``).

    Raises:
        ValueError: ``arch`` given together with a ``checkpoint``.
    """
    arch = random_arch(variant.name, arch, checkpoint)
    if checkpoint is not None:
        encoder = load_hf_encoder(checkpoint, variant, max_chunk_s=max_chunk_s, revision=revision)
    else:
        sample_rate = int(arch.pop("sample_rate", variant.sample_rate))
        normalize = bool(arch.pop("normalize", variant.normalize))
        encoder = HFEncoder(
            variant.model_cls, variant.config(**arch), sample_rate, normalize, max_chunk_s, variant.name
        )
    return finish(encoder, freeze, adapter)


# ----------------------------------------------------------------------------------------------------------
# WavLM and wav2vec 2.0 (published config.json values, in the transformers config field names)

_CONV = {
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False,
    "feat_extract_activation": "gelu",
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
_DROPOUTS = ("hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout")

# microsoft/wavlm-base-plus: group-norm conv front end, post-norm transformer, gated relative position bias
# (320 buckets, max distance 800); its preprocessor_config.json has do_normalize false.
WAVLM_BASE_PLUS = HFVariant(
    name="wavlm_base_plus",
    hub_id="microsoft/wavlm-base-plus",
    config_cls=WavLMConfig,
    model_cls=WavLMModel,
    arch={
        **_CONV,
        **_BASE,
        "feat_extract_norm": "group",
        "do_stable_layer_norm": False,
        "num_buckets": 320,
        "max_bucket_distance": 800,
        "hidden_dropout": 0.1,
        "activation_dropout": 0.0,
        "attention_dropout": 0.1,
        "feat_proj_dropout": 0.1,
    },
    model_types=("wavlm",),
    normalize=False,
    ignored_prefixes=("quantizer.", "project_hid.", "project_q."),
    wrapper_prefixes=("wavlm.",),
)
# microsoft/wavlm-large: layer-norm conv front end, pre-norm ("stable layer norm") transformer.
WAVLM_LARGE = HFVariant(
    name="wavlm_large",
    hub_id="microsoft/wavlm-large",
    config_cls=WavLMConfig,
    model_cls=WavLMModel,
    arch={
        **WAVLM_BASE_PLUS.arch,
        **_LARGE,
        "feat_extract_norm": "layer",
        "do_stable_layer_norm": True,
    },
    model_types=("wavlm",),
    normalize=True,
    ignored_prefixes=WAVLM_BASE_PLUS.ignored_prefixes,
    wrapper_prefixes=WAVLM_BASE_PLUS.wrapper_prefixes,
)
# facebook/wav2vec2-base: the published weights are a Wav2Vec2ForPreTraining ("wav2vec2." backbone plus the
# quantizer / project_q / project_hid heads, which the encoder drops); do_normalize true.
WAV2VEC2_BASE = HFVariant(
    name="wav2vec2_base",
    hub_id="facebook/wav2vec2-base",
    config_cls=Wav2Vec2Config,
    model_cls=Wav2Vec2Model,
    arch={
        **_CONV,
        **_BASE,
        "feat_extract_norm": "group",
        "do_stable_layer_norm": False,
        **dict.fromkeys(_DROPOUTS, 0.1),
        "activation_dropout": 0.0,
    },
    model_types=("wav2vec2",),
    normalize=True,
    ignored_prefixes=("quantizer.", "project_hid.", "project_q.", "lm_head.", "dropout_features."),
    wrapper_prefixes=("wav2vec2.",),
)


__all__ = [
    "HFEncoder",
    "HFVariant",
    "MaskedGroupNorm",
    "WAV2VEC2_BASE",
    "WAVLM_BASE_PLUS",
    "WAVLM_LARGE",
    "build_hf_encoder",
    "load_hf_encoder",
    "normalize_waveform",
    "remap_published_keys",
    "resolve_checkpoint",
]
