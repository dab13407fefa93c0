"""Ensembles of trained runs (MMMOS averages the predictions of its best runs): per clip, the mean of the
members' scores for every task they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["ensemble_records"]


def ensemble_records(
    members: Sequence[Mapping[str, list[dict]]], zscore: bool = False
) -> dict[str, list[dict]]:
    """Average the members' per-clip scores.

    Args:
        members: one ``collect_scores`` result per run (task -> records with ``key``, ``score``, ``label``),
            computed on the same clips.
        zscore: standardise each member's scores per task first (for members on different scales, e.g.
            embedding distances of different encoders); off for regression heads on one rating scale.

    Returns:
        task -> records of the clips every member scored, with ``score`` the members' mean (and
        ``member_scores``); tasks not shared by every member are left out.

    Raises:
        ValueError: fewer than two members, or no clip scored by every member for a shared task.
    """
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two runs, got {len(members)}")
    tasks = set(members[0]).intersection(*members[1:])
    out: dict[str, list[dict]] = {}
    for task in sorted(tasks):
        by_key = []
        for m in members:
            rows = m[task]
            scores = np.array([r["score"] for r in rows], dtype=np.float64)
            if zscore and scores.size > 1 and scores.std() > 0:
                scores = (scores - scores.mean()) / scores.std()
            by_key.append({r["key"]: (r, s) for r, s in zip(rows, scores, strict=True)})
        keys = [k for k in by_key[0] if all(k in b for b in by_key[1:])]
        if not keys:
            raise ValueError(f"task {task!r}: no clip was scored by every run (do they use the same data?)")
        out[task] = [
            {**by_key[0][k][0], "score": float(np.mean([b[k][1] for b in by_key])),
             "member_scores": [float(b[k][1]) for b in by_key]}
            for k in keys
        ]
    return out
