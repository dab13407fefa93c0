"""The encoder contract and helpers that every encoder family shares.

An encoder is a plain ``nn.Module`` that maps a batch of waveforms to all of its hidden states:

- attributes ``sample_rate`` (Hz of the expected input), ``output_dim`` (D), ``num_layers`` (number of
  hidden states returned) and ``frame_rate`` (output frames per second);
- ``forward(wav, lengths) -> EncoderOutput`` with ``wav`` (B, T) float at ``sample_rate`` and ``lengths``
  (B,) long valid samples per clip, or None when every sample is valid.

Optional attributes some helpers use when present: ``downsample_rate`` (input samples per output frame),
``receptive_field`` (samples one frame sees) and ``min_samples`` (shortest clip that gives one frame).

Shared helpers, written once for every family:

- input adaptation: :func:`to_mono`, :func:`resample`, :func:`prepare` and the :func:`adapt_input` wrapper
  turn any rate / channel count into mono at the encoder's rate (pure torch, runs on any device);
- :func:`chunked_forward`: long clips in chunks, frames concatenated on the unchunked frame grid;
- :func:`check_min_length`: a clear ``ValueError`` for clips too short for one frame;
- :func:`frame_mask`, :func:`masked_time_mean`: valid frames and the mean over them (pooling for heads and fusion);
- :class:`LayerWeightedSum`: softmax-weighted sum of the layers (s3prl's Featurizer; per-layer LayerNorm as
  in HAAQI-Net);
- :func:`freeze`, :func:`apply_lora`, :func:`apply_adapter`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MethodType
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from torch import Tensor, nn

from aqa.audio import resample, resampled_lengths, to_mono


class EncoderOutput(NamedTuple):
    """What every encoder returns.

    Attributes:
        layers: one (B, F, D) tensor per hidden state, the embedding output first
            (MERT-v1-95M: 13 tensors with D = 768).
        lengths: (B,) long, number of valid frames per clip; frames at and after it are padding.
    """

    layers: list[Tensor]
    lengths: Tensor


def frame_lengths(lengths_samples: Tensor, conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> Tensor:
    """Number of output frames of a stack of unpadded 1-D convolutions.

    Applies ``floor((L - kernel) / stride) + 1`` once per layer (the ``nn.Conv1d`` output length with no
    padding and no dilation), clamped at zero.

    Args:
        lengths_samples: (B,) integer input lengths in samples.
        conv_kernel: kernel size of each layer, e.g. (10, 3, 3, 3, 3, 2, 2) for wav2vec 2.0 / HuBERT / MERT.
        conv_stride: stride of each layer, e.g. (5, 2, 2, 2, 2, 2, 2).

    Returns:
        (B,) long number of frames.
    """
    if len(conv_kernel) != len(conv_stride):
        raise ValueError(
            f"conv_kernel {list(conv_kernel)} and conv_stride {list(conv_stride)} differ in length"
        )
    lengths = torch.as_tensor(lengths_samples).long()
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        lengths = (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp_min(0)
    return lengths


def no_autocast(like: Tensor) -> torch.autocast:
    """A context with autocast off on ``like``'s device: spectral front ends (STFT power, mel matrix, log)
    run in float32 under ``bf16-mixed`` too, where autocast would otherwise take their matmuls to bf16."""
    return torch.autocast(like.device.type, enabled=False)


def _train_frozen(self: nn.Module, mode: bool = True) -> nn.Module:
    # ``train`` of a frozen module: eval mode whatever ``mode`` says (see :func:`freeze`)
    return nn.Module.train(self, False)


def freeze(module: nn.Module, eval_mode: bool = True) -> nn.Module:
    """Stop gradients for every parameter of ``module`` (in place) and return it.

    With ``eval_mode`` (the default) the module is also pinned in eval mode: its ``train()`` (called by a parent's
    ``train()``, e.g. Lightning's at the start of every training epoch) leaves it in eval mode, so a frozen
    feature extractor runs without dropout, layer drop or BatchNorm updates, as frozen features are extracted by
    the released code of the papers (MMMOS, HAAQI-Net). ``module.frozen`` is set True. Pass ``eval_mode=False``
    when trainable parts are added inside the module afterwards (LoRA adapters keep their dropout as configured).
    """
    for param in module.parameters():
        param.requires_grad_(False)
    module.frozen = True
    if eval_mode:
        module.train = MethodType(_train_frozen, module)  # an instance attribute: other modules keep nn.Module's
        module.eval()
    return module


def apply_lora(model: nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str]) -> nn.Module:
    """Inject LoRA adapters into ``model`` in place with ``peft`` and return the same module.

    Every ``nn.Linear`` whose name ends with one of ``target_modules`` gets a low-rank update
    ``W x + (alpha / r) B A x`` (A: r x in, B: out x r, B initialised to zero so the output is unchanged at
    first). Afterwards only the ``lora_`` parameters of ``model`` require gradients. The module keeps its
    class and ``forward``; its ``state_dict`` gains ``...base_layer.weight`` / ``...lora_A.default.weight``
    style keys, so save and load between models built the same way.

    Args:
        model: the backbone to adapt (e.g. a ``transformers`` ``HubertModel``).
        r: rank of the update.
        alpha: scaling numerator; the update is multiplied by ``alpha / r``.
        dropout: dropout on the adapter input.
        target_modules: suffixes of module names to adapt, e.g. ``["q_proj", "v_proj"]``.
    """
    config = LoraConfig(
        r=int(r),
        lora_alpha=int(alpha),
        lora_dropout=float(dropout),
        target_modules=[str(name) for name in target_modules],
        bias="none",
    )
    model = inject_adapter_in_model(config, model)
    # peft already marks only adapters as trainable; state it here so the contract does not hinge on that.
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


def apply_adapter(model: nn.Module, adapter: Mapping[str, Any] | None) -> nn.Module:
    """Apply the adapter a config names (``{name: lora, r, alpha, dropout, target_modules}``), or none for None."""
    if adapter is None:
        return model
    kwargs = {k: v for k, v in adapter.items() if k != "name"}
    name = adapter.get("name")
    if name == "lora":
        return apply_lora(model, **kwargs)
    raise KeyError(f"unknown adapter {name!r}; choose from ['lora'] or set adapter: null")


# ----------------------------------------------------------------------------------------------------------
# Input adaptation: any channel count and sample rate -> mono at the encoder's rate


def prepare(
    wav: Tensor, sample_rate: int, target_rate: int, lengths: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Make any input fit an encoder: mono down-mix, padding zeroed, resampled to ``target_rate``.

    Args:
        wav: (T,), (B, T) or (B, C, T) float at ``sample_rate`` Hz (channels averaged).
        sample_rate: rate of ``wav`` in Hz.
        target_rate: the encoder's ``sample_rate``.
        lengths: (B,) valid samples per clip at ``sample_rate``, or None when all are valid.

    Returns:
        ``(wav (B, T'), lengths (B,) or None)`` at ``target_rate``; padding samples are exactly zero, so a
        clip gives the same samples alone and inside a padded batch.
    """
    wav = to_mono(wav)
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=wav.device).long()
        if lengths.shape != (wav.shape[0],):
            raise ValueError(f"lengths must have shape ({wav.shape[0]},), got {tuple(lengths.shape)}")
        mask = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]
        wav = wav.masked_fill(~mask, 0.0)
    if int(sample_rate) != int(target_rate):
        wav = resample(wav, sample_rate, target_rate)
        if lengths is not None:
            lengths = resampled_lengths(lengths, sample_rate, target_rate).clamp_max(wav.shape[1])
    return wav, lengths


