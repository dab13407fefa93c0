"""LightningModules and the Trainer built around them (the only package besides the DataModule that imports Lightning)."""

from aqa.tasks.multitask import MultiTaskModule, Task, build_module, init_from_checkpoint, load_run
from aqa.tasks.trainer import build_trainer

__all__ = ["MultiTaskModule", "Task", "build_module", "build_trainer", "init_from_checkpoint", "load_run"]
