"""MMMOS's two BLSTM aggregations (Lin, Chen, Lee 2025, §III-B), beside its MLP aggregation (``mlp``):

- ``blstm_h``, hidden-state aggregation: "mean-pool the features across time first, then feed it into a
  single-layer BLSTM and project the BLSTM's final hidden state to per-axis scores";
- ``blstm_t``, time-pooled aggregation: "feed the concatenated frame-level sequence directly into BLSTM,
  mean-pool its outputs over time, and map to per-axis scores via MLP".

What each reads from the ``fusion`` encoder: ``blstm_h`` its default time-pooled vector (``pool: true``,
``(B, 1, sum of dims)``); ``blstm_t`` the members' frame sequences on one time grid, concatenated per frame
(``pool: false``). With any other encoder they read its layers, combined by learned softmax weights.

Axes are tasks: ``tasks: {pq: {head: {name: blstm_h}, label: pq, ...}, pc: {...}, ...}`` gives any number of
named axes, each a task with its own label, loss, validation SRCC and score in ``aqa score``. Each task builds
its own head, so each axis has its own BLSTM where the paper shares one BLSTM between the four axis MLPs (the
MLP aggregation loses nothing: its shared part, the pooled vector, is the encoder's output).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aqa.encoders.base import LayerWeightedSum, frame_mask, masked_time_mean
from aqa.heads.base import Head, Kind


def score_mlp(input_dim: int, hidden: int | None, out_dim: int, dropout: float, bias_init: float) -> nn.Sequential:
    """Dropout, [Linear-ReLU-Dropout,] Linear to ``out_dim`` scores, the output bias set to ``bias_init``."""
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    if hidden:
        layers += [nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
    mlp = nn.Sequential(*layers, nn.Linear(hidden or input_dim, out_dim))
    nn.init.constant_(mlp[-1].bias, bias_init)
    return mlp


class _BLSTMHead(Head):
    """Shared parts: layer weights, a single-layer BLSTM and the score MLP on its ``2 * hidden`` outputs."""

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        lstm_input: int,
        hidden: int,
        mlp_hidden: int | None,
        out_dim: int,
        dropout: float,
        bias_init: float,
    ) -> None:
        super().__init__()
        self.layer_sum = LayerWeightedSum(num_layers, input_dim)
        self.blstm = nn.LSTM(lstm_input, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.mlp = score_mlp(2 * hidden, mlp_hidden, out_dim, dropout, bias_init)

    def _scores(self, embedding: Tensor) -> Tensor:
        out = self.mlp(embedding)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


class BLSTMHiddenHead(_BLSTMHead):
    """MMMOS' BLSTM(h): time-mean over valid frames, the pooled vector into a single-layer BLSTM, its final hidden
    state (forward and backward, concatenated) projected to the score.

    The paper feeds the pooled vector itself to the BLSTM, a sequence of one step (``steps: 1``); ``steps: S``
    reads it as S equal chunks instead, a sequence over the feature dimension (S = D: one value per step).

    Args:
        num_layers: encoder hidden states L (combined by learned softmax weights; the fusion gives one).
        input_dim: encoder feature size D.
        hidden: BLSTM size per direction (not given in the paper).
        steps: sequence length the pooled vector is split into; must divide ``input_dim``.
        mlp_hidden: hidden size of the MLP on the final hidden state; None or 0: one linear projection (the
            paper's "project").
        out_dim: number of scores.
        dropout: dropout before each linear layer.
        bias_init: initial output bias, the middle of the rating scale (5.5 for 1..10).
    """

    output = Kind.SCORE

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        hidden: int = 256,
        steps: int = 1,
        mlp_hidden: int | None = None,
        out_dim: int = 1,
        dropout: float = 0.0,
        bias_init: float = 0.0,
    ) -> None:
        if steps < 1 or input_dim % steps:
            raise ValueError(f"blstm_h steps={steps} must be >= 1 and divide the feature size {input_dim}")
        super().__init__(num_layers, input_dim, input_dim // steps, hidden, mlp_hidden, out_dim, dropout, bias_init)
        self.steps = int(steps)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None) -> Tensor:
        """Args: layers: L tensors of (B, F, D); lengths: (B,) valid frames. Returns (B,) or (B, out_dim)."""
        pooled = masked_time_mean(self.layer_sum(layers), lengths)  # (B, D)
        _, (h, _) = self.blstm(pooled.reshape(pooled.shape[0], self.steps, -1))  # h: (2, B, hidden)
        return self._scores(torch.cat([h[0], h[1]], dim=-1))


class BLSTMTimeHead(_BLSTMHead):
    """MMMOS' BLSTM(t): the frame sequence into a single-layer BLSTM, its outputs mean-pooled over the valid
    frames, then an MLP to the score. Padding frames are packed out, so they never reach a valid frame.

    Args:
        num_layers: encoder hidden states L (combined by learned softmax weights; the fusion gives one).
        input_dim: encoder feature size D (the fusion with ``pool: false``: the members' dims summed).
        hidden: BLSTM size per direction (not given in the paper).
        mlp_hidden: hidden size of the MLP; None or 0: one linear layer (the released MLP, ``proj_num_layer 1``).
        out_dim: number of scores.
        dropout: dropout before each linear layer.
        bias_init: initial output bias, the middle of the rating scale (5.5 for 1..10).
    """

    output = Kind.SCORE

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        hidden: int = 256,
        mlp_hidden: int | None = None,
        out_dim: int = 1,
        dropout: float = 0.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__(num_layers, input_dim, input_dim, hidden, mlp_hidden, out_dim, dropout, bias_init)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None) -> Tensor:
        """Args: layers: L tensors of (B, F, D); lengths: (B,) valid frames. Returns (B,) or (B, out_dim)."""
        x = self.layer_sum(layers)  # (B, F, D)
        b, f, _ = x.shape
        mask = frame_mask(lengths, f, b, x.device)
        if lengths is None or bool(mask.all()):  # no padding: one plain (cuDNN) call, no host sync
            h, _ = self.blstm(x)
        else:
            lens = mask.sum(dim=1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
            h, _ = self.blstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=f)
        return self._scores(masked_time_mean(h, mask.sum(dim=1)))


__all__ = ["BLSTMHiddenHead", "BLSTMTimeHead", "score_mlp"]
