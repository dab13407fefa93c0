"""JND contrastive loss for JSQA-style pretraining (Fan & Williamson 2025).

Mixtures of one clean utterance with one noise at different SNRs form a *group* (``aqa prep jnd``). Two
members of a group whose SNRs differ by less than the just-noticeable difference sound the same: they are
positives and are pulled together; every other member of the group (different by at least one JND, or the
clean reference) is a negative. The loss is the supervised-contrastive form (Khosla et al. 2020) with those
positives and negative-L2 similarities, so the embedding distance to the clean reference -- the score
``aqa`` uses for embedding heads -- grows as quality falls, in JND-sized steps. :func:`within_group_pairs`
measures that order on validation (``val/{task}/group_order`` of every embedding task).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aqa.heads.base import Kind
from aqa.losses.base import Loss


def jnd_contrastive(
    features: Tensor,
    snr_db: Tensor,
    group: Tensor,
    jnd_db: float = 3.0,
    temperature: float = 1.0,
    negatives: str = "group",
) -> Tensor:
    """Supervised contrastive loss with JND positives.

    For anchor ``i`` with positives ``P(i) = {j != i in i's group : |snr_i - snr_j| < jnd_db}`` and
    candidates ``A(i)`` (the other members of its group, or of the whole batch with ``negatives="batch"``):

        loss = mean_{i : P(i) non-empty} -1/|P(i)| sum_{p in P(i)} log( exp(s_ip / t) / sum_{a in A(i)} exp(s_ia / t) )

    with ``s_ij = -||z_i - z_j||_2``.

    Args:
        features: (N, D) embeddings.
        snr_db: (N,) SNR of each mixture in dB; NaN marks the clean reference (an infinite SNR: never a
            positive of a mixture).
        group: (N,) group index (one clean utterance + one noise).
        jnd_db: SNR difference below which two mixtures count as the same quality (3 dB: McShefferty et al. 2015).
        temperature: softmax temperature ``t``.
        negatives: ``"group"`` contrasts only within a group (quality, not content, separates them) or
            ``"batch"`` against every other clip of the batch.

    Returns:
        Scalar loss; 0 when no anchor has a positive.
    """
    if negatives not in ("group", "batch"):
        raise ValueError(f"negatives must be 'group' or 'batch', got {negatives!r}")
    n = features.shape[0]
    if snr_db.shape != (n,) or group.shape != (n,):
        raise ValueError(f"need snr_db and group of shape ({n},), got {tuple(snr_db.shape)} and {tuple(group.shape)}")
    y = torch.nan_to_num(snr_db.to(torch.float64), nan=float("inf"))
    off_diag = ~torch.eye(n, dtype=torch.bool, device=features.device)
    same_group = group[:, None] == group[None, :]
    positives = same_group & off_diag & ((y[:, None] - y[None, :]).abs() < jnd_db)  # inf - inf = nan: False
    candidates = off_diag & (same_group if negatives == "group" else True)
    anchors = positives.any(dim=1)
    if not anchors.any():
        return features.sum() * 0.0
    logits = -torch.cdist(features, features, p=2) / temperature
    log_prob = logits - torch.logsumexp(logits.masked_fill(~candidates, float("-inf")), dim=1, keepdim=True)
    pos = positives.to(log_prob.dtype)
    per_anchor = -(log_prob.masked_fill(~positives, 0.0) * pos).sum(dim=1) / pos.sum(dim=1).clamp_min(1.0)
    return per_anchor[anchors].mean()


def within_group_pairs(scores: Tensor, labels: Tensor, group: Tensor, min_gap: float = 0.0) -> tuple[Tensor, Tensor]:
    """Pairs of clips of one group ordered by their scores as by their labels: (concordant, pairs) counts.

    A pair ``(i, j)`` of the same group counts when ``|label_i - label_j| > min_gap`` (and both are finite); it
    is concordant when the higher label has the higher score, half when the scores tie. Embedding tasks score
    a clip by minus its distance to its group's reference, so for JSQA's JND groups (one utterance + one noise
    at several SNRs) this asks whether the embedding distance to the clean reference grows as the SNR falls.

    Args:
        scores: (N,) quality scores (higher = better).
        labels: (N,) labels (higher = better); NaN/inf clips (e.g. references) are left out.
        group: (N,) group index.
        min_gap: label difference a pair must exceed to count (e.g. one JND in dB: pairs closer than that
            sound the same, so their order is not asked for).

    Returns:
        (concordant, pairs): float64 scalars; ``concordant / pairs`` is the ordering accuracy (1: every pair in
        order, 0.5: chance, 0: reversed), or undefined when ``pairs == 0``.
    """
    n = scores.shape[0]
    if labels.shape != (n,) or group.shape != (n,):
        raise ValueError(f"need labels and group of shape ({n},), got {tuple(labels.shape)} and {tuple(group.shape)}")
    s, y = scores.detach().double(), labels.detach().double()
    ok = torch.isfinite(s) & torch.isfinite(y)
    dy = y[:, None] - y[None, :]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=s.device), diagonal=1)
    pair = upper & (group[:, None] == group[None, :]) & ok[:, None] & ok[None, :] & (dy.abs() > min_gap)
    agree = torch.sign(s[:, None] - s[None, :]) * torch.sign(dy)  # 1 in order, 0 tied scores, -1 reversed
    return ((agree[pair] + 1) / 2).sum(), pair.sum().double()


def within_group_order_accuracy(scores: Tensor, labels: Tensor, group: Tensor, min_gap: float = 0.0) -> float:
    """Share of within-group pairs whose score order matches their label order (:func:`within_group_pairs`):
    1 for a perfect ordering, about 0.5 for random scores, 0 for a reversed one; NaN without pairs."""
    concordant, pairs = within_group_pairs(scores, labels, group, min_gap)
    return float(concordant / pairs) if pairs > 0 else float("nan")


class JNDContrastiveLoss(Loss):
    """:func:`jnd_contrastive` as a module; called with ``(features, snr_db, group=...)``."""

    input_kind = Kind.EMBEDDING
    uses_group = True

    def __init__(self, jnd_db: float = 3.0, temperature: float = 1.0, negatives: str = "group") -> None:
        super().__init__()
        self.jnd_db, self.temperature, self.negatives = float(jnd_db), float(temperature), negatives

    def forward(self, features: Tensor, snr_db: Tensor, group: Tensor) -> Tensor:
        return jnd_contrastive(features, snr_db, group, self.jnd_db, self.temperature, self.negatives)
