"""HAAQI-Net's prediction head (Wisnu et al. 2025): layer-weighted encoder features + audiogram -> BLSTM ->
multi-head self-attention -> per-frame HAAQI in [0, 1], averaged over valid frames into the clip's HAAQI.

The audiogram (8 hearing thresholds in dB HL at 250..8000 Hz) is scaled to about unit range (/100),
projected by a linear layer and appended to every frame, so the sequence model sees the listener with
each frame. The encoder layers are combined by a :class:`~aqa.encoders.base.LayerWeightedSum` with
per-layer LayerNorm, as in the paper's BEATs front end.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aqa.heads.pooling import frame_mask


class HaaqiNetHead(nn.Module):
    """Frame- and utterance-level HAAQI from encoder layers and an audiogram.

    Args:
        num_layers: encoder hidden states L.
        input_dim: encoder feature size D.
        audiogram_dim: values per audiogram (8 clarity frequencies).
        audiogram_embed: size of the projected audiogram appended to each frame.
        hidden: BLSTM hidden size per direction (the attention works on ``2 * hidden``).
        attention_heads: heads of the self-attention (must divide ``2 * hidden``).
        dropout: dropout after the BLSTM and inside the attention.
        condition_key: the batch condition holding the audiogram (``batch["conditions"][key]``, (B, 8)).

    Call ``head(layers, lengths, audiogram=(B, audiogram_dim) dB HL)``; returns ``{"score": (B,),
    "frames": (B, F), "frame_mask": (B, F) bool}``, scores in [0, 1].
    """

    is_embedding = False
    frame_scores = True  # returns per-frame scores for frame-level losses (``frame_utterance``)

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        audiogram_dim: int = 8,
        audiogram_embed: int = 32,
        hidden: int = 128,
        attention_heads: int = 4,
        dropout: float = 0.1,
        condition_key: str = "audiogram",
    ) -> None:
        super().__init__()
        from aqa.encoders.base import LayerWeightedSum

        if (2 * hidden) % attention_heads:
            raise ValueError(f"attention_heads={attention_heads} must divide 2 * hidden = {2 * hidden}")
        self.condition_dims = {condition_key: audiogram_dim}  # batch conditions this head reads, and their sizes
        self.condition_key, self.audiogram_dim = condition_key, audiogram_dim
        self.layer_sum = LayerWeightedSum(num_layers, input_dim, layer_norm=True)
        self.audiogram = nn.Linear(audiogram_dim, audiogram_embed)
        self.blstm = nn.LSTM(input_dim + audiogram_embed, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.attention = nn.MultiheadAttention(2 * hidden, attention_heads, dropout=dropout, batch_first=True)
        self.frame_out = nn.Linear(2 * hidden, 1)

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None, **conditions: Tensor) -> dict[str, Tensor]:
        """Args: layers: L tensors (B, F, D); lengths: (B,) valid frames; ``audiogram`` (B, 8) in dB HL."""
        key = self.condition_key
        if key not in conditions:
            raise ValueError(f"HaaqiNetHead needs the {key!r} condition (add it to data.condition_keys)")
        audiogram = conditions[key]
        if audiogram.ndim != 2 or audiogram.shape[1] != self.audiogram_dim:
            raise ValueError(f"audiogram must be (B, {self.audiogram_dim}), got {tuple(audiogram.shape)}")
        x = self.layer_sum(layers)  # (B, F, D)
        b, f, _ = x.shape
        mask = frame_mask(lengths, f, b, x.device)  # (B, F)
        a = self.audiogram(audiogram.to(x.dtype) / 100.0)  # (B, E)
        x = torch.cat([x, a[:, None, :].expand(b, f, a.shape[-1])], dim=-1)
        lens = mask.sum(dim=1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        h, _ = self.blstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=f)  # padding stays out
        h = self.dropout(h)
        h, _ = self.attention(h, h, h, key_padding_mask=~mask, need_weights=False)
        frames = torch.sigmoid(self.frame_out(h)).squeeze(-1)  # (B, F)
        m = mask.to(frames.dtype)
        score = (frames * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return {"score": score, "frames": frames, "frame_mask": mask}
