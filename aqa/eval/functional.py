"""Pure evaluation functions on tensors (no Lightning); correlations come from torchmetrics."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman rank correlation of two (N,) tensors (ties get average ranks); NaN when N < 2."""
    if x.numel() < 2:
        return float("nan")
    return float(spearman_corrcoef(x.flatten().double(), y.flatten().double()))


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two (N,) tensors; NaN when N < 2."""
    if x.numel() < 2:
        return float("nan")
    return float(pearson_corrcoef(x.flatten().double(), y.flatten().double()))
