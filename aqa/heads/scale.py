"""Label normalisation of a score task (``tasks.X.normalize: zscore``): the head learns z-scored labels, the
module outputs label-scale scores.

A :class:`LabelScale` holds the training split's label mean and standard deviation as buffers, so they travel in
every checkpoint, export and ensemble member with the weights. :class:`~aqa.model.QualityModel`
applies it to the head's output (``mean + std * raw``): whatever reads the module's output (validation metrics,
``aqa eval``, ``aqa score``, ``aqa.load(...).score``, ensembles) gets scores on the label scale. The loss terms
compare :meth:`LabelScale.standardise` of both the prediction and the target, i.e. ``raw`` against
``(label - mean) / std``, as MMMOS' released code trains (github robert0518/MMMOS ``model/train.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

NORMALIZATIONS = ("zscore",)  # the values of `tasks.X.normalize` (null: labels as they are)
SCALED_KEYS = ("score", "frames")  # the entries of a dict head output that are on the label scale


class LabelScale(nn.Module):
    """``mean`` and ``std`` (float32 buffers, label units) of one task's training labels.

    ``forward`` maps a head output from z units to the label scale; :meth:`standardise` maps label-scale values
    (predictions or targets) to z units. A head output is a (B,) / (B, K) tensor, or a dict whose ``"score"``
    and ``"frames"`` entries are mapped (the rest, e.g. ``"frame_mask"``, is passed through). Outputs are float32
    (a bf16 head output would lose the label scale's precision: bf16 has 8 bits of mantissa).
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.0))
        self.register_buffer("std", torch.tensor(1.0))
        self.set(mean, std)

    def set(self, mean: float, std: float) -> None:
        """Store new statistics (label units); ``std`` must be finite and > 0."""
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"label statistics need a finite mean and a finite std > 0, got {mean}, {std}")
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))

    def _map(self, out: Any, fn: Any) -> Any:
        if isinstance(out, Mapping):
            return {k: fn(v.float()) if k in SCALED_KEYS else v for k, v in out.items()}
        return fn(out.float())

    def forward(self, out: Any) -> Any:
        """z units -> label scale: ``mean + std * out``."""
        return self._map(out, lambda x: self.mean + self.std * x)

    def standardise(self, values: Any) -> Any:
        """label scale -> z units: ``(values - mean) / std`` (NaN and inf stay NaN and inf)."""
        return self._map(values, lambda x: (x - self.mean) / self.std)

    def extra_repr(self) -> str:
        return f"mean={float(self.mean):.4g}, std={float(self.std):.4g}"


def zscore_stats(values: Tensor) -> tuple[float, float]:
    """(mean, std) of the finite entries of ``values``: the sample standard deviation (ddof 1), as pandas'
    ``std()`` in MMMOS' released code.

    Raises:
        ValueError: fewer than two finite values, or all of them equal (std 0): nothing to z-score by.
    """
    v = values.double().flatten()
    v = v[torch.isfinite(v)]
    if v.numel() < 2:
        raise ValueError(f"z-scoring needs at least two finite labels, got {v.numel()}")
    mean, std = float(v.mean()), float(v.std(unbiased=True))
    if not std > 0:
        raise ValueError(f"z-scoring needs labels that vary; all {v.numel()} equal {mean}")
    return mean, std


__all__ = ["LabelScale", "NORMALIZATIONS", "zscore_stats"]
