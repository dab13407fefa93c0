"""``train(cfg)``: one experiment config in, a trained run directory out (what ``aqa train`` calls)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from aqa.config import ConfigError, check_values, save_config, task_labels
from aqa.data.datamodule import datamodule_from_config, default_num_workers
from aqa.data.labels import rating_scale
from aqa.data.manifest import excerpt_seconds
from aqa.data.urls import expand_shard_urls
from aqa.tasks.multitask import build_module, fit_label_scales, init_from_checkpoint
from aqa.tasks.trainer import build_trainer, log_lightning_once

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the experiment ``cfg`` describes; returns the final logged metrics, the best checkpoint path
    (``best_model_path``) and ``best``: ``{"metric": monitor.metric, "mode": ..., "value": its best value}``
    (value None when it was never logged), what :func:`summary` prints.

    With ``validate_before=true`` the untrained model is validated first (logged as epoch 0's validation) and the
    result also holds those metrics under ``"before"`` (:func:`before_after_table` prints both side by side).

    ``data.label_keys`` gains every label a task reads (a data preset's list never hides a label the shards
    carry; :func:`aqa.config.check_values` has checked that they carry them) and a null ``data.num_workers``
    becomes :func:`~aqa.data.datamodule.default_num_workers`. The resolved config is written to
    ``run_dir/config.yaml`` and beside the checkpoints. With
    ``resume=true`` training continues from ``run_dir/checkpoints/last.ckpt`` (model, optimizer, scheduler,
    loop state). A run directory that already holds checkpoints is never overwritten silently.

    Raises:
        ConfigError: before anything is built or written, when a value is out of range, the shards are
            missing or empty, or a task's label is not one the shards carry (:func:`aqa.config.check_values`).
    """
    check_values(cfg)  # first: a bad value must not leave a run folder, a W&B run or a built model behind
    log_lightning_once()
    warn_short_clips(cfg)
    with open_dict(cfg):  # resolved here, so the run's config.yaml records what was read
        # every label a task trains on is read, whatever the data preset lists
        cfg.data.label_keys = list(dict.fromkeys([*(cfg.data.get("label_keys") or []), *task_labels(cfg).values()]))
        if cfg.data.get("num_workers", 0) is None:
            cfg.data.num_workers = default_num_workers()
    run_dir = Path(cfg.run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = None
    if cfg.resume:
        if last.is_file():
            ckpt_path = str(last)
            log.info("resuming from %s", last)
        else:
            log.warning("resume=true but %s does not exist: starting from scratch", last)
    elif last.is_file() and not cfg.overwrite:
        raise ConfigError(
            f"{run_dir} already holds checkpoints: pass resume=true to continue that run, "
            f"overwrite=true to start it again, or run_dir=... for a new one"
        )
    L.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg)
    if cfg.get("init_from") and ckpt_path is None:  # a resumed run already holds its own weights
        init_from_checkpoint(module, cfg.init_from)
    if ckpt_path is None:  # normalize: zscore (a resumed run holds its statistics in its checkpoint)
        fit_label_scales(module, cfg.data.train_urls)
    record_rating_scales(cfg, module)
    datamodule = datamodule_from_config(cfg, module.encoder.sample_rate)
    save_config(cfg, run_dir / "config.yaml")  # and beside the checkpoints when fit starts (build_trainer)
    trainer = build_trainer(cfg, run_dir)
    # weights_only: a resumed checkpoint cannot run code either (ours hold only tensors and plain values)
    before = {}
    if cfg.get("validate_before") and ckpt_path is None:  # a resumed run validated before its first epoch already
        # as fit's own validation runs (no_grad, not inference mode: metric states made here are updated in place later)
        trainer.validate_loop.inference_mode = False
        before = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule, verbose=False)[0].items()}
    with warnings.catch_warnings():
        if ckpt_path is not None:  # resuming: the checkpoint folder holds this run's checkpoints, as it should
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if before:
        metrics["before"] = before
    checkpoint = trainer.checkpoint_callback
    metrics["best_model_path"] = checkpoint.best_model_path if checkpoint else ""
    score = getattr(checkpoint, "best_model_score", None)
    metrics["best"] = {"metric": str(cfg.monitor.metric), "mode": str(cfg.monitor.mode),
                       "value": None if score is None else float(score)}
    return metrics


def warn_short_clips(cfg: DictConfig) -> list[str]:
    """Warn once per split when ``data.crop_s`` (training) or ``data.val_crop_s`` (validation) is longer than the
    shards' clips as their manifest states them (:func:`aqa.data.manifest.excerpt_seconds`). Nothing is padded
    to the crop: a clip shorter than the crop is used whole (:class:`~aqa.data.dataset.GroupedBatchDataset`), so
    such a crop asks for more audio than there is. Returns the warnings logged."""
    warnings = []
    for split, key in (("train", "crop_s"), ("val", "val_crop_s")):
        crop, urls = cfg.data.get(key), cfg.data.get(f"{split}_urls")
        if crop is None or not urls:
            continue
        try:
            clips = excerpt_seconds(expand_shard_urls(urls, f"{split} shards"))
        except (OSError, ValueError):
            continue
        if clips is not None and float(crop) > clips + 1e-6:
            warnings.append(f"data.{key}={float(crop):g} s is longer than the {split} shards' clips ({clips:g} s, "
                            f"from their manifest): crops are the whole {clips:g} s clips; set data.{key}={clips:g} "
                            "to say so")
            log.warning(warnings[-1])
    return warnings


def summary(metrics: dict[str, Any]) -> str:
    """Two lines closing a training run: the best value of the monitored metric and the best checkpoint."""
    best = metrics.get("best") or {}
    value = best.get("value")
    shown = f"{value:.4f}" if isinstance(value, float) else "not logged"
    return (f"best {best.get('metric', 'metric')} ({best.get('mode', '?')}): {shown}\n"
            f"best checkpoint: {metrics.get('best_model_path') or '-'}")


def record_rating_scales(cfg: DictConfig, module: Any) -> dict[str, tuple[float, float]]:
    """Set ``tasks.T.scale`` (when null) of every score task to its label's rating scale in the training shards
    (:func:`aqa.data.labels.rating_scale`), so the run, its exports and ensembles carry it: ``aqa eval --test``
    reports a raw MSE only against a test on the same scale (:mod:`aqa.eval.scales`). Returns what was set."""
    found = {}
    for name, task in cfg.tasks.items():
        if task.get("scale") is not None or module.heads[name].is_embedding:
            continue
        scale, why = rating_scale(cfg.data.train_urls, str(task.label))
        log.info("tasks.%s.scale: %s", name, list(scale) if scale else why)
        if scale is not None:
            with open_dict(cfg):
                task.scale = list(scale)
            found[name] = scale
    return found


def before_after_table(metrics: dict[str, Any]) -> str:
    """The validation metrics of :func:`train`'s result as a small text table: before training (with
    ``validate_before``) and after the last epoch, one row per ``val/...`` key."""
    before = metrics.get("before", {})
    keys = sorted({k for k in [*before, *metrics] if k.startswith("val/")})
    if not keys:
        return ""
    width = max(len(k) for k in keys)
    cell = lambda d, k: f"{d[k]:>8.3f}" if k in d else f"{'-':>8}"  # noqa: E731
    lines = [f"{'validation':<{width}}  {'before':>8}  {'after':>8}"]
    lines += [f"{k:<{width}}  {cell(before, k)}  {cell(metrics, k)}" for k in keys]
    return "\n".join(lines)
