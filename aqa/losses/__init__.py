"""Loss registry: plain dict keyed by the name of each loss's YAML file under ``configs/loss/``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from aqa.losses.ranking import RnCLoss, rank_n_contrast

LOSSES: dict[str, Callable[..., nn.Module]] = {
    "rnc": RnCLoss,
    "l1": nn.L1Loss,
    "mse": nn.MSELoss,
}


def build_loss(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a loss from its config: ``name`` picks the registry entry, the other keys are its kwargs."""
    name = cfg["name"]
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
    return LOSSES[name](**{k: v for k, v in cfg.items() if k != "name"})


__all__ = ["LOSSES", "RnCLoss", "build_loss", "rank_n_contrast"]
