"""Rank-N-Contrast (Zha et al., NeurIPS 2023), as used by DeePAQ to order quality embeddings."""

from __future__ import annotations

import torch
from torch import Tensor

from aqa.heads.base import Kind
from aqa.losses.base import Loss


def _as_2d(labels: Tensor) -> Tensor:
    return labels.reshape(labels.shape[0], -1).to(torch.float64)


def rank_n_contrast(features: Tensor, labels: Tensor, temperature: float = 2.0) -> Tensor:
    """Rank-N-Contrast loss with negative-L2 feature similarity and L1 label distance.

    For an anchor ``i`` and a positive ``j != i`` the candidates are every ``k != i`` whose label is at
    least as far from ``i`` as ``j``'s: ``S_ij = {k != i : d(y_i, y_k) >= d(y_i, y_j)}``, and

        loss = -1 / (N (N - 1)) * sum_{i != j} log( exp(s_ij / t) / sum_{k in S_ij} exp(s_ik / t) )

    with ``s_ij = -||z_i - z_j||_2``. Vectorised: memory is O(N^3) booleans, fine for N up to a few hundred.

    Args:
        features: (N, D) embeddings.
        labels: (N,) or (N, K) regression targets (finite; use ranks for targets such as infinite bitrate).
        temperature: softmax temperature ``t`` (the paper and DeePAQ use 2).

    Returns:
        Scalar loss (0 when N < 2).
    """
    n = features.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"features have {n} rows but labels have {labels.shape[0]}")
    if n < 2:
        return features.sum() * 0.0
    y = _as_2d(labels)
    if not torch.isfinite(y).all():
        raise ValueError("Rank-N-Contrast labels must be finite (map infinite bitrates to ranks first)")
    logits = -torch.cdist(features, features, p=2) / temperature  # (N, N)
    label_dist = torch.cdist(y, y, p=1)  # (N, N), float64 so that ties are exact
    off_diag = ~torch.eye(n, dtype=torch.bool, device=features.device)
    # candidates[i, j, k]: k is in S_ij
    candidates = (label_dist[:, None, :] >= label_dist[:, :, None]) & off_diag[:, None, :]
    masked = logits[:, None, :].masked_fill(~candidates, float("-inf"))  # (N, N, N)
    log_denominator = torch.logsumexp(masked, dim=-1)  # (N, N)
    log_prob = logits - log_denominator
    return -log_prob[off_diag].mean()


class RnCLoss(Loss):
    """Module form of :func:`rank_n_contrast`. Call with ``(features (N, D), labels (N,) or (N, K))``."""

    input_kind = Kind.EMBEDDING

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        return rank_n_contrast(features, labels, self.temperature)
