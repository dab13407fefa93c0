"""Evaluation: correlations (``functional``), result tables and plots (``report``), score -> label mappings
(``calibration``), ensembles, scoring files (``score``), device and precision (``inference``), and what the
``aqa eval | calibrate | ensemble | score`` commands do with runs (``runs``)."""

from aqa.eval.functional import pearson, spearman

__all__ = ["pearson", "spearman"]
