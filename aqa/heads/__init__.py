"""Head registry: plain dict keyed by the name of each head's YAML file under ``configs/head/``.

Every head is built as ``HEADS[name](num_layers=..., input_dim=..., **cfg)`` from the encoder's shape, and
is called as ``head(layers, frame_lengths)``. Heads with ``is_embedding = True`` output an embedding scored
by distance to a reference; the others output scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from aqa.heads.pooling import MeanPoolHead, RnCEmbeddingHead, WeightedSumPoolHead, masked_time_mean

HEADS: dict[str, Callable[..., nn.Module]] = {
    "rnc_embedding": RnCEmbeddingHead,
    "mean_pool": MeanPoolHead,
    "weighted_sum_pool": WeightedSumPoolHead,
}


def build_head(cfg: Mapping[str, Any], num_layers: int, input_dim: int) -> nn.Module:
    """Build a head from its config (``name`` + kwargs) for an encoder with ``num_layers`` x ``input_dim``."""
    name = cfg["name"]
    if name not in HEADS:
        raise KeyError(f"unknown head {name!r}; choose from {sorted(HEADS)}")
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return HEADS[name](num_layers=num_layers, input_dim=input_dim, **kwargs)


__all__ = ["HEADS", "MeanPoolHead", "RnCEmbeddingHead", "WeightedSumPoolHead", "build_head", "masked_time_mean"]
