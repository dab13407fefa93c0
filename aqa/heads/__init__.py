"""Head registry: plain dict keyed by the name of each head's YAML file under ``configs/head/``.

Every head is an :class:`~aqa.heads.base.Head`, built as ``HEADS[name](num_layers=..., input_dim=..., **cfg)``
from the encoder's shape, and called as ``head(layers, frame_lengths, **conditions)``, where ``conditions``
holds the batch conditions named in the head's ``condition_dims`` (key -> size; none for most heads). Each head
declares its ``output`` :class:`~aqa.heads.base.Kind` once: ``EMBEDDING`` heads output an embedding scored by
distance to a reference; ``SCORE`` heads output scores (B,), or a dict whose ``"score"`` is the clip score and
whose other entries feed the loss; ``FRAMES`` heads (e.g. HAAQI-Net) return such a dict with ``"frames"``.
:func:`head_score` picks the clip score from either.

``TRUNKS`` holds the parts several tasks' heads may share (MMMOS' one BLSTM under the four axes' MLPs), named by
the experiment's ``trunk: {name: ..., shared: true|false, ...}``: a trunk is called like a head and returns what
the heads then read, ``(layers, lengths)`` (:mod:`aqa.heads.blstm`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aqa.heads.base import Head, Kind
from aqa.heads.blstm import BLSTMHiddenHead, BLSTMHiddenTrunk, BLSTMTimeHead, BLSTMTimeTrunk
from aqa.heads.haaqi_net import HaaqiNetHead
from aqa.heads.pooling import MeanPoolHead, MLPHead, RnCEmbeddingHead, WeightedSumPoolHead
from aqa.heads.scale import NORMALIZATIONS, LabelScale, zscore_stats
from aqa.heads.scores import as_float32, head_score, quality_scores, reference_anchors, reference_distances

HEADS: dict[str, Callable[..., Head]] = {
    "rnc_embedding": RnCEmbeddingHead,
    "mean_pool": MeanPoolHead,
    "weighted_sum_pool": WeightedSumPoolHead,
    "mlp": MLPHead,
    "blstm_h": BLSTMHiddenHead,
    "blstm_t": BLSTMTimeHead,
    "haaqi_net": HaaqiNetHead,
}


# trunks: the configs/head YAML of the same name documents the aggregation; `shared` is the module's, not theirs
TRUNKS: dict[str, Callable[..., Any]] = {
    "blstm_h": BLSTMHiddenTrunk,
    "blstm_t": BLSTMTimeTrunk,
}
TRUNK_KEYS = ("name", "shared")  # a trunk config's keys that are not the trunk's own arguments


def build_trunk(cfg: Mapping[str, Any], num_layers: int, input_dim: int) -> Any:
    """Build a trunk from the experiment's ``trunk`` config (``name``, ``shared`` + kwargs) for an encoder
    with ``num_layers`` x ``input_dim``; the result exposes ``num_layers`` and ``output_dim`` for the heads."""
    name = cfg["name"]
    if name not in TRUNKS:
        raise KeyError(f"unknown trunk {name!r}; choose from {sorted(TRUNKS)}")
    kwargs = {k: v for k, v in cfg.items() if k not in TRUNK_KEYS}
    return TRUNKS[name](num_layers=num_layers, input_dim=input_dim, **kwargs)


def build_head(cfg: Mapping[str, Any], num_layers: int, input_dim: int) -> Head:
    """Build a head from its config (``name`` + kwargs) for an encoder with ``num_layers`` x ``input_dim``."""
    name = cfg["name"]
    if name not in HEADS:
        raise KeyError(f"unknown head {name!r}; choose from {sorted(HEADS)}")
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return HEADS[name](num_layers=num_layers, input_dim=input_dim, **kwargs)


__all__ = [
    "HEADS",
    "NORMALIZATIONS",
    "TRUNKS",
    "as_float32",
    "BLSTMHiddenHead",
    "BLSTMHiddenTrunk",
    "BLSTMTimeHead",
    "BLSTMTimeTrunk",
    "LabelScale",
    "HaaqiNetHead",
    "Head",
    "Kind",
    "MLPHead",
    "MeanPoolHead",
    "RnCEmbeddingHead",
    "WeightedSumPoolHead",
    "build_head",
    "build_trunk",
    "head_score",
    "quality_scores",
    "reference_anchors",
    "reference_distances",
    "zscore_stats",
]
