"""From a head's output to per-clip quality scores: the clip score of a score head, or minus the distance of an
embedding to a reference embedding (DeePAQ's full- and mismatched-reference modes). Always in float32."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)


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


def reference_anchors(
    pieces: Sequence[Hashable], has_reference: Sequence[bool], mismatched: bool = False
) -> list[int | None]:
    """Which group's reference scores each group: the one rule behind validation (``val/TASK/srcc[_mismatched]``),
    ``aqa eval [--reference mismatched]`` and listening-test evaluation (``aqa eval --test``).

    Args:
        pieces: per group, in evaluation order, the id of the source piece (recording) it was cut from.
        has_reference: per group, whether it holds a clean reference.
        mismatched: DeePAQ's mismatched-reference mode: the anchor is clean audio of other content.

    Returns:
        per group, the index of the group whose reference scores it, or None. Matched: the group itself
        (None without a reference). Mismatched: the first group after it (cyclically) that has a reference
        and comes from another piece; never one of its own piece (neighbouring excerpts of one recording
        would overstate the mode), None when no other piece has a reference.
    """
    n = len(pieces)
    if len(has_reference) != n:
        raise ValueError(f"{n} pieces but {len(has_reference)} has_reference flags")
    if not mismatched:
        return [i if has_reference[i] else None for i in range(n)]
    return [
        next((j % n for j in range(i + 1, i + n) if has_reference[j % n] and pieces[j % n] != pieces[i]), None)
        for i in range(n)
    ]


_noted: set[str] = set()


def _note_once(message: str) -> None:
    # a per-batch condition, said once per process (not once per validation batch)
    if message not in _noted:
        _noted.add(message)
        log.warning(message)


def reference_distances(
    embeddings: Tensor, group: Tensor, is_reference: Tensor, mismatched: bool = False, piece: Tensor | None = None
) -> Tensor:
    """L2 distance of every embedding to a reference embedding, the reference chosen by :func:`reference_anchors`.

    Args:
        embeddings: (B, D).
        group: (B,) group ids; each group holds one reference (e.g. the clean original of an excerpt).
        is_reference: (B,) bool.
        mismatched: measure against the reference of the next group (in sorted id order, cyclic) that comes
            from another piece instead of the group's own: DeePAQ's mismatched-reference mode.
        piece: (B,) source-piece ids (the batches of :class:`aqa.data.dataset.GroupedBatchDataset` carry them);
            ``None``: every group is its own piece.

    Returns:
        (B,) float32 distances whatever the embeddings' dtype (bf16 under autocast included; the difference
        and its norm are taken in float32): 0 for the references themselves in matched mode; NaN where the
        wanted reference is missing (a group without one, or, mismatched, a batch whose referenced groups
        all come from the group's own piece: noted once).
    """
    embeddings = embeddings.float()
    out = torch.full((embeddings.shape[0],), float("nan"), dtype=torch.float32, device=embeddings.device)
    groups = sorted(int(g) for g in torch.unique(group))
    first = [int(torch.nonzero(group == g)[0]) for g in groups]
    pieces = [g if piece is None else int(piece[i]) for g, i in zip(groups, first, strict=True)]
    has_ref = [bool((is_reference & (group == g)).any()) for g in groups]
    anchors = reference_anchors(pieces, has_ref, mismatched)
    if mismatched and any(a is None for a in anchors):
        _note_once(
            "mismatched reference: a batch has groups with no reference of another piece (e.g. every group cut "
            "from one recording); they are left out of the mismatched-reference scores. Evaluation batches mix "
            "the pieces of several shards (GroupedBatchDataset); a split with one piece cannot be scored this way"
        )
    for g, a in zip(groups, anchors, strict=True):
        if a is None:
            continue
        ref = embeddings[(group == groups[a]) & is_reference][0]
        members = group == g
        out[members] = (embeddings[members] - ref).norm(dim=-1)
    return out


def quality_scores(
    head_output: Tensor | Mapping[str, Tensor], is_embedding: bool, batch: Mapping[str, Any], mismatched: bool = False
) -> tuple[Tensor, Tensor]:
    """Per-clip quality scores (higher = better) and a mask of the clips they are defined for.

    Embedding heads score a clip by minus its embedding's L2 distance to its group's reference (DeePAQ's
    full-reference mode), or with ``mismatched`` to the reference of a group from another piece (DeePAQ's
    mismatched-reference mode, :func:`reference_anchors`); references themselves are excluded. Score heads are used as they are.

    Args:
        head_output: (B, D) embeddings, (B,) scores or a dict with ``"score"`` (B,), any float dtype.
        batch: needs ``group`` (B,) and ``is_reference`` (B,) for embedding heads; ``piece`` (B,) where
            present (without it every group counts as its own piece).
    Returns:
        scores (B,) float32, mask (B,) bool.
    """
    head_output = as_float32(head_output)
    if not is_embedding:
        scores = head_score(head_output)
        return scores, torch.ones_like(scores, dtype=torch.bool)
    distance = reference_distances(
        head_output.detach(), batch["group"], batch["is_reference"], mismatched, batch.get("piece")
    )
    return -distance, torch.isfinite(distance) & ~batch["is_reference"]
