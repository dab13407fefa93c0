"""Heads that pool encoder layers over time."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aqa.encoders.base import LayerWeightedSum, masked_time_mean
from aqa.heads.base import Head, Kind


class RnCEmbeddingHead(Head):
    """DeePAQ's embedding head: time-mean of every hidden state, concatenated, ReLU, Linear.

    For MERT-v1-95M this maps 13 layers x 768 dims = 9984 features to a 256-dim quality embedding.

    Args:
        num_layers: number of encoder hidden states L.
        input_dim: encoder feature size D.
        dim: embedding size.
    """

    output = Kind.EMBEDDING

    def __init__(self, num_layers: int, input_dim: int, dim: int = 256) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.proj = nn.Linear(num_layers * input_dim, dim)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None) -> Tensor:
        """Args: layers: L tensors of (B, F, D); lengths: (B,) valid frames. Returns (B, dim)."""
        if len(layers) != self.num_layers:
            raise ValueError(f"head expects {self.num_layers} encoder layers, got {len(layers)}")
        pooled = torch.cat([masked_time_mean(h, lengths) for h in layers], dim=-1)  # (B, L*D)
        return self.proj(torch.relu(pooled))


class MeanPoolHead(Head):
    """Regression head: time-mean of the last hidden state, then a linear layer to ``out_dim`` scores."""

    output = Kind.SCORE

    def __init__(self, num_layers: int, input_dim: int, out_dim: int = 1) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, out_dim)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None) -> Tensor:
        """Args: layers: L tensors of (B, F, D); lengths: (B,). Returns (B,) if out_dim == 1 else (B, out_dim)."""
        out = self.proj(masked_time_mean(layers[-1], lengths))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


class WeightedSumPoolHead(Head):
    """Regression head over all layers: learned softmax layer weights (optional per-layer LayerNorm, as in
    HAAQI-Net), time-mean over valid frames, then a linear layer to ``out_dim`` scores (the SUPERB recipe).

    Args:
        num_layers: number of encoder hidden states L.
        input_dim: encoder feature size D.
        out_dim: number of scores.
        layer_norm: LayerNorm each layer before weighting.
    """

    output = Kind.SCORE

    def __init__(self, num_layers: int, input_dim: int, out_dim: int = 1, layer_norm: bool = False) -> None:
        super().__init__()
        self.layer_sum = LayerWeightedSum(num_layers, input_dim, layer_norm=layer_norm)
        self.proj = nn.Linear(input_dim, out_dim)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None) -> Tensor:
        """Args: layers: L tensors of (B, F, D); lengths: (B,). Returns (B,) if out_dim == 1 else (B, out_dim)."""
        out = self.proj(masked_time_mean(self.layer_sum(layers), lengths))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


class MLPHead(Head):
    """MMMOS's MLP aggregation: layer-weighted features, time-mean over valid frames, then a two-layer MLP.

    With the ``fusion`` encoder the single "layer" is already the time-pooled concatenation of its members.

    Args:
        num_layers: encoder hidden states L (combined by learned softmax weights).
        input_dim: encoder feature size D.
        hidden: MLP hidden size; ``None`` or 0 for a single linear layer (MMMOS' published setting).
        out_dim: number of scores.
        dropout: dropout before each linear layer.
        bias_init: initial output bias: the middle of the rating scale (3 for MOS 1..5, 5.5 for 1..10), so
            training starts at plausible scores instead of spending its first steps finding the offset.
    """

    output = Kind.SCORE

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        hidden: int | None = 256,
        out_dim: int = 1,
        dropout: float = 0.1,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.layer_sum = LayerWeightedSum(num_layers, input_dim)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden or input_dim, out_dim))
        nn.init.constant_(self.mlp[-1].bias, bias_init)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None) -> Tensor:
        """Args: layers: L tensors of (B, F, D); lengths: (B,). Returns (B,) if out_dim == 1 else (B, out_dim)."""
        out = self.mlp(masked_time_mean(self.layer_sum(layers), lengths))
        return out.squeeze(-1) if out.shape[-1] == 1 else out
