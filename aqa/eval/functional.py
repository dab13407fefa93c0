"""Pure evaluation functions on tensors (no Lightning); correlations come from torchmetrics."""

from __future__ import annotations

import torch
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


def reference_distances(embeddings: Tensor, group: Tensor, is_reference: Tensor) -> Tensor:
    """L2 distance of every embedding to the reference embedding of its group.

    Args:
        embeddings: (B, D).
        group: (B,) group ids; each group holds one reference (e.g. the clean original of an excerpt).
        is_reference: (B,) bool.

    Returns:
        (B,) distances (0 for the references themselves; NaN for members of a group without a reference).
    """
    out = torch.full((embeddings.shape[0],), float("nan"), dtype=embeddings.dtype, device=embeddings.device)
    for g in torch.unique(group):
        members = group == g
        refs = members & is_reference
        if refs.any():
            ref = embeddings[refs][0]
            out[members] = (embeddings[members] - ref).norm(dim=-1)
    return out
