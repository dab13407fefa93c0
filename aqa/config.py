"""Compose, validate and save experiment configs (OmegaConf).

An experiment is ``configs/experiment/NAME.yaml``. It picks one file per component group in ``defaults``
(``encoder``, ``data``, ``trainer``) and per task picks a head and a loss by name; the body then overrides
any of their settings. Composition order, later wins:

    configs/train.yaml  <-  group files  <-  experiment body  <-  command-line ``key=value`` overrides

A command-line override whose key is a group (``encoder=wavlm_base_plus``, ``tasks.mos.loss=l1``) swaps the
whole component file; any other key must already exist (``trainer.max_epochs=3``), so typos fail loudly.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
GROUPS = ("encoder", "data", "trainer")
TASK_GROUPS = ("head", "loss")
LOGGERS = ("wandb", "csv", "tensorboard", "none")
NAN_POLICIES = ("skip", "stop")

# `_target_` may only name these (issue: configs downloaded from strangers must not run arbitrary code).
ALLOWED_TARGET_PREFIXES = ("torch.optim.", "lightning.pytorch.callbacks.", "lightning.pytorch.loggers.")


class ConfigError(ValueError):
    """A config that cannot be composed or validated; the message says what to change."""


def available(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """Names of the YAML files in one config group folder (``encoder``, ``head``, ``experiment``, ...)."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def _load_group(group: str, name: str, config_dir: Path) -> DictConfig:
    path = config_dir / group / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown {group} {name!r}; choose from {available(group, config_dir)}")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg


def _task_component(group: str, value: Any, config_dir: Path) -> DictConfig:
    """A task's head or loss: a bare name loads its file; a mapping with ``name`` overrides that file."""
    if isinstance(value, str):
        return _load_group(group, value, config_dir)
    if not isinstance(value, DictConfig) or "name" not in value:
        raise ConfigError(f"a task's {group} must be a name or a mapping with `name`, got {value!r}")
    return OmegaConf.merge(_load_group(group, value.name, config_dir), value)  # type: ignore[return-value]


def _split_overrides(overrides: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Separate group selections (``encoder=NAME``, ``tasks.T.head=NAME``) from plain dotlist overrides."""
    selections: dict[str, str] = {}
    rest: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        parts = key.split(".")
        is_group = key in GROUPS or (len(parts) == 3 and parts[0] == "tasks" and parts[2] in TASK_GROUPS)
        if is_group and value and not value.startswith(("{", "[")):
            selections[key] = value
        else:
            rest.append(item)
    return selections, rest


def compose(experiment: str, overrides: Sequence[str] = (), config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Compose an experiment config and apply command-line overrides.

    Args:
        experiment: name of a file in ``configs/experiment/`` (without ``.yaml``).
        overrides: ``key=value`` strings (OmegaConf dotlist syntax).

    Raises:
        ConfigError: unknown experiment, component name or key, with the valid choices in the message.
    """
    exp = _load_group("experiment", experiment, config_dir)
    selections, dotlist = _split_overrides(overrides)
    defaults = OmegaConf.to_container(exp.pop("defaults", OmegaConf.create({})))
    assert isinstance(defaults, dict)
    unknown = set(defaults) - set(GROUPS)
    if unknown:
        raise ConfigError(f"experiment {experiment!r}: unknown defaults group(s) {sorted(unknown)}; groups are {list(GROUPS)}")

    cfg = OmegaConf.load(config_dir / "train.yaml")
    for group in GROUPS:
        name = selections.get(group, defaults.get(group))
        if name is None:
            raise ConfigError(f"experiment {experiment!r} selects no {group}; add `defaults: {{{group}: NAME}}`")
        cfg[group] = _load_group(group, name, config_dir)
    cfg.experiment = experiment
    cfg = OmegaConf.merge(cfg, exp)

    for key, name in selections.items():
        parts = key.split(".")
        if parts[0] == "tasks":
            if parts[1] not in cfg.tasks:
                raise ConfigError(f"unknown task {parts[1]!r} in override {key}; tasks are {list(cfg.tasks)}")
            cfg.tasks[parts[1]][parts[2]] = name
    for task_name, task in cfg.tasks.items():
        for group in TASK_GROUPS:
            if group not in task:
                raise ConfigError(f"task {task_name!r} has no {group}; choose from {available(group, config_dir)}")
            task[group] = _task_component(group, task[group], config_dir)

    OmegaConf.set_struct(cfg, True)
    if dotlist:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(dotlist)))
        except (ConfigKeyError, ConfigAttributeError) as err:
            raise ConfigError(_unknown_key_message(cfg, err)) from None
        except OmegaConfBaseException as err:
            raise ConfigError(f"invalid override: {err}") from None
    validate(cfg)
    return cfg


