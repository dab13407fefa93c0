"""BEATs (microsoft/unilm ``beats/``): Kaldi fbank -> 16x16 patches -> 12-layer transformer, at 16 kHz.

Architecture (read from the published ``BEATs.py`` / ``backbone.py``, re-implemented here):

- waveform x 2^15 -> Kaldi-compatible fbank, 128 mel bins, 25 ms / 10 ms frames (povey window, pre-emphasis
  0.97, DC removal, no dither, power spectrum, log with FLT_EPSILON floor) -> ``(fbank - 15.41663) / (2 * 6.55582)``;
- ``patch_embedding`` Conv2d 16x16 / stride 16 over (time, mel) -> tokens ordered time-major (8 frequency
  patches per 160 ms step), LayerNorm, Linear 512 -> 768;
- convolutional positional embedding (kernel 128, 16 groups, weight norm over the kernel axis, GELU) and
  LayerNorm, then 12 post-LN transformer layers with DeepNorm residual scaling, a relative position bias
  (320 buckets, max distance 800, shared by all layers) gated per query by ``grep_linear`` / ``grep_a``.

Frames: this encoder returns one vector per 160 ms time patch, the mean of its 8 frequency-patch tokens
(768 dims, 6.25 frames/s); 13 hidden states (the positional-embedding output, then each layer).
Padding tokens are zeroed before the positional convolution and masked out of attention, so a clip gives
the same frames alone or inside a zero-padded batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aqa.encoders.base import EncoderOutput, finish, load_state_strict, no_autocast, plain, random_arch
from aqa.hub import resolve_file

NAME = "beats_iter3_plus_as2m"
CHECKPOINT_NAME = "BEATs_iter3_plus_AS2M.pt"
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
NUM_MEL_BINS = 128
SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
BEATS_TOKENS = ("mean", "all")  # per 160 ms step: the mean of the 8 frequency-patch tokens, or all of them

# BEATsConfig of BEATs_iter3_plus_AS2M.pt (the checkpoint's "cfg"; the loader always reads the file's own cfg).
BEATS_ITER3_PLUS_AS2M_CFG: dict[str, Any] = {
    "input_patch_size": 16,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "deep_norm": True,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.05,
    "dropout_input": 0.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": True,
    "num_buckets": 320,
    "max_distance": 800,
    "gru_rel_pos": True,
    "layer_wise_gradient_decay_ratio": 0.6,
    "finetuned_model": False,
}
# cfg keys that only matter for pre-training / fine-tuning (ignored: layer drop is always off here, the
# gradient decay only rescales gradients, the label head is not part of the encoder).
_IGNORED_CFG = {
    "encoder_layerdrop",
    "layer_wise_gradient_decay_ratio",
    "finetuned_model",
    "predictor_dropout",
    "predictor_class",
}


# ----------------------------------------------------------------------------------------------------------
# Kaldi-compatible fbank


def kaldi_mel_banks(
    num_bins: int, padded_window: int, sample_rate: float, low_freq: float = 20.0, high_freq: float = 0.0
) -> Tensor:
    """Kaldi's triangular mel filters (``MelBanks``), without VTLN.

    Args:
        num_bins: number of mel bins.
        padded_window: FFT size (the frame length rounded up to a power of two).
        sample_rate: Hz.
        low_freq: lowest band edge in Hz (Kaldi default 20).
        high_freq: highest band edge in Hz; <= 0 means Nyquist + high_freq (Kaldi default 0).

    Returns:
        (num_bins, padded_window // 2 + 1) float64 weights; the Nyquist column is 0 as in Kaldi.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    num_fft_bins = padded_window // 2
    bin_width = sample_rate / padded_window

    def mel(freq: Tensor) -> Tensor:
        return 1127.0 * torch.log1p(freq / 700.0)

    mel_low, mel_high = (
        mel(torch.tensor(low_freq, dtype=torch.float64)),
        mel(torch.tensor(high_freq, dtype=torch.float64)),
    )
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins, dtype=torch.float64)[:, None]
    left, centre, right = (
        mel_low + index * delta,
        mel_low + (index + 1) * delta,
        mel_low + (index + 2) * delta,
    )
    fft_mel = mel(bin_width * torch.arange(num_fft_bins, dtype=torch.float64))[None, :]
    up = (fft_mel - left) / (centre - left)
    down = (right - fft_mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))  # Kaldi has no weight on the Nyquist bin


