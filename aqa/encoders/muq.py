"""MuQ (tencent-ailab, OpenMuQ/MuQ-large-msd-iter): log-mel -> Conv2d subsampling -> Conformer, at 24 kHz.

Architecture (read from the published ``muq/muq/models/muq_model.py``, ``modules/features.py`` and
``modules/conv.py``; re-implemented here, the Conformer layers are ``transformers``' own):

- mel front end (``MelSTFT``): 24 kHz, Hann window 2048 (periodic), hop 240, centred frames with reflect
  padding, power spectrum, 128 HTK-scale triangular mel filters from 0 Hz to Nyquist without area
  normalisation (``torchaudio.transforms.MelSpectrogram`` defaults), ``10 log10(max(x, 1e-10))``
  (``AmplitudeToDB``, no ``top_db``); the last frame is dropped (``[..., :-1]``), so a clip of L samples has
  ``L // 240`` frames (100 Hz); then ``(x - mean) / std`` with the scalars ``stat.melspec_2048_mean`` /
  ``stat.melspec_2048_std`` of ``config.json``;
- ``Conv2dSubsampling``: two residual blocks over (mel, time), each ``relu(bn2(conv2(relu(bn1(conv1(x))))) +
  bn3(conv3(x)))`` with 3x3 kernels, stride 2 on the mel axis and 2 on time (``label_rate`` 25 Hz; 1 for
  50 Hz), then ``(C, mel / 4)`` flattened channel-major and ``Linear(conv_dim * n_mels / 4, encoder_dim)``;
- ``transformers``' ``Wav2Vec2ConformerEncoder`` built from ``w2v2_config`` (12 layers of 1024, 16 heads,
  rotary positions, depthwise kernel 31, swish).

Hidden states: 13 tensors (B, F, 1024) at 25 frames/s, as MuQ's ``output_hidden_states`` returned them with
``transformers`` 4.x: the Conformer input (after its dropout), the outputs of layers 1..11, and the final
LayerNorm applied to the output of layer 12.

Padding never changes a clip's frames: each clip's STFT reflects at its own end; the mel frames, every
convolution input and every depthwise-convolution input are zeroed past the clip's valid length (as the
convolutions' zero padding sees a lone clip); attention masks padded keys. BatchNorm uses its running
statistics (per-clip independent) in eval mode and whenever its own parameters do not train (frozen or
LoRA); in train mode with trainable BatchNorm, batch statistics are taken over valid positions only.

Checkpoint: the published ``PyTorchModelHubMixin`` layout -- ``config.json`` (the ``MuQConfig`` fields, flat)
and ``model.safetensors`` or ``pytorch_model.bin`` with every key under ``model.`` (the ``MuQModel``).
Loaded strictly after dropping the documented keys in :data:`DROPPED_PREFIXES`.

Parameter count (measured: ``muq`` 0.1.0 from PyPI, ``MuQ(config)`` with random weights, transformers 4.57; the
config: :data:`MUQ_LARGE_MSD_CONFIG` with ``MuQConfig``'s defaults for the pre-training fields and the MuQ
recipe's full ``w2v2_config``, the hub's own config.json was not at hand): the module holds 328,932,480; this keeps
316,343,296 of them, key for key and value for value (strict load of the package's ``save_pretrained`` output;
hidden states equal to the package's within 5e-6). Kept: Conformer 290,109,440 (12 layers of 24,175,616 and the
final LayerNorm 2,048), ``Conv2dSubsampling`` 26,233,856 (residual blocks 2,373,120 + 7,082,496, Linear
16384 -> 1024 16,778,240). Dropped (:data:`DROPPED_PREFIXES`): ``conformer.pos_conv_embed`` 8,389,760, the
token head ``linear`` 1024 -> 4096 4,198,400 (``codebook_size`` 4096), ``cls_token`` 1,024, and with
``use_rvq_target`` the Mel-RVQ ``rvq`` 270,592. The MuQ README's "~300M" is a rounded figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Wav2Vec2ConformerConfig
from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import (
    Wav2Vec2ConformerEncoder,
    Wav2Vec2ConformerEncoderLayer,
)

from aqa.encoders.base import (
    EncoderOutput,
    check_min_length,
    finish,
    load_state_strict,
    no_autocast,
    plain,
    random_arch,
)
from aqa.encoders.hf import WEIGHT_FILES, read_weights, resolve_checkpoint
from aqa.hub import is_hub_id

NAME = "muq_large_msd"
HUB_ID = "OpenMuQ/MuQ-large-msd-iter"
SAMPLE_RATE = 24000
N_FFT = 2048
FEATURE = "melspec_2048"  # the only feature MuQ's encoder reads

# w2v2_config of the published config.json: the fields that shape Wav2Vec2ConformerEncoder. The rest of the
# published w2v2_config (CTC, quantizer, TDNN, feature-encoder fields of Wav2Vec2ConformerForCTC) is unused.
W2V2_CONFIG: dict[str, Any] = {
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "swish",
    "conv_depthwise_kernel_size": 31,
    "position_embeddings_type": "rotary",
    "rotary_embedding_base": 10000,
    "max_source_positions": 5000,
    "layer_norm_eps": 1e-5,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.1,
    "conformer_conv_dropout": 0.1,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "feat_extract_activation": "gelu",
    "layerdrop": 0.0,
}
# MuQConfig of OpenMuQ/MuQ-large-msd-iter (the loader always reads the checkpoint's own config.json).
MUQ_LARGE_MSD_CONFIG: dict[str, Any] = {
    "label_rate": 25,
    "features": [FEATURE],
    "hop_length": 240,
    "n_mels": 128,
    "conv_dim": 512,
    "encoder_dim": 1024,
    "encoder_depth": 12,
    "is_flash": False,
    "stat": {"melspec_2048_mean": 6.768444971712967, "melspec_2048_std": 18.417922652295623},
    "w2v2_config": W2V2_CONFIG,
}
# MuQConfig fields that only define pre-training (targets, masking, loss heads); ignored when loading.
TRAINING_ONLY_CONFIG = frozenset(
    {
        "num_codebooks",
        "codebook_dim",
        "codebook_size",
        "mask_hop",
        "mask_prob",
        "use_rvq_target",
        "use_vq_target",
        "use_encodec_target",
        "rvq_ckpt_path",
        "recon_loss_ratio",
        "resume_checkpoint",
        "rvq_n_codebooks",
        "rvq_multi_layer_num",
    }
)
# Published keys (after the "model." prefix) the encoder drops, and why:
DROPPED_PREFIXES: dict[str, str] = {
    "linear.": "pre-training head: token logits over the target codebooks",
    "cls_token": "never used by MuQ's forward",
    "quantizer_": "random-projection target quantizer buffers (pre-training targets)",
    "rvq.": "Mel-RVQ target tokenizer (pre-training targets)",
    "recon_proj.": "mel reconstruction head (pre-training loss)",
    "conformer.pos_conv_embed.": "Wav2Vec2ConformerEncoder builds it but never applies it",
}
# Deterministic buffer of the rotary embedding: loaded when present, recomputed when absent.
OPTIONAL_KEYS = ("conformer.embed_positions.inv_freq",)


# ----------------------------------------------------------------------------------------------------------
# Mel front end


def htk_mel_filters(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular filters equally spaced on the HTK mel scale ``2595 log10(1 + f / 700)``, peak 1, no norm.

    ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``: FFT bin frequencies
    ``linspace(0, sample_rate // 2, n_freqs)``, ``n_mels + 2`` band edges from ``f_min`` to ``f_max``.

    Returns:
        (n_freqs, n_mels) float64.
    """
    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)

    def to_mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    width = edges[1:] - edges[:-1]
    slopes = edges[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    rising = -slopes[:, :-2] / width[:-1]
    falling = slopes[:, 2:] / width[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def reflect_padded(wav: Tensor, lengths: Tensor, pad: int) -> Tensor:
    """Each clip reflect-padded by ``pad`` samples at both of its own ends (``torch.stft(center=True)``).

    Args:
        wav: (B, T); lengths: (B,) valid samples, each > ``pad``.

    Returns:
        (B, T + 2 pad): row b holds clip b's ``[pad reflected | L samples | pad reflected]`` followed by zeros.
    """
    batch, samples = wav.shape
    src = torch.arange(samples + 2 * pad, device=wav.device)[None, :] - pad  # source sample of each output
    last = (lengths - 1)[:, None]
    src = torch.where(src < 0, -src, src)
    src = torch.where(src > last, 2 * last - src, src)
    inside = src >= 0
    out = torch.gather(wav, 1, src.clamp(0, samples - 1).expand(batch, -1))
    return out.masked_fill(~inside, 0.0)


class MuQMelFrontEnd(nn.Module):
    """MuQ's normalised log-mel spectrogram; filters and window are constants (not in the state dict).

    Args:
        n_mels: mel bands; hop_length: samples per frame; sample_rate: Hz; n_fft: FFT and window size.
        mean, std: normalisation (``stat.melspec_2048_mean`` / ``_std``): scalars or one value per band.
    """

    def __init__(
        self,
        n_mels: int = 128,
        hop_length: int = 240,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        mean: float | Sequence[float] = 0.0,
        std: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.n_mels = int(n_fft), int(hop_length), int(n_mels)
        fb = htk_mel_filters(self.n_fft // 2 + 1, self.n_mels, int(sample_rate)).float()
        self.register_buffer("filters", fb, persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        self.register_buffer(
            "mean", torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1), persistent=False
        )

    def frames(self, lengths: Tensor) -> Tensor:
        """Mel frames of clips with ``lengths`` samples: ``L // hop`` (the centred STFT's last frame dropped)."""
        return torch.div(lengths.long(), self.hop_length, rounding_mode="floor")

    def forward(self, wav: Tensor, lengths: Tensor) -> Tensor:
        """Args: wav (B, T) float at 24 kHz; lengths (B,) valid samples (> n_fft / 2).

        Returns:
            (B, n_mels, T // hop) normalised log-mel; frames at or past a clip's ``L // hop`` are zero.
        """
        pad = self.n_fft // 2
        with no_autocast(wav):  # float32 under bf16-mixed too
            x = reflect_padded(wav.float(), lengths, pad)
            spec = torch.stft(
                x, self.n_fft, self.hop_length, window=self.window, center=False, return_complex=True
            )[..., :-1]  # (B, n_fft / 2 + 1, T // hop): MuQ drops the last centred frame
            power = spec.real.square() + spec.imag.square()
            mel = torch.einsum("fm,bft->bmt", self.filters, power)
            db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        out = (db - self.mean) / self.std
        valid = torch.arange(out.shape[-1], device=out.device)[None, :] < self.frames(lengths)[:, None]
        return out.masked_fill(~valid[:, None, :], 0.0)


# ----------------------------------------------------------------------------------------------------------
# BatchNorm that never mixes clips through padding


def masked_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, valid: Tensor | None) -> Tensor:
    """``bn(x)`` with statistics that ignore padding, and running statistics whenever ``bn`` does not train.

    - eval mode, or none of ``bn``'s parameters requires a gradient (frozen backbone, LoRA): normalise with
      the running statistics, which stay untouched -- every clip independent of the others;
    - train mode with trainable ``bn``: batch statistics over the positions where ``valid`` is true (all
      positions when ``valid`` is None), and the running statistics updated from them as ``nn.BatchNorm``
      does (momentum, unbiased variance).

    Args:
        bn: an ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` (its parameters and buffers are used as they are).
        x: (B, C, T) or (B, C, H, T); valid: (B, T) bool mask of valid time steps, or None.
    """
    params = [p for p in (bn.weight, bn.bias) if p is not None]
    batch_stats = bn.training and any(p.requires_grad for p in params)
    if not batch_stats and bn.running_mean is not None:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    if valid is None:
        return bn(x)
    shape = (x.shape[0], 1) + (1,) * (x.dim() - 3) + (x.shape[-1],)
    mask = valid.reshape(shape).to(x.dtype)
    dims = [d for d in range(x.dim()) if d != 1]
    count = mask.sum() * math.prod(x.shape[2:-1])
    mean = (x * mask).sum(dim=dims) / count
    centred = (x - mean.reshape(1, -1, *([1] * (x.dim() - 2)))) * mask
    var = centred.square().sum(dim=dims) / count
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            unbiased = var * count / (count - 1).clamp_min(1)
            bn.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            bn.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
    view = (1, -1) + (1,) * (x.dim() - 2)
    y = (x - mean.reshape(view)) * torch.rsqrt(var.reshape(view) + bn.eps)
    if bn.affine:
        y = y * bn.weight.reshape(view) + bn.bias.reshape(view)
    return y


def _time_mask(lengths: Tensor, frames: int) -> Tensor:
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def _conv_frames(lengths: Tensor, stride: int) -> Tensor:
    # a 3-tap convolution with padding 1: floor((L - 1) / stride) + 1 outputs (0 for L = 0)
    return torch.where(lengths > 0, torch.div(lengths - 1, stride, rounding_mode="floor") + 1, 0)


# ----------------------------------------------------------------------------------------------------------
# Backbone (parameter names follow the published state dict under "model.")


class Res2dBlock(nn.Module):
    """MuQ's ``Res2dModule``: two 3x3 convolutions with BatchNorm and a projected residual."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.projected = in_channels != out_channels or stride[0] > 1
        if self.projected:
            self.conv3 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
            self.bn3 = nn.BatchNorm2d(out_channels)
        self.time_stride = int(stride[1])

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (B, C, mel, T), zero past each clip's ``lengths`` frames. Returns (y, output lengths)."""
        out_lengths = _conv_frames(lengths, self.time_stride)
        h = self.conv1(x)
        valid = _time_mask(out_lengths, h.shape[-1])
        keep = valid[:, None, None, :]
        h = F.relu(masked_batch_norm(self.bn1, h, valid)).masked_fill(~keep, 0.0)
        h = masked_batch_norm(self.bn2, self.conv2(h), valid)
        residual = masked_batch_norm(self.bn3, self.conv3(x), valid) if self.projected else x
        return F.relu(h + residual).masked_fill(~keep, 0.0), out_lengths


class Conv2dSubsampling(nn.Module):
    """Two :class:`Res2dBlock` (mel / 4, time / ``prod(time_strides)``) and a projection to the model width."""

    def __init__(self, channels: int, out_dim: int, time_strides: Sequence[int], n_mels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            Res2dBlock(1, channels, (2, int(time_strides[0]))),
            Res2dBlock(channels, channels, (2, int(time_strides[1]))),
        )
        self.linear = nn.Linear(channels * (n_mels // 4), out_dim)

    def forward(self, mel: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Args: mel (B, n_mels, T) zero past ``lengths`` frames. Returns ((B, T', out_dim), (B,) lengths)."""
        x = mel[:, None]
        for block in self.conv:
            x, lengths = block(x, lengths)
        x = x.permute(0, 3, 1, 2).flatten(2)  # (B, T', C * mel'), channel-major as "b c f t -> b t (c f)"
        return self.linear(x), lengths


class MuQBackbone(nn.Module):
    """``Conv2dSubsampling`` + ``transformers``' ``Wav2Vec2ConformerEncoder``; state-dict keys as published."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        n_fold = int(100 // int(cfg["label_rate"]))
        strides = {4: (2, 2), 2: (2, 1)}.get(n_fold)
        if strides is None:
            raise ValueError(f"MuQ label_rate {cfg['label_rate']} is not supported (25 or 50 Hz)")
        dim = int(cfg["encoder_dim"])
        self.conv = Conv2dSubsampling(int(cfg["conv_dim"]), dim, strides, int(cfg["n_mels"]))
        config = Wav2Vec2ConformerConfig(
            **{
                **plain(cfg["w2v2_config"]),
                "hidden_size": dim,
                "num_hidden_layers": int(cfg["encoder_depth"]),
                "layerdrop": 0.0,
            }
        )
        config._attn_implementation = "sdpa"
        self.conformer = Wav2Vec2ConformerEncoder(config)
        del self.conformer.pos_conv_embed  # built but never applied by the encoder (see DROPPED_PREFIXES)


def _conformer_layer(
    layer: Wav2Vec2ConformerEncoderLayer,
    x: Tensor,
    mask: Tensor | None,
    positions: Tensor | None,
    valid: Tensor | None,
) -> Tensor:
    # Wav2Vec2ConformerEncoderLayer.forward with padded frames zeroed before the depthwise convolution and a
    # padding-aware BatchNorm: half-step FFN, self-attention, convolution module, half-step FFN, LayerNorm.
    x = x + 0.5 * layer.ffn1(layer.ffn1_layer_norm(x))
    attn, _ = layer.self_attn(
        hidden_states=layer.self_attn_layer_norm(x),
        attention_mask=mask,
        relative_position_embeddings=positions,
    )
    x = x + layer.self_attn_dropout(attn)
    conv = layer.conv_module
    h = conv.glu(conv.pointwise_conv1(conv.layer_norm(x).transpose(1, 2)))
    if valid is not None:
        h = h.masked_fill(~valid[:, None, :], 0.0)
    h = conv.activation(masked_batch_norm(conv.batch_norm, conv.depthwise_conv(h), valid))
    x = x + conv.dropout(conv.pointwise_conv2(h)).transpose(1, 2)
    x = x + 0.5 * layer.ffn2(layer.ffn2_layer_norm(x))
    return layer.final_layer_norm(x)


# ----------------------------------------------------------------------------------------------------------
# The encoder


def muq_config(**overrides: Any) -> dict[str, Any]:
    """The published MuQConfig (encoder fields) with ``overrides``; ``w2v2_config`` is merged key by key."""
    overrides = plain(overrides)
    w2v2 = overrides.pop("w2v2_config", {})
    unknown = sorted(set(w2v2) - set(W2V2_CONFIG))
    if unknown:
        raise ValueError(
            f"MuQ w2v2_config fields {unknown} are not Conformer-encoder fields; known: {sorted(W2V2_CONFIG)}"
        )
    w2v2 = {**W2V2_CONFIG, **w2v2}
    cfg = {**MUQ_LARGE_MSD_CONFIG, **overrides, "w2v2_config": w2v2}
    if list(cfg["features"]) != [FEATURE]:
        raise ValueError(f"MuQ features {cfg['features']} are not supported (only [{FEATURE!r}])")
    if cfg["is_flash"]:
        raise ValueError("MuQ is_flash=true (the flash-attention Conformer) is not supported")
    if int(cfg["n_mels"]) % 4:
        raise ValueError(f"MuQ n_mels {cfg['n_mels']} must be divisible by 4")
    stat = cfg["stat"]
    for key in (f"{FEATURE}_mean", f"{FEATURE}_std"):
        if key not in stat:
            raise ValueError(f"MuQ config stat lacks {key!r}")
    return cfg


class MuQEncoder(nn.Module):
    """MuQ as an ``aqa`` encoder: waveform (B, T) at 24 kHz -> 13 hidden states (B, F, 1024) at 25 Hz.

    Builds random weights from ``cfg``; :func:`load_muq` loads the published checkpoint.

    Args:
        cfg: a MuQConfig dict (see :func:`muq_config`).
        name: used in error messages.
    """

    def __init__(self, cfg: Mapping[str, Any], name: str = NAME) -> None:
        super().__init__()
        self.cfg = muq_config(**cfg)
        self.name = name
        stat = self.cfg["stat"]
        self.front_end = MuQMelFrontEnd(
            int(self.cfg["n_mels"]),
            int(self.cfg["hop_length"]),
            SAMPLE_RATE,
            N_FFT,
            stat[f"{FEATURE}_mean"],
            stat[f"{FEATURE}_std"],
        )
        self.model = MuQBackbone(self.cfg)
        self.sample_rate = SAMPLE_RATE
        self.output_dim = int(self.cfg["encoder_dim"])
        self.num_layers = int(self.cfg["encoder_depth"]) + 1
        self.downsample_rate = int(self.cfg["hop_length"]) * int(100 // int(self.cfg["label_rate"]))
        self.frame_rate = self.sample_rate / self.downsample_rate
        self.min_samples = N_FFT // 2 + 1  # the reflect padding of the centred STFT needs L > n_fft / 2

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Output frames of clips with ``lengths`` samples (mel frames ``L // 240`` through the two convs)."""
        frames = self.front_end.frames(lengths)
        for block in self.model.conv.conv:
            frames = _conv_frames(frames, block.time_stride)
        return frames

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a batch of waveforms.

        Args:
            wav: (B, T) float waveform at 24 kHz in [-1, 1], right-padded.
            lengths: (B,) long valid samples per clip, or None when all T samples are valid.

        Returns:
            ``EncoderOutput`` with 13 tensors of (B, F, 1024) -- the Conformer input, then each layer (the last
            after the final LayerNorm) -- and (B,) valid frame counts ``ceil(ceil((L // 240) / 2) / 2)``
            (25 per second); frames past a clip's count are zero.

        Raises:
            ValueError: bad shapes or lengths, or a clip shorter than 1025 samples (the STFT's reflect padding).
        """
        if wav.dim() != 2:
            raise ValueError(f"expected wav of shape (B, T), got {tuple(wav.shape)}")
        batch, samples = wav.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=wav.device)
        lengths = torch.as_tensor(lengths, device=wav.device).long()
        if lengths.shape != (batch,) or bool((lengths > samples).any()) or bool((lengths < 0).any()):
            raise ValueError(f"lengths must be (B,) in [0, {samples}], got {lengths.tolist()}")
        check_min_length(lengths, self.min_samples, self.sample_rate, self.name)

        mel = self.front_end(wav, lengths)
        x, frames = self.model.conv(mel, self.front_end.frames(lengths))
        padded = bool((frames < x.shape[1]).any())
        valid = _time_mask(frames, x.shape[1]) if padded else None
        mask = None
        if valid is not None:
            x = x.masked_fill(~valid[..., None], 0.0)
            mask = torch.zeros(batch, 1, 1, x.shape[1], dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(~valid[:, None, None, :], torch.finfo(x.dtype).min)
        conformer = self.model.conformer
        x = conformer.dropout(x)
        positions = conformer.embed_positions(x) if conformer.embed_positions is not None else None
        layers = []
        for layer in conformer.layers:
            layers.append(x)
            x = _conformer_layer(layer, x, mask, positions, valid)
        layers.append(conformer.layer_norm(x))
        if valid is not None:
            layers = [h.masked_fill(~valid[..., None], 0.0) for h in layers]
        return EncoderOutput(layers=layers, lengths=frames)


# ----------------------------------------------------------------------------------------------------------
# Loading the published checkpoint


def _missing_checkpoint(checkpoint: str, reason: str) -> FileNotFoundError:
    local = HUB_ID.split("/")[-1]
    return FileNotFoundError(
        f"{NAME} checkpoint {checkpoint!r} not found: {reason}. Expected a directory with config.json and "
        f"model.safetensors (or pytorch_model.bin) as published at https://huggingface.co/{HUB_ID}; get it with "
        f"`hf download {HUB_ID} config.json model.safetensors --local-dir {local}` and set "
        f"encoder.checkpoint=/path/to/{local}, or encoder.checkpoint={HUB_ID} (downloaded on first use; "
        f"`aqa download {NAME}` pre-fetches it)."
    )


def read_muq_checkpoint(
    checkpoint: str | Path, cache_dir: str | Path | None = None, revision: str | None = None
) -> tuple[Path, dict[str, Any], Path]:
    """Find a published MuQ checkpoint: (directory, parsed config.json, weights file); a hub id not yet cached
    is downloaded at ``revision`` (:func:`aqa.encoders.hf.resolve_checkpoint`).

    Raises:
        FileNotFoundError: no such directory, or it lacks config.json or the weights; a hub id not cached
            and offline or unreachable (:class:`aqa.hub.WeightsUnavailable`, one line).
    """
    checkpoint = str(checkpoint)
    path = Path(checkpoint).expanduser()
    if path.is_file():
        raise _missing_checkpoint(checkpoint, f"{path} is a file, not the checkpoint directory")
    if not path.exists() and not is_hub_id(checkpoint):
        raise _missing_checkpoint(checkpoint, f"no directory {path.resolve()}")
    directory = resolve_checkpoint(checkpoint, cache_dir, revision=revision, name=NAME, optional=())
    config = directory / "config.json"
    if not config.is_file():
        raise _missing_checkpoint(checkpoint, f"{directory} has no config.json")
    weights = next((directory / n for n in WEIGHT_FILES if (directory / n).is_file()), None)
    if weights is None:
        raise _missing_checkpoint(checkpoint, f"{directory} has no {' or '.join(WEIGHT_FILES)}")
    return directory, json.loads(config.read_text(encoding="utf-8")), weights


def published_to_encoder_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Published ``MuQ`` keys -> :class:`MuQBackbone` keys: strip ``model.``, drop :data:`DROPPED_PREFIXES`.

    Everything else is kept as is, so a strict load names every key that does not fit.
    """
    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model.") :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(tuple(DROPPED_PREFIXES))}


def load_muq(
    checkpoint: str | Path, cache_dir: str | Path | None = None, revision: str | None = None
) -> MuQEncoder:
    """Load OpenMuQ/MuQ-large-msd-iter (or a checkpoint of the same layout) strictly; a hub id not yet cached
    is downloaded at ``revision`` first.

    The architecture and normalisation come from the checkpoint's ``config.json``; the weights from
    ``model.safetensors`` (preferred) or ``pytorch_model.bin`` read with ``weights_only=True``.

    Args:
        checkpoint: a directory with ``config.json`` and the weights, or a hub id (cached, else downloaded).
        cache_dir: Hugging Face cache to look hub ids up in (default: the standard one).
        revision: the hub id's commit hash (pinned in the encoder YAML); None: ``main``.

    Raises:
        FileNotFoundError: missing directory, config.json or weights (the message says how to get them).
        ValueError: a config this module cannot represent, or weights that do not match it.
    """
    directory, published, weights = read_muq_checkpoint(checkpoint, cache_dir, revision)
    where = directory / "config.json"
    arch = {k: v for k, v in published.items() if k in MUQ_LARGE_MSD_CONFIG}
    if isinstance(
        arch.get("w2v2_config"), Mapping
    ):  # the rest of it configures unused CTC / feature-encoder parts
        arch["w2v2_config"] = {k: v for k, v in arch["w2v2_config"].items() if k in W2V2_CONFIG}
    missing_fields = sorted(set(MUQ_LARGE_MSD_CONFIG) - set(arch) - {"is_flash", "features"})
    if missing_fields:
        raise ValueError(f"{where} is not a MuQ config.json: it lacks {missing_fields}")
    try:
        encoder = MuQEncoder(arch)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from err
    expected = encoder.model.state_dict()
    state = published_to_encoder_keys(read_weights(weights))
    for key in OPTIONAL_KEYS:
        state.setdefault(key, expected[key])
    load_state_strict(encoder.model, state, weights, where)
    return encoder


# ----------------------------------------------------------------------------------------------------------
# Builders (registered in aqa.encoders.ENCODERS)


def build_muq_large_msd(
    checkpoint: str | None = None,
    freeze: bool = False,
    adapter: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | None = None,
    revision: str | None = None,
) -> MuQEncoder:
    """MuQ-large-msd-iter: the published weights from ``checkpoint``, or random weights when it is None.

    Args:
        checkpoint: local directory or hub id (see :func:`load_muq`); None builds random weights of
            the published architecture overridden by ``arch`` (parameter counts, benchmarks, tiny twins).
        freeze: stop gradients for the whole backbone (applied before the adapter); BatchNorm then uses its
            running statistics in train mode too.
        adapter: ``{name: lora, r, alpha, dropout, target_modules}`` (``[linear_q, linear_v]``) or None.
        arch: MuQConfig fields overriding the published ones (e.g. ``encoder_dim: 32``, ``encoder_depth: 2``,
            ``w2v2_config: {num_attention_heads: 2, ...}``, merged key by key; the tiny YAML). Random weights
            only: must be empty with a ``checkpoint``, whose ``config.json`` gives the architecture.
        revision: the hub id's commit hash (pinned in the encoder YAML; None: ``main``).

    Raises:
        ValueError: ``arch`` given together with a ``checkpoint``.
    """
    arch = random_arch(NAME, arch, checkpoint)
    encoder = MuQEncoder(arch) if checkpoint is None else load_muq(checkpoint, revision=revision)  # arch: muq_config
    return finish(encoder, freeze, adapter)


__all__ = [
    "DROPPED_PREFIXES",
    "HUB_ID",
    "MUQ_LARGE_MSD_CONFIG",
    "MuQBackbone",
    "MuQEncoder",
    "MuQMelFrontEnd",
    "build_muq_large_msd",
    "htk_mel_filters",
    "load_muq",
    "masked_batch_norm",
    "muq_config",
    "published_to_encoder_keys",
    "read_muq_checkpoint",
    "reflect_padded",
]
