"""Head registry: plain dict keyed by the name of each head's YAML file under ``configs/head/``.

Every head is built as ``HEADS[name](num_layers=..., input_dim=..., **cfg)`` from the encoder's shape, and
is called as ``head(layers, frame_lengths, **conditions)``, where ``conditions`` holds the batch conditions
named in the head's ``condition_dims`` (key -> size; none for most heads). Heads with ``is_embedding = True`` output an
embedding scored by distance to a reference; the others output scores (B,), or a dict whose ``"score"`` is
the clip score and whose other entries feed the loss (e.g. HAAQI-Net's frame scores); :func:`head_score`
picks the clip score from either; heads with ``frame_scores = True`` return such a dict with ``"frames"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from aqa.heads.haaqi_net import HaaqiNetHead
from aqa.heads.pooling import MeanPoolHead, MLPHead, RnCEmbeddingHead, WeightedSumPoolHead, masked_time_mean

HEADS: dict[str, Callable[..., nn.Module]] = {
    "rnc_embedding": RnCEmbeddingHead,
    "mean_pool": MeanPoolHead,
    "weighted_sum_pool": WeightedSumPoolHead,
    "mlp": MLPHead,
    "haaqi_net": HaaqiNetHead,
}


def head_score(output: Tensor | Mapping[str, Tensor]) -> Tensor:
    """The per-clip output of a head: the tensor itself, or ``output["score"]`` for heads returning a dict."""
    return output["score"] if isinstance(output, Mapping) else output


def as_float32(output: Any) -> Any:
    """A head output with every floating tensor in float32 (masks and other dtypes kept).

    Under mixed precision (``bf16-mixed``) heads return bf16 tensors; losses, distances and metrics are always
    computed in float32 so that no reduction runs in 8 bits of mantissa and no in-place write mixes dtypes.
    """
    if isinstance(output, Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, Mapping):
        return {k: as_float32(v) for k, v in output.items()}
    return output


def build_head(cfg: Mapping[str, Any], num_layers: int, input_dim: int) -> nn.Module:
    """Build a head from its config (``name`` + kwargs) for an encoder with ``num_layers`` x ``input_dim``."""
    name = cfg["name"]
    if name not in HEADS:
        raise KeyError(f"unknown head {name!r}; choose from {sorted(HEADS)}")
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return HEADS[name](num_layers=num_layers, input_dim=input_dim, **kwargs)


__all__ = [
    "HEADS",
    "as_float32",
    "HaaqiNetHead",
    "MLPHead",
    "MeanPoolHead",
    "RnCEmbeddingHead",
    "WeightedSumPoolHead",
    "build_head",
    "head_score",
    "masked_time_mean",
]
