"""Lightning Trainer, callbacks and loggers built from an experiment config."""

from __future__ import annotations

import logging
import netrc
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from aqa.config import save_config

log = logging.getLogger(__name__)


def log_lightning_once() -> None:
    """Print each Lightning log line once. ``import lightning`` gives the ``lightning`` logger a console handler of
    its own, and the logger still propagates to the root logger: once the root has a handler (``aqa``'s CLI sets
    one up) every Lightning INFO line would be printed twice. Lightning's handler is dropped then; without a root
    handler (aqa used as a library, logging not set up) it stays and prints them."""
    if not logging.getLogger().handlers:
        return
    lightning_log = logging.getLogger("lightning")
    for handler in list(lightning_log.handlers):
        if type(handler) is logging.StreamHandler:
            lightning_log.removeHandler(handler)


class EpochLengthBar(RichProgressBar):
    """Rich progress bar whose totals come from the shards' records when Lightning cannot know them (an
    iterable dataset has no ``len``): ``N/N`` and an ETA instead of ``N/--``. Only what is shown changes: the
    loop still ends each epoch when the data does. Asks the datamodule's ``epoch_batches(split)``."""

    def _known(self, split: str, lightning_total: int | float, limit: Any) -> int | float:
        if lightning_total != float("inf"):
            return lightning_total
        datamodule = getattr(self.trainer, "datamodule", None)
        count = datamodule.epoch_batches(split) if hasattr(datamodule, "epoch_batches") else None
        if count is None:
            return lightning_total
        return min(count, limit) if isinstance(limit, int) else count

    @property
    def total_train_batches(self) -> int | float:
        return self._known("train", super().total_train_batches, self.trainer.limit_train_batches)

    @property
    def total_val_batches_current_dataloader(self) -> int | float:
        limit = self.trainer.num_sanity_val_steps if self.trainer.sanity_checking else self.trainer.limit_val_batches
        return self._known("val", super().total_val_batches_current_dataloader, limit)


class SaveConfig(Callback):
    """Write the resolved config beside the checkpoints when fit starts: after the checkpoint callback has looked
    at its folder, so a fresh run's folder is empty then (no "exists and is not empty" warning)."""

    def __init__(self, cfg: DictConfig, path: Path) -> None:
        self.cfg = cfg
        self.path = Path(path)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            save_config(self.cfg, self.path)


class Preemption(Callback):
    """Survive pre-emption: save ``last.ckpt`` on SIGTERM, and carry the RNG states in every checkpoint.

    Lightning's signal connector turns SIGTERM (what SLURM, Kubernetes and ``kill`` send before the end)
    into ``trainer.received_sigterm`` and exits after the current training batch; this callback writes
    ``last.ckpt`` at the end of that batch first, so ``resume=true`` continues from there. (On SLURM with
    auto-requeue Lightning also saves an ``hpc_ckpt`` on SIGUSR1.) SIGKILL cannot be caught: then the run
    resumes from the latest periodic ``last.ckpt`` (``checkpoint_every_n_steps``).

    Python's, NumPy's and torch's global RNG states are stored in the checkpoint and restored when training
    starts again, so dropout masks after a resume are those of an uninterrupted run (the data order is
    seeded by seed and epoch and restored by the dataloader's own state).
    """

    def __init__(self, last_path: Path, every_n_steps: int = 0) -> None:
        self.last_path = Path(last_path)
        self.every_n_steps = int(every_n_steps)
        self._rng_to_restore: dict[str, Any] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.received_sigterm:
            trainer.save_checkpoint(self.last_path, weights_only=False)
            log.warning(
                "SIGTERM received: saved %s at step %d; continue with resume=true", self.last_path, trainer.global_step
            )
        elif self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.last_path, weights_only=False)  # the mid-epoch resume point

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.last_path, weights_only=False)  # after the epoch's validation

    def state_dict(self) -> dict[str, Any]:
        # plain containers and tensors only: the checkpoint must load with torch.load(weights_only=True)
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(np.asarray(keys).copy()), int(pos), int(has_gauss), float(gauss)],
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_to_restore = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # restored here, not at load time: building the model and dataloaders in between draws random numbers
        state, self._rng_to_restore = self._rng_to_restore, None
        if not state:
            return
        random.setstate(_tuples(state["python"]))
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
        torch.set_rng_state(state["torch"])


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def wandb_has_credentials() -> bool:
    """True when W&B could reach a server: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_logger(cfg: DictConfig, run_dir: Path) -> Any:
    """The experiment's logger: ``wandb`` (offline unless credentials or ``WANDB_MODE`` are set), ``csv``,
    ``tensorboard`` or ``none``."""
    kind = cfg.logger
    if kind == "none":
        return False
    if kind == "csv":
        return CSVLogger(save_dir=run_dir, name="csv")
    if kind == "tensorboard":
        return TensorBoardLogger(save_dir=run_dir, name="tensorboard")
    offline = "WANDB_MODE" not in os.environ and not wandb_has_credentials()
    if offline:
        log.info("W&B: no credentials and no WANDB_MODE, logging offline to %s/wandb", run_dir)
    return WandbLogger(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        name=cfg.wandb.name,
        save_dir=str(run_dir),
        offline=offline,
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def build_callbacks(cfg: DictConfig, run_dir: Path, logger: Any) -> list[Callback]:
    """Best and last checkpoints under ``run_dir/checkpoints`` (``last.ckpt`` also every
    ``checkpoint_every_n_steps`` training steps and on SIGTERM), rich progress bar, LR monitor, and early
    stopping when ``early_stopping: {patience: N}`` is set (on ``monitor.metric`` unless it names another)."""
    every = cfg.get("checkpoint_every_n_steps") or 0
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=cfg.monitor.metric,
            mode=cfg.monitor.mode,
            save_top_k=1,
            save_last=False,
            enable_version_counter=False,
            # decide at the end of validation: Lightning runs monitoring callbacks' on_train_epoch_end after the
            # others', so deciding there would leave Preemption's epoch-end last.ckpt one validation behind
            save_on_train_epoch_end=False,
        ),
        EpochLengthBar(),
        # owns last.ckpt: every N steps, at each epoch end and on SIGTERM (ModelCheckpoint's save_last only
        # writes it when a new best is saved)
        Preemption(run_dir / "checkpoints" / "last.ckpt", every),
        SaveConfig(cfg, run_dir / "checkpoints" / "config.yaml"),
    ]
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    stopping = cfg.get("early_stopping")
    if stopping:
        callbacks.append(
            EarlyStopping(
                monitor=stopping.get("monitor") or cfg.monitor.metric,
                mode=stopping.get("mode") or cfg.monitor.mode,
                patience=int(stopping.patience),
                min_delta=float(stopping.get("min_delta") or 0.0),
                check_on_train_epoch_end=False,  # as ModelCheckpoint: last.ckpt holds this epoch's count
            )
        )
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """A Lightning Trainer from ``cfg.trainer`` with the project's callbacks and logger."""
    log_lightning_once()
    logger = build_logger(cfg, run_dir)
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return L.Trainer(
        **kwargs,
        logger=logger,
        callbacks=build_callbacks(cfg, run_dir, logger),
        default_root_dir=str(run_dir),
    )
