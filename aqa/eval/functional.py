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


def reference_distances(embeddings: Tensor, group: Tensor, is_reference: Tensor, mismatched: bool = False) -> Tensor:
    """L2 distance of every embedding to a reference embedding.

    Args:
        embeddings: (B, D).
        group: (B,) group ids; each group holds one reference (e.g. the clean original of an excerpt).
        is_reference: (B,) bool.
        mismatched: measure against the reference of the *next* group present (in sorted id order, cyclic)
            instead of the group's own: DeePAQ's mismatched-reference mode, where the anchor is clean audio of
            other content.

    Returns:
        (B,) float32 distances whatever the embeddings' dtype (bf16 under autocast included; the difference
        and its norm are taken in float32): 0 for the references themselves in matched mode; NaN where the
        wanted reference is missing (a group without one, or a mismatched batch with fewer than two
        referenced groups).
    """
    embeddings = embeddings.float()
    out = torch.full((embeddings.shape[0],), float("nan"), dtype=torch.float32, device=embeddings.device)
    refs = {int(g): embeddings[(group == g) & is_reference][0] for g in torch.unique(group[is_reference])}
    groups = sorted(int(g) for g in torch.unique(group))
    ref_groups = sorted(refs)
    for g in groups:
        if mismatched:
            others = [r for r in ref_groups if r != g]
            if not others:
                continue
            anchor = next((r for r in others if r > g), others[0])  # the next referenced group, cyclically
        elif g in refs:
            anchor = g
        else:
            continue
        members = group == g
        out[members] = (embeddings[members] - refs[anchor]).norm(dim=-1)
    return out
