"""Compose, validate and save experiment configs (OmegaConf).

An experiment is ``experiment/NAME.yaml`` in a config folder: the built-in ``configs/`` (shipped inside the
package as ``aqa/configs``) or a user folder from ``aqa --config-dir DIR`` or ``$AQA_CONFIG_PATH``, which are
searched first, group by group (:func:`config_dirs`). It picks one file per component group in ``defaults``
(``encoder``, ``data``, ``trainer``) and per task picks a head and a loss by name; the body then overrides
any of their settings. Composition order, later wins:

    configs/train.yaml  <-  group files  <-  experiment body  <-  command-line ``key=value`` overrides

A command-line override whose key is a group (``encoder=wavlm_base_plus``, ``tasks.mos.loss=l1``) swaps the
whole component file; any other key must already exist (``trainer.max_epochs=3``), so typos fail loudly.
Every trainer config also accepts ``max_steps`` and ``max_time`` (null: no limit). A fusion encoder's members
(encoder names, or mappings overriding their files) are resolved to complete encoder configs
(:func:`resolve_encoder`), so the encoders never read YAML.

:func:`check_values` checks the values of a composed config (types, ranges, that the shards exist and hold
samples) before ``aqa train`` builds or writes anything. Relative shard paths are read from ``$AQA_DATA``
when set, else from the checkout, else (aqa installed as a package) from the current folder
(:func:`aqa.data.urls.data_root`).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import math
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from aqa.data.labels import scale_pair
from aqa.data.manifest import shard_label_keys
from aqa.data.urls import build_hint, expand_shard_urls


def builtin_config_dir() -> Path:
    """The configs that ship with aqa: ``aqa/configs`` in an installed wheel (the repository's top-level
    ``configs/``, mapped into the package by ``setup.py``), else ``configs/`` beside the package (a checkout,
    editable or not)."""
    package = Path(__file__).resolve().parent
    shipped = package / "configs"
    return shipped if shipped.is_dir() else package.parent / "configs"


CONFIG_DIR = builtin_config_dir()  # the built-in configs; the search path is :func:`config_dirs`
# os.pathsep-separated folders searched before the built-in configs (after any `aqa --config-dir`)
CONFIG_PATH_ENV = "AQA_CONFIG_PATH"
_cli_config_dirs: list[Path] = []  # `aqa --config-dir DIR` (set_config_dirs)
# a folder of the search path, a list of them, or None: the search path (config_dirs())
ConfigDirs = Path | str | Sequence[Path | str] | None
GROUPS = ("encoder", "data", "trainer")
TASK_GROUPS = ("head", "loss")
ANCHORS = ("all", "coded", "reference")  # the samples a task's loss term is summed over (aqa.tasks.multitask.LossTerm)
LOGGERS = ("wandb", "csv", "tensorboard", "none")
NAN_POLICIES = ("skip", "stop")
# the encoder whose `encoders` lists other encoders, resolved by `resolve_encoder` (aqa.encoders.fusion)
FUSION = "fusion"
# trainer keys every trainer config accepts, added by `compose` when its file lacks them (null: no limit)
TRAINER_LIMITS: dict[str, Any] = {"max_steps": None, "max_time": None}

log = logging.getLogger(__name__)

# `_target_` may only name these (issue: configs downloaded from strangers must not run arbitrary code).
ALLOWED_TARGET_PREFIXES = ("torch.optim.", "lightning.pytorch.callbacks.", "lightning.pytorch.loggers.")


class ConfigError(ValueError):
    """A config that cannot be composed or validated; the message says what to change."""


def set_config_dirs(dirs: Iterable[Path | str]) -> None:
    """Set the folders given with ``aqa --config-dir DIR`` (searched first, in the order given).

    Raises:
        ConfigError: a folder does not exist.
    """
    _cli_config_dirs[:] = [_config_folder(d, "--config-dir") for d in dirs]


def _config_folder(folder: Path | str, source: str) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{source}: config folder {str(folder)!r} does not exist (it should hold experiment/, "
                          "encoder/, head/, loss/, data/, trainer/ or sweep/ folders of YAML files)")
    return path.resolve()


def config_dirs() -> list[Path]:
    """The config search path, first match wins: the ``aqa --config-dir`` folders, then those of
    ``$AQA_CONFIG_PATH`` (``os.pathsep``-separated), then the built-in configs (:data:`CONFIG_DIR`).

    Each group (``experiment/``, ``encoder/``, ``head/``, ``loss/``, ``data/``, ``trainer/``, ``sweep/``) is
    searched separately, so an experiment in a user folder composes the built-in encoders, heads, losses and
    data files, and a user file of the same name shadows a built-in one.

    Raises:
        ConfigError: a folder of ``$AQA_CONFIG_PATH`` does not exist.
    """
    env = [_config_folder(d, CONFIG_PATH_ENV) for d in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if d]
    return list(dict.fromkeys([*_cli_config_dirs, *env, CONFIG_DIR]))


def _dirs(config_dir: ConfigDirs) -> list[Path]:
    if config_dir is None:
        return config_dirs()
    if isinstance(config_dir, Path | str):
        return [Path(config_dir)]
    return [Path(d) for d in config_dir]


def _searched(dirs: Sequence[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


def available(group: str, config_dir: ConfigDirs = None) -> list[str]:
    """Names of the YAML files in one config group (``encoder``, ``head``, ``experiment``, ...), from every
    folder of the search path (:func:`config_dirs`, or the folder(s) given)."""
    return sorted({p.stem for d in _dirs(config_dir) for p in (d / group).glob("*.yaml")})


def find_config(group: str, name: str, config_dir: ConfigDirs = None) -> Path | None:
    """The file ``GROUP/NAME.yaml`` in the first folder of the search path that has it, else None."""
    for d in _dirs(config_dir):
        path = d / group / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def _load_group(group: str, name: str, config_dir: ConfigDirs) -> DictConfig:
    path = find_config(group, name, config_dir)
    if path is None:
        dirs = _dirs(config_dir)
        raise ConfigError(f"unknown {group} {name!r}; choose from {available(group, dirs)} "
                          f"(searched {_searched(dirs)}; add folders with {CONFIG_PATH_ENV} or --config-dir)")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg


def _task_component(group: str, value: Any, config_dir: ConfigDirs) -> DictConfig:
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


def compose(experiment: str, overrides: Sequence[str] = (), config_dir: ConfigDirs = None) -> DictConfig:
    """Compose an experiment config and apply command-line overrides.

    Args:
        experiment: name of a file in ``experiment/`` of the search path (without ``.yaml``).
        overrides: ``key=value`` strings (OmegaConf dotlist syntax).
        config_dir: a config folder or a list of them, searched in order (default :func:`config_dirs`).

    Raises:
        ConfigError: unknown experiment, component name or key, with the valid choices in the message.
    """
    config_dir = _dirs(config_dir)  # read the search path once
    exp = _load_group("experiment", experiment, config_dir)
    selections, dotlist = _split_overrides(overrides)
    defaults = OmegaConf.to_container(exp.pop("defaults", OmegaConf.create({})))
    assert isinstance(defaults, dict)
    unknown = set(defaults) - set(GROUPS)
    if unknown:
        raise ConfigError(f"experiment {experiment!r}: unknown defaults group(s) {sorted(unknown)}; groups are {list(GROUPS)}")

    cfg = OmegaConf.load(find_config("", "train", config_dir) or CONFIG_DIR / "train.yaml")
    for group in GROUPS:
        name = selections.get(group, defaults.get(group))
        if name is None:
            raise ConfigError(f"experiment {experiment!r} selects no {group}; add `defaults: {{{group}: NAME}}`")
        cfg[group] = _load_group(group, name, config_dir)
    for key, default in TRAINER_LIMITS.items():
        if key not in cfg.trainer:
            cfg.trainer[key] = default
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
        if "normalize" not in task:  # so that tasks.T.normalize=zscore overrides any experiment
            task.normalize = None
        if "scale" not in task:  # the label's rating scale: set here, or recorded by aqa train (aqa.eval.scales)
            task.scale = None
        for term_name, term in (task.get("terms") or {}).items():  # further loss terms on the same head
            if not isinstance(term, DictConfig) or "loss" not in term or "label" not in term:
                raise ConfigError(f"task {task_name!r} term {term_name!r} needs `loss` and `label`, got {term!r}")
            term.loss = _task_component("loss", term.loss, config_dir)

    OmegaConf.set_struct(cfg, True)
    if dotlist:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(dotlist)))
        except (ConfigKeyError, ConfigAttributeError) as err:
            raise ConfigError(_unknown_key_message(cfg, err)) from None
        except OmegaConfBaseException as err:
            raise ConfigError(f"invalid override: {err}") from None
    resolve_encoder(cfg.encoder, config_dir)
    validate(cfg)
    return cfg


def encoder_config(entry: Any, config_dir: ConfigDirs = None) -> DictConfig:
    """An encoder's complete config, as :func:`aqa.encoders.build_encoder` takes it, from a name or a mapping.

    A name loads ``configs/encoder/NAME.yaml``. A mapping's ``name`` picks the file and its other keys override
    the file's (``{name: wavlm_base_plus, checkpoint: /path}``, ``{name: wavlm_base_plus_tiny, freeze: true}``)
    or add to them. The result keeps the file's own ``name``, the registry key (a ``NAME_tiny.yaml`` names its
    full-size builder). A fusion's members are resolved the same way (:func:`resolve_encoder`).

    Raises:
        ConfigError: not a name or a mapping with ``name``, or no such encoder file.
    """
    if isinstance(entry, str):
        entry = {"name": entry}
    if isinstance(entry, DictConfig):
        entry = OmegaConf.to_container(entry)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError(f"an encoder must be a name or a mapping with `name`, got {entry!r}")
    overrides = {k: v for k, v in entry.items() if k != "name"}
    cfg = OmegaConf.merge(_load_group("encoder", entry["name"], config_dir), OmegaConf.create(overrides))
    assert isinstance(cfg, DictConfig)
    return resolve_encoder(cfg, config_dir)


def resolve_encoder(cfg: DictConfig, config_dir: ConfigDirs = None) -> DictConfig:
    """Resolve a fusion's members in place: each entry of ``encoders`` (a name, or a mapping with ``name``
    overriding that file) becomes its complete config (:func:`encoder_config`), so the encoders never read
    YAML. Any other encoder config is returned unchanged. Returns ``cfg``.

    Raises:
        ConfigError: ``encoders`` is not a list, or a member is not a name or a mapping with ``name``, or
            names no encoder file.
    """
    if cfg.get("name") != FUSION or "encoders" not in cfg:
        return cfg
    members = cfg.encoders
    if not isinstance(members, ListConfig):
        raise ConfigError(f"fusion `encoders` must be a list of encoder names or configs, got {members!r}")
    cfg.encoders = [encoder_config(member, config_dir) for member in members]
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
    # The registries import every encoder family (transformers, peft: seconds); `aqa prep`, `aqa metric` and
    # `aqa list`, which read this module, never validate, so they do not pay for them.
    from aqa.encoders import ENCODERS
    from aqa.heads import HEADS, NORMALIZATIONS, TRUNKS
    from aqa.losses import LOSSES

    def check(kind: str, name: Any, registry: Iterable[str]) -> None:
        if name not in registry:
            raise ConfigError(f"unknown {kind} {name!r}; choose from {sorted(registry)}")

    check("encoder", cfg.encoder.name, ENCODERS)
    if not cfg.tasks:
        raise ConfigError("the experiment defines no tasks")
    for name, task in cfg.tasks.items():
        check("head", task.head.name, HEADS)
        check("loss", task.loss.name, LOSSES)
        check("anchors", task.get("anchors", "all"), ANCHORS)
        if task.get("normalize") not in (None, *NORMALIZATIONS):
            raise ConfigError(f"tasks.{name}.normalize={task.normalize!r} is invalid: choose from "
                              f"{list(NORMALIZATIONS)} (z-score the label by the training split's mean and std) "
                              "or null (labels as they are)")
        if task.get("scale") is not None and scale_pair(task.scale) is None:
            raise ConfigError(f"tasks.{name}.scale={_show(task.scale)} is invalid: expected [min, max] of the label's "
                              "rating scale (e.g. [1, 5] for MOS, [0, 100] for MUSHRA), or null (taken from the shards)")
        for term in (task.get("terms") or {}).values():
            check("loss", term.loss.name, LOSSES)
            check("anchors", term.get("anchors", "all"), ANCHORS)
    trunk = cfg.get("trunk")
    if trunk is not None:
        if not isinstance(trunk, DictConfig) or "name" not in trunk:
            raise ConfigError(f"trunk: a mapping {{name: ..., shared: true|false, ...}} or null, got {_show(trunk)}")
        check("trunk", trunk.name, TRUNKS)
        if not isinstance(trunk.get("shared", True), bool):
            raise ConfigError(f"trunk.shared={_show(trunk.shared)} is invalid: expected true (one trunk for every "
                              "task) or false (one per task)")
    check("logger", cfg.logger, LOGGERS)
    check("monitor mode", cfg.monitor.mode, ("min", "max"))
    check("nan_policy", cfg.get("nan_policy", "skip"), NAN_POLICIES)
    _check_targets(cfg)


# ---------------------------------------------------------------------------------------------------------
# Values: checked before a run builds or writes anything (`aqa train`), one line per problem.

_ABSENT = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= low


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _positive(v: Any) -> bool:
    return _is_number(v) and v > 0


def _non_negative(v: Any) -> bool:
    return _is_number(v) and v >= 0


def _batches(allow_zero: bool) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:  # an int counts batches, a float is a fraction of the epoch
        if _is_int(v):
            return v >= (0 if allow_zero else 1)
        return isinstance(v, float) and (0.0 <= v <= 1.0 if allow_zero else 0.0 < v <= 1.0)

    return ok


def _devices(v: Any) -> bool:
    if _is_int(v):
        return v >= 1 or v == -1
    if isinstance(v, str):
        return v == "auto" or re.fullmatch(r"-1|\d+|\d+(\s*,\s*\d+)*,?", v.strip()) is not None
    if isinstance(v, ListConfig | list | tuple):
        return len(v) > 0 and all(_is_int(i) and i >= 0 for i in v)
    return False


def _max_time(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", v.strip()) is not None
    if isinstance(v, DictConfig | dict):
        keys = {"weeks", "days", "hours", "minutes", "seconds"}
        return len(v) > 0 and set(v) <= keys and all(_non_negative(x) for x in v.values())
    return False


# key, check, what a valid value is; a key the config does not have is not checked
_VALUE_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("seed", lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    ("checkpoint_every_n_steps", _optional(_int_at_least(0)), "an integer >= 0 (0: off)"),
    ("trainer.max_steps", _optional(lambda v: _is_int(v) and (v == -1 or v >= 1)),
     "an integer >= 1, or -1/null (no step limit)"),
    ("trainer.max_time", _max_time, "null, 'DD:HH:MM:SS' (e.g. 00:12:00:00) or {days: D, hours: H, minutes: M, seconds: S}"),
    ("trainer.devices", _devices, "an integer >= 1, -1 or 'auto' (all), or a list of device indices like [0,1]"),
    ("trainer.num_nodes", _int_at_least(1), "an integer >= 1"),
    ("trainer.limit_train_batches", _optional(_batches(False)),
     "null, a number of batches >= 1 or a fraction in (0.0, 1.0]"),
    ("trainer.limit_val_batches", _optional(_batches(True)), "null, a number of batches >= 0 or a fraction in [0.0, 1.0]"),
    ("trainer.limit_test_batches", _optional(_batches(True)), "null, a number of batches >= 0 or a fraction in [0.0, 1.0]"),
    ("trainer.gradient_clip_val", _optional(_non_negative), "a number >= 0, or null (no clipping)"),
    ("trainer.log_every_n_steps", _optional(_int_at_least(1)), "an integer >= 1"),
    ("trainer.num_sanity_val_steps", _optional(_int_at_least(-1)), "an integer >= 0, or -1 (all)"),
    ("trainer.check_val_every_n_epoch", _optional(_int_at_least(1)), "an integer >= 1"),
    ("trainer.accumulate_grad_batches", _int_at_least(1), "an integer >= 1"),
    ("optimizer.lr", _positive, "a positive finite number, e.g. 1e-4"),
    ("optimizer.weight_decay", _non_negative, "a finite number >= 0"),
    ("scheduler.factor", lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    ("scheduler.patience", _int_at_least(0), "an integer >= 0"),
    ("early_stopping.patience", _int_at_least(1), "an integer >= 1 (validations without improvement)"),
    ("early_stopping.min_delta", _optional(_non_negative), "a number >= 0, or null"),
    ("data.groups_per_batch", _int_at_least(1), "an integer >= 1"),
    ("data.crop_s", _optional(_positive), "a positive number of seconds, or null (whole clips)"),
    ("data.val_crop_s", _optional(_positive), "a positive number of seconds, or null (whole clips)"),
    ("data.num_workers", _optional(_int_at_least(0)), "an integer >= 0, or null (min(4, cores - 1))"),
    ("data.shuffle_groups", _int_at_least(0), "an integer >= 0 (<= 1: no shuffling)"),
    ("data.versions_per_group", _optional(_int_at_least(1)), "an integer >= 1, or null (all versions)"),
)


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: cannot be resolved ({err})".replace("\n", " ")) from None


def _show(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return repr(value)


def _bad(key: str, value: Any, expected: str) -> str:
    return f"{key}={_show(value)} is invalid: expected {expected}"


def value_problems(cfg: DictConfig) -> list[str]:
    """Every value of ``cfg`` outside its valid type or range, one line each (empty: all fine)."""
    problems = []
    for key, check, expected in _VALUE_RULES:
        value = _select(cfg, key)
        if value is not _ABSENT and not check(value):
            problems.append(_bad(key, value, expected))

    epochs = _select(cfg, "trainer.max_epochs")
    if epochs is _ABSENT or (_is_int(epochs) and epochs >= 1):
        pass
    elif epochs is None or (_is_int(epochs) and epochs == -1):
        steps, time = _select(cfg, "trainer.max_steps"), _select(cfg, "trainer.max_time")
        bounded = (_is_int(steps) and steps >= 1) or time not in (None, _ABSENT)
        if not bounded:
            problems.append(
                f"trainer.max_epochs={_show(epochs)} would train without end: give an integer >= 1, or ask for "
                "no epoch limit with trainer.max_steps=N or trainer.max_time=DD:HH:MM:SS as well"
            )
    else:
        problems.append(_bad("trainer.max_epochs", epochs,
                             "an integer >= 1 (or -1 together with trainer.max_steps or trainer.max_time)"))
    return problems + label_scale_problems(cfg)


def label_scale_problems(cfg: DictConfig) -> list[str]:
    """A difference-only loss (``Loss.difference_only``: MMMOS' Con ``pairwise_margin`` and ``dcq``) on a task
    whose labels are not z-scored, one line each. Such a loss gives the output bias no gradient, so the scores'
    level is wherever initialisation and the other weights leave it: their MSE, and any ensemble's, is arbitrary.
    z-scoring (``tasks.X.normalize: zscore``) starts that level at the training labels' mean and maps the scores
    back to the label scale. A loss that pins the level only loosely (``Loss.loose_level``: UTMOS, whose clipped
    MSE counts errors beyond ``tau`` only) is logged as a warning instead: its level is right to within ``tau``
    label units, but ``tau`` and ``margin`` are meant for z-scored labels (MMMOS' release)."""
    from aqa.losses import LOSSES

    problems = []
    tasks = cfg.get("tasks")
    for name, task in (tasks.items() if isinstance(tasks, DictConfig) else []):
        if task.get("normalize"):
            continue
        for where, spec in [("loss", task.get("loss")),
                            *((f"terms.{k}.loss", t.get("loss")) for k, t in (task.get("terms") or {}).items())]:
            loss = LOSSES.get(spec.get("name")) if isinstance(spec, DictConfig) else None
            if getattr(loss, "input_kind", None) != "score":
                continue
            if loss.difference_only:
                problems.append(
                    f"tasks.{name}.{where}={spec.name} depends on score differences only: it leaves the scores' "
                    f"level (the output bias) untrained, so it needs z-scored labels: tasks.{name}.normalize=zscore"
                )
            elif loss.loose_level:
                log.warning("tasks.%s.%s=%s on labels that are not z-scored: its tau and margin are in label units "
                            "(the released values assume z-scored labels); tasks.%s.normalize=zscore z-scores them",
                            name, where, spec.name, name)
    return problems


def _tar_state(path: str) -> str:
    """``"samples"`` when the tar file has a member, ``"empty"`` when none, else why it cannot be read."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty"
        with tarfile.open(path, "r:*") as tar:
            return "samples" if tar.next() is not None else "empty"
    except tarfile.ReadError as err:
        return f"not a readable tar file ({err})"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"


def _manifest_note(shards: Sequence[str]) -> str:
    """What the ``manifest.json`` beside empty shards says about their split (``aqa prep`` writes it)."""
    folder = Path(shards[0]).parent
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    names = {Path(s).name for s in shards}
    parts = [
        f"split {name!r} has {split.get('samples', '?')} samples"
        for name, split in (manifest.get("splits") or {}).items()
        if names & set(split.get("shards", []))
    ]
    skipped = manifest.get("skipped") or []
    if skipped:
        first = skipped[0]
        parts.append(f"prep skipped {len(skipped)} input(s), e.g. {first.get('unit', first.get('source', '?'))}: "
                     f"{first.get('reason', '?')}")
    return f"; {path}: {', '.join(parts)}" if parts else ""


def _shard_problem(key: str, urls: list[str], what: str) -> tuple[str, str]:
    """(``"ok"``, ``""``) when a shard holds samples (remote URLs are assumed to), else (``"empty"`` or
    ``"unreadable"``, the problem line)."""
    local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
    if len(local) < len(urls):
        return "ok", ""
    for url in local:
        state = _tar_state(url)
        if state == "samples":
            return "ok", ""
        if state != "empty":
            return "unreadable", f"{key}: {what} {url} is {state}"
    shown = local[0] if len(local) == 1 else f"{len(local)} shards, e.g. {local[0]}"
    return "empty", f"{key}: the {what} hold no samples ({shown} is an empty tar file{_manifest_note(local)})"


def data_problems(cfg: DictConfig) -> list[str]:
    """The train and validation shards: that they exist and hold samples, and that a ``val/`` metric to
    monitor has validation data. At most one line (empty: all fine)."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or "train_urls" not in data:
        return []
    train_urls = _select(cfg, "data.train_urls")
    if not train_urls:
        return [_bad("data.train_urls", train_urls, "shard paths, e.g. data/codec/train-*.tar")]
    try:
        train = expand_shard_urls(_as_list(train_urls), "training shards")
    except FileNotFoundError as err:
        return [f"data.train_urls: {err}"]
    state, problem = _shard_problem("data.train_urls", train, "training shards")
    if state != "ok":
        patterns = [str(u) for u in (train_urls if isinstance(train_urls, ListConfig) else [train_urls])]
        return [f"{problem}; {build_hint(patterns).replace('build them', 'rebuild them')}, or point data.train_urls "
                "at other shards"]

    metric = _select(cfg, "monitor.metric")
    needs_val = isinstance(metric, str) and metric.startswith("val/")
    fix = (f"monitor.metric={metric} (best checkpoint, LR scheduler) needs validation data: add some (more or "
           "longer clips for `aqa prep`), or monitor a training metric: monitor.metric=train/loss monitor.mode=min")
    if needs_val and _select(cfg, "trainer.limit_val_batches") == 0:
        return [f"trainer.limit_val_batches=0 turns validation off, but {fix}"]
    val_urls = _select(cfg, "data.val_urls")
    if not val_urls:  # null: no validation
        return [f"data.val_urls={_show(val_urls)} (no validation), but {fix}"] if needs_val else label_problems(cfg, train)
    try:
        val = expand_shard_urls(_as_list(val_urls), "validation shards")
    except FileNotFoundError as err:
        return [f"data.val_urls: {err}"]
    state, problem = _shard_problem("data.val_urls", val, "validation shards")
    if state == "unreadable" or (state == "empty" and needs_val):
        return [f"{problem}, but {fix}" if state == "empty" else problem]
    if state == "empty":
        log.warning("%s: training runs without validation", problem)
    return label_problems(cfg, train)


def task_labels(cfg: DictConfig) -> dict[str, str]:
    """The batch label each task's loss terms read: ``tasks.T.label`` and ``tasks.T.terms.K.label`` -> label."""
    found = {}
    tasks = cfg.get("tasks")
    for name, task in (tasks.items() if isinstance(tasks, DictConfig) else []):
        if isinstance(task, DictConfig) and task.get("label") is not None:
            found[f"tasks.{name}.label"] = str(task.label)
        for term, spec in ((task.get("terms") or {}).items() if isinstance(task, DictConfig) else []):
            if isinstance(spec, DictConfig) and spec.get("label") is not None:
                found[f"tasks.{name}.terms.{term}.label"] = str(spec.label)
    return found


def label_problems(cfg: DictConfig, shards: Sequence[str]) -> list[str]:
    """Every task label (:func:`task_labels`) and ``data.label_keys`` entry that the training ``shards`` do not
    carry, one line naming the keys they do carry (:func:`aqa.data.manifest.shard_label_keys`: the manifest's
    label statistics and the first sample's JSON). Nothing is checked for remote shards."""
    carried = shard_label_keys(shards)
    if carried is None:
        return []
    keys, where = carried
    wanted = {**{f"data.label_keys[{i}]": str(k) for i, k in enumerate(_label_keys(cfg))}, **task_labels(cfg)}
    missing = {key: label for key, label in wanted.items() if label not in keys}
    if not missing:
        return []
    shown = ", ".join(f"{key}={label!r}" for key, label in missing.items())
    return [f"{shown}: not a label of the training shards, which carry {keys} (read from {where})"]


def _label_keys(cfg: DictConfig) -> list[str]:
    keys = _select(cfg, "data.label_keys")
    return [] if keys is _ABSENT or keys is None else [str(k) for k in keys]


def _as_list(urls: Any) -> str | list[str]:
    return [str(u) for u in urls] if isinstance(urls, ListConfig | list | tuple) else str(urls)


def check_values(cfg: DictConfig, data: bool = True) -> None:
    """Check a composed config's values before a run builds or writes anything.

    Types and ranges of the trainer, optimizer, scheduler and data settings; an unbounded
    ``trainer.max_epochs`` (-1) only with ``trainer.max_steps`` or ``trainer.max_time``; with ``data``, that
    the train and validation shards exist and hold samples (validation too when ``monitor.metric`` is a
    ``val/`` metric).

    Raises:
        ConfigError: one line, each problem naming the key, the value and the valid range (``; `` between).
    """
    problems = value_problems(cfg)
    if data and not problems:
        problems = data_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))


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
    """Read a saved resolved config (e.g. ``runs/NAME/config.yaml``).

    Runs saved before the tiny encoders became YAML variants name the variant (``mert_v1_95m_tiny``) where
    the builder now stands, and a fusion's members by name: both are read as today's configs would hold them.
    """
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    encoder = cfg.get("encoder")
    if isinstance(encoder, DictConfig) and isinstance(encoder.get("name"), str):
        if find_config("encoder", encoder.name) is not None:
            encoder.name = _load_group("encoder", encoder.name, None).name
        resolve_encoder(encoder)
    return cfg