def _unknown_key_message(cfg: DictConfig, err: OmegaConfBaseException) -> str:
    full_key = getattr(err, "full_key", None) or str(err)
    parent_path = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    parent = OmegaConf.select(cfg, parent_path) if parent_path else cfg
    valid = sorted(parent.keys()) if isinstance(parent, DictConfig) else []
    where = f"under {parent_path!r}" if parent_path else "at the top level"
    return f"unknown config key {full_key!r}; valid keys {where}: {valid}"


def validate(cfg: DictConfig) -> None:
    """Check every component name against its registry and every ``_target_`` against the allow-list."""
    from aqa.encoders import ENCODERS
    from aqa.heads import HEADS
    from aqa.losses import LOSSES

    def check(kind: str, name: Any, registry: Iterable[str]) -> None:
        if name not in registry:
            raise ConfigError(f"unknown {kind} {name!r}; choose from {sorted(registry)}")

    check("encoder", cfg.encoder.name, ENCODERS)
    if not cfg.tasks:
        raise ConfigError("the experiment defines no tasks")
    for task in cfg.tasks.values():
        check("head", task.head.name, HEADS)
        check("loss", task.loss.name, LOSSES)
    check("logger", cfg.logger, LOGGERS)
    check("monitor mode", cfg.monitor.mode, ("min", "max"))
    check("nan_policy", cfg.get("nan_policy", "skip"), NAN_POLICIES)
    _check_targets(cfg)


def _check_targets(node: Any) -> None:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            check_target(node._target_)
        for value in node.values():
            _check_targets(value)
    elif isinstance(node, ListConfig):
        for value in node:
            _check_targets(value)


def check_target(target: str) -> None:
    """Refuse any ``_target_`` outside the allow-list (torch optimizers/schedulers, Lightning callbacks/loggers)."""
    if not isinstance(target, str) or not target.startswith(ALLOWED_TARGET_PREFIXES) or ".." in target:
        raise ConfigError(f"_target_ {target!r} is not allowed; configs may only name classes under {list(ALLOWED_TARGET_PREFIXES)}")


def instantiate(node: DictConfig | dict, *args: Any, **kwargs: Any) -> Any:
    """Build the object a ``{_target_: ..., _partial_: bool, **kwargs}`` node describes (allow-listed only).

    With ``_partial_: true`` returns a ``functools.partial`` to be completed by the caller (e.g. with the
    parameters of an optimizer).
    """
    import functools

    spec = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    assert isinstance(spec, dict)
    target = spec.pop("_target_")
    partial = spec.pop("_partial_", False)
    check_target(target)
    module_name, _, attr = target.rpartition(".")
    obj = getattr(importlib.import_module(module_name), attr)
    if not isinstance(obj, type):
        raise ConfigError(f"_target_ {target!r} must name a class")
    spec.update(kwargs)
    return functools.partial(obj, *args, **spec) if partial else obj(*args, **spec)


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the fully resolved config as YAML (kept beside every checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path, resolve=True)


def load_config(path: Path) -> DictConfig:
    """Read a saved resolved config (e.g. ``runs/NAME/config.yaml``)."""
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg
