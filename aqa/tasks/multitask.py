"""The one LightningModule: a shared encoder and a dict of named tasks (head + loss + weight + label)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.utilities import dim_zero_cat

from aqa.config import ANCHORS, NAN_POLICIES, ConfigError, instantiate
from aqa.correlation import spearman
from aqa.data.labels import shard_labels
from aqa.encoders.base import frame_mask, prepare
from aqa.heads import Head, Kind, LabelScale, as_float32, head_score, quality_scores, zscore_stats
from aqa.losses import Loss, build_loss
from aqa.losses.contrastive import within_group_pairs
from aqa.model import COMPOSITE, QualityModel, build_model, load_model, run_checkpoint

log = logging.getLogger(__name__)
# frozen encoders (aqa.encoders.freeze) are pinned in eval mode on purpose: Lightning's notice about them is expected
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


class GatheredSpearman(Metric):
    """Validation SRCC: every (score, label) pair of the epoch is kept (one score and one label per validation
    clip, a few MB for 10^5 clips), gathered from every process at :meth:`compute` (torchmetrics' ``cat`` states,
    as its ``SpearmanCorrCoef`` gathered them under DDP), then :func:`aqa.correlation.spearman`, the one SRCC of
    aqa. An undefined value (a constant side, fewer than two pairs) is 0.0, as ``SpearmanCorrCoef`` gave, so the
    checkpoint monitor and early stopping never see NaN."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``, ``target``: (N,) scores and labels of one batch's scored clips."""
        self.preds.append(preds.detach().flatten())
        self.target.append(target.detach().flatten())

    def compute(self) -> Tensor:
        value = spearman(dim_zero_cat(self.preds).cpu(), dim_zero_cat(self.target).cpu())
        return torch.tensor(0.0 if np.isnan(value) else value, dtype=torch.float32)


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite and ``nan_policy`` is ``stop``."""


@dataclass
class LossTerm:
    """One labelled loss on a task's head output.

    Args:
        loss: the loss module.
        label: the batch label it reads.
        weight: its weight inside the task.
        anchors: the samples it is summed over: ``all``, ``coded`` (not the references) or ``reference``.
            A loss that ``takes_anchors`` (Rank-N-Contrast) still compares with the others; for any other
            loss the targets outside the anchors are left out.
        reference_label: the label the references get instead of theirs (DeePAQ: clean audio has an infinite
            bit rate, ``.inf`` in YAML), or None.
    """

    loss: Loss
    label: str
    weight: float = 1.0
    anchors: str = "all"
    reference_label: float | None = None

    def __post_init__(self) -> None:
        if self.anchors not in ANCHORS:
            raise ConfigError(f"loss term on {self.label!r}: anchors must be one of {ANCHORS}, got {self.anchors!r}")

    def __call__(self, pred: Any, batch: Mapping[str, Any], scale: LabelScale | None = None) -> Tensor:
        """The term's loss on a head output ``pred`` for ``batch`` (labels, group, is_reference). With the task's
        ``scale`` (``normalize: zscore``) prediction and target are both z-scored by it first."""
        target = batch["labels"][self.label].float()
        is_ref = batch["is_reference"]
        if self.reference_label is not None:
            target = torch.where(is_ref, torch.full_like(target, float(self.reference_label)), target)
        if scale is not None:
            pred, target = scale.standardise(pred), scale.standardise(target)
        extra: dict[str, Tensor] = {"group": batch["group"]} if self.loss.uses_group else {}
        if self.anchors != "all":
            anchors = ~is_ref if self.anchors == "coded" else is_ref
            if self.loss.takes_anchors:
                extra["anchors"] = anchors
            else:
                target = target.masked_fill(~anchors, float("nan"))
        inp = head_score(pred) if self.loss.input_kind is Kind.SCORE else pred
        return self.loss(inp, target, **extra)


@dataclass
class Task:
    """One training objective on the model's head of the same name: its main loss term (``loss`` on ``label``,
    whose validation SRCC is reported), plus any further ``terms`` on the same head output (weighted inside the
    task). ``anchors`` and ``reference_label`` apply to the main term, as in :class:`LossTerm`. A task the model
    z-scores (``normalize: zscore``, :class:`~aqa.model.QualityModel`) trains its head on ``label`` z-scored by the
    training split's statistics (:class:`~aqa.heads.scale.LabelScale`, set by :func:`fit_label_scales`); the
    module outputs label-scale scores."""

    loss: Loss
    label: str
    weight: float = 1.0
    anchors: str = "all"
    reference_label: float | None = None
    terms: dict[str, LossTerm] = field(default_factory=dict)

    def main_term(self) -> LossTerm:
        return LossTerm(self.loss, self.label, 1.0, self.anchors, self.reference_label)


class MultiTaskModule(L.LightningModule):
    """The scoring model (:func:`aqa.model.build_model`: encoder, trunks, heads) + named tasks' losses. Logs
    ``{stage}/{task}/loss``, ``{stage}/loss`` and ``val/{task}/srcc``; with several tasks also
    ``val/composite/srcc``: per clip, the mean of the tasks' scores against the mean of their labels (MMMOS
    §V-A), over the clips every task scores; for embedding tasks also ``val/{task}/srcc_mismatched``, each clip
    scored against the reference of another piece in its batch (DeePAQ's mismatched-reference mode), and
    ``val/{task}/group_order``: the share of pairs of clips of one group (JSQA: one utterance + one noise at
    several SNRs; DeePAQ: one excerpt's versions) whose scores are ordered as their labels
    (:func:`~aqa.losses.contrastive.within_group_pairs`: 1 in order, 0.5 chance).

    Args:
        model: the :class:`~aqa.model.QualityModel` it trains (:attr:`model`). Its parts are registered here under
            their own names (``encoder``, ``trunks``, ``heads``, ``label_scales``), so a checkpoint's weights carry
            the same keys as the model's and as every checkpoint before the model had a class of its own.
        tasks: task name -> :class:`Task` (one per head of ``model``).
        optimizer: ``params -> torch.optim.Optimizer`` (a partial from the config).
        scheduler: ``optimizer -> LR scheduler`` or None.
        monitor: metric the scheduler steps on (e.g. ``val/loss``).
        config: the resolved experiment config, stored in the checkpoint's hyper-parameters.
        nan_policy: what a NaN/Inf training loss does: ``skip`` the batch (no backward, no optimizer step,
            weights unchanged; every rank skips together under DDP) or ``stop`` (raise
            :class:`NonFiniteLossError`). Both log one line naming the step, the task losses and the samples.
        teacher: a trained, frozen :class:`~aqa.model.QualityModel` to distil from (HAAQI-Net's student): every
            task the teacher also has adds ``distill_weight`` x the MSE between the student's and the teacher's clip
            scores (and frame scores, resampled to the student's frame grid, when both heads give them). The
            teacher runs on the same audio at its own sample rate and is not saved in the checkpoint.
        distill_hidden: hidden-state distillation (HAAQI-Net's student, as the authors' code: Linear layers
            ``encoder5/8/11`` on the student's layers predict the teacher's): ``{student_layers: [..],
            teacher_layers: [..], weight: w, teacher_dim: D}``; each pair adds ``w`` x the MSE (valid frames)
            between a Linear projection of the student's hidden state and the teacher's, the teacher's resampled
            to the student's frame grid. The projections are part of the student (saved, unused in scoring).
    """

    def __init__(
        self,
        model: QualityModel,
        tasks: Mapping[str, Task],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "val/loss",
        config: Mapping[str, Any] | None = None,
        nan_policy: str = "skip",
        teacher: nn.Module | None = None,
        distill_weight: float = 1.0,
        distill_hidden: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
        if set(tasks) != set(model.heads):
            raise ValueError(f"tasks {list(tasks)} do not match the model's heads {list(model.heads)}")
        for name, t in tasks.items():
            other = sorted({term.label for term in t.terms.values()} - {t.label})
            if name in model.label_scales and other:
                raise ConfigError(f"tasks.{name}.normalize=zscore z-scores the head's output by label "
                                  f"{t.label!r}, but its terms read {other}: normalise a task with one label only")
        if config is not None:
            self.save_hyperparameters(dict(config))
        self._model = [model]  # held, not registered: its parts are, below, under the names checkpoints use
        self.encoder = model.encoder
        self.trunks = model.trunks
        self.heads = model.heads
        self.label_scales = model.label_scales
        encoder = model.encoder
        self.losses = nn.ModuleDict({name: t.loss for name, t in tasks.items()})
        # further loss terms per task (modules registered, so they move with the module)
        self.term_losses = nn.ModuleDict(
            {name: nn.ModuleDict({k: term.loss for k, term in t.terms.items()}) for name, t in tasks.items() if t.terms}
        )
        self.terms = {name: {None: t.main_term(), **t.terms} for name, t in tasks.items()}
        self.labels = {name: t.label for name, t in tasks.items()}
        self.weights = {name: float(t.weight) for name, t in tasks.items()}
        self.val_srcc = nn.ModuleDict({name: GatheredSpearman() for name in tasks})
        if len(tasks) > 1:
            self.val_srcc[COMPOSITE] = GatheredSpearman()
        # embedding tasks are also scored against another excerpt's reference (DeePAQ's mismatched mode)
        self.val_srcc_mismatched = nn.ModuleDict(
            {name: GatheredSpearman() for name in tasks if self.heads[name].is_embedding}
        )
        # and by the order within each group (what a within-group loss such as JSQA's JND contrastive optimises)
        self.val_group_order = nn.ModuleDict({name: MeanMetric() for name in self.val_srcc_mismatched})
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.nan_policy = nan_policy
        self.skipped_batches = 0
        self._skip_batch = False
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []  # not a submodule
        self.distill_weight = float(distill_weight)
        hidden = dict(distill_hidden or {})
        self.hidden_pairs = list(zip(hidden.get("student_layers", []), hidden.get("teacher_layers", []), strict=True))
        self.hidden_weight = float(hidden.get("weight", 1.0))
        teacher_dim = int(hidden.get("teacher_dim") or encoder.output_dim)
        self.distill_proj = nn.ModuleList(nn.Linear(encoder.output_dim, teacher_dim) for _ in self.hidden_pairs)
        for s_layer, t_layer in self.hidden_pairs:
            if not 0 <= s_layer < encoder.num_layers:
                raise ValueError(f"distill.hidden: student layer {s_layer} not in 0..{encoder.num_layers - 1}")
            if teacher is not None and not 0 <= t_layer < teacher.encoder.num_layers:
                raise ValueError(f"distill.hidden: teacher layer {t_layer} not in 0..{teacher.encoder.num_layers - 1}")
        if teacher is not None and self.hidden_pairs and teacher.encoder.output_dim != teacher_dim:
            raise ValueError(f"distill.hidden.teacher_dim={teacher_dim} but the teacher's layers are "
                             f"{teacher.encoder.output_dim}-dimensional")
        if teacher is not None:
            shared = [t for t in tasks if t in teacher.heads]
            if not shared:
                raise ValueError(f"the teacher has none of the tasks {list(tasks)} (it has {list(teacher.heads)})")
            for name in shared:
                if teacher.heads[name].is_embedding or self.heads[name].is_embedding:
                    raise ValueError(f"task {name!r}: distillation works on score heads, not embedding heads")

    @property
    def model(self) -> QualityModel:
        """The scoring model trained here (its parts are this module's ``encoder``, ``trunks``, ``heads``,
        ``label_scales``)."""
        return self._model[0]

    def forward(
        self, wav: Tensor, lengths: Tensor | None = None, conditions: Mapping[str, Tensor] | None = None
    ) -> dict[str, Any]:
        """The model's forward (:meth:`aqa.model.QualityModel.forward`): task -> head output (label scale)."""
        return self.model(wav, lengths, conditions)

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> tuple[Tensor, dict[str, Any]]:
        encoded, outputs = self.model.encode_and_score(batch["wav"], batch["lengths"], batch.get("conditions"))
        outputs = {name: as_float32(out) for name, out in outputs.items()}
        batch_size = batch["wav"].shape[0]
        task_losses = {}
        total = batch["wav"].new_zeros((), dtype=torch.float32)
        teacher_encoded, teacher_out = self._teacher_outputs(batch) if self._teacher else (None, {})
        # losses in float32 under bf16-mixed too: autocast would take their matmuls (RnC, contrastive) to bf16
        with torch.autocast(batch["wav"].device.type, enabled=False):
            for name, pred in outputs.items():
                task_loss = total.new_zeros(())
                scale = self.label_scales[name] if name in self.label_scales else None
                for term_name, term in self.terms[name].items():
                    value = term(pred, batch, scale)
                    if term_name is not None:  # further terms are logged each; the sum is the task's loss
                        task_losses[f"{name}/{term_name}"] = value
                    task_loss = task_loss + term.weight * value
                task_losses[name] = task_loss
                total = total + self.weights[name] * task_loss
            for name, loss in self._distill(teacher_out, outputs).items():
                task_losses[f"{name}/distill"] = loss
                total = total + self.distill_weight * loss
            if teacher_encoded is not None and self.hidden_pairs:
                hidden = self._distill_hidden(encoded, teacher_encoded)
                task_losses["distill/hidden"] = hidden
                total = total + self.hidden_weight * hidden
        if stage == "train" and self._non_finite(total, task_losses, batch):
            return total, outputs  # not logged: one bad batch must not turn the epoch's mean loss into NaN
        for name, loss in task_losses.items():
            self.log(f"{stage}/{name}/loss", loss, batch_size=batch_size, on_step=stage == "train", on_epoch=True)
        self.log(f"{stage}/loss", total, batch_size=batch_size, prog_bar=True, on_step=stage == "train", on_epoch=True)
        return total, outputs

    @torch.no_grad()
    def _teacher_outputs(self, batch: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        teacher = self._teacher[0].to(batch["wav"].device)
        wav, lengths = prepare(batch["wav"], self.encoder.sample_rate, teacher.encoder.sample_rate, batch["lengths"])
        encoded, outputs = teacher.encode_and_score(wav, lengths, batch.get("conditions"))
        return encoded, {name: as_float32(out) for name, out in outputs.items()}

    def _distill_hidden(self, student: Any, teacher: Any) -> Tensor:
        """Mean over the layer pairs of the masked MSE between projected student and teacher hidden states."""
        batch, frames = student.layers[0].shape[:2]
        mask = frame_mask(student.lengths, frames, batch, student.layers[0].device).float()
        total = mask.new_zeros(())
        for proj, (s_layer, t_layer) in zip(self.distill_proj, self.hidden_pairs, strict=True):
            pred = proj(student.layers[s_layer].float())  # (B, F, D); float32 like the losses (autocast is off here)
            target = teacher.layers[t_layer].float()  # (B, F', D)
            if target.shape[1] != frames:
                target = torch.nn.functional.interpolate(target.transpose(1, 2), size=frames, mode="linear",
                                                         align_corners=False).transpose(1, 2)
            err = (pred - target).pow(2).mean(dim=-1)  # (B, F)
            total = total + (err * mask).sum() / mask.sum().clamp_min(1.0)
        return total / len(self.hidden_pairs)

    def _distill(self, teacher_out: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Tensor]:
        """Per shared task: MSE to the teacher's clip scores (+ frame scores when both heads give them)."""
        losses = {}
        for name, pred in outputs.items():
            if name not in teacher_out:
                continue
            target = teacher_out[name]
            loss = (head_score(pred) - head_score(target)).pow(2).mean()
            if self.heads[name].output is Kind.FRAMES and self._teacher[0].heads[name].output is Kind.FRAMES:
                frames = torch.nn.functional.interpolate(
                    target["frames"][:, None], size=pred["frames"].shape[-1], mode="linear", align_corners=False
                )[:, 0]
                mask = pred["frame_mask"].to(frames.dtype)
                loss = loss + ((pred["frames"] - frames).pow(2) * mask).sum() / mask.sum().clamp_min(1.0)
            losses[name] = loss
        return losses

    def _non_finite(self, total: Tensor, task_losses: Mapping[str, Tensor], batch: Mapping[str, Any]) -> bool:
        # Every rank must take the same decision: a rank that skips backward while the others all-reduce
        # gradients would hang DDP.
        bad = not bool(torch.isfinite(total.detach()))
        if self._trainer is not None:
            bad = bool(self.trainer.strategy.reduce_boolean_decision(bad, all=False))
        if not bad:
            return False
        keys = [m.get("key") for m in batch.get("meta", [])][:8]
        losses = {name: float(loss.detach()) for name, loss in task_losses.items()}
        where = f"step {self.global_step}" if self._trainer is not None else "a step"
        log.error(
            "non-finite training loss at %s (rank %d): %s; samples %s; nan_policy=%s",
            where, self.global_rank, losses, keys, self.nan_policy,
        )
        if self.nan_policy == "stop":
            raise NonFiniteLossError(
                f"non-finite training loss at {where}: {losses} (samples {keys}); stopping because "
                "nan_policy=stop (nan_policy=skip skips such batches)"
            )
        self.skipped_batches += 1
        self._skip_batch = True
        return True

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        self._skip_batch = False
        loss, _ = self._shared_step(batch, "train")
        if self._skip_batch:
            return None  # Lightning's automatic optimization: no backward, no optimizer step for this batch
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        _, outputs = self._shared_step(batch, "val")
        per_task = []
        for name, pred in outputs.items():
            scores, mask = quality_scores(pred, self.heads[name].is_embedding, batch)
            target = batch["labels"][self.labels[name]].to(scores.dtype)
            mask = mask & torch.isfinite(target) & torch.isfinite(scores)  # unrated clips (NaN label) are not scored
            if mask.any():
                self.val_srcc[name].update(scores[mask].float(), target[mask].float())
            per_task.append((scores.float(), target.float(), mask))
            if name in self.val_group_order:  # pair-weighted mean of each batch's share = concordant / pairs overall
                concordant, pairs = within_group_pairs(scores.masked_fill(~mask, float("nan")), target, batch["group"])
                if pairs > 0:
                    self.val_group_order[name].update(concordant / pairs, pairs)
            if name in self.val_srcc_mismatched:
                other, valid = quality_scores(pred, True, batch, mismatched=True)
                valid = valid & torch.isfinite(target) & torch.isfinite(other)  # needs a second group in the batch
                if valid.any():
                    self.val_srcc_mismatched[name].update(other[valid].float(), target[valid].float())
        if COMPOSITE in self.val_srcc:
            every = torch.stack([m for _, _, m in per_task]).all(dim=0)
            if every.any():
                mean_score = torch.stack([torch.where(every, s, 0.0) for s, _, _ in per_task]).mean(dim=0)
                mean_label = torch.stack([torch.where(every, t, 0.0) for _, t, _ in per_task]).mean(dim=0)
                self.val_srcc[COMPOSITE].update(mean_score[every], mean_label[every])

    def on_validation_epoch_end(self) -> None:
        logged = [(f"val/{name}/srcc", metric, True) for name, metric in self.val_srcc.items()]
        logged += [(f"val/{name}/srcc_mismatched", metric, False) for name, metric in self.val_srcc_mismatched.items()]
        for key, metric, prog_bar in logged:
            if metric.preds:  # nothing accumulated when validation was skipped
                self.log(key, metric.compute(), prog_bar=prog_bar, sync_dist=False)
            metric.reset()
        for name, metric in self.val_group_order.items():
            if metric.update_count:
                self.log(f"val/{name}/group_order", metric.compute(), sync_dist=False)
            metric.reset()

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: the encoder is frozen and the heads have none")
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"}}


def check_head_loss(head: Head, loss: Loss, task: str = "task") -> None:
    """Refuse a head/loss pair that cannot work together (``ConfigError`` naming both and the fix).

    Reads the declared contracts: the loss's ``input_kind`` must be among what the head ``gives`` (its
    ``output`` kind; a ``FRAMES`` head also gives its clip score to ``SCORE`` losses).
    """
    kind = loss.input_kind
    if kind not in head.gives:
        wants = {Kind.EMBEDDING: "embeddings", Kind.SCORE: "scores", Kind.FRAMES: "frame scores"}[kind]
        raise ConfigError(
            f"task {task!r}: loss {type(loss).__name__} needs a head giving {wants}, but {type(head).__name__} "
            f"gives {'embeddings' if head.is_embedding else 'clip scores'}; pick a matching head or loss (`aqa list`)"
        )


def build_module(cfg: DictConfig, with_teacher: bool = True) -> MultiTaskModule:
    """Build the model (:func:`aqa.model.build_model`), losses, optimizer and scheduler an experiment config
    describes.

    With ``distill.teacher`` set (and ``with_teacher``), the teacher run's model is loaded frozen for
    distillation; inference never needs it (:func:`load_run` builds without it).
    """
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    model = build_model(container)
    tasks = {}
    for name, t in container["tasks"].items():
        head = model.heads[name]
        loss = build_loss(t["loss"])
        check_head_loss(head, loss, name)
        terms = {}
        for term_name, spec in (t.get("terms") or {}).items():
            term_loss = build_loss(spec["loss"])
            check_head_loss(head, term_loss, f"{name}/{term_name}")
            terms[term_name] = LossTerm(term_loss, spec["label"], float(spec.get("weight", 1.0)),
                                        spec.get("anchors", "all"), spec.get("reference_label"))
        tasks[name] = Task(loss=loss, label=t["label"], weight=t.get("weight", 1.0),
                           anchors=t.get("anchors", "all"), reference_label=t.get("reference_label"), terms=terms)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    distill = container.get("distill") or {}
    teacher = load_model(distill["teacher"], distill.get("which", "best"))[0] if with_teacher and distill.get("teacher") else None
    return MultiTaskModule(
        model,
        tasks,
        instantiate(cfg.optimizer),
        scheduler,
        monitor=cfg.monitor.metric,
        config=container,
        nan_policy=cfg.get("nan_policy", "skip"),
        teacher=teacher,
        distill_weight=distill.get("weight", 1.0),
        distill_hidden=distill.get("hidden"),
    )


def load_run(run_dir: str | Path, which: str = "best") -> tuple[MultiTaskModule, DictConfig]:
    """Rebuild a trained LightningModule from a run directory (``config.yaml`` + ``checkpoints/{which}.ckpt``,
    read safely by :func:`aqa.model.run_checkpoint`), e.g. to validate it with a Trainer. Scoring needs only the
    model: :func:`aqa.model.load_model`.
    """
    cfg, state = run_checkpoint(run_dir, which)
    module = build_module(cfg, with_teacher=False)
    module.load_state_dict(state)
    return module.eval(), cfg


def init_from_checkpoint(module: MultiTaskModule, path: str | Path) -> dict[str, list[str]]:
    """Start ``module`` from another run's weights (e.g. JSQA: MOS fine-tuning of a JND-pretrained encoder).

    The encoder's weights must all be present with matching shapes (a different encoder architecture is an
    error, not a silent partial load); a head is copied when the checkpoint has a task of the same name and
    the same parameter shapes, and is kept as initialised otherwise. Read with ``weights_only=True``.

    Args:
        path: a ``.ckpt`` file, or a run directory (its ``checkpoints/best.ckpt``).
    Returns:
        ``{"loaded": [...], "kept": [...]}`` parameter-name prefixes, also logged.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"init_from: no checkpoint at {path} (train the first stage, or fix init_from=...)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    own = module.state_dict()
    enc = {k: v for k, v in state.items() if k.startswith("encoder.")}
    want = [k for k in own if k.startswith("encoder.")]
    missing = [k for k in want if k not in enc]
    extra = [k for k in enc if k not in own]
    bad = [k for k in want if k in enc and enc[k].shape != own[k].shape]
    if missing or extra or bad:
        raise ValueError(
            f"init_from {path}: the encoder does not match this experiment's ({len(missing)} missing, "
            f"{len(extra)} unexpected, {len(bad)} of another shape, e.g. {(missing + extra + bad)[:3]}); "
            "was it trained with the same encoder config?"
        )
    load = dict(enc)
    loaded, kept = ["encoder"], []
    for part in [f"trunks.{key}" for key in module.trunks] + [f"heads.{name}" for name in module.heads]:
        prefix = f"{part}."
        theirs = {k: v for k, v in state.items() if k.startswith(prefix)}
        mine = {k: v for k, v in own.items() if k.startswith(prefix)}
        if theirs.keys() == mine.keys() and all(theirs[k].shape == mine[k].shape for k in mine):
            load.update(theirs)
            loaded.append(part)
        else:
            kept.append(part)
    module.load_state_dict(load, strict=False)
    log.info("init_from %s: loaded %s; initialised afresh: %s", path, loaded, kept or "nothing")
    return {"loaded": loaded, "kept": kept}


def fit_label_scales(module: MultiTaskModule, train_urls: Any) -> dict[str, tuple[float, float]]:
    """Set every normalised task's :class:`~aqa.heads.scale.LabelScale` to the mean and standard deviation of
    its label over the training shards (the ``.json`` members only: no audio is decoded; NaN labels ignored).
    ``aqa train`` calls it before fitting; a resumed run then loads its checkpoint's statistics over these (the
    same when the shards are). Returns task -> (mean, std), also logged.

    Raises:
        ConfigError: a normalised task's label has fewer than two finite values in the shards, or no spread.
    """
    if not module.label_scales:
        return {}
    labels = shard_labels(train_urls, sorted({module.labels[t] for t in module.label_scales}))
    stats = {}
    for task, scale in module.label_scales.items():
        label = module.labels[task]
        try:
            mean, std = zscore_stats(torch.from_numpy(labels[label]))
        except ValueError as err:
            raise ConfigError(f"tasks.{task}.normalize=zscore: label {label!r} in the training shards: {err}") from None
        scale.set(mean, std)
        stats[task] = (mean, std)
        log.info("tasks.%s.normalize=zscore: label %r over %d training samples: mean %.4g, std %.4g", task, label,
                 int(np.isfinite(labels[label]).sum()), mean, std)
    return stats
