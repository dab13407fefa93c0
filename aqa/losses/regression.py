"""Regression losses on scores that ignore missing labels (NaN: an axis a corpus did not rate, a reference
without a score), so one partly rated batch never turns the loss into NaN."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from aqa.heads.base import Kind
from aqa.losses.base import Loss


def _finite(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    keep = torch.isfinite(target)
    return pred[keep], target[keep]


def masked_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over finite targets. pred, target: (B,) or (B, K). 0 when none is finite."""
    p, t = _finite(pred, target)
    return (p - t).abs().mean() if p.numel() else pred.sum() * 0.0


def masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over finite targets. pred, target: (B,) or (B, K). 0 when none is finite."""
    p, t = _finite(pred, target)
    return (p - t).pow(2).mean() if p.numel() else pred.sum() * 0.0


def ccc_loss(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """``1 - CCC``, Lin's concordance correlation coefficient over the finite targets of a batch.

    ``CCC = 2 cov(p, t) / (var p + var t + (mean p - mean t)^2)`` (population moments): 1 only when the
    predictions equal the targets, so it rewards correlation, scale and offset at once. pred, target: (B,).
    Returns 0 for fewer than two finite targets.
    """
    p, t = _finite(pred.flatten(), target.flatten())
    if p.numel() < 2:
        return pred.sum() * 0.0
    pm, tm = p.mean(), t.mean()
    cov = ((p - pm) * (t - tm)).mean()
    ccc = 2 * cov / (p.var(unbiased=False) + t.var(unbiased=False) + (pm - tm) ** 2 + eps)
    return 1.0 - ccc


def pairwise_margin(pred: Tensor, target: Tensor, margin: float = 0.1) -> Tensor:
    """Contrastive term of UTMOS (Saeki et al. 2022), as MMMOS uses it: for every ordered pair ``i != j`` of
    finite targets, ``relu(|(t_i - t_j) - (p_i - p_j)| - margin)``, averaged. pred, target: (B,). 0 for B < 2."""
    p, t = _finite(pred.flatten(), target.flatten())
    n = p.numel()
    if n < 2:
        return pred.sum() * 0.0
    err = F.relu(((t[:, None] - t[None, :]) - (p[:, None] - p[None, :])).abs() - margin)
    return err.masked_fill(torch.eye(n, dtype=torch.bool, device=err.device), 0.0).sum() / (n * (n - 1))


def utmos_loss(pred: Tensor, target: Tensor, tau: float = 0.5, margin: float = 0.1, w_con: float = 0.5) -> Tensor:
    """UTMOS loss (Saeki et al. 2022; MMMOS' loss 1): clipped MSE plus ``w_con`` x :func:`pairwise_margin`.

    The clipped MSE counts only errors larger than ``tau`` (``mean(1[|p - t| > tau] (p - t)^2)``), so
    predictions within the raters' own spread are left alone. pred, target: (B,); NaN targets ignored.

    Which constants and normalisation: MMMOS' released code (github robert0518/MMMOS,
    ``model/contrastive_loss.py``, ``ClippedMSEContrastiveLoss``): ``tau`` 0.5, ``margin`` 0.1, ``w_con`` 0.5,
    and the contrastive term averaged over the ``B (B - 1)`` ordered pairs ``i != j``, not halved; its
    ``model/train.py`` applies it to labels z-scored per axis. The MMMOS experiments do the same
    (``tasks.X.normalize: zscore``: the loss sees ``(pred - mean) / std`` against ``(label - mean) / std``,
    with the training split's mean and std), so ``tau`` is half a standard deviation of the ratings, as in the
    release. On an unnormalised task ``tau`` and ``margin`` are in label units (0.5 rating points), which
    :func:`aqa.config.check_values` warns about. (MMMOS' paper says the clipping follows UTMOS, whose value is
    0.25.)

    UTMOS22 itself (sarulab-speech/UTMOS22 ``strong``: ``ClippedMSELoss``, ``ContrastiveLoss``,
    ``configs/train/default.yaml``) first maps MOS 1..5 onto -1..1 (``(mos - 3) / 2``), then uses ``tau`` 0.25
    and ``margin`` 0.1 on that scale, and averages the contrastive term over all ``B^2`` pairs, diagonal included
    (each 0), then halves it: its contrastive term is ``(B - 1) / (2 B)`` x :func:`pairwise_margin`. On raw 1..5
    labels that is ``utmos_loss(tau=0.5, margin=0.2, w_con=0.5 * (B - 1) / B) / 4``; on 1..10 labels ``tau``
    1.125 and ``margin`` 0.45 (``tests/losses/test_losses.py`` checks these factors against loops written from
    UTMOS22's definition). UTMOS22 also clips per frame (its frame scores against the clip label), where this
    takes clip scores.
    """
    p, t = _finite(pred.flatten(), target.flatten())
    if p.numel() == 0:
        return pred.sum() * 0.0
    err = p - t
    clipped = (err.pow(2) * (err.abs() > tau).to(err.dtype)).mean()
    return clipped + w_con * pairwise_margin(p, t, margin)


def dcq_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Dual-criterion quality loss (MMMOS' loss 3) over all ordered pairs of finite targets:
    ``mean((dp - dt)^2)`` (quantitative discrepancy) ``- mean(dp * sign(dt))`` (qualitative alignment), with
    ``dp = p_j - p_i`` and ``dt = t_j - t_i``. pred, target: (B,). 0 for B < 2."""
    p, t = _finite(pred.flatten(), target.flatten())
    if p.numel() < 2:
        return pred.sum() * 0.0
    dp, dt = p[None, :] - p[:, None], t[None, :] - t[:, None]
    return (dp - dt).pow(2).mean() - (dp * torch.sign(dt)).mean()


def frame_utterance_mse(pred: Mapping[str, Tensor], target: Tensor, frame_weight: float = 1.0) -> Tensor:
    """HAAQI-Net's objective: MSE of the clip score plus ``frame_weight`` x MSE of every valid frame's score
    against the clip label (frame targets are the clip's, as in Quality-Net / MOSA-Net).

    Args:
        pred: ``{"score": (B,), "frames": (B, F), "frame_mask": (B, F) bool}`` from a frame-level head.
        target: (B,) clip labels; NaN rows are ignored.
    """
    keep = torch.isfinite(target)
    if not keep.any():
        return pred["score"].sum() * 0.0
    utt = (pred["score"][keep] - target[keep]).pow(2).mean()
    mask = pred["frame_mask"][keep].to(pred["frames"].dtype)
    err = (pred["frames"][keep] - target[keep, None]).pow(2) * mask
    frames = err.sum() / mask.sum().clamp_min(1.0)
    return utt + frame_weight * frames


class _ScoreLoss(Loss):
    """Module form of a score loss ``fn(pred (B,), target (B,), **options)``; options are checked against
    ``fn``'s signature when the module is built, so a misspelt YAML key fails at once."""

    input_kind = Kind.SCORE
    fn: Callable[..., Tensor]

    def __init__(self, **options: float) -> None:
        super().__init__()
        inspect.signature(type(self).fn).bind(None, None, **options)  # TypeError naming an unknown option
        self.options = {k: float(v) for k, v in options.items()}

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return type(self).fn(pred, target, **self.options)


class MaskedL1Loss(_ScoreLoss):
    """:func:`masked_l1` as a module."""

    fn = staticmethod(masked_l1)


class MaskedMSELoss(_ScoreLoss):
    """:func:`masked_mse` as a module."""

    fn = staticmethod(masked_mse)


class CCCLoss(_ScoreLoss):
    """:func:`ccc_loss` as a module."""

    fn = staticmethod(ccc_loss)


class UTMOSLoss(_ScoreLoss):
    """:func:`utmos_loss` as a module (options ``tau``, ``margin``, ``w_con``). Its contrastive part is
    difference-only; its clipped MSE pins the level only to within ``tau`` (``loose_level``)."""

    fn = staticmethod(utmos_loss)
    loose_level = True


class PairwiseMarginLoss(_ScoreLoss):
    """:func:`pairwise_margin` alone as a module (MMMOS' contrastive-only loss; option ``margin``).
    Difference-only: the output bias gets no gradient (train it on z-scored labels)."""

    fn = staticmethod(pairwise_margin)
    difference_only = True


class DCQLoss(_ScoreLoss):
    """:func:`dcq_loss` as a module. Difference-only: the output bias gets no gradient (train it on z-scored
    labels)."""

    fn = staticmethod(dcq_loss)
    difference_only = True


class FrameUtteranceLoss(Loss):
    """:func:`frame_utterance_mse` as a module (for heads returning frame scores, e.g. ``haaqi_net``)."""

    input_kind = Kind.FRAMES

    def __init__(self, frame_weight: float = 1.0) -> None:
        super().__init__()
        self.frame_weight = float(frame_weight)

    def forward(self, pred: Mapping[str, Tensor], target: Tensor) -> Tensor:
        if not isinstance(pred, Mapping) or "frames" not in pred:
            raise TypeError("frame_utterance needs a head that returns frame scores (e.g. head haaqi_net)")
        return frame_utterance_mse(pred, target, self.frame_weight)
