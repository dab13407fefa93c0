"""Listening-test statistics as the papers report them: MSE, LCC, SRCC and KTAU of predictions against
subjective scores, at utterance or system level, with seeded bootstrap confidence intervals and a cubic
mapping fitted by k-fold cross-validation (``MSE_mapped``, ``LCC_mapped``).

Pure numpy/scipy functions on 1-D arrays. ``pred`` and ``target`` are (N,) float arrays (one value per
rated item, or per system after :func:`system_means`); non-finite pairs are dropped by :func:`summary_stats`.
MSE, LCC and SRCC are vectorised over bootstrap resamples (rows of a (B, N) array; LCC and SRCC are
:mod:`aqa.correlation`'s, the one implementation every part of aqa uses); KTAU (Kendall's tau-b) comes from
:func:`scipy.stats.kendalltau` one resample at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from aqa.correlation import lcc, srcc
from aqa.inference.calibration import fit_cubic

__all__ = [
    "METRICS",
    "MIN_ITEMS",
    "bootstrap_ci",
    "kfold_cubic",
    "ktau",
    "lcc",
    "mse",
    "srcc",
    "summary_stats",
    "system_means",
]

MIN_ITEMS = 3  # fewer items than this give a trivial (+-1) or undefined correlation: reported as NaN


def _rows(x: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(x, dtype=np.float64))


def mse(pred: np.ndarray, target: np.ndarray) -> np.ndarray | float:
    """Mean squared error; (N,) -> float, or (B, N) rows -> (B,)."""
    p, t = _rows(pred), _rows(target)
    out = np.mean((p - t) ** 2, axis=-1)
    return float(out[0]) if np.ndim(pred) == 1 else out


def ktau(pred: np.ndarray, target: np.ndarray) -> np.ndarray | float:
    """Kendall's tau-b (scipy); (N,) -> float, or (B, N) rows -> (B,); NaN for a constant row."""
    p, t = _rows(pred), _rows(target)
    out = np.array(
        [
            kendalltau(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan
            for a, b in zip(p, t, strict=True)
        ],
        dtype=np.float64,
    )
    return float(out[0]) if np.ndim(pred) == 1 else out


# name -> fn(pred, target): the utterance/system-level metrics of the summary table
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "MSE": mse,
    "LCC": lcc,
    "SRCC": srcc,
    "KTAU": ktau,
}


def system_means(
    pred: Sequence[float], target: Sequence[float], systems: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mean prediction and mean subjective score per system (ITU-T P.1401's per-condition analysis).

    Args:
        pred, target: (N,) values per rated item.
        systems: (N,) system name of each item.

    Returns:
        ``(pred_means (S,), target_means (S,), names (S,))``, systems in sorted order.
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if not len(p) == len(t) == len(systems):
        raise ValueError(f"pred, target and systems differ in length: {len(p)}, {len(t)}, {len(systems)}")
    names = sorted(set(map(str, systems)))
    index = {name: i for i, name in enumerate(names)}
    which = np.array([index[str(s)] for s in systems], dtype=np.int64)
    counts = np.bincount(which, minlength=len(names))
    return (np.bincount(which, p, len(names)) / counts, np.bincount(which, t, len(names)) / counts, names)


def kfold_cubic(pred: Sequence[float], target: Sequence[float], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions of a cubic mapping pred -> target (ITU-T P.1401 style, without over-fitting).

    The items are shuffled (``seed``) into ``folds`` folds; each fold is predicted by a cubic
    (:func:`aqa.inference.calibration.fit_cubic`, inputs clipped to the fitted range) fitted on the others.

    Returns:
        (N,) mapped predictions on the target's scale; all NaN when some training fold has fewer than 4
        distinct predictions (the cubic cannot be fitted).
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    n = len(p)
    out = np.full(n, np.nan)
    k = min(int(folds), n)
    if k < 2:
        return out
    order = np.random.default_rng(seed).permutation(n)
    for held in np.array_split(order, k):
        train = np.setdiff1d(order, held)
        if np.unique(p[train]).size < 4:  # a cubic through fewer distinct inputs is not determined
            return np.full(n, np.nan)
        try:
            cal = fit_cubic(p[train], t[train])
        except ValueError:  # too few (distinct) points to fit
            return np.full(n, np.nan)
        out[held] = cal(p[held])
    return out


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], Any],
    pred: np.ndarray,
    target: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(pred, target)``, resampling items (pairs) with replacement.

    Args:
        fn: a metric of :data:`METRICS` (takes (B, N) rows, returns (B,)).
        pred, target: (N,) paired values (items, or systems at system level).
        n_boot: resamples; seed: the generator's seed (same inputs + seed -> same interval).
        level: coverage, 0.95 for a 95 % interval.

    Returns:
        ``(low, high)``; NaN when fewer than :data:`MIN_ITEMS` items or ``n_boot < 1``. Resamples on which
        ``fn`` is undefined (e.g. all one value) are left out.
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if len(p) < MIN_ITEMS or n_boot < 1:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(p), size=(int(n_boot), len(p)))
    values = np.asarray(fn(p[idx], t[idx]), dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def summary_stats(
    pred: Sequence[float],
    target: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    folds: int = 5,
) -> dict[str, tuple[float, float, float, int]]:
    """Every metric of the summary table for one (model, subset, level).

    Args:
        pred, target: (N,) paired values; pairs with a non-finite value are dropped first.
        n_boot, seed: bootstrap resamples and seed (:func:`bootstrap_ci`).
        folds: folds of the cross-validated cubic mapping (:func:`kfold_cubic`).

    Returns:
        metric -> ``(value, ci_low, ci_high, n)`` for ``MSE LCC SRCC KTAU MSE_mapped LCC_mapped``; values are
        NaN when fewer than :data:`MIN_ITEMS` pairs remain (or the mapping cannot be fitted).
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(t)
    p, t = p[keep], t[keep]
    n = int(p.size)
    nan = float("nan")
    mapped = kfold_cubic(p, t, folds, seed) if n >= MIN_ITEMS else np.full(n, np.nan)
    out: dict[str, tuple[float, float, float, int]] = {}
    for name, fn, x in [
        *((k, f, p) for k, f in METRICS.items()),
        ("MSE_mapped", mse, mapped),
        ("LCC_mapped", lcc, mapped),
    ]:
        if n < MIN_ITEMS or not np.all(np.isfinite(x)):
            out[name] = (nan, nan, nan, n)
            continue
        out[name] = (float(fn(x, t)), *bootstrap_ci(fn, x, t, n_boot, seed), n)
    return out
