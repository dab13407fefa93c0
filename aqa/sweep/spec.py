"""A sweep file (``configs/sweep/NAME.yaml``, format in :mod:`aqa.sweep`): parsed and checked into a
:class:`Sweep`; where its trials go by default."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aqa.config import ConfigError, available, find_config

METHODS = ("grid", "random")
MODES = ("max", "min")
SWEEP_KEYS = ("experiment", "method", "trials", "seed", "metric", "mode", "overrides", "parameters")
RANGE_KEYS = ("min", "max", "log")
WILDCARD = "tasks.*."


@dataclass(frozen=True)
class Range:
    """A random-search range: uniform in [low, high] (log-uniform with ``log``; integers when both are)."""

    low: float
    high: float
    log: bool = False

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def draw(self, rng: np.random.Generator) -> float | int:
        if self.integer and not self.log:
            return int(rng.integers(self.low, self.high + 1))  # every integer of [low, high] equally likely
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        # integer log ranges round as W&B's q_log_uniform_values (q 1) does
        return min(max(int(round(value)), self.low), self.high) if self.integer else float(f"{value:.4g}")


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file (see the module docstring)."""

    name: str
    path: Path
    experiment: str | None
    method: str
    parameters: dict[str, list[Any] | Range]
    overrides: tuple[str, ...] = ()
    metric: str | None = None
    mode: str | None = None
    trials: int | None = None
    seed: int = 0


def sweep_path(name_or_path: str | Path) -> Path:
    """A sweep file: a path, or a name in ``sweep/`` of the config search path (``mmmos_tiny``;
    :func:`aqa.config.config_dirs`).

    Raises:
        FileNotFoundError: neither exists.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = find_config("sweep", str(name_or_path))
    if named is not None:
        return named
    raise FileNotFoundError(
        f"no sweep file {str(name_or_path)!r}; give a path or one of {available('sweep')}"
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _parameter(key: str, spec: Any, method: str) -> tuple[list[Any] | Range | None, str | None]:
    """(the parsed values or range, None) or (None, the problem)."""
    where = f"parameters.{key}"
    if "*" in key and (not key.startswith(WILDCARD) or "*" in key[len(WILDCARD) :] or key == WILDCARD):
        return None, f"{where}: the only wildcard is {WILDCARD}KEY (every task), e.g. tasks.*.loss"
    if isinstance(spec, list):
        if not spec:
            return None, f"{where}: an empty list of values"
        if any(isinstance(v, dict | list) for v in spec) and key == "experiment":
            return None, f"{where}: experiment names, got {spec!r}"
        if len({json.dumps(v, sort_keys=True) for v in spec}) < len(spec):
            return None, f"{where}: a value is listed twice in {spec!r}"
        return list(spec), None
    if isinstance(spec, dict):
        if method != "random":
            return None, f"{where}: a range {{min, max}} needs method: random (grid takes a list of values)"
        unknown = sorted(set(spec) - set(RANGE_KEYS))
        if unknown or "min" not in spec or "max" not in spec:
            return None, f"{where}: a range is {{min: A, max: B[, log: true]}}, got {spec!r}"
        low, high, use_log = spec["min"], spec["max"], spec.get("log", False)
        if not (_is_number(low) and _is_number(high) and low < high) or not isinstance(use_log, bool):
            return None, f"{where}: min < max must be numbers and log true/false, got {spec!r}"
        if use_log and low <= 0:
            return None, f"{where}: a log range needs min > 0, got {low!r}"
        return Range(low, high, use_log), None
    return None, f"{where}: a list of values or a range {{min, max[, log]}}, got {spec!r}"


def load_sweep(path: str | Path) -> Sweep:
    """Parse and check a sweep file (its own keys; the trials are checked by :func:`plan`).

    Raises:
        FileNotFoundError: no such file or sweep name.
        ConfigError: one line naming the file and every problem (``; `` between).
    """
    path = sweep_path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping with keys {list(SWEEP_KEYS)}")
    problems = [f"unknown key {k!r} (keys: {', '.join(SWEEP_KEYS)})" for k in raw if k not in SWEEP_KEYS]
    method = raw.get("method", "grid")
    if method not in METHODS:
        problems.append(f"method: {method!r} is not one of {list(METHODS)}")
    params_raw = raw.get("parameters")
    parameters: dict[str, list[Any] | Range] = {}
    if not isinstance(params_raw, dict) or not params_raw:
        problems.append(
            "parameters: a mapping of config keys to the values to sweep, e.g. {tasks.quality.loss: [mse, ccc]}"
        )
    else:
        for key, spec in params_raw.items():
            values, problem = _parameter(str(key), spec, method)
            if problem:
                problems.append(problem)
            else:
                parameters[str(key)] = values  # type: ignore[assignment]
    experiment = raw.get("experiment")
    swept_experiment = isinstance(params_raw, dict) and "experiment" in params_raw
    if swept_experiment == (experiment is not None):
        problems.append(
            "give the base experiment either as `experiment: NAME` or as `parameters: {experiment: [...]}`"
            if not swept_experiment
            else "experiment: is also swept under parameters; keep one"
        )
    elif experiment is not None and not isinstance(experiment, str):
        problems.append(f"experiment: a name from configs/experiment, got {experiment!r}")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        problems.append(f"overrides: a list of key=value strings, got {overrides!r}")
        overrides = []
    metric, mode = raw.get("metric"), raw.get("mode")
    if metric is not None and (not isinstance(metric, str) or not metric.startswith("val/")):
        problems.append(
            f"metric: a validation metric the runs log (val/loss, val/TASK/srcc, ...), got {metric!r}"
        )
    if mode is not None and mode not in MODES:
        problems.append(f"mode: {mode!r} is not one of {list(MODES)}")
    trials, seed = raw.get("trials"), raw.get("seed", 0)
    if method == "random" and not (isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1):
        problems.append(f"trials: method random needs trials: N (an integer >= 1), got {trials!r}")
    if method == "grid" and trials is not None:
        problems.append("trials: only for method random (a grid runs every combination)")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        problems.append(f"seed: an integer >= 0, got {seed!r}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return Sweep(
        path.stem, path, experiment, method, parameters, tuple(overrides), metric, mode, trials, seed
    )


def default_out(sweep: Sweep) -> Path:
    """Where a sweep's trials go unless ``--out`` says otherwise: ``runs/sweeps/NAME``."""
    return Path("runs") / "sweeps" / sweep.name
