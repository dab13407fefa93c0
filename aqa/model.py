"""The scoring model: what an experiment config describes for scoring, and nothing of training.

:func:`build_model` builds the encoder, the trunks, one head per task and the label scales of z-scored tasks
(:class:`QualityModel`, a plain ``nn.Module``): no loss, optimizer, scheduler or distillation teacher, and no
Lightning. Training wraps it (:class:`aqa.tasks.multitask.MultiTaskModule` registers its parts under the same
names, so a checkpoint's ``encoder.*``, ``trunks.*``, ``heads.*`` and ``label_scales.*`` weights are the model's);
scoring (``aqa.load``, ``aqa score``, export, ensembles) builds it alone and loads those weights into it
(:func:`load_model`, :func:`load_weights`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from aqa.config import ConfigError, load_config, validate
from aqa.encoders import build_encoder
from aqa.heads import NORMALIZATIONS, Head, LabelScale, build_head, build_trunk

COMPOSITE = "composite"  # the pseudo-task of several tasks' mean score and mean label per clip (MMMOS §V-A)
SHARED_TRUNK = "shared"  # the key of the one trunk every task reads (`trunk.shared: true`)


class QualityModel(nn.Module):
    """Shared encoder -> trunks -> one head per task -> label scale (z-scored tasks).

    Args:
        encoder: an ``aqa.encoders`` module: ``encoder(wav (B, T), lengths (B,)) -> EncoderOutput``.
        heads: task name -> head (``aqa.heads``).
        trunks: modules between the encoder and the heads (``aqa.heads.TRUNKS``, e.g. MMMOS' BLSTM shared by
            the four axes): ``{"shared": trunk}`` is read by every task's head, ``{task: trunk}`` by that task's
            only; each runs once per batch and is saved once (``trunks.KEY.*``).
        normalize: task name -> ``tasks.X.normalize`` (``zscore`` or None). A z-scored task's head learns
            z-scored labels; its :class:`~aqa.heads.scale.LabelScale` (buffers ``label_scales.TASK.*``, set by
            training) maps the head's output back to the label scale.
    """

    def __init__(
        self,
        encoder: nn.Module,
        heads: Mapping[str, Head],
        trunks: Mapping[str, nn.Module] | None = None,
        normalize: Mapping[str, str | None] | None = None,
    ) -> None:
        super().__init__()
        normalize = dict(normalize or {})
        for name, how in normalize.items():
            if how not in (None, *NORMALIZATIONS):
                raise ConfigError(f"tasks.{name}.normalize={how!r}: choose from {[*NORMALIZATIONS, None]}")
            if how and heads[name].is_embedding:
                raise ConfigError(f"tasks.{name}.normalize={how}: {type(heads[name]).__name__} gives embeddings, "
                                  "not scores on the label's scale; only score tasks can be normalised "
                                  f"(tasks.{name}.normalize=null)")
        self.encoder = encoder
        self.trunks = nn.ModuleDict(dict(trunks or {}))
        self.heads = nn.ModuleDict(dict(heads))
        # z-scored tasks: the training labels' mean and std (buffers: saved with the weights); forward maps to labels
        self.label_scales = nn.ModuleDict({name: LabelScale() for name in heads if normalize.get(name)})

    def forward(
        self, wav: Tensor, lengths: Tensor | None = None, conditions: Mapping[str, Tensor] | None = None
    ) -> dict[str, Any]:
        """Args: wav (B, T) at ``encoder.sample_rate``; lengths (B,) samples; conditions: key -> (B, K)
        inputs for heads that name them in ``condition_dims`` (e.g. an audiogram). Returns task -> head output.
        """
        return self.encode_and_score(wav, lengths, conditions)[1]

    def encode_and_score(
        self, wav: Tensor, lengths: Tensor | None, conditions: Mapping[str, Tensor] | None
    ) -> tuple[Any, dict[str, Any]]:
        """The encoder's output (hidden states and frame lengths) and every head's output (label scale)."""
        out = self.encoder(wav, lengths)
        conditions = conditions or {}
        trunk_out = {key: trunk(out.layers, out.lengths) for key, trunk in self.trunks.items()}
        outputs = {}
        for name, head in self.heads.items():
            layers, frames = trunk_out.get(SHARED_TRUNK) or trunk_out.get(name) or (out.layers, out.lengths)
            keys = list(head.condition_dims)
            missing = [k for k in keys if k not in conditions]
            if missing:
                raise ValueError(
                    f"head of task {name!r} needs conditions {missing}; add them to data.condition_keys"
                )
            pred = head(layers, frames, **{k: conditions[k] for k in keys})
            outputs[name] = self.label_scales[name](pred) if name in self.label_scales else pred
        return out, outputs


def build_model(cfg: DictConfig | Mapping[str, Any]) -> QualityModel:
    """The encoder, trunks, heads and label scales an experiment config describes (random or pretrained
    encoder weights as ``encoder.checkpoint`` says; heads freshly initialised; label scales 0 and 1)."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(container, dict)
    encoder = build_encoder(container["encoder"])
    trunk, trunks = container.get("trunk"), {}
    dims = {"num_layers": encoder.num_layers, "input_dim": encoder.output_dim}
    if trunk:  # one trunk every task's head reads, or (shared: false) one per task
        keys = [SHARED_TRUNK] if trunk.get("shared", True) else list(container["tasks"])
        trunks = {key: build_trunk(trunk, **dims) for key in keys}
        dims = {"num_layers": trunks[keys[0]].num_layers, "input_dim": trunks[keys[0]].output_dim}
    tasks = container["tasks"]
    heads = {name: build_head(t["head"], **dims) for name, t in tasks.items()}
    return QualityModel(encoder, heads, trunks, {name: t.get("normalize") for name, t in tasks.items()})


