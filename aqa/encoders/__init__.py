"""Encoder registry: a plain dict of one builder per published model, keyed by its ``configs/encoder/`` YAML.

Every encoder is built as ``ENCODERS[name](**cfg_without_name)`` and follows the contract in
:mod:`aqa.encoders.base`: ``forward(wav (B, T), lengths (B,) | None) -> EncoderOutput(layers, lengths)``
with attributes ``sample_rate``, ``output_dim``, ``num_layers`` and ``frame_rate``.

Each builder loads the published ``checkpoint``, or with ``checkpoint: null`` builds random weights of the
published architecture overridden by an optional ``arch`` mapping. Other variants are only YAML files: the
tiny random-weight twins for tests (``configs/encoder/NAME_tiny.yaml``) name the full-size builder
(``name: NAME``) with ``checkpoint: null`` and a small ``arch``; ``aqa.config.available("encoder")`` lists
them all. Adding a family is one module, one YAML per variant and one line here.
"""

from __future__ import annotations

import functools
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
from aqa.encoders.beats import build_beats_iter3_plus_as2m
from aqa.encoders.fusion import FusionEncoder, build_fusion
from aqa.encoders.hf import (
    WAV2VEC2_BASE,
    WAVLM_BASE_PLUS,
    WAVLM_LARGE,
    HFEncoder,
    build_hf_encoder,
    load_hf_encoder,
)
from aqa.encoders.m2d import build_m2d_vit_base
from aqa.encoders.mert import MERT_V1_95M, MERT_V1_330M, MERTEncoder, load_mert
from aqa.encoders.muq import build_muq_large_msd

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "mert_v1_95m": functools.partial(build_hf_encoder, MERT_V1_95M),
    "mert_v1_330m": functools.partial(build_hf_encoder, MERT_V1_330M),
    "wavlm_base_plus": functools.partial(build_hf_encoder, WAVLM_BASE_PLUS),
    "wavlm_large": functools.partial(build_hf_encoder, WAVLM_LARGE),
    "wav2vec2_base": functools.partial(build_hf_encoder, WAV2VEC2_BASE),
    "beats_iter3_plus_as2m": build_beats_iter3_plus_as2m,
    "m2d_vit_base": build_m2d_vit_base,
    "muq_large_msd": build_muq_large_msd,
    "fusion": build_fusion,
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
