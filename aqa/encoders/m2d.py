"""M2D (nttcslab/m2d, Masked Modeling Duo): a ViT-Base over normalised log-mel patches, at 16 kHz.

Follows the published runtime (``m2d/runtime_audio.py`` / ``examples/portable_m2d.py``), re-implemented:

- log-mel: STFT n_fft 400, hann window 400 (periodic), hop 160, ``center=True`` with reflect padding, power 2,
  80 Slaney-normalised Slaney-scale mel bands 50-8000 Hz (nnAudio's ``MelSpectrogram`` as the runtime sets
  it), ``log(mel + FLT_EPSILON)``, then ``(x - mean) / std`` with the checkpoint's ``norm_stats``
  (default ``[-7.1, 4.2]`` for checkpoints without them);
- the spectrogram is cut into chunks of the model's input width (608 frames for ``80x608``, 1001 for
  ``80x1001``); the last chunk is zero-padded to whole 16-frame patches; each chunk is encoded on its own;
- ViT-B/16: Conv2d 16x16 patch embedding, tokens in frequency-major order (5 frequency rows x time),
  fixed sin-cos ``pos_embed`` cropped to the chunk's width, a ``cls_token``, 12 pre-LN blocks (768 dims,
  12 heads, MLP 3072, LayerNorm eps 1e-6) and a final LayerNorm;
- per-frame features: the 5 frequency-patch tokens of each 160 ms step concatenated, ``'b (f t) d -> b t (f d)'``
  (3840 dims for 80 mel bins); the cls token is dropped.

Layers: as the runtime's ``encode_lms(return_layers=True)`` (used by its SUPERB upstream): the output of each
of the 12 blocks, the last one after the final LayerNorm (so ``layers[-1]`` is the runtime's ``encode``
output). 12 hidden states x 3840 dims at 6.25 frames/s.

Each clip's log-mel is computed on its own valid samples (``center`` reflect padding at the clip's true end)
and padding patches are masked out of attention, so a clip gives the same frames alone or in a padded batch.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aqa.encoders.base import EncoderOutput, finish, load_state_strict, no_autocast, plain, random_arch
from aqa.hub import resolve_file

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
F_MIN, F_MAX = 50.0, 8000.0
DEFAULT_NORM_STATS = (-7.1, 4.2)
NAME = "m2d_vit_base"
VARIANTS = ("m2d_vit_base-80x608p16x16", "m2d_clap_vit_base-80x1001p16x16")
# ViT-Base as the runtime builds it (embed 768, depth 12, heads 12, mlp_ratio 4).
M2D_VIT_BASE_ARCH: dict[str, Any] = {
    "embed_dim": 768,
    "depth": 12,
    "num_heads": 12,
    "mlp_ratio": 4.0,
    "input_size": [80, 608],
    "patch_size": [16, 16],
}
# Key prefixes of published checkpoints that are not part of the audio encoder: M2D's target encoder and
# decoder (full training checkpoints), M2D-CLAP's projections, EVAR fine-tuning heads.
_NOT_ENCODER = (
    "target_",
    "decoder_",
    "mask_token",
    "offline_predictor",
    "audio_proj.",
    "text_proj.",
    "text_encoder.",
    "module.head.",
    "head.",
)
_SIZE_RE = re.compile(
    r"^(?P<model>[a-z0-9_]+)-(?P<f>\d+)x(?P<t>\d+)p(?P<pf>\d+)x(?P<pt>\d+)(?:p(?P<sr>\d+k))?"
)


def parse_variant(name: str) -> dict[str, Any]:
    """Input and patch size from an M2D weight name, e.g. ``m2d_vit_base-80x608p16x16-221006-mr7``.

    Returns:
        ``{"model", "input_size": [F, T], "patch_size": [pf, pt], "sr"}``.

    Raises:
        ValueError: the name does not follow the runtime's ``<model>-<F>x<T>p<pf>x<pt>[p16k]`` pattern, or is
            not a 16 kHz ViT-Base variant.
    """
    match = _SIZE_RE.match(name)
    if match is None:
        raise ValueError(
            f"cannot read the M2D input/patch size from {name!r}; expected a name like "
            f"{VARIANTS[0]}-221006-mr7 (the runtime reads it from the weight file's folder name); pass variant="
        )
    sr = match["sr"] or "16k"
    if sr != "16k" or not match["model"].endswith("vit_base"):
        raise ValueError(f"M2D variant {name!r} is not a 16 kHz ViT-Base model; supported: {VARIANTS}")
    return {
        "model": match["model"],
        "input_size": [int(match["f"]), int(match["t"])],
        "patch_size": [int(match["pf"]), int(match["pt"])],
        "sr": sr,
    }


# ----------------------------------------------------------------------------------------------------------
# Log-mel front end


def slaney_mel_filters(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> Tensor:
    """Slaney-scale, Slaney-normalised triangular mel filters (librosa ``mel(htk=False, norm='slaney')``).

    Returns:
        (n_mels, n_fft // 2 + 1) float64.
    """
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_mel + math.log(f / min_log_hz) / logstep

    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    hz = torch.where(mels < min_log_mel, f_sp * mels, min_log_hz * torch.exp(logstep * (mels - min_log_mel)))
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    widths = hz[1:] - hz[:-1]
    ramps = hz[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    return weights * (2.0 / (hz[2:] - hz[:-2]))[:, None]


def log_mel(wav: Tensor, filters: Tensor, window: Tensor) -> Tensor:
    """``log(mel power + eps)`` of one clip, STFT centred with reflect padding (the M2D runtime's front end).

    Args:
        wav: (T,) samples at 16 kHz, T > 200.
        filters: (n_mels, n_fft // 2 + 1) mel weights; window: (n_fft,) analysis window.

    Returns:
        (n_mels, 1 + T // 160) log-mel frames.
    """
    with no_autocast(wav):  # float32 under bf16-mixed too
        spec = torch.stft(
            wav.float(), N_FFT, HOP, N_FFT, window=window, center=True, pad_mode="reflect", return_complex=True
        )
        power = spec.real.pow(2) + spec.imag.pow(2)
        return torch.log(filters @ power + torch.finfo(torch.float32).eps)


# ----------------------------------------------------------------------------------------------------------
# ViT backbone (parameter names follow timm's VisionTransformer, as the published state dicts do)


class _PatchEmbed(nn.Module):
    def __init__(self, patch: Sequence[int], dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=tuple(patch), stride=tuple(patch))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = positions.reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_pos_embed(dim: int, grid: Sequence[int]) -> Tensor:
    """MAE's fixed 2-D sin-cos position table with a zero cls row: (1, 1 + F * T, dim), frequency-major."""
    rows, cols = np.meshgrid(
        np.arange(grid[0], dtype=np.float64), np.arange(grid[1], dtype=np.float64), indexing="ij"
    )
    table = np.concatenate([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], axis=1)
    table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return torch.from_numpy(table).float()[None]


class M2DViT(nn.Module):
    """The M2D audio ViT; ``state_dict`` keys as the runtime's encoder (plus ``norm_stats``)."""

    def __init__(self, arch: Mapping[str, Any]) -> None:
        super().__init__()
        dim, patch = int(arch["embed_dim"]), [int(p) for p in arch["patch_size"]]
        self.grid = [int(arch["input_size"][0]) // patch[0], int(arch["input_size"][1]) // patch[1]]
        self.patch_embed = _PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(sincos_pos_embed(dim, self.grid), requires_grad=False)
        self.blocks = nn.ModuleList(
            _Block(dim, int(arch["num_heads"]), float(arch["mlp_ratio"])) for _ in range(int(arch["depth"]))
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.norm_stats = nn.Parameter(torch.tensor(DEFAULT_NORM_STATS), requires_grad=False)

    def forward_chunk(self, lms: Tensor, valid_patches: Tensor) -> list[Tensor]:
        """Hidden states of one chunk: lms (B, 1, F, T) normalised, T a multiple of the patch width.

        Returns one (B, 1 + F' * T', D) tensor per block (cls first), the last after ``norm``.
        """
        x = self.patch_embed.proj(lms)  # (B, D, F', T')
        fbins, steps = x.shape[2], x.shape[3]
        if steps > self.grid[1] or fbins != self.grid[0]:
            raise ValueError(f"chunk of {fbins}x{steps} patches exceeds the model grid {self.grid}")
        x = x.flatten(2).transpose(1, 2)  # frequency-major tokens: index = f * T' + t
        dim = x.shape[-1]
        pos = (
            self.pos_embed[:, 1:]
            .reshape(1, self.grid[0], self.grid[1], dim)[:, :, :steps]
            .reshape(1, -1, dim)
        )
        x = x + pos
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        mask = None
        if bool((valid_patches < steps).any()):
            step_ok = torch.arange(steps, device=x.device)[None, :] < valid_patches[:, None]  # (B, T')
            keep = torch.cat([step_ok.new_ones(x.shape[0], 1), step_ok.repeat(1, fbins)], dim=1)
            mask = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill(~keep, float("-inf"))
            mask = mask[:, None, None, :]
        hidden = []
        for block in self.blocks:
            x = block(x, mask)
            hidden.append(x)
        hidden[-1] = self.norm(x)
        return hidden


class M2DEncoder(nn.Module):
    """M2D as an ``aqa`` encoder: waveform (B, T) at 16 kHz -> 12 hidden states (B, F, 3840) at 6.25 Hz.

    Builds random weights from ``arch``; use :func:`load_m2d` for the published checkpoints.

    Args:
        arch: ViT fields (see ``M2D_VIT_BASE_ARCH``); ``input_size`` [mel bins, chunk frames] must have
            80 mel bins.
    """

    def __init__(self, arch: Mapping[str, Any]) -> None:
        super().__init__()
        arch = {**M2D_VIT_BASE_ARCH, **plain(arch)}
        if int(arch["input_size"][0]) != N_MELS:
            raise ValueError(f"M2D input_size must have {N_MELS} mel bins, got {arch['input_size']}")
        self.model = M2DViT(arch)
        self.arch = arch
        self.unit_frames = int(arch["input_size"][1])
        self.patch_frames = int(arch["patch_size"][1])
        self.fbins = self.model.grid[0]
        self.sample_rate = SAMPLE_RATE
        self.output_dim = int(arch["embed_dim"]) * self.fbins
        self.num_layers = int(arch["depth"])
        self.downsample_rate = HOP * self.patch_frames
        self.frame_rate = self.sample_rate / self.downsample_rate
        self.min_samples = N_FFT // 2 + 1
        self.register_buffer("mel_filters", slaney_mel_filters().float(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Output frames of clips with ``lengths`` samples, as the runtime's chunking yields them."""
        mel_frames = lengths.long() // HOP + 1
        full, rest = (
            torch.div(mel_frames, self.unit_frames, rounding_mode="floor"),
            mel_frames % self.unit_frames,
        )
        per_chunk = self.unit_frames // self.patch_frames
        return full * per_chunk + torch.div(
            rest + self.patch_frames - 1, self.patch_frames, rounding_mode="floor"
        )

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a batch of waveforms.

        Args:
            wav: (B, T) float waveform at 16 kHz in [-1, 1], right-padded.
            lengths: (B,) long valid samples per clip, or None when all T samples are valid.

        Returns:
            ``EncoderOutput`` with 12 tensors of (B, F, 3840) and (B,) valid frame counts.

        Raises:
            ValueError: a clip has 200 samples or fewer (the centred STFT's reflect padding needs 201).
        """
        if wav.dim() != 2:
            raise ValueError(f"expected wav of shape (B, T), got {tuple(wav.shape)}")
        batch, samples = wav.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=wav.device)
        lengths = lengths.to(device=wav.device, dtype=torch.long)
        if lengths.shape != (batch,) or bool((lengths > samples).any()) or bool((lengths < 1).any()):
            raise ValueError(f"lengths must be (B,) in [1, {samples}], got {lengths.tolist()}")
        if bool((lengths < self.min_samples).any()):
            raise ValueError(
                f"M2D needs at least {self.min_samples} samples ({1000 * self.min_samples / SAMPLE_RATE:.1f} ms "
                f"at 16 kHz) per clip for its centred STFT, got lengths {lengths.tolist()}"
            )
        mean, std = self.model.norm_stats[0], self.model.norm_stats[1]
        mel_frames = lengths // HOP + 1
        total = int(mel_frames.max())
        # runtime: pad so that the last chunk holds whole patches
        total += (self.patch_frames - total % self.unit_frames % self.patch_frames) % self.patch_frames
        # 0 is the padding value in the normalised domain, as the runtime pads
        lms = wav.new_zeros(batch, 1, N_MELS, total)
        for i in range(batch):  # per clip: the centred STFT reflects at the clip's own end
            spec = log_mel(wav[i, : int(lengths[i])].float(), self.mel_filters, self.window)
            lms[i, 0, :, : spec.shape[-1]] = (spec - mean) / std
        frames = self.frame_lengths(lengths)
        per_chunk = self.unit_frames // self.patch_frames
        outputs: list[list[Tensor]] = []
        for start in range(0, total, self.unit_frames):
            chunk = lms[..., start : start + self.unit_frames]
            steps = chunk.shape[-1] // self.patch_frames
            chunk = chunk[..., : steps * self.patch_frames]
            first = start // self.unit_frames * per_chunk
            valid = (frames - first).clamp(0, steps)
            hidden = self.model.forward_chunk(chunk, valid)
            # drop cls, 'b (f t) d -> b t (f d)'
            outputs.append(
                [
                    h[:, 1:]
                    .reshape(batch, self.fbins, steps, -1)
                    .permute(0, 2, 1, 3)
                    .reshape(batch, steps, -1)
                    for h in hidden
                ]
            )
        layers = [torch.cat([chunk[i] for chunk in outputs], dim=1) for i in range(self.num_layers)]
        return EncoderOutput(layers=layers, lengths=frames)


# ----------------------------------------------------------------------------------------------------------
# Loading the published checkpoint


def _missing_checkpoint(checkpoint: str, reason: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"M2D checkpoint {checkpoint!r} not found: {reason}. Expected a published weight file such as "
        "m2d_vit_base-80x608p16x16-221006-mr7/checkpoint-300.pth or "
        "m2d_clap_vit_base-80x1001p16x16-240128_AS-FT_enconly/weights_ep67it3124-0.48558.pth (unzip the "
        "release from https://github.com/nttcslab/m2d/releases; the folder name gives the input size) and set "
        "encoder.checkpoint=/path/to/<folder>/<file>.pth, or set it to RELEASE_ZIP_URL#<folder>/<file>.pth "
        f"(downloaded on first use, as configs/encoder/{NAME}.yaml does; `aqa download {NAME}` pre-fetches it)."
    )


def read_m2d_state(path: Path) -> dict[str, Tensor]:
    """Published ``.pth`` -> encoder state dict (``torch.load(weights_only=True)``; ``args`` Namespaces allowed).

    Handles the runtime's layouts: ``{"model": ...}`` training checkpoints, plain encoder-only state dicts,
    ``backbone.`` (RuntimeM2D) and ``module.ar.runtime.backbone.`` (EVAR fine-tuning) prefixes. Keys of the
    target encoder, decoder, CLAP projections and task heads are dropped.
    """
    try:
        # full training checkpoints carry the argparse Namespace of their run next to the weights
        with torch.serialization.safe_globals([argparse.Namespace]):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path} could not be read with torch.load(weights_only=True) ({err}); if you trust the file, "
            "re-save its weights: torch.save(torch.load(p, weights_only=False)['model'], 'weights.pth')"
        ) from err
    if not isinstance(blob, Mapping):
        raise ValueError(f"{path} holds a {type(blob).__name__}, not an M2D state dict")
    state = blob["model"] if "model" in blob and isinstance(blob["model"], Mapping) else blob
    state = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k.replace("module.ar.runtime.backbone.", ""): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(_NOT_ENCODER)}


def load_m2d(
    checkpoint: str | Path,
    variant: str | None = None,
    arch: Mapping[str, Any] | None = None,
    sha256: str | None = None,
) -> M2DEncoder:
    """Load a published M2D weight file into an :class:`M2DEncoder`, strictly on the encoder keys.

    Args:
        checkpoint: the ``.pth`` file inside its release folder, or ``RELEASE_ZIP_URL#folder/file.pth``: the
            release downloaded on first use into the aqa cache, checked against ``sha256`` and the file
            extracted with its folder (:func:`aqa.hub.resolve_file`).
        variant: name giving the input/patch size (e.g. ``m2d_vit_base-80x608p16x16``); None reads it from
            the folder name, then the file name, as the runtime does.
        arch: ViT fields the weights do not determine (``num_heads``, ``mlp_ratio``); default ViT-Base.
        sha256: expected sha256 of the release zip a URL ``checkpoint`` downloads (None: recorded on first use).

    Raises:
        FileNotFoundError: the file is missing (:class:`aqa.hub.WeightsUnavailable`: a URL not cached and
            offline, unreachable, or failing the sha256 check).
        ValueError: unknown variant, unreadable file, or key / shape mismatch (the message lists the keys).
    """
    path = resolve_file(checkpoint, sha256, hint=f"aqa download {NAME}")
    if not path.is_file():
        raise _missing_checkpoint(str(checkpoint), f"no file {path.resolve()}")
    if variant is None:
        try:
            sizes = parse_variant(path.parent.name)
        except ValueError:
            sizes = parse_variant(path.stem)
    else:
        sizes = parse_variant(variant)
    state = read_m2d_state(path)
    if "norm_stats" not in state:  # 2022 weights predate stored statistics; the runtime's default
        state["norm_stats"] = torch.tensor(DEFAULT_NORM_STATS)
    arch = {
        **M2D_VIT_BASE_ARCH,
        **plain(arch or {}),
        "input_size": sizes["input_size"],
        "patch_size": sizes["patch_size"],
    }
    if "pos_embed" in state:
        arch["embed_dim"] = int(state["pos_embed"].shape[-1])
    depth = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    if depth:
        arch["depth"] = max(depth) + 1
    encoder = M2DEncoder(arch)
    load_state_strict(encoder.model, state, path, f"the M2D ViT ({sizes})")
    return encoder


# ----------------------------------------------------------------------------------------------------------
# Builders (to register in aqa.encoders.ENCODERS)


def build_m2d_vit_base(
    checkpoint: str | None = None,
    freeze: bool = False,
    adapter: Mapping[str, Any] | None = None,
    variant: str | None = None,
    arch: Mapping[str, Any] | None = None,
    sha256: str | None = None,
) -> M2DEncoder:
    """M2D ViT-Base: published weights from ``checkpoint`` or random weights (``variant`` sets the size).

    Args:
        checkpoint: the ``.pth`` inside its release folder, or ``RELEASE_ZIP_URL#folder/file.pth`` (see
            :func:`load_m2d`); None builds random weights of the
            ViT-Base architecture overridden by ``arch`` (parameter counts, benchmarks, tiny twins).
        freeze: stop gradients for the whole backbone (applied before the adapter).
        adapter: ``{name: lora, r, alpha, dropout, target_modules}`` (the ViT's fused projection is ``qkv``)
            or None.
        variant: e.g. ``m2d_vit_base-80x608p16x16`` (default for random weights) or
            ``m2d_clap_vit_base-80x1001p16x16``; None with a checkpoint reads it from the folder name.
        arch: fields overriding ``M2D_VIT_BASE_ARCH`` and the variant's sizes (e.g. embed_dim 32, depth 2,
            input_size [80, 64]; the tiny YAML). Random weights only: must be empty with a ``checkpoint``.
        sha256: expected sha256 of the release zip a URL ``checkpoint`` downloads.

    Raises:
        ValueError: ``arch`` given together with a ``checkpoint``.
    """
    arch = random_arch(NAME, arch, checkpoint)
    if checkpoint is None:
        sizes = parse_variant(variant or VARIANTS[0])
        encoder = M2DEncoder({"input_size": sizes["input_size"], "patch_size": sizes["patch_size"], **arch})
    else:
        encoder = load_m2d(checkpoint, variant, sha256=sha256)
    return finish(encoder, freeze, adapter)


__all__ = [
    "M2DEncoder",
    "M2DViT",
    "M2D_VIT_BASE_ARCH",
    "VARIANTS",
    "build_m2d_vit_base",
    "load_m2d",
    "parse_variant",
    "read_m2d_state",
    "slaney_mel_filters",
]
