"""Ensembles of trained runs (MMMOS averages the predictions of its best runs): per clip, the mean of the
members' scores for every task they share; the composite score (the mean of the tasks, MMMOS §V-A) and the
selection of members by their rank on one or two validation sets (MMMOS §V-D)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from aqa.eval.functional import spearman

__all__ = ["COMPOSITE", "ensemble_records", "select_runs", "task_srcc", "with_composite"]

COMPOSITE = "composite"  # the pseudo-task holding the mean of the tasks' scores (and of their labels) per clip
_PER_TASK = ("score", "label", "member_scores", "calibrated")  # record fields that belong to one task


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


def with_composite(records: Mapping[str, list[dict]]) -> dict[str, list[dict]]:
    """``records`` plus ``COMPOSITE``: for every clip scored in each task, the mean of its task scores against
    the mean of its labels (MMMOS §V-A averages its four axes into one composite score). Unchanged for fewer
    than two tasks or when no clip is scored in every task.

    Args:
        records: task -> records with ``key``, ``score``, ``label`` (``collect_scores``, ``ensemble_records``).
    """
    tasks = [t for t in records if t != COMPOSITE]
    if len(tasks) < 2:
        return dict(records)
    by_key = [{r["key"]: r for r in records[t]} for t in tasks]
    keys = [k for k in by_key[0] if all(k in b for b in by_key[1:])]
    if not keys:
        return dict(records)
    rows = [
        {**{f: v for f, v in by_key[0][k].items() if f not in _PER_TASK},
         "score": float(np.mean([b[k]["score"] for b in by_key])),
         "label": float(np.mean([b[k]["label"] for b in by_key]))}
        for k in keys
    ]
    return {**{t: records[t] for t in tasks}, COMPOSITE: rows}


def task_srcc(records: Mapping[str, list[dict]], task: str = COMPOSITE) -> float:
    """Spearman correlation of score and label of ``task`` in ``records`` (NaN for fewer than two clips or a
    constant score). ``COMPOSITE`` of single-task records is that task.

    Raises:
        KeyError: no such task.
    """
    if task == COMPOSITE and task not in records and len(records) == 1:
        task = next(iter(records))
    if task not in records:
        raise KeyError(f"no task {task!r} to rank runs by; the runs have {sorted(records)}")
    rows = records[task]
    return spearman(torch.tensor([r["score"] for r in rows]), torch.tensor([r["label"] for r in rows]))


def select_runs(metrics: Sequence[Sequence[float]], k: int) -> list[int]:
    """MMMOS' ensemble selection (§V-D): the runs among the ``k`` best on every selection set.

    One set gives its top ``k``; two give the intersection of their top ``k`` (the paper's submitted system:
    the top 12 on the development set and the top 12 on the PAM development set, 8 runs in common).

    Args:
        metrics: one sequence per selection set, one value per run (higher is better, e.g. SRCC); NaN ranks
            last; ties keep the runs' order.
        k: how many runs each set keeps.

    Returns:
        Indices of the selected runs, best on the first set first.
    """
    if k < 1:
        raise ValueError(f"select k must be >= 1, got {k}")
    if not metrics:
        raise ValueError("select_runs needs at least one selection set")
    tops = []
    for values in metrics:
        order = sorted(range(len(values)), key=lambda i: math.inf if math.isnan(values[i]) else -values[i])
        tops.append(order[:k])  # sorted() is stable: ties keep the runs' order
    return [i for i in tops[0] if all(i in top for top in tops[1:])]
