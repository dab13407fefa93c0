"""``train(cfg)``: one experiment config in, a trained run directory out (what ``aqa train`` calls)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from aqa.config import ConfigError, check_values, save_config
from aqa.data.datamodule import datamodule_from_config
from aqa.data.labels import rating_scale
from aqa.tasks.multitask import build_module, fit_label_scales, init_from_checkpoint
from aqa.tasks.trainer import build_trainer

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the experiment ``cfg`` describes; returns the final logged metrics and the best checkpoint path.

    With ``validate_before=true`` the untrained model is validated first (logged as epoch 0's validation) and the
    result also holds those metrics under ``"before"`` (:func:`before_after_table` prints both side by side).

    The resolved config is written to ``run_dir/config.yaml`` and beside the checkpoints. With
    ``resume=true`` training continues from ``run_dir/checkpoints/last.ckpt`` (model, optimizer, scheduler,
    loop state). A run directory that already holds checkpoints is never overwritten silently.

    Raises:
        ConfigError: before anything is built or written, when a value is out of range or the shards are
            missing or empty (:func:`aqa.config.check_values`).
    """
    check_values(cfg)  # first: a bad value must not leave a run folder, a W&B run or a built model behind
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
    save_config(cfg, run_dir / "config.yaml")
    save_config(cfg, run_dir / "checkpoints" / "config.yaml")
    trainer = build_trainer(cfg, run_dir)
    # weights_only: a resumed checkpoint cannot run code either (ours hold only tensors and plain values)
    before = {}
    if cfg.get("validate_before") and ckpt_path is None:  # a resumed run validated before its first epoch already
        # as fit's own validation runs (no_grad, not inference mode: metric states made here are updated in place later)
        trainer.validate_loop.inference_mode = False
        before = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule, verbose=False)[0].items()}
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if before:
        metrics["before"] = before
    metrics["best_model_path"] = (
        trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    )
    return metrics


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