def model_weights(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The weights of ``state`` (a training checkpoint's ``state_dict`` or an export) that belong to ``model``'s
    parts (``encoder.*``, ``trunks.*``, ``heads.*``, ``label_scales.*``); training-only parts (losses,
    distillation projections) are left out."""
    parts = {name for name, _ in model.named_children()}
    return {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}


def load_weights(model: nn.Module, state: Mapping[str, Tensor], strict: bool = True) -> tuple[list[str], list[str]]:
    """Load :func:`model_weights` of ``state`` into ``model``; returns (missing, unexpected) keys as
    ``load_state_dict`` does (strict: every weight of the model must be there)."""
    missing, unexpected = model.load_state_dict(model_weights(model, state), strict=strict)
    return list(missing), list(unexpected)


def run_checkpoint(run_dir: str | Path, which: str = "best") -> tuple[DictConfig, dict[str, Tensor]]:
    """The validated config and the checkpoint's ``state_dict`` of a run directory (``config.yaml`` +
    ``checkpoints/{which}.ckpt``).

    The config is validated first (a ``_target_`` outside the allow-list is refused with a
    :class:`~aqa.config.ConfigError` before anything is built) and the checkpoint is read with
    ``torch.load(weights_only=True)``: no code in either can run.
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    validate(cfg)
    return cfg, checkpoint_state(run_dir, which)


def checkpoint_state(run_dir: str | Path, which: str = "best") -> dict[str, Tensor]:
    """The ``state_dict`` of a run directory's ``checkpoints/{which}.ckpt``, read with
    ``torch.load(weights_only=True)``. Raises ``FileNotFoundError`` naming the checkpoints there are."""
    ckpt = Path(run_dir) / "checkpoints" / f"{which}.ckpt"
    if not ckpt.is_file():
        found = sorted(p.name for p in (Path(run_dir) / "checkpoints").glob("*.ckpt"))
        raise FileNotFoundError(f"no checkpoint {ckpt}; found {found or 'none'} (train first: aqa train EXPERIMENT)")
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def load_model(run_dir: str | Path, which: str = "best") -> tuple[QualityModel, DictConfig]:
    """The trained scoring model of a run directory (see :func:`run_checkpoint`), in eval mode, and its config."""
    cfg, state = run_checkpoint(run_dir, which)
    model = build_model(cfg)
    load_weights(model, state)
    return model.eval(), cfg