class AdaptedEncoder(nn.Module):
    """An encoder that takes input at ``input_rate`` with any channel count (see :func:`adapt_input`).

    Same contract as the wrapped encoder, except ``sample_rate`` is the input rate and ``wav`` may be
    (B, C, T). ``output_dim``, ``num_layers`` and ``frame_rate`` are the wrapped encoder's.
    """

    def __init__(self, encoder: nn.Module, input_rate: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.sample_rate = int(input_rate)
        self.output_dim = encoder.output_dim
        self.num_layers = encoder.num_layers
        self.frame_rate = encoder.frame_rate

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Args: wav (B, T) or (B, C, T) at ``sample_rate``; lengths (B,) samples or None."""
        wav, lengths = prepare(wav, self.sample_rate, self.encoder.sample_rate, lengths)
        return self.encoder(wav, lengths)


def adapt_input(encoder: nn.Module, input_rate: int) -> nn.Module:
    """Wrap ``encoder`` so it accepts audio at ``input_rate`` Hz, mono or multi-channel (returns it unchanged
    when the rates already match: channels must then be down-mixed by the caller with :func:`to_mono`)."""
    return encoder if int(input_rate) == int(encoder.sample_rate) else AdaptedEncoder(encoder, input_rate)


# ----------------------------------------------------------------------------------------------------------
# Short and long inputs


def check_min_length(lengths: Tensor, min_samples: int, sample_rate: int, what: str = "encoder") -> None:
    """Raise a ``ValueError`` naming the minimum when any clip is shorter than ``min_samples``."""
    if bool((lengths < min_samples).any()):
        raise ValueError(
            f"{what}: every clip needs at least {min_samples} samples ({min_samples / sample_rate * 1000:.1f} ms "
            f"at {sample_rate} Hz) for one output frame, got lengths {lengths.tolist()}; pad or drop shorter clips"
        )


def chunked_forward(
    encode: Callable[[Tensor, Tensor | None], EncoderOutput],
    wav: Tensor,
    lengths: Tensor | None,
    chunk: int,
    overlap: int = 0,
    min_samples: int = 1,
) -> EncoderOutput:
    """Run ``encode`` on chunks of ``chunk`` samples and concatenate the frames along time.

    Chunk ``k`` of a clip covers samples ``[k * chunk, (k + 1) * chunk + overlap)``. For a strided conv front
    end choose ``chunk`` a multiple of the hop and ``overlap = receptive_field - hop``: every chunk then
    yields exactly the frames of the unchunked frame grid that start inside it, so the frame count and the
    frame times equal those of one pass. What differs (the boundary effect): attention and positional
    convolutions see no context across a boundary, and per-chunk statistics (input normalisation, the first
    GroupNorm of wav2vec2-style models) are computed per chunk. Every chunk of every clip runs as one batch.
    Chunk tails shorter than ``min_samples`` give no frame (as in a single pass) and are not run.

    Args:
        encode: ``(wav (N, t), lengths (N,)) -> EncoderOutput``, the encoder's unchunked forward.
        wav: (B, T) at the encoder's rate.
        lengths: (B,) valid samples, or None when all T are valid.
        chunk: samples per chunk (excluding the overlap).
        overlap: extra samples each chunk reads past its end.
        min_samples: shortest chunk that yields a frame.

    Returns:
        ``EncoderOutput`` with each layer (B, F, D), F the largest per-clip frame count; frames past a clip's
        count are zero.
    """
    batch, samples = wav.shape
    if lengths is None:
        lengths = torch.full((batch,), samples, dtype=torch.long, device=wav.device)
    span = chunk + overlap
    pieces, owners, piece_lengths = [], [], []
    for b, length in enumerate(lengths.tolist()):
        start = 0
        while True:
            valid = min(span, length - start)
            if start > 0 and valid < min_samples:
                break
            piece = wav[b, start : start + span]
            pieces.append(F.pad(piece, (0, span - piece.shape[0])))
            owners.append(b)
            piece_lengths.append(valid)
            if start + span >= length:
                break
            start += chunk
    out = encode(torch.stack(pieces), torch.tensor(piece_lengths, device=wav.device))
    counts = [0] * batch
    parts: list[list[list[Tensor]]] = [[[] for _ in range(batch)] for _ in out.layers]
    for i, b in enumerate(owners):
        n = int(out.lengths[i])
        counts[b] += n
        for layer, part in zip(out.layers, parts, strict=True):
            part[b].append(layer[i, :n])
    frames = max(counts)
    layers = []
    for part in parts:
        rows = [torch.cat(p, dim=0) for p in part]
        layers.append(torch.stack([F.pad(r, (0, 0, 0, frames - r.shape[0])) for r in rows]))
    return EncoderOutput(layers=layers, lengths=torch.tensor(counts, dtype=torch.long, device=wav.device))


# ----------------------------------------------------------------------------------------------------------
# Layer combination


def frame_mask(lengths: Tensor | None, frames: int, batch: int, device: torch.device | None = None) -> Tensor:
    """(B, F) bool mask of valid frames (all valid when ``lengths`` is None)."""
    if lengths is None:
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def masked_time_mean(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Mean over valid frames.

    Args:
        x: (B, F, D) frame features.
        lengths: (B,) number of valid frames per clip, or None when all frames are valid.

    Returns:
        (B, D) time-averaged features; padding frames never contribute.
    """
    if lengths is None:
        return x.mean(dim=1)
    mask = frame_mask(lengths, x.shape[1], x.shape[0]).to(x.dtype)  # (B, F)
    return (x * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1.0)



class LayerWeightedSum(nn.Module):
    """Learned softmax-weighted sum of an encoder's layers: ``sum_l softmax(w)_l * norm_l(h_l)``.

    s3prl's Featurizer (weights start equal); with ``layer_norm=True`` each layer first goes through its
    own ``LayerNorm(dim)`` as in HAAQI-Net, so layers of very different scales weigh in comparably. Per
    frame, so padding frames never affect valid ones.

    Args:
        num_layers: L, the encoder's ``num_layers``.
        dim: D, the encoder's ``output_dim``.
        layer_norm: per-layer LayerNorm (with affine parameters) before weighting.
    """

    def __init__(self, num_layers: int, dim: int, layer_norm: bool = False) -> None:
        super().__init__()
        self.num_layers = int(num_layers)
        self.weights = nn.Parameter(torch.zeros(self.num_layers))
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(self.num_layers)]) if layer_norm else None

    def forward(self, layers: Sequence[Tensor]) -> Tensor:
        """Args: layers: L tensors of (B, F, D). Returns (B, F, D)."""
        if len(layers) != self.num_layers:
            raise ValueError(f"LayerWeightedSum expects {self.num_layers} layers, got {len(layers)}")
        if self.norms is not None:
            layers = [norm(h) for norm, h in zip(self.norms, layers, strict=True)]
        weights = torch.softmax(self.weights, dim=0)
        return torch.einsum("l,lbfd->bfd", weights.to(layers[0].dtype), torch.stack(list(layers)))


