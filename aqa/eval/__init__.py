"""Evaluation: correlations (``functional``), result tables and plots (``report``), score -> label mappings
(``calibration``), ensembles, scoring files (``score``), device and precision (``inference``), and what the
``aqa eval | calibrate | ensemble | score`` commands do with runs (``runs``)."""

from typing import Any

__all__ = ["pearson", "spearman"]


def __getattr__(name: str) -> Any:
    # torchmetrics (and the transformers it imports) load on first use: `aqa eval --test` and the scorer need
    # neither, and importing them costs ~3-5 s of every command's start
    if name in __all__:
        from aqa.eval import functional

        return getattr(functional, name)
    raise AttributeError(f"module 'aqa.eval' has no attribute {name!r}")
