"""MMMOS's two BLSTM aggregations (Lin, Chen, Lee 2025, §III-B), beside its MLP aggregation (``mlp``):

- ``blstm_h``, hidden-state aggregation: "mean-pool the features across time first, then feed it into a
  single-layer BLSTM and project the BLSTM's final hidden state to per-axis scores";
- ``blstm_t``, time-pooled aggregation: "feed the concatenated frame-level sequence directly into BLSTM,
  mean-pool its outputs over time, and map to per-axis scores via MLP".

What each reads from the ``fusion`` encoder: ``blstm_h`` its default time-pooled vector (``pool: true``,
``(B, 1, sum of dims)``); ``blstm_t`` the members' frame sequences on one time grid, concatenated per frame
(``pool: false``). With any other encoder they read its layers, combined by learned softmax weights.

Axes are tasks: ``tasks: {pq: {head: {name: blstm_h}, label: pq, ...}, pc: {...}, ...}`` gives any number of
named axes, each a task with its own label, loss, validation SRCC and score in ``aqa score``; each task's head
then holds its own BLSTM. The paper shares ONE BLSTM between the four axes' MLPs (§III-B: "the resulting
embedding is passed to four independent MLPs"): that is a *trunk*, ``trunk: {name: blstm_h}`` at the
experiment level (:data:`aqa.heads.TRUNKS`), registered once in the module (``trunks.shared.*`` in a
checkpoint) and run once per batch, whose output every task's ``mlp`` head reads as its one "layer" (BLSTM(h):
the final hidden state, one frame; BLSTM(t): the BLSTM's outputs, every valid frame, mean-pooled by the head).
``trunk.shared: false`` gives each task its own trunk instead (``trunks.TASK.*``), the per-axis variant.
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


def hidden_state(layer_sum: LayerWeightedSum, blstm: nn.LSTM, steps: int, layers: list[Tensor],
                 lengths: Tensor | None) -> Tensor:
    """BLSTM(h)'s embedding: the time-mean of the weighted layers over valid frames, read as ``steps`` equal
    chunks by the BLSTM, its final hidden state (both directions concatenated). Returns (B, 2 * hidden)."""
    pooled = masked_time_mean(layer_sum(layers), lengths)  # (B, D)
    _, (h, _) = blstm(pooled.reshape(pooled.shape[0], steps, -1))  # h: (2, B, hidden)
    return torch.cat([h[0], h[1]], dim=-1)


def time_outputs(layer_sum: LayerWeightedSum, blstm: nn.LSTM, layers: list[Tensor],
                 lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """BLSTM(t)'s sequence: the weighted layers' frames through the BLSTM, padding packed out. Returns the
    outputs (B, F, 2 * hidden) and the valid frames per clip (B,) long."""
    x = layer_sum(layers)  # (B, F, D)
    b, f, _ = x.shape
    mask = frame_mask(lengths, f, b, x.device)
    if lengths is None or bool(mask.all()):  # no padding: one plain (cuDNN) call, no host sync
        h, _ = blstm(x)
    else:
        lens = mask.sum(dim=1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        h, _ = blstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=f)
    return h, mask.sum(dim=1)


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
        return self._scores(hidden_state(self.layer_sum, self.blstm, self.steps, layers, lengths))


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
        h, valid = time_outputs(self.layer_sum, self.blstm, layers, lengths)
        return self._scores(masked_time_mean(h, valid))


class _BLSTMTrunk(nn.Module):
    """The part of a BLSTM aggregation that MMMOS' four axes share: layer weights and one single-layer BLSTM.
    Called like a head, ``trunk(layers, lengths)``, it returns what a head reads, ``(layers, lengths)``: one
    (B, F', 2 * hidden) "layer" and its valid frames. Exposes ``num_layers`` (1) and ``output_dim``
    (``2 * hidden``), the shape the heads are built for."""

    num_layers = 1

    def __init__(self, num_layers: int, input_dim: int, lstm_input: int, hidden: int) -> None:
        super().__init__()
        self.layer_sum = LayerWeightedSum(num_layers, input_dim)
        self.blstm = nn.LSTM(lstm_input, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.output_dim = 2 * int(hidden)


class BLSTMHiddenTrunk(_BLSTMTrunk):
    """BLSTM(h) shared by the axes: :func:`hidden_state` as one frame, (B, 1, 2 * hidden), lengths all 1; each
    axis's ``mlp`` head (``hidden: null``: one linear layer) projects it to its score, as ``blstm_h`` does.

    Args: num_layers, input_dim: the encoder's shape; hidden: BLSTM size per direction; steps: chunks of the
    pooled vector (must divide ``input_dim``), as :class:`BLSTMHiddenHead`.
    """

    def __init__(self, num_layers: int, input_dim: int, hidden: int = 256, steps: int = 1) -> None:
        if steps < 1 or input_dim % steps:
            raise ValueError(f"trunk blstm_h steps={steps} must be >= 1 and divide the feature size {input_dim}")
        super().__init__(num_layers, input_dim, input_dim // steps, hidden)
        self.steps = int(steps)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """Args: layers: L tensors of (B, F, D); lengths: (B,). Returns ([(B, 1, 2 * hidden)], (B,) ones)."""
        h = hidden_state(self.layer_sum, self.blstm, self.steps, layers, lengths)
        return [h[:, None, :]], torch.ones(h.shape[0], dtype=torch.long, device=h.device)


class BLSTMTimeTrunk(_BLSTMTrunk):
    """BLSTM(t) shared by the axes: :func:`time_outputs`, (B, F, 2 * hidden) with the valid frames; each axis's
    ``mlp`` head mean-pools them over the valid frames and maps them to its score, as ``blstm_t`` does.

    Args: num_layers, input_dim: the encoder's shape (the fusion with ``pool: false``); hidden: BLSTM size per
    direction.
    """

    def __init__(self, num_layers: int, input_dim: int, hidden: int = 256) -> None:
        super().__init__(num_layers, input_dim, input_dim, hidden)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """Args: layers: L tensors of (B, F, D); lengths: (B,). Returns ([(B, F, 2 * hidden)], (B,) frames)."""
        h, valid = time_outputs(self.layer_sum, self.blstm, layers, lengths)
        return [h], valid


__all__ = ["BLSTMHiddenHead", "BLSTMHiddenTrunk", "BLSTMTimeHead", "BLSTMTimeTrunk", "hidden_state", "score_mlp",
           "time_outputs"]