__all__ = [
    "AdaptedEncoder",
    "random_arch",
    "EncoderOutput",
    "LayerWeightedSum",
    "adapt_input",
    "apply_adapter",
    "apply_lora",
    "check_min_length",
    "chunked_forward",
    "frame_lengths",
    "frame_mask",
    "freeze",
    "masked_time_mean",
    "prepare",
    "resample",
    "resampled_lengths",
    "to_mono",
]


# Shared by the checkpoint loaders and builders of every family.

def preview(keys: Sequence[str], limit: int = 20) -> str:
    """``[a, b, ... (n more)]`` for error messages."""
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... ({len(keys) - limit} more)' if len(keys) > limit else ''}]" if keys else "[]"


def plain(value: Any) -> Any:
    """OmegaConf containers -> dict / list, so strict config classes and peft accept them."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(v) for v in value]
    return value


def load_state_strict(model: nn.Module, state: Mapping[str, Tensor], source: object, arch: object) -> None:
    """``load_state_dict(strict=True)`` with a message listing missing, unexpected and mis-shaped keys.

    ``source`` names the weights file and ``arch`` what defines the architecture (for the message)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights in {source} do not match the architecture of {arch}: "
            f"missing keys {preview(missing)}; unexpected keys {preview(unexpected)}"
        )
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise ValueError(f"weights in {source} have the wrong shapes for {arch}: {preview(wrong)}")
    model.load_state_dict(state, strict=True)


def random_arch(name: str, arch: Mapping[str, Any] | None, checkpoint: object) -> dict[str, Any]:
    """``arch`` as a plain dict; refused with a checkpoint, which brings its own architecture.

    ``arch`` overrides the published architecture of random weights (``checkpoint: null``): the tiny test
    variants are such overrides in YAML.

    Raises:
        ValueError: both ``arch`` and ``checkpoint`` are given.
    """
    arch = dict(plain(arch or {}))
    if checkpoint is not None and arch:
        raise ValueError(
            f"{name}: `arch` {sorted(arch)} shapes random weights only (checkpoint: null); the checkpoint "
            f"{checkpoint!r} brings its own architecture: set checkpoint: null or leave arch empty"
        )
    return arch


def finish(encoder: nn.Module, freeze_backbone: bool, adapter: Mapping[str, Any] | None) -> nn.Module:
    """Freeze first, then add adapters: freeze + LoRA trains only LoRA (the backbone keeps its train/eval mode, so
    dropout runs as configured); freeze alone trains nothing and pins the encoder in eval mode."""
    if freeze_backbone:
        freeze(encoder, eval_mode=adapter is None)
    apply_adapter(encoder.model, None if adapter is None else plain(adapter))
    return encoder
