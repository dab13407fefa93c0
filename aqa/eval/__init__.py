"""Evaluation: pure functions in ``functional``; result tables in ``report``."""

from aqa.eval.functional import pearson, reference_distances, spearman

__all__ = ["pearson", "reference_distances", "spearman"]
