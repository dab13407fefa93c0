"""A sweep's trials: expansion (grid or seeded random draws), naming, composition and the check of every
trial before any trains; a W&B agent's ``KEY=VALUE`` values read back as the trial a local run names."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import DictConfig

from aqa.config import ConfigError, check_values, compose
from aqa.heads import HEADS, Kind
from aqa.sweep.spec import WILDCARD, Range, Sweep
from aqa.tasks.multitask import COMPOSITE


@dataclass(frozen=True)
class Trial:
    """One point of a sweep: its swept values, the experiment it composes and its folder name."""

    name: str
    experiment: str
    values: dict[str, Any] = field(default_factory=dict)  # swept key -> value (wildcards unexpanded)
    overrides: tuple[str, ...] = ()  # fixed + command-line extras + swept values, wildcards unexpanded


def override_value(value: Any) -> str:
    """A Python value as the right-hand side of a ``key=value`` override (YAML: ``true``, ``null``, ``[1, 2]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _labels(keys: Sequence[str]) -> dict[str, str]:
    # the last dotted component (`loss` of tasks.*.loss), or the whole key where two would share one
    last = {k: k.rsplit(".", 1)[-1] for k in keys}
    counts = {v: list(last.values()).count(v) for v in last.values()}
    return {k: (last[k] if counts[last[k]] == 1 else k.replace("*", "all")) for k in keys}


def trial_name(values: Mapping[str, Any], experiment: str) -> str:
    """The folder name of a trial: its swept values made readable, plus a hash of them (and of the experiment),
    so names are unique and the same values always give the same name."""
    labels = _labels(list(values))
    parts = [
        override_value(v) if k == "experiment" else f"{labels[k]}-{override_value(v)}"
        for k, v in values.items()
    ]
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", "__".join(parts)).strip("_")[:80]
    identity = json.dumps({"experiment": experiment, **values}, sort_keys=True)
    return f"{slug}-{hashlib.sha1(identity.encode()).hexdigest()[:6]}"


def _trial(sweep: Sweep, values: dict[str, Any], extra: Sequence[str]) -> Trial:
    experiment = values.get("experiment", sweep.experiment)
    swept = [f"{k}={override_value(v)}" for k, v in values.items() if k != "experiment"]
    return Trial(trial_name(values, experiment), experiment, dict(values), (*sweep.overrides, *swept, *extra))


def expand(sweep: Sweep, extra: Sequence[str] = ()) -> list[Trial]:
    """The sweep's trials in order: every combination (grid, the parameters' order) or ``trials`` distinct
    seeded draws (random). ``extra`` overrides are added to every trial (after the sweep's own).

    Raises:
        ConfigError: a random search whose space holds fewer distinct points than ``trials``.
    """
    keys = list(sweep.parameters)
    if sweep.method == "grid":
        combos = itertools.product(*(sweep.parameters[k] for k in keys))  # type: ignore[misc]
        return [_trial(sweep, dict(zip(keys, combo, strict=True)), extra) for combo in combos]
    rng = np.random.default_rng(sweep.seed)
    trials: dict[str, Trial] = {}
    assert sweep.trials is not None
    for _ in range(100 * sweep.trials):
        values = {}
        for k in keys:
            spec = sweep.parameters[k]
            values[k] = spec.draw(rng) if isinstance(spec, Range) else spec[int(rng.integers(len(spec)))]
        trial = _trial(sweep, values, extra)
        trials.setdefault(trial.name, trial)
        if len(trials) == sweep.trials:
            return list(trials.values())
    raise ConfigError(
        f"{sweep.path}: trials: {sweep.trials} distinct draws asked, but 100 x that many draws gave "
        f"only {len(trials)}; lower trials or widen the parameters"
    )


def _expand_wildcards(trial: Trial) -> list[str]:
    """The trial's overrides with ``tasks.*.KEY=V`` replaced by ``tasks.T.KEY=V`` for each task of its experiment."""
    plain = [o for o in trial.overrides if not o.startswith(WILDCARD)]
    if len(plain) == len(trial.overrides):
        return list(trial.overrides)
    tasks = list(compose(trial.experiment, plain).tasks)
    out = []
    for item in trial.overrides:
        if item.startswith(WILDCARD):
            out += [f"tasks.{t}.{item[len(WILDCARD) :]}" for t in tasks]
        else:
            out.append(item)
    return out


def compose_trial(trial: Trial, out: str | Path) -> DictConfig:
    """The trial's config: its experiment with its overrides (wildcards expanded) and ``run_dir=OUT/NAME``.

    Raises:
        ConfigError: an override compose rejects (unknown key, component or value).
    """
    return compose(trial.experiment, [*_expand_wildcards(trial), f"run_dir={Path(out) / trial.name}"])


def _metric_problem(metric: str, cfg: DictConfig) -> str | None:
    parts = metric.split("/")
    if metric == "val/loss" or (len(parts) == 3 and parts[1] in cfg.tasks and parts[2] in ("loss", "srcc")):
        return None
    if metric == f"val/{COMPOSITE}/srcc" and len(cfg.tasks) > 1:
        return None
    embedding = [name for name, task in cfg.tasks.items() if getattr(HEADS[task.head.name], "output", None)
                 is Kind.EMBEDDING]
    if len(parts) == 3 and parts[1] in embedding and parts[2] in ("srcc_mismatched", "group_order"):
        return None
    return (
        f"metric {metric!r} is not measured for {cfg.experiment}: val/loss, val/TASK/loss, val/TASK/srcc with TASK "
        f"in {list(cfg.tasks)}, val/{COMPOSITE}/srcc for several tasks"
        + (f", val/TASK/srcc_mismatched with TASK in {embedding} (and val/TASK/group_order)" if embedding else "")
    )


def plan(
    sweep: Sweep, out: str | Path, extra: Sequence[str] = (), check_data: bool = True
) -> tuple[list[Trial], list[DictConfig], str, str]:
    """Expand the sweep and compose and check every trial before any trains.

    Returns:
        (trials, their configs, the ranking metric, its mode: max | min).

    Raises:
        ConfigError: one line naming the sweep file and each failing trial with its problem (``; `` between).
    """
    trials = expand(sweep, extra)
    configs: list[DictConfig] = []
    problems: dict[str, list[str]] = {}  # problem -> the trials that have it (a shared one is said once)
    for trial in trials:
        try:
            cfg = compose_trial(trial, out)
            check_values(cfg, data=check_data)
            configs.append(cfg)
        except (ConfigError, FileNotFoundError) as err:
            problems.setdefault(str(err), []).append(trial.name)
    if problems:
        failing = sum(map(len, problems.values()))
        said = [
            f"{'every trial' if len(names) == len(trials) else 'trial ' + ', '.join(names[:2])}"
            + (f" (+{len(names) - 2})" if 2 < len(names) < len(trials) else "")
            + f": {problem}"
            for problem, names in list(problems.items())[:3]
        ]
        more = f" (and {len(problems) - 3} more problems)" if len(problems) > 3 else ""
        raise ConfigError(
            f"{sweep.path}: {failing} of {len(trials)} trials do not compose: " + "; ".join(said) + more
        )
    metric = sweep.metric or configs[0].monitor.metric
    if sweep.metric and not sweep.mode and sweep.metric != configs[0].monitor.metric:
        raise ConfigError(f"{sweep.path}: mode: required with metric {sweep.metric!r} (max or min)")
    mode = sweep.mode or configs[0].monitor.mode
    bad = {p for cfg in configs if (p := _metric_problem(metric, cfg))}
    if bad:
        raise ConfigError(f"{sweep.path}: " + "; ".join(sorted(bad)))
    return trials, configs, metric, mode


def _parse_value(text: str, spec: list[Any] | Range) -> Any:
    if isinstance(spec, list):
        listed = [v for v in spec if text in (override_value(v), str(v))]
        if len(listed) == 1:
            return listed[0]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_assignment(sweep: Sweep, items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (a W&B agent's ``${args_no_hyphens}``) as one trial's values, in the sweep's key
    order, equal to the sweep's own values so that the trial gets the name a local run gives it: a listed value
    whose override text is VALUE, else an int, else a float (``1e-05``, which YAML reads as a string), else YAML.

    Raises:
        ConfigError: a malformed item, a key the sweep does not sweep, or a swept key missing.
    """
    given: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.lstrip("-").partition("=")
        if not sep:
            raise ConfigError(f"--trial {item!r} is not KEY=VALUE")
        if key not in sweep.parameters:
            raise ConfigError(
                f"--trial: {key!r} is not swept by {sweep.path}; its parameters are {list(sweep.parameters)}"
            )
        given[key] = _parse_value(value, sweep.parameters[key])
    missing = [k for k in sweep.parameters if k not in given]
    if missing:
        raise ConfigError(f"--trial: no value for {missing}")
    return {k: given[k] for k in sweep.parameters}
