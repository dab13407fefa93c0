"""``fusion``: several encoders side by side, each time-pooled and L2-normalised, then concatenated (MMMOS).

What it returns under the encoder contract: **one layer holding one "frame" per clip**, the concatenation
of each member's clip vector: ``layers = [(B, 1, sum_i D_i)]``, ``lengths = ones(B)``, ``num_layers = 1``,
``output_dim = sum_i D_i``, ``frame_rate = 0.0`` (no time axis left). Any head that pools over time
(``rnc_embedding``, ``mean_pool``, ``weighted_sum_pool``) then sees exactly that vector.

Per member ``i`` (any registered encoder, any subset): the input is down-mixed and resampled to the
member's own rate (:func:`aqa.encoders.base.prepare`), every layer is time-averaged over the member's valid
frames, the layers are reduced to one vector (``layers: weighted`` -- a learned softmax weighting,
:class:`~aqa.encoders.base.LayerWeightedSum`, trainable even when the members are frozen --, ``mean`` or
``last``; one choice for all members or a list with one per member: MMMOS' published model weighs WavLM's
layers and takes the last layer of MuQ and M2D), and the vector is L2-normalised so that no member dominates
by scale.

Members arrive as complete encoder configs: the YAML names them (or overrides their files' keys) and
:func:`aqa.config.compose` resolves them, so this module never reads a config file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from aqa.encoders.base import EncoderOutput, LayerWeightedSum, masked_time_mean, prepare
from aqa.encoders.base import freeze as freeze_module

LAYER_REDUCTIONS = ("weighted", "mean", "last")


class FusionEncoder(nn.Module):
    """Concatenated, L2-normalised, time-pooled clip vectors of several encoders.

    Args:
        members: encoders following the contract (any rates, sizes and layer counts).
        names: one label per member (the registry names), kept for inspection.
        sample_rate: the rate the fusion's input arrives at (Hz); each member gets it resampled.
        layers: how each member's layers become one vector: ``weighted``, ``mean`` or ``last``, for all
            members or as a list with one entry per member.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        names: Sequence[str],
        sample_rate: int,
        layers: str | Sequence[str] = "weighted",
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
        self.frame_rate = 0.0  # one vector per clip, whatever its duration

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a batch of clips.

        Args:
            wav: (B, T) or (B, C, T) float at ``sample_rate`` Hz, right-padded.
            lengths: (B,) valid samples per clip, or None when all are valid.

        Returns:
            ``EncoderOutput(layers=[(B, 1, output_dim)], lengths=ones(B))``; the slice of member ``i`` has
            unit L2 norm.
        """
        vectors = []
        for i, member in enumerate(self.members):
            x, n = prepare(wav, self.sample_rate, member.sample_rate, lengths)
            out = member(x, n)
            pooled = [masked_time_mean(h, out.lengths) for h in out.layers]  # L x (B, D)
            if self.layer_reduction[i] == "weighted":
                vector = self.layer_weights[str(i)]([p[:, None, :] for p in pooled])[:, 0]
            elif self.layer_reduction[i] == "mean":
                vector = torch.stack(pooled).mean(dim=0)
            else:
                vector = pooled[-1]
            vectors.append(F.normalize(vector, dim=-1))
        fused = torch.cat(vectors, dim=-1)
        ones = torch.ones(fused.shape[0], dtype=torch.long, device=fused.device)
        return EncoderOutput(layers=[fused[:, None, :]], lengths=ones)


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
    encoders: Sequence[Mapping[str, Any]],
    sample_rate: int | None = None,
    layers: str | Sequence[str] = "weighted",
    freeze: bool | None = None,
    adapter: Mapping[str, Any] | None | str = "members",
    checkpoint: None = None,
) -> FusionEncoder:
    """Build a :class:`FusionEncoder` from member configs.

    Args:
        encoders: the members' complete encoder configs, each as :func:`aqa.encoders.build_encoder` takes it
            (``{name: wavlm_base_plus, checkpoint: ..., freeze: ..., adapter: ...}``). In a YAML a member is an
            encoder file name or a mapping with ``name`` overriding that file's keys; ``aqa.config.compose``
            resolves those into complete configs before anything is built.
        sample_rate: input rate in Hz; None takes the highest member rate.
        layers: layer reduction (``weighted``, ``mean``, ``last``) for all members, or a list, one per member.
        freeze: when not None, sets every member's ``freeze``; true also freezes the layer weights.
        adapter: ``"members"`` keeps each member's own adapter; None removes all adapters; a mapping is
            merged over each member's adapter (so ``{r: 4}`` keeps each family's ``target_modules``).
        checkpoint: must be None (members carry their own checkpoints).
    """
    from aqa.encoders import build_encoder  # the registry imports this module

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
        members.append(build_encoder(container))
        names.append(str(container["name"]))
    rate = int(sample_rate) if sample_rate is not None else max(int(m.sample_rate) for m in members)
    fusion = FusionEncoder(members, names, rate, layers)
    if freeze and fusion.layer_weights is not None:
        freeze_module(fusion.layer_weights)
    return fusion


__all__ = ["FusionEncoder", "LAYER_REDUCTIONS", "build_fusion"]
