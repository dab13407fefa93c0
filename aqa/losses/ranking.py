"""Rank-N-Contrast (Zha et al., NeurIPS 2023), as used by DeePAQ to order quality embeddings."""

from __future__ import annotations

import torch
from torch import Tensor

from aqa.heads.base import Kind
from aqa.losses.base import Loss


def _as_2d(labels: Tensor) -> Tensor:
    return labels.reshape(labels.shape[0], -1).to(torch.float64)


def label_distances(labels: Tensor) -> Tensor:
    """(N, N) L1 distances between label rows, exact in float64; equal labels are at distance 0 even when
    infinite (DeePAQ gives clean audio an infinite bit rate: two clean clips are at distance 0, a clean and a
    coded clip infinitely far apart, and no NaN arises)."""
    y = _as_2d(labels)
    diff = y[:, None, :] - y[None, :, :]
    return torch.where(y[:, None, :] == y[None, :, :], 0.0, diff.abs()).sum(dim=-1)


def rank_n_contrast(
    features: Tensor, labels: Tensor, temperature: float = 2.0, anchors: Tensor | None = None
) -> Tensor:
    """Rank-N-Contrast loss with negative-L2 feature similarity and L1 label distance.

    For an anchor ``i`` and a positive ``j != i`` the candidates are every ``k != i`` whose label is at
    least as far from ``i`` as ``j``'s: ``S_ij = {k != i : d(y_i, y_k) >= d(y_i, y_j)}``, and

        L_i = -1 / (N - 1) * sum_{j != i} log( exp(s_ij / t) / sum_{k in S_ij} exp(s_ik / t) ),
        loss = 1 / N * sum_{i in anchors} L_i

    with ``s_ij = -||z_i - z_j||_2``. With every sample an anchor this is the RnC paper's loss. DeePAQ sums its
    bit-rate term over coded anchors only, still divided by all N, while clean samples (bit rate infinity)
    remain positives and candidates. Vectorised: memory is O(N^3) booleans, fine for N up to a few hundred.

    Args:
        features: (N, D) embeddings.
        labels: (N,) or (N, K) targets; +-inf is a label like any other (see :func:`label_distances`); a
            sample with a NaN label (unrated) takes no part at all, and N counts the others.
        temperature: softmax temperature ``t`` (the paper and DeePAQ use 2).
        anchors: (N,) bool, the samples the loss is summed over (None: all).

    Returns:
        Scalar loss (0 when fewer than 2 samples are labelled).
    """
    n = features.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"features have {n} rows but labels have {labels.shape[0]}")
    y = _as_2d(labels)
    valid = ~torch.isnan(y).any(dim=1)
    if anchors is not None:
        if anchors.shape != (n,):
            raise ValueError(f"anchors must be a (N,) bool mask, got shape {tuple(anchors.shape)}")
        anchors = anchors.to(torch.bool) & valid
    if int(valid.sum()) < 2:
        return features.sum() * 0.0
    features, y = features[valid], y[valid]
    anchors = None if anchors is None else anchors[valid]
    m = features.shape[0]
    logits = -torch.cdist(features, features, p=2) / temperature  # (M, M)
    label_dist = label_distances(y)  # (M, M), float64 so that ties are exact
    off_diag = ~torch.eye(m, dtype=torch.bool, device=features.device)
    # candidates[i, j, k]: k is in S_ij
    candidates = (label_dist[:, None, :] >= label_dist[:, :, None]) & off_diag[:, None, :]
    masked = logits[:, None, :].masked_fill(~candidates, float("-inf"))  # (M, M, M)
    log_denominator = torch.logsumexp(masked, dim=-1)  # (M, M)
    log_prob = (logits - log_denominator).masked_fill(~off_diag, 0.0)
    per_anchor = -log_prob.sum(dim=1) / (m - 1)  # L_i
    if anchors is not None:
        per_anchor = per_anchor[anchors]
    return per_anchor.sum() / m


class RnCLoss(Loss):
    """Module form of :func:`rank_n_contrast`. Call with ``(features (N, D), labels (N,) or (N, K)[, anchors])``."""

    input_kind = Kind.EMBEDDING
    takes_anchors = True

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, features: Tensor, labels: Tensor, anchors: Tensor | None = None) -> Tensor:
        return rank_n_contrast(features, labels, self.temperature, anchors)
