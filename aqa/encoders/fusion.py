"""``fusion``: several encoders side by side, each L2-normalised, concatenated (MMMOS, Lin et al. 2025, §III-A).

What it returns under the encoder contract, by ``pool``:

- ``pool: true`` (MMMOS' MLP and BLSTM(h) aggregations): **one layer holding one "frame" per clip**, the
  concatenation of each member's time-pooled clip vector: ``layers = [(B, 1, sum_i D_i)]``,
  ``lengths = ones(B)``, ``frame_rate = 0.0`` (no time axis left). Any head that pools over time then sees
  exactly that vector.
- ``pool: false`` (MMMOS' BLSTM(t), "the concatenated frame-level sequence"): one layer of frames,
  ``layers = [(B, F, sum_i D_i)]``: every member's frames are linearly interpolated, clip by clip over its valid
  frames, onto the grid of the member with the highest frame rate (``frame_rate``), and concatenated per frame;
  ``lengths`` are that member's valid frames.

Either way ``num_layers = 1`` and ``output_dim = sum_i D_i``.

Per member ``i`` (any registered encoder, any subset): the input is down-mixed and resampled to the
member's own rate (:func:`aqa.encoders.base.prepare`; ``sample_rate: 16000`` band-limits every member to 8 kHz,
as MMMOS resamples all audio to 16 kHz before feature extraction), the layers are reduced to one (``layers:
weighted`` -- a learned softmax weighting, :class:`~aqa.encoders.base.LayerWeightedSum` --, ``mean`` or
``last``; one choice for all members or a list with one per member: MMMOS' published model weighs WavLM's
layers and takes the last layer of MuQ and M2D), time-averaged over the member's valid frames (``pool: true``),
and L2-normalised (the clip vector, or each frame) so that no member dominates by scale.

``freeze: true`` freezes the members only: the layer weights belong to the fusion and stay trainable, as in
MMMOS' released model (its WavLM layer weights train while WavLM itself runs without gradients).

Members arrive as complete encoder configs: the YAML names them (or overrides their files' keys) and
:func:`aqa.config.compose` resolves them, so this module never reads a config file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from aqa.encoders.base import EncoderOutput, LayerWeightedSum, masked_time_mean, prepare

LAYER_REDUCTIONS = ("weighted", "mean", "last")


class FusionEncoder(nn.Module):
    """Concatenated, L2-normalised features of several encoders: time-pooled clip vectors, or frames.

    Args:
        members: encoders following the contract (any rates, sizes and layer counts).
        names: one label per member (the registry names), kept for inspection.
        sample_rate: the rate the fusion's input arrives at (Hz); each member gets it resampled.
        layers: how each member's layers become one: ``weighted``, ``mean`` or ``last``, for all
            members or as a list with one entry per member.
        pool: True: one time-pooled vector per clip; False: frames on the fastest member's frame grid.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        names: Sequence[str],
        sample_rate: int,
        layers: str | Sequence[str] = "weighted",
        pool: bool = True,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("fusion needs at least one encoder")
        per_member = [layers] * len(members) if isinstance(layers, str) else list(layers)
        if len(per_member) != len(members) or any(r not in LAYER_REDUCTIONS for r in per_member):
            raise ValueError(
                f"fusion layers={layers!r}: one of {list(LAYER_REDUCTIONS)}, or a list of them with one entry per "
                f"member ({len(members)})"
            )
        self.members = nn.ModuleList(members)
        self.names = list(names)
        self.layer_reduction = per_member
        weighted = {str(i): LayerWeightedSum(m.num_layers, m.output_dim) for i, m in enumerate(members)
                    if per_member[i] == "weighted"}
        self.layer_weights = nn.ModuleDict(weighted) if weighted else None
        self.sample_rate = int(sample_rate)
        self.dims = [int(m.output_dim) for m in members]
        self.output_dim = sum(self.dims)
        self.num_layers = 1
        self.pool = bool(pool)
        self.grid = max(range(len(members)), key=lambda i: float(members[i].frame_rate))  # the fastest member
        # pooled: one vector per clip, whatever its duration; frames: the fastest member's grid
        self.frame_rate = float(members[self.grid].frame_rate) if not self.pool else 0.0

    def _reduce(self, i: int, layers: Sequence[Tensor]) -> Tensor:
        # member i's layers (L x (B, F, D)) -> one (B, F, D)
        if self.layer_reduction[i] == "weighted":
            return self.layer_weights[str(i)](layers)
        if self.layer_reduction[i] == "mean":
            return torch.stack(list(layers)).mean(dim=0)
        return layers[-1]

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a batch of clips.

        Args:
            wav: (B, T) or (B, C, T) float at ``sample_rate`` Hz, right-padded.
            lengths: (B,) valid samples per clip, or None when all are valid.

        Returns:
            ``pool``: ``EncoderOutput(layers=[(B, 1, output_dim)], lengths=ones(B))``; otherwise
            ``EncoderOutput(layers=[(B, F, output_dim)], lengths=(B,) valid frames)`` with zero padding frames.
            The slice of member ``i`` (of every valid frame) has unit L2 norm.
        """
        outputs = []
        for member in self.members:
            x, n = prepare(wav, self.sample_rate, member.sample_rate, lengths)
            outputs.append(member(x, n))
        if not self.pool:
            return self._frames(outputs)
        vectors = []
        for i, out in enumerate(outputs):
            pooled = [masked_time_mean(h, out.lengths)[:, None, :] for h in out.layers]  # L x (B, 1, D)
            vectors.append(F.normalize(self._reduce(i, pooled)[:, 0], dim=-1))
        fused = torch.cat(vectors, dim=-1)
        ones = torch.ones(fused.shape[0], dtype=torch.long, device=fused.device)
        return EncoderOutput(layers=[fused[:, None, :]], lengths=ones)

    def _frames(self, outputs: Sequence[EncoderOutput]) -> EncoderOutput:
        # every member's valid frames interpolated onto the fastest member's valid frames, clip by clip
        target = outputs[self.grid].lengths.clamp_min(1)
        frames = int(target.max())
        parts = []
        for i, out in enumerate(outputs):
            seq = self._reduce(i, out.layers)  # (B, F_i, D_i)
            if i == self.grid:
                parts.append(F.normalize(seq[:, :frames], dim=-1))
                continue
            have = out.lengths.clamp(1, seq.shape[1])
            rows = []
            for b in range(seq.shape[0]):
                clip = seq[b, : int(have[b])].transpose(0, 1)[None]  # (1, D_i, n_i)
                clip = F.interpolate(clip, size=int(target[b]), mode="linear", align_corners=False)[0].T
                rows.append(F.pad(clip, (0, 0, 0, frames - clip.shape[0])))
            parts.append(F.normalize(torch.stack(rows), dim=-1))
        fused = torch.cat(parts, dim=-1)
        valid = torch.arange(frames, device=fused.device)[None, :] < target[:, None]
        return EncoderOutput(layers=[fused * valid[..., None].to(fused.dtype)], lengths=target)


def _member_config(entry: Any) -> DictConfig:
    # Members arrive complete: aqa.config.compose (or aqa.config.resolve_encoder) reads each member's YAML.
    if not isinstance(entry, Mapping) or "name" not in entry:
        hint = (
            " (a name is resolved to its configs/encoder/ YAML by aqa.config.compose or aqa.config.resolve_encoder; "
            "build the fusion from such a config)"
            if isinstance(entry, str) else ""
        )
        raise ValueError(f"a fusion member must be a complete encoder config with `name`, got {entry!r}{hint}")
    cfg = OmegaConf.create(dict(entry))
    assert isinstance(cfg, DictConfig)
    return cfg


def build_fusion(
    build_member: Callable[[Mapping[str, Any]], nn.Module],
    encoders: Sequence[Mapping[str, Any]],
    sample_rate: int | None = None,
    layers: str | Sequence[str] = "weighted",
    freeze: bool | None = None,
    adapter: Mapping[str, Any] | None | str = "members",
    checkpoint: None = None,
    pool: bool = True,
) -> FusionEncoder:
    """Build a :class:`FusionEncoder` from member configs.

    Args:
        build_member: builds one member from its complete config (the registry passes
            :func:`aqa.encoders.build_encoder`, which registers this function as ``fusion``).
        encoders: the members' complete encoder configs, each as ``build_member`` takes it
            (``{name: wavlm_base_plus, checkpoint: ..., freeze: ..., adapter: ...}``). In a YAML a member is an
            encoder file name or a mapping with ``name`` overriding that file's keys; ``aqa.config.compose``
            resolves those into complete configs before anything is built.
        sample_rate: input rate in Hz; None takes the highest member rate.
        layers: layer reduction (``weighted``, ``mean``, ``last``) for all members, or a list, one per member.
        freeze: when not None, sets every member's ``freeze``; the fusion's own layer weights stay trainable.
        adapter: ``"members"`` keeps each member's own adapter; None removes all adapters; a mapping is
            merged over each member's adapter (so ``{r: 4}`` keeps each family's ``target_modules``).
        checkpoint: must be None (members carry their own checkpoints).
        pool: True: time-pooled clip vectors (MLP, BLSTM(h)); False: frames on one grid (BLSTM(t)).
    """
    if checkpoint is not None:
        raise ValueError("fusion has no checkpoint of its own; set encoder.encoders[i].checkpoint")
    if isinstance(encoders, str | Mapping):
        raise ValueError(f"fusion `encoders` must be a list of encoder names or configs, got {encoders!r}")
    members, names = [], []
    for entry in encoders:
        cfg = _member_config(entry)
        if freeze is not None:
            cfg.freeze = bool(freeze)
        if adapter != "members":
            if adapter is None or cfg.get("adapter") is None:
                cfg.adapter = None if adapter is None else dict(adapter)
            else:
                cfg.adapter = OmegaConf.merge(cfg.adapter, dict(adapter))
        container = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(container, dict)
        members.append(build_member(container))
        names.append(str(container["name"]))
    rate = int(sample_rate) if sample_rate is not None else max(int(m.sample_rate) for m in members)
    return FusionEncoder(members, names, rate, layers, pool)


__all__ = ["FusionEncoder", "LAYER_REDUCTIONS", "build_fusion"]
