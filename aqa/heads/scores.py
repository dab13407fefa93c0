"""From a head's output to per-clip quality scores: the clip score of a score head, or minus the distance of an
embedding to a reference embedding (DeePAQ's full- and mismatched-reference modes). Always in float32."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


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


def quality_scores(
    head_output: Tensor | Mapping[str, Tensor], is_embedding: bool, batch: Mapping[str, Any], mismatched: bool = False
) -> tuple[Tensor, Tensor]:
    """Per-clip quality scores (higher = better) and a mask of the clips they are defined for.

    Embedding heads score a clip by minus its embedding's L2 distance to its group's reference (DeePAQ's
    full-reference mode), or with ``mismatched`` to another group's reference (DeePAQ's mismatched-reference
    mode); references themselves are excluded. Score heads are used as they are.

    Args:
        head_output: (B, D) embeddings, (B,) scores or a dict with ``"score"`` (B,), any float dtype.
        batch: needs ``group`` (B,) and ``is_reference`` (B,) for embedding heads.
    Returns:
        scores (B,) float32, mask (B,) bool.
    """
    head_output = as_float32(head_output)
    if not is_embedding:
        scores = head_score(head_output)
        return scores, torch.ones_like(scores, dtype=torch.bool)
    distance = reference_distances(head_output.detach(), batch["group"], batch["is_reference"], mismatched)
    return -distance, torch.isfinite(distance) & ~batch["is_reference"]