def kaldi_fbank(
    wav: Tensor,
    num_mel_bins: int = NUM_MEL_BINS,
    sample_rate: int = SAMPLE_RATE,
    frame_length: int = FRAME_LENGTH,
    frame_shift: int = FRAME_SHIFT,
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    banks: Tensor | None = None,
) -> Tensor:
    """Log mel filterbank energies as Kaldi's ``compute-fbank-feats`` with its defaults (and dither 0).

    Per frame (``snip_edges``: only whole frames): remove the DC offset, pre-emphasise
    (``x[i] - 0.97 x[i-1]``, the first sample against itself), multiply by the povey window
    ``(0.5 - 0.5 cos(2 pi n / (N - 1)))^0.85``, zero-pad to a power of two, take the power spectrum, apply
    :func:`kaldi_mel_banks` and ``log(max(energy, FLT_EPSILON))``. This is what
    ``torchaudio.compliance.kaldi.fbank`` computes, which BEATs uses.

    Args:
        wav: (B, T) waveform in Kaldi's scale (BEATs multiplies [-1, 1] audio by 2^15).
        num_mel_bins, sample_rate, frame_length, frame_shift: in bins, Hz and samples.
        preemphasis, low_freq, high_freq: Kaldi options.
        banks: the :func:`kaldi_mel_banks` of these options, precomputed (an encoder keeps them as a buffer
            on its device); None computes them.

    Returns:
        (B, F, num_mel_bins) with F = 1 + (T - frame_length) // frame_shift (0 when T < frame_length).
    """
    if wav.dim() != 2:
        raise ValueError(f"expected wav of shape (B, T), got {tuple(wav.shape)}")
    if wav.shape[1] < frame_length:
        return wav.new_zeros(wav.shape[0], 0, num_mel_bins)
    frames = wav.unfold(1, frame_length, frame_shift)  # (B, F, N)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - preemphasis * previous
    n = torch.arange(frame_length, dtype=torch.float64, device=wav.device)
    window = (0.5 - 0.5 * torch.cos(2 * math.pi * n / (frame_length - 1))).pow(0.85)
    frames = frames * window.to(frames.dtype)
    padded = 1 << (frame_length - 1).bit_length()
    power = torch.fft.rfft(frames, n=padded).abs().pow(2)
    if banks is None:
        banks = kaldi_mel_banks(num_mel_bins, padded, sample_rate, low_freq, high_freq)
    banks = banks.to(power)
    energies = power @ banks.T
    return torch.log(energies.clamp_min(torch.finfo(torch.float32).eps))


def fbank_frames(lengths: Tensor) -> Tensor:
    """Number of whole 25 ms / 10 ms frames in clips of ``lengths`` samples (Kaldi ``snip_edges``)."""
    lengths = lengths.long()
    return torch.where(lengths >= FRAME_LENGTH, (lengths - FRAME_LENGTH) // FRAME_SHIFT + 1, 0)


# ----------------------------------------------------------------------------------------------------------
# Backbone (parameter names follow the published state dict)


class _WeightNormConv1d(nn.Module):
    # Conv1d whose weight is g * v / ||v|| with the norm over all axes but the kernel axis (dim=2), stored as
    # weight_g / weight_v like torch.nn.utils.weight_norm(conv, dim=2) in the published checkpoint.
    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding = kernel // 2
        self.groups = groups
        std = math.sqrt(4.0 / (kernel * channels))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel) * std)
        self.weight_g = nn.Parameter(self.weight_v.detach().pow(2).sum(dim=(0, 1), keepdim=True).sqrt())
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight_g * self.weight_v / self.weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class _DropLast(nn.Module):
    # fairseq's SamePad: an even kernel with padding k // 2 yields one extra frame; drop it.
    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        return x[..., : x.shape[-1] - self.remove]


@functools.lru_cache(maxsize=16)
def relative_buckets(length: int, num_buckets: int, max_distance: int, device: str) -> Tensor:
    """T5-style bidirectional buckets of (key - query) for ``length`` tokens: (L, L) long, on ``device``.

    Depends only on the length, so it is computed once per length and device (not in every forward).
    """
    pos = torch.arange(length, device=device)
    relative = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    exact = half // 2
    far = exact + (
        torch.log(distance.clamp_min(1).float() / exact) / math.log(max_distance / exact) * (half - exact)
    ).long()
    far = far.clamp_max(half - 1)
    return buckets + torch.where(distance < exact, distance, far)


