"""Loss registry: plain dict keyed by the name of each loss's YAML file under ``configs/loss/``.

Every loss is an :class:`~aqa.losses.base.Loss` and is called as ``loss(head_output, target)``; losses
declaring ``uses_group = True`` also get ``group=batch["group"]`` (which clips belong together, e.g. the mixtures
of one utterance). Each declares its ``input_kind`` (:class:`~aqa.heads.base.Kind`): ``EMBEDDING`` (B, D),
``SCORE`` (B,) or ``FRAMES`` (a frame-level head's dict), checked against the head's ``output`` when a module is
built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aqa.losses.base import Loss
from aqa.losses.contrastive import JNDContrastiveLoss, jnd_contrastive
from aqa.losses.ranking import RnCLoss, rank_n_contrast
from aqa.losses.regression import (
    CCCLoss,
    DCQLoss,
    FrameUtteranceLoss,
    MaskedL1Loss,
    MaskedMSELoss,
    PairwiseMarginLoss,
    UTMOSLoss,
    ccc_loss,
    dcq_loss,
    frame_utterance_mse,
    masked_l1,
    masked_mse,
    pairwise_margin,
    utmos_loss,
)

LOSSES: dict[str, Callable[..., Loss]] = {
    "rnc": RnCLoss,
    "l1": MaskedL1Loss,
    "mse": MaskedMSELoss,
    "ccc": CCCLoss,
    "utmos": UTMOSLoss,
    "pairwise_margin": PairwiseMarginLoss,
    "dcq": DCQLoss,
    "frame_utterance": FrameUtteranceLoss,
    "jnd_contrastive": JNDContrastiveLoss,
}


def build_loss(cfg: Mapping[str, Any]) -> Loss:
    """Build a loss from its config: ``name`` picks the registry entry, the other keys are its kwargs."""
    name = cfg["name"]
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
    return LOSSES[name](**{k: v for k, v in cfg.items() if k != "name"})


__all__ = [
    "LOSSES",
    "CCCLoss",
    "DCQLoss",
    "FrameUtteranceLoss",
    "JNDContrastiveLoss",
    "Loss",
    "MaskedL1Loss",
    "MaskedMSELoss",
    "PairwiseMarginLoss",
    "UTMOSLoss",
    "RnCLoss",
    "build_loss",
    "ccc_loss",
    "dcq_loss",
    "frame_utterance_mse",
    "jnd_contrastive",
    "masked_l1",
    "masked_mse",
    "pairwise_margin",
    "rank_n_contrast",
    "utmos_loss",
]
