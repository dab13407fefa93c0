"""Encoder registry: plain dict keyed by the name of each encoder's YAML file under ``configs/encoder/``.

Every encoder is built as ``ENCODERS[name](**cfg_without_name)`` and follows the contract in
:mod:`aqa.encoders.base`: ``forward(wav (B, T), lengths (B,) | None) -> EncoderOutput(layers, lengths)``
with attributes ``sample_rate``, ``output_dim``, ``num_layers`` and ``frame_rate``. Every full-size entry
has a ``NAME_tiny`` twin with random weights for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from aqa.encoders.base import (
    AdaptedEncoder,
    EncoderOutput,
    LayerWeightedSum,
    adapt_input,
    apply_adapter,
    apply_lora,
    chunked_forward,
    frame_lengths,
    freeze,
    prepare,
    resample,
    to_mono,
)
from aqa.encoders.beats import build_beats_iter3_plus_as2m, build_beats_iter3_plus_as2m_tiny
from aqa.encoders.fusion import FusionEncoder, build_fusion
from aqa.encoders.hf import WAV2VEC2_BASE, WAVLM_BASE_PLUS, WAVLM_LARGE, HFEncoder, load_hf_encoder, register
from aqa.encoders.m2d import build_m2d_vit_base, build_m2d_vit_base_tiny
from aqa.encoders.mert import MERT_V1_95M, MERT_V1_330M, MERTEncoder, load_mert
from aqa.encoders.muq import build_muq_large_msd, build_muq_large_msd_tiny

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    **register(MERT_V1_95M),
    **register(MERT_V1_330M),
    **register(WAVLM_BASE_PLUS),
    **register(WAVLM_LARGE),
    **register(WAV2VEC2_BASE),
    "beats_iter3_plus_as2m": build_beats_iter3_plus_as2m,
    "beats_iter3_plus_as2m_tiny": build_beats_iter3_plus_as2m_tiny,
    "m2d_vit_base": build_m2d_vit_base,
    "m2d_vit_base_tiny": build_m2d_vit_base_tiny,
    "muq_large_msd": build_muq_large_msd,
    "muq_large_msd_tiny": build_muq_large_msd_tiny,
    "fusion": build_fusion,
    "fusion_tiny": build_fusion,
}


def build_encoder(cfg: Mapping[str, Any]) -> nn.Module:
    """Build an encoder from its config: ``name`` picks the builder, the other keys are its kwargs.

    ``compile: true`` compiles the encoder's forward with ``torch.compile`` (in place, ``dynamic`` shapes:
    clip lengths vary), so parameter names and checkpoints stay as without it.
    """
    name = cfg["name"]
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}")
    encoder = ENCODERS[name](**{k: v for k, v in cfg.items() if k not in ("name", "compile")})
    if cfg.get("compile"):
        encoder.compile(dynamic=True)
    return encoder


__all__ = [
    "AdaptedEncoder",
    "ENCODERS",
    "EncoderOutput",
    "FusionEncoder",
    "HFEncoder",
    "LayerWeightedSum",
    "MERTEncoder",
    "adapt_input",
    "apply_adapter",
    "apply_lora",
    "build_encoder",
    "chunked_forward",
    "frame_lengths",
    "freeze",
    "load_hf_encoder",
    "load_mert",
    "prepare",
    "resample",
    "to_mono",
]
