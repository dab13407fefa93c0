"""Encoder registry: plain dict keyed by the name of each encoder's YAML file under ``configs/encoder/``.

Every encoder is built as ``ENCODERS[name](**cfg_without_name)`` and follows the contract in
:mod:`aqa.encoders.base`: ``forward(wav (B, T), lengths (B,) | None) -> EncoderOutput(layers, lengths)``
with attributes ``sample_rate``, ``output_dim``, ``num_layers`` and ``frame_rate``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from aqa.encoders.base import EncoderOutput, apply_adapter, apply_lora, frame_lengths, freeze
from aqa.encoders.mert import MERTEncoder, build_mert_v1_95m, build_mert_v1_95m_tiny, load_mert

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "mert_v1_95m": build_mert_v1_95m,
    "mert_v1_95m_tiny": build_mert_v1_95m_tiny,
}


def build_encoder(cfg: Mapping[str, Any]) -> nn.Module:
    """Build an encoder from its config: ``name`` picks the builder, the other keys are its kwargs."""
    name = cfg["name"]
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}")
    return ENCODERS[name](**{k: v for k, v in cfg.items() if k != "name"})


__all__ = [
    "ENCODERS",
    "EncoderOutput",
    "MERTEncoder",
    "apply_adapter",
    "apply_lora",
    "build_encoder",
    "frame_lengths",
    "freeze",
    "load_mert",
]
