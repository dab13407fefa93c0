"""Rating scales: which range a listening test's scores and each predictor's outputs live on, so that ``aqa eval
--test`` reports a raw MSE only between numbers on one scale (a 1..5 model against 0..100 MUSHRA scores gives an
MSE in the thousands that says nothing about the model).

A scale is ``(lo, hi)``, e.g. ``(1.0, 5.0)`` for ACR MOS, ``(0.0, 100.0)`` for MUSHRA; None where unknown. Each
lookup also returns a short text saying where the scale came from (or why it is unknown), for ``summary.md``.

- The test: its ``scale_min``/``scale_max`` columns (``aqa prep import --csv-out`` writes them), one value for
  every row (:func:`scale_of_test`).
- A reference metric: :data:`BASELINE_SCALES`.
- A trained task (:func:`task_scale`): an embedding task has none (it scores by minus a distance); a score task
  has its label's scale: ``tasks.T.scale`` of the run's config (``aqa train`` records it there from the training
  shards, or set it in the experiment), else the training shards' ``scale`` field (``aqa prep import`` writes
  the corpus' rating scale into every sample's JSON; it applies to the ``mos`` label and the rated axes of
  ``scores``), else the scale of a label that is a reference metric's output (``visqol_moslqo``: 1..5).
  An ensemble that z-scores its members has none; one whose members disagree has none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from aqa.data.labels import rating_scale, scale_pair

__all__ = [
    "BASELINE_SCALES",
    "Scale",
    "baseline_scale",
    "fmt_scale",
    "label_scale",
    "LABEL_SCALES",
    "same_scale",
    "scorer_scale",
    "task_scale",
    "scale_of_test",
]

Scale = tuple[float, float]

# reference metric -> the range of its principal value (aqa.eval.listening.BASELINE_KEYS); None: no rating scale
BASELINE_SCALES: dict[str, Scale | None] = {
    "visqol": (1.0, 5.0),  # MOS-LQO, the ACR MOS it predicts
    "visqol_speech": (1.0, 5.0),
    "pesq": (1.0, 5.0),  # the pesq package returns MOS-LQO (P.862.1/.2 mappings, 1.02..4.64), not raw PESQ -0.5..4.5
    "stoi": (0.0, 1.0),
    "estoi": (0.0, 1.0),
    "haaqi": (0.0, 1.0),
    "dnsmos": (1.0, 5.0),  # P.835 OVRL MOS
    "cdpam": None,  # a distance, 0..inf
    "peaq": (-4.0, 0.0),  # objective difference grade
    "2f_model": (0.0, 100.0),  # MUSHRA scale
}
# labels the data recipes write that are a reference metric's output (aqa prep codec: visqol_*, haaqi: haaqi)
LABEL_SCALES: dict[str, Scale] = {"visqol_moslqo": (1.0, 5.0), "visqol_nsim": (0.0, 1.0), "haaqi": (0.0, 1.0)}
_TOL = 1e-6


def fmt_scale(scale: Scale | None) -> str:
    """``1..5``, ``0..100``; ``unknown`` for None."""
    return "unknown" if scale is None else f"{scale[0]:g}..{scale[1]:g}"


def same_scale(a: Scale | None, b: Scale | None) -> bool:
    """Both known and equal (to 1e-6): raw errors between them mean something."""
    return a is not None and b is not None and all(math.isclose(x, y, abs_tol=_TOL) for x, y in zip(a, b, strict=True))


def _pair(lo: Any, hi: Any, where: str) -> Scale:
    out = scale_pair([lo, hi])
    if out is None:
        raise ValueError(f"{where}: a scale is two numbers min, max with max > min, got {lo!r}, {hi!r}")
    return out


def scale_of_test(rows: Sequence[Mapping[str, Any]], name: str = "the test") -> tuple[Scale | None, str]:
    """The rating scale of a listening test's rows (:func:`aqa.eval.listening.read_test`): their ``scale_min`` and
    ``scale_max`` cells, the same on every row.

    Returns:
        ``(scale, where)``; ``(None, why)`` without the columns, with empty cells, or with rows on different scales.

    Raises:
        ValueError: a cell that is not a number, or max <= min (naming the row; the header is row 1).
    """
    if not rows or not any("scale_min" in r or "scale_max" in r for r in rows):
        return None, f"unknown: {name} has no scale_min/scale_max columns"
    seen: dict[Scale, int] = {}
    empty = 0
    for number, row in enumerate(rows, start=2):
        lo, hi = str(row.get("scale_min", "")).strip(), str(row.get("scale_max", "")).strip()
        if not lo and not hi:
            empty += 1
            continue
        seen.setdefault(_pair(lo, hi, f"{name} row {number}"), number)
    if empty or len(seen) != 1:
        parts = [*(f"{fmt_scale(s)} (row {n})" for s, n in seen.items()), *([f"{empty} row(s) empty"] if empty else [])]
        return None, f"unknown: {name}'s scale_min/scale_max differ between rows ({', '.join(parts)})"
    return next(iter(seen)), "scale_min/scale_max"


def baseline_scale(metric: str) -> tuple[Scale | None, str]:
    """A reference metric's output scale (:data:`BASELINE_SCALES`)."""
    if BASELINE_SCALES.get(metric) is None:
        why = "a distance" if metric in BASELINE_SCALES else "not in aqa.eval.scales.BASELINE_SCALES"
        return None, f"unknown: {why}"
    return BASELINE_SCALES[metric], "the metric's range"


def label_scale(label: str) -> Scale | None:
    """The scale of a label that is a reference metric's output (:data:`LABEL_SCALES`), else None."""
    return LABEL_SCALES.get(label)


def task_scale(cfg: Any, task: str, embedding: bool = False) -> tuple[Scale | None, str]:
    """The scale a trained task's scores are on (see the module docstring for the order of the sources).

    Args:
        cfg: the run's config (``tasks``, ``data.train_urls``).
        task: a key of ``cfg.tasks``.
        embedding: the task's head is an embedding head (scores are minus distances: no scale).
    """
    if embedding:
        return None, "unknown: an embedding task scores by minus a distance"
    spec = cfg.tasks[task]
    if spec.get("scale") is not None:
        return _pair(*spec.scale, f"tasks.{task}.scale"), f"tasks.{task}.scale of the run's config"
    label = str(spec.label)
    if (known := label_scale(label)) is not None:
        return known, f"label {label!r} is a reference metric's output"
    return rating_scale(cfg.data.train_urls, label)


def scorer_scale(scorer: Any, task: str) -> tuple[Scale | None, str]:
    """The scale of a loaded scorer's (:class:`aqa.inference.scorer.Scorer`) raw ``task`` scores: its model's
    (:func:`task_scale`); for an ensemble the members' common one (none when it z-scores them or they differ)."""
    members = [m for m in scorer.members if task in m.module.heads]
    if len(scorer.members) > 1 and scorer.zscore:
        return None, "unknown: the ensemble averages z-scored member scores"
    found = [task_scale(m.config, task, m.module.heads[task].is_embedding) for m in members]
    if not found:
        return None, f"unknown: no model has task {task!r}"
    if all(same_scale(s, found[0][0]) for s, _ in found[1:]) and (found[0][0] is not None or len(found) == 1):
        return found[0]
    return None, f"unknown: the ensemble's members differ ({', '.join(fmt_scale(s) for s, _ in found)})"