class BEATsAttention(nn.Module):
    """Multi-head self-attention with BEATs' (gated) relative position bias and a key padding mask."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        rel_pos: bool,
        num_buckets: int,
        max_distance: int,
        gated: bool,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"encoder_embed_dim {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        if rel_pos:
            self.relative_attention_bias = nn.Embedding(num_buckets, heads)
        self.gated = gated
        if gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def position_bias(self, length: int, device: torch.device) -> Tensor:
        """(H, L, L) bias of every (query, key) pair, looked up in the learned table by distance bucket."""
        buckets = relative_buckets(length, self.num_buckets, self.max_distance, str(device))
        return self.relative_attention_bias(buckets).permute(2, 0, 1)

    def forward(self, x: Tensor, key_padding: Tensor | None, bias: Tensor | None) -> Tensor:
        batch, length, dim = x.shape
        q = self.q_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        mask = None
        if bias is not None:
            mask = bias[None]  # (1, H, L, L)
            if self.gated:
                # per-query gate from the unscaled query: a * (b * grep_a - 1) + 2
                gates = torch.sigmoid(self.grep_linear(q).view(batch, self.heads, length, 2, 4).sum(-1))
                gate_a, gate_b = gates[..., :1], gates[..., 1:]
                mask = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * mask
        if key_padding is not None:
            neg = torch.zeros(batch, 1, 1, length, dtype=x.dtype, device=x.device)
            neg = neg.masked_fill(key_padding[:, None, None, :], float("-inf"))
            mask = neg if mask is None else mask + neg
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class BEATsLayer(nn.Module):
    """One BEATs transformer layer (post-LN with DeepNorm residual scaling, or pre-LN)."""

    def __init__(self, cfg: Mapping[str, Any], rel_pos: bool) -> None:
        super().__init__()
        dim = int(cfg["encoder_embed_dim"])
        self.self_attn = BEATsAttention(
            dim,
            int(cfg["encoder_attention_heads"]),
            float(cfg["attention_dropout"]),
            rel_pos,
            int(cfg["num_buckets"]),
            int(cfg["max_distance"]),
            bool(cfg["gru_rel_pos"]),
        )
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, int(cfg["encoder_ffn_embed_dim"]))
        self.fc2 = nn.Linear(int(cfg["encoder_ffn_embed_dim"]), dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.pre_norm = bool(cfg["layer_norm_first"])
        self.alpha = math.pow(2 * int(cfg["encoder_layers"]), 0.25) if cfg["deep_norm"] else 1.0
        self.dropout = nn.Dropout(float(cfg["dropout"]))
        self.activation_dropout = nn.Dropout(float(cfg["activation_dropout"]))

    def _ffn(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))

    def forward(self, x: Tensor, key_padding: Tensor | None, bias: Tensor | None) -> Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), key_padding, bias))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x * self.alpha + self.dropout(self.self_attn(x, key_padding, bias)))
        return self.final_layer_norm(x * self.alpha + self._ffn(x))


class BEATsTransformer(nn.Module):
    """Positional convolution + transformer layers (the published ``TransformerEncoder``)."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        dim, kernel = int(cfg["encoder_embed_dim"]), int(cfg["conv_pos"])
        # conv_pos 0: no positional convolution (HAAQI-Net's published student has none)
        self.pos_conv = nn.Sequential(
            _WeightNormConv1d(dim, kernel, int(cfg["conv_pos_groups"])), _DropLast(kernel), nn.GELU()
        ) if kernel > 0 else None
        rel_pos = bool(cfg["relative_position_embedding"])
        self.layers = nn.ModuleList(BEATsLayer(cfg, rel_pos) for _ in range(int(cfg["encoder_layers"])))
        if rel_pos:  # one bias table, shared by every layer (saved under every layer's name)
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = self.layers[0].self_attn.relative_attention_bias
        self.layer_norm = nn.LayerNorm(dim)
        self.pre_norm = bool(cfg["layer_norm_first"])
        self.rel_pos = rel_pos
        self.dropout = nn.Dropout(float(cfg["dropout"]))

    def forward(self, x: Tensor, key_padding: Tensor | None) -> list[Tensor]:
        if key_padding is not None:
            x = x.masked_fill(key_padding[..., None], 0.0)
        if self.pos_conv is not None:
            x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.pre_norm:
            x = self.layer_norm(x)
        x = self.dropout(x)
        bias = self.layers[0].self_attn.position_bias(x.shape[1], x.device) if self.rel_pos else None
        hidden = [x]
        for layer in self.layers:
            x = layer(x, key_padding, bias)
            hidden.append(x)
        if self.pre_norm:
            hidden[-1] = self.layer_norm(x)
        return hidden


