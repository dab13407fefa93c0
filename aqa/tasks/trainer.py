"""Lightning Trainer, callbacks and loggers built from an experiment config."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


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
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=run_dir, name="csv")
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=run_dir, name="tensorboard")
    from lightning.pytorch.loggers import WandbLogger

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
    """Best and last checkpoints under ``run_dir/checkpoints``, rich progress bar, LR monitor."""
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=cfg.monitor.metric,
            mode=cfg.monitor.mode,
            save_top_k=1,
            save_last=True,
            enable_version_counter=False,
        ),
        RichProgressBar(),
    ]
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """A Lightning Trainer from ``cfg.trainer`` with the project's callbacks and logger."""
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
