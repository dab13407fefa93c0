"""The one implementation of the correlations aqa reports: Pearson's LCC and Spearman's SRCC (numpy/scipy).

:func:`lcc` and :func:`srcc` take (N,) arrays (one value per item) or (B, N) rows (bootstrap resamples,
:mod:`aqa.eval.stats`); :func:`pearson` and :func:`spearman` take any two sequences of N numbers (lists, numpy
arrays, CPU tensors) and return one float. Every caller uses these: validation (:mod:`aqa.tasks.multitask`, after
gathering every process's scores), ``aqa eval`` (:mod:`aqa.eval.report`), ensemble selection
(:mod:`aqa.inference.ensemble`) and listening-test statistics. A correlation that is undefined (a constant
side, fewer than two items) is NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

__all__ = ["lcc", "pearson", "spearman", "srcc"]


def _rows(x: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(x, dtype=np.float64))


def lcc(pred: np.ndarray, target: np.ndarray) -> np.ndarray | float:
    """Pearson's linear correlation; (N,) -> float, or (B, N) rows -> (B,); NaN for a constant row."""
    p, t = _rows(pred), _rows(target)
    p = p - p.mean(axis=-1, keepdims=True)
    t = t - t.mean(axis=-1, keepdims=True)
    den = np.sqrt(np.sum(p * p, axis=-1) * np.sum(t * t, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, np.sum(p * t, axis=-1) / np.where(den > 0, den, 1.0), np.nan)
    out = np.clip(out, -1.0, 1.0)
    return float(out[0]) if np.ndim(pred) == 1 else out


def srcc(pred: np.ndarray, target: np.ndarray) -> np.ndarray | float:
    """Spearman's rank correlation (average ranks for ties); (N,) -> float, or (B, N) rows -> (B,)."""
    out = lcc(rankdata(_rows(pred), axis=-1), rankdata(_rows(target), axis=-1))
    return float(out[0]) if np.ndim(pred) == 1 else np.asarray(out)


def _flat(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def spearman(x: Any, y: Any) -> float:
    """:func:`srcc` of two sequences of N numbers (ties get average ranks); NaN when N < 2 or one is constant."""
    x, y = _flat(x), _flat(y)
    return float("nan") if x.size < 2 else float(srcc(x, y))


def pearson(x: Any, y: Any) -> float:
    """:func:`lcc` of two sequences of N numbers; NaN when N < 2 or one is constant."""
    x, y = _flat(x), _flat(y)
    return float("nan") if x.size < 2 else float(lcc(x, y))