class BEATsModel(nn.Module):
    """The BEATs backbone from normalised fbank patches to hidden states; state-dict keys as published."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        embed, dim, patch = int(cfg["embed_dim"]), int(cfg["encoder_embed_dim"]), int(cfg["input_patch_size"])
        self.patch_embedding = nn.Conv2d(
            1, embed, kernel_size=patch, stride=patch, bias=bool(cfg["conv_bias"])
        )
        self.layer_norm = nn.LayerNorm(embed)
        self.post_extract_proj = nn.Linear(embed, dim) if embed != dim else None
        self.dropout_input = nn.Dropout(float(cfg["dropout_input"]))
        self.encoder = BEATsTransformer(cfg)


def beats_config(**overrides: Any) -> dict[str, Any]:
    """The published iter3+ AS2M ``cfg`` with ``overrides``; refuses options this module does not implement."""
    cfg = {**BEATS_ITER3_PLUS_AS2M_CFG, **plain(overrides)}
    if cfg["activation_fn"] != "gelu":
        raise ValueError(f"BEATs activation_fn {cfg['activation_fn']!r} is not supported (only 'gelu')")
    if cfg["deep_norm"] and cfg["layer_norm_first"]:
        raise ValueError("BEATs cfg sets both deep_norm and layer_norm_first, which BEATs forbids")
    if NUM_MEL_BINS % int(cfg["input_patch_size"]):
        raise ValueError(f"input_patch_size {cfg['input_patch_size']} must divide {NUM_MEL_BINS} mel bins")
    return cfg


class BEATsEncoder(nn.Module):
    """BEATs as an ``aqa`` encoder: waveform (B, T) at 16 kHz -> 13 hidden states (B, F, 768), F at 6.25 Hz.

    Builds random weights from ``cfg``; use :func:`load_beats` for the published checkpoint.

    Args:
        cfg: a BEATsConfig dict (see :func:`beats_config`).
        tokens: ``mean`` averages the 8 frequency-patch tokens of each 160 ms step (one frame per step,
            6.25 Hz); ``all`` keeps every token in BEATs' own time-major order (8 frames per step, 50 Hz), the
            sequence BEATs' ``extract_features`` returns and HAAQI-Net's published model reads.
    """

    def __init__(self, cfg: Mapping[str, Any], tokens: str = "mean") -> None:
        super().__init__()
        if tokens not in BEATS_TOKENS:
            raise ValueError(f"BEATs tokens={tokens!r}; choose from {list(BEATS_TOKENS)}")
        self.tokens = tokens
        self.cfg = beats_config(**cfg)
        self.model = BEATsModel(self.cfg)
        self.patch = int(self.cfg["input_patch_size"])
        self.freq_patches = NUM_MEL_BINS // self.patch
        self.sample_rate = SAMPLE_RATE
        self.output_dim = int(self.cfg["encoder_embed_dim"])
        self.num_layers = int(self.cfg["encoder_layers"]) + 1
        self.downsample_rate = FRAME_SHIFT * self.patch
        if tokens == "all":  # one frame per frequency patch
            self.downsample_rate //= self.freq_patches
        self.frame_rate = self.sample_rate / self.downsample_rate
        self.min_samples = FRAME_LENGTH + (self.patch - 1) * FRAME_SHIFT
        padded = 1 << (FRAME_LENGTH - 1).bit_length()
        # constants, kept on the encoder's device (not in the state dict): not rebuilt in every forward
        self.register_buffer("mel_banks", kaldi_mel_banks(NUM_MEL_BINS, padded, SAMPLE_RATE).float(), persistent=False)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Output frames of clips with ``lengths`` samples: 160 ms time patches (x 8 with ``tokens: all``)."""
        steps = torch.div(fbank_frames(lengths), self.patch, rounding_mode="floor")
        return steps * self.freq_patches if self.tokens == "all" else steps

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a batch of waveforms.

        Args:
            wav: (B, T) float waveform at 16 kHz in [-1, 1], right-padded.
            lengths: (B,) long valid samples per clip, or None when all T samples are valid.

        Returns:
            ``EncoderOutput`` with 13 tensors of (B, F, 768) (mean of the 8 frequency-patch tokens of each
            160 ms step) and (B,) valid frame counts ``((T - 400) // 160 + 1) // 16``.

        Raises:
            ValueError: a clip is shorter than 2800 samples (0.175 s), the span of one 16-frame patch.
        """
        if wav.dim() != 2:
            raise ValueError(f"expected wav of shape (B, T), got {tuple(wav.shape)}")
        batch, samples = wav.shape
        lengths = _check_lengths(wav, lengths)
        if bool((lengths < self.min_samples).any()):
            raise ValueError(
                f"BEATs needs at least {self.min_samples} samples ({self.min_samples / SAMPLE_RATE:.3f} s at "
                f"16 kHz) per clip for one 16x16 patch, got lengths {lengths.tolist()}"
            )
        frames = torch.div(fbank_frames(lengths), self.patch, rounding_mode="floor")  # 160 ms steps
        used = int(frames.max()) * self.patch  # fbank frames the patch convolution reads
        needed = FRAME_LENGTH + (used - 1) * FRAME_SHIFT
        with no_autocast(wav):  # the front end runs in float32 under bf16-mixed too
            fbank = kaldi_fbank(wav[:, :needed].float() * 2**15, banks=self.mel_banks)  # each frame: own samples
            fbank = (fbank - FBANK_MEAN) / (2 * FBANK_STD)

        m = self.model
        x = m.patch_embedding(fbank[:, None])  # (B, C, T', 8)
        x = x.flatten(2).transpose(1, 2)  # tokens in time-major order: index = t * 8 + f
        x = m.layer_norm(x)
        if m.post_extract_proj is not None:
            x = m.post_extract_proj(x)
        x = m.dropout_input(x)
        steps = x.shape[1] // self.freq_patches
        key_padding = None
        if bool((frames < steps).any()):
            valid = torch.arange(steps, device=x.device)[None, :] < frames[:, None]
            key_padding = ~valid.repeat_interleave(self.freq_patches, dim=1)
        hidden = m.encoder(x, key_padding)
        if self.tokens == "all":  # time-major tokens: a clip's valid ones are its first 8 x frames
            return EncoderOutput(layers=list(hidden), lengths=frames * self.freq_patches)
        layers = [h.view(batch, steps, self.freq_patches, -1).mean(dim=2) for h in hidden]
        return EncoderOutput(layers=layers, lengths=frames)


def _check_lengths(wav: Tensor, lengths: Tensor | None) -> Tensor:
    batch, samples = wav.shape
    if lengths is None:
        return torch.full((batch,), samples, dtype=torch.long, device=wav.device)
    lengths = lengths.to(device=wav.device, dtype=torch.long)
    if lengths.shape != (batch,) or bool((lengths > samples).any()) or bool((lengths < 1).any()):
        raise ValueError(f"lengths must be (B,) in [1, {samples}], got {lengths.tolist()}")
    return lengths


# ----------------------------------------------------------------------------------------------------------
# Loading the published checkpoint


def _missing_checkpoint(checkpoint: str, reason: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"BEATs checkpoint {checkpoint!r} not found: {reason}. Expected the published file {CHECKPOINT_NAME} "
        "(a torch.save dict {'cfg': ..., 'model': state_dict}); download 'BEATs_iter3+ (AS2M)' from the table "
        "in https://github.com/microsoft/unilm/tree/master/beats and set "
        f"encoder.checkpoint=/path/to/{CHECKPOINT_NAME}, or set it to the release URL (downloaded on first use, "
        "as configs/encoder/beats_iter3_plus_as2m.yaml does; `aqa download beats_iter3_plus_as2m` pre-fetches it)."
    )


def read_beats_checkpoint(checkpoint: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read a published BEATs ``.pt`` with ``torch.load(weights_only=True)``: (cfg dict, state dict).

    Raises:
        FileNotFoundError: no such file (the message says which file and where to get it).
        ValueError: the file does not hold the published ``{"cfg", "model"}`` layout of plain values.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise _missing_checkpoint(str(checkpoint), f"no file {path.resolve()}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the safe unpickler refuses anything but tensors and plain containers
        raise ValueError(
            f"{path} could not be read with torch.load(weights_only=True) ({err}); re-save it as "
            "{'cfg': dict of plain values, 'model': state_dict}"
        ) from err
    if not isinstance(blob, Mapping) or "model" not in blob or not isinstance(blob["model"], Mapping):
        raise ValueError(f"{path} is not a BEATs checkpoint: expected a dict with 'cfg' and 'model' keys")
    cfg = dict(blob.get("cfg") or {})
    return cfg, dict(blob["model"])


def load_beats(checkpoint: str | Path, tokens: str = "mean", sha256: str | None = None) -> BEATsEncoder:
    """Load a BEATs checkpoint in the published layout (e.g. ``BEATs_iter3_plus_AS2M.pt``) strictly.

    A fine-tuned checkpoint's label head (``predictor.*``) is dropped; every other key must match.

    Args:
        checkpoint: a local ``.pt`` file, or its release URL: downloaded on first use into the aqa cache and
            checked against ``sha256`` (:func:`aqa.hub.resolve_file`).
        tokens: see :class:`BEATsEncoder`.
        sha256: the URL file's expected sha256 (None: recorded on first use).

    Raises:
        FileNotFoundError: the file is missing (:class:`aqa.hub.WeightsUnavailable`: a URL not cached and
            offline, unreachable, or failing the sha256 check).
        ValueError: unreadable file or key / shape mismatch (the message lists the keys).
    """
    checkpoint = resolve_file(checkpoint, sha256, hint=f"aqa download {NAME}")
    cfg, state = read_beats_checkpoint(checkpoint)
    arch = {k: v for k, v in cfg.items() if k not in _IGNORED_CFG and k in BEATS_ITER3_PLUS_AS2M_CFG}
    encoder = BEATsEncoder(arch, tokens)
    state = {k: v for k, v in state.items() if not k.startswith("predictor.")}
    load_state_strict(encoder.model, state, checkpoint, "its cfg")
    return encoder


# ----------------------------------------------------------------------------------------------------------
# Builders (to register in aqa.encoders.ENCODERS)


def build_beats_iter3_plus_as2m(
    checkpoint: str | None = None,
    freeze: bool = False,
    adapter: Mapping[str, Any] | None = None,
    tokens: str = "mean",
    arch: Mapping[str, Any] | None = None,
    sha256: str | None = None,
) -> BEATsEncoder:
    """BEATs iter3+ (AS2M): the published ``BEATs_iter3_plus_AS2M.pt`` from ``checkpoint``, or random weights.

    Args:
        checkpoint: path or release URL of the ``.pt`` file (see :func:`load_beats`); None builds random
            weights of the published architecture
            overridden by ``arch`` (parameter counts, benchmarks, tiny twins).
        freeze: stop gradients for the whole backbone (applied before the adapter).
        adapter: ``{name: lora, r, alpha, dropout, target_modules}`` (e.g. ``[q_proj, v_proj]``) or None.
        tokens: ``mean`` (one frame per 160 ms step) or ``all`` (the 8 frequency-patch tokens of each step).
        arch: BEATsConfig fields overriding the published ones (e.g. encoder_embed_dim 32, 2 layers; the tiny
            YAML). Random weights only: must be empty with a ``checkpoint``, whose ``cfg`` gives the architecture.
        sha256: expected sha256 of the file a URL ``checkpoint`` downloads.

    Raises:
        ValueError: ``arch`` given together with a ``checkpoint``.
    """
    arch = random_arch(NAME, arch, checkpoint)
    if checkpoint is None:
        encoder = BEATsEncoder(arch, tokens)  # the published cfg overridden by arch (see beats_config)
    else:
        encoder = load_beats(checkpoint, tokens, sha256)
    return finish(encoder, freeze, adapter)


__all__ = [
    "BEATS_ITER3_PLUS_AS2M_CFG",
    "BEATsEncoder",
    "BEATsModel",
    "beats_config",
    "build_beats_iter3_plus_as2m",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "load_beats",
    "read_beats_checkpoint",
]
