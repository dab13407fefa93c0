"""HAAQI-Net's prediction head (Wisnu et al. 2025), following the authors' code (github dyahayumgw/HAAQI-Net,
``src/HAAQI_Net.py`` class ``HAAQINet`` and ``src/config.yaml``):

encoder layers -> per-layer LayerNorm + softmax-weighted sum -> Linear (768 -> 256) -> concatenate the raw
8-value audiogram (dB HL) to every frame -> BLSTM (100 per direction, 1 layer) -> Linear (200 -> 256), ReLU,
dropout 0.3 -> 16-head self-attention (256) -> Linear -> sigmoid frame HAAQI in [0, 1] -> mean over valid frames
= the clip's HAAQI.

The published model runs on one clip at a time; here padded batches are packed for the BLSTM and masked out of
the attention and the mean, so a clip scores the same alone or in a padded batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aqa.encoders.base import LayerWeightedSum, frame_mask
from aqa.heads.base import Head, Kind

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.3), "elu": nn.ELU, "sigmoid": nn.Sigmoid,
               "softplus": nn.Softplus}  # the published get_act_fn (src/HAAQI_Net.py:8-34)


class HaaqiNetHead(Head):
    """Frame- and utterance-level HAAQI from encoder layers and an audiogram.

    Defaults are the published ones (``src/config.yaml`` and ``src/HAAQI_Net.py``).

    Args:
        num_layers: encoder hidden states L.
        input_dim: encoder feature size D.
        audiogram_dim: values per audiogram (8 clarity frequencies).
        first_layer: first hidden state used; 1 skips the encoder's pre-transformer state (published: the 12
            BEATs transformer layer outputs, ``src/backbone.py:154``).
        feature_dim: size the weighted layers are projected to before the audiogram joins (``linear0``);
            None feeds the D-dim features directly.
        audiogram_scale: the audiogram is multiplied by this (published: 1, raw dB HL).
        audiogram_embed: None appends the (scaled) audiogram itself to every frame (published); an int first
            projects it with a Linear layer to this size.
        hidden: BLSTM hidden size per direction.
        lstm_layers: BLSTM layers.
        lstm_dropout: dropout between BLSTM layers (only with ``lstm_layers > 1``).
        attention_dim: size of the dense layer after the BLSTM and of the attention (``linear_output``).
        attention_heads: heads of the self-attention (must divide ``attention_dim``).
        activation: activation after that dense layer (relu, leaky_relu, elu, sigmoid, softplus).
        dropout: dropout after the activation.
        attention_dropout: dropout on the attention weights.
        condition_key: the batch condition holding the audiogram (``batch["conditions"][key]``, (B, 8)).
        score_range: ``[lo, hi]`` the sigmoid output is mapped to (HAAQI: [0, 1]; MOS fine-tuning: [1, 5]); the
            parameters are the same, so a HAAQI-trained head starts a MOS run at ``lo + (hi - lo) * HAAQI``.

    Call ``head(layers, lengths, audiogram=(B, audiogram_dim) dB HL)``; returns ``{"score": (B,),
    "frames": (B, F), "frame_mask": (B, F) bool}``, scores in ``score_range`` ([0, 1] by default).
    """

    output = Kind.FRAMES  # per-frame scores for frame-level losses (``frame_utterance``), and the clip score

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        audiogram_dim: int = 8,
        first_layer: int = 1,
        feature_dim: int | None = 256,
        audiogram_scale: float = 1.0,
        audiogram_embed: int | None = None,
        hidden: int = 100,
        lstm_layers: int = 1,
        lstm_dropout: float = 0.0,
        attention_dim: int = 256,
        attention_heads: int = 16,
        activation: str = "relu",
        dropout: float = 0.3,
        attention_dropout: float = 0.0,
        condition_key: str = "audiogram",
        score_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(condition_dims={condition_key: audiogram_dim})  # batch conditions it reads, and sizes
        if attention_dim % attention_heads:
            raise ValueError(f"attention_heads={attention_heads} must divide attention_dim={attention_dim}")
        if not 0 <= first_layer < num_layers:
            raise ValueError(f"first_layer={first_layer} leaves no layer of the encoder's {num_layers}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
        self.condition_key, self.audiogram_dim = condition_key, audiogram_dim
        self.first_layer, self.audiogram_scale = int(first_layer), float(audiogram_scale)
        # src/HAAQI_Net.py:84-91, 114-122: LayerNorm per layer, softmax weights starting equal
        self.layer_sum = LayerWeightedSum(num_layers - self.first_layer, input_dim, layer_norm=True)
        self.reduce = nn.Linear(input_dim, feature_dim) if feature_dim else nn.Identity()  # linear0, no activation
        self.audiogram = nn.Linear(audiogram_dim, audiogram_embed) if audiogram_embed else nn.Identity()
        lstm_in = (feature_dim or input_dim) + (audiogram_embed or audiogram_dim)
        self.blstm = nn.LSTM(lstm_in, hidden, num_layers=lstm_layers, dropout=lstm_dropout if lstm_layers > 1 else 0.0,
                             batch_first=True, bidirectional=True)
        # src/HAAQI_Net.py:75-80, 130-135: Linear -> act -> dropout -> MHA -> Linear -> sigmoid
        self.dense = nn.Linear(2 * hidden, attention_dim)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.attention = nn.MultiheadAttention(attention_dim, attention_heads, dropout=attention_dropout,
                                               batch_first=True)
        self.frame_out = nn.Linear(attention_dim, 1)
        lo, hi = (float(v) for v in score_range)
        if not hi > lo:
            raise ValueError(f"score_range must be [lo, hi] with hi > lo, got {list(score_range)}")
        self.score_lo, self.score_span = lo, hi - lo

    def forward(self, layers: list[Tensor], lengths: Tensor | None = None, **conditions: Tensor) -> dict[str, Tensor]:
        """Args: layers: L tensors (B, F, D); lengths: (B,) valid frames; ``audiogram`` (B, 8) in dB HL."""
        key = self.condition_key
        if key not in conditions:
            raise ValueError(f"HaaqiNetHead needs the {key!r} condition (add it to data.condition_keys)")
        audiogram = conditions[key]
        if audiogram.ndim != 2 or audiogram.shape[1] != self.audiogram_dim:
            raise ValueError(f"audiogram must be (B, {self.audiogram_dim}), got {tuple(audiogram.shape)}")
        x = self.reduce(self.layer_sum(list(layers)[self.first_layer:]))  # (B, F, 256)
        b, f, _ = x.shape
        mask = frame_mask(lengths, f, b, x.device)  # (B, F)
        a = self.audiogram(audiogram.to(x.dtype) * self.audiogram_scale)  # (B, 8): raw dB HL as published
        x = torch.cat([x, a[:, None, :].expand(b, f, a.shape[-1])], dim=-1)  # src/HAAQI_Net.py:125-127
        if lengths is None or bool(mask.all()):  # no padding: one plain cuDNN call, no sort, no host sync
            h, _ = self.blstm(x)
        else:
            lens = mask.sum(dim=1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
            h, _ = self.blstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=f)  # padding stays out
        h = self.dropout(self.activation(self.dense(h)))
        h, _ = self.attention(h, h, h, key_padding_mask=~mask, need_weights=False)
        frames = self.score_lo + self.score_span * torch.sigmoid(self.frame_out(h)).squeeze(-1)  # (B, F)
        m = mask.to(frames.dtype)
        score = (frames * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)  # AdaptiveAvgPool1d(1) over valid frames
        return {"score": score, "frames": frames, "frame_mask": mask}
