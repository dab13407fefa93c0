"""Map a model's raw scores onto its label's scale (e.g. ViSQOL MOS), as DeePAQ maps embedding distances
to MOS with a cubic polynomial or a small MLP.

A mapping is fitted on one split's (score, label) pairs and applied to new scores. Inputs are clipped to
the fitted score range (a cubic grows without bound outside it) and outputs to the label range seen in
fitting. Pure functions on 1-D arrays plus a JSON-serialisable :class:`Calibration`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Calibration", "FITS", "fit_cubic", "fit_mlp", "load_calibrations", "rmse"]


@dataclass
class Calibration:
    """A fitted score -> label mapping.

    Attributes:
        kind: ``cubic`` or ``mlp``.
        params: ``{"coef": [c3, c2, c1, c0]}`` (cubic, on standardised scores) or the MLP's weights.
        x_mean, x_std: standardisation of the scores (fitted on the calibration split).
        x_range: (min, max) of the fitted scores; inputs are clipped to it.
        y_range: (min, max) of the fitted labels; outputs are clipped to it.
    """

    kind: str
    params: dict[str, Any]
    x_mean: float
    x_std: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    n: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __call__(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Args: scores (N,) raw model scores. Returns (N,) values on the label's scale."""
        x = np.clip(np.asarray(scores, dtype=np.float64), *self.x_range)
        z = (x - self.x_mean) / self.x_std
        if self.kind == "cubic":
            y = np.polyval(self.params["coef"], z)
        elif self.kind == "mlp":
            p = {k: np.asarray(v) for k, v in self.params.items()}
            y = np.maximum(z[:, None] * p["w1"] + p["b1"], 0.0) @ p["w2"] + p["b2"]
        else:
            raise ValueError(f"unknown calibration kind {self.kind!r}; choose from {sorted(FITS)}")
        return np.clip(y, *self.y_range)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        d = dict(data)
        d["x_range"], d["y_range"] = tuple(d["x_range"]), tuple(d["y_range"])
        return cls(**d)


def _prepare(scores: Sequence[float], labels: Sequence[float], min_points: int) -> tuple[np.ndarray, ...]:
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D of one length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < min_points or np.ptp(x) == 0:
        raise ValueError(f"need at least {min_points} finite (score, label) pairs with distinct scores, got {x.size}")
    mean, std = float(x.mean()), float(x.std())
    return x, y, (x - mean) / std, mean, std


def fit_cubic(scores: Sequence[float], labels: Sequence[float]) -> Calibration:
    """Least-squares 3rd-order polynomial from scores (N,) to labels (N,) (ITU-T P.1401's usual mapping)."""
    x, y, z, mean, std = _prepare(scores, labels, min_points=4)
    coef = np.polyfit(z, y, 3)
    return Calibration("cubic", {"coef": coef.tolist()}, mean, std, (float(x.min()), float(x.max())),
                       (float(y.min()), float(y.max())), n=int(x.size))


def fit_mlp(
    scores: Sequence[float], labels: Sequence[float], hidden: int = 16, steps: int = 2000, lr: float = 1e-2, seed: int = 0
) -> Calibration:
    """A 1-``hidden``-1 ReLU MLP from scores (N,) to labels (N,), full-batch Adam on the squared error."""
    x, y, z, mean, std = _prepare(scores, labels, min_points=4)
    gen = torch.Generator().manual_seed(seed)
    w1 = nn.Parameter(torch.randn(hidden, generator=gen, dtype=torch.float64))
    b1 = nn.Parameter(torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.5)
    w2 = nn.Parameter(torch.randn(hidden, generator=gen, dtype=torch.float64) / hidden)
    b2 = nn.Parameter(torch.tensor(float(y.mean()), dtype=torch.float64))
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    opt = torch.optim.Adam([w1, b1, w2, b2], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        pred = torch.relu(zt[:, None] * w1 + b1) @ w2 + b2
        loss = (pred - yt).pow(2).mean()
        loss.backward()
        opt.step()
    params = {k: v.detach().tolist() for k, v in {"w1": w1, "b1": b1, "w2": w2, "b2": b2}.items()}
    return Calibration("mlp", params, mean, std, (float(x.min()), float(x.max())), (float(y.min()), float(y.max())),
                       n=int(x.size), extra={"train_mse": float(loss)})


FITS: dict[str, Callable[..., Calibration]] = {"cubic": fit_cubic, "mlp": fit_mlp}


def rmse(pred: Sequence[float], target: Sequence[float]) -> float:
    """Root-mean-square error of two (N,) arrays."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def load_calibrations(path: str | Path) -> dict[str, Calibration]:
    """Task -> :class:`Calibration` from a ``calibration.json`` written by ``aqa calibrate`` ({} when absent)."""
    path = Path(path)
    if not path.is_file():
        return {}
    return {task: Calibration.from_dict(c) for task, c in json.loads(path.read_text()).items()}
