"""Sweeps (``aqa sweep``): a grid or a seeded random search over config overrides, one trial after another.

A sweep file (``configs/sweep/NAME.yaml``)::

    experiment: mmmos_tiny            # the base experiment (or sweep `experiment` under parameters instead)
    method: grid                      # grid: every combination | random: `trials` seeded draws
    trials: 8                         # random only: how many distinct trials to draw
    seed: 0                           # random only: the draws' seed
    metric: val/quality/srcc          # what "best" means (default: the experiment's monitor.metric and mode)
    mode: max                         # max | min; required with metric unless metric is the monitor
    overrides: [trainer.max_epochs=2] # fixed for every trial (key=value, as `aqa train` takes them)
    parameters:                       # each key: a list of values (grid and random) or, random only,
      tasks.quality.head: [mlp, blstm_h]        # a range {min: A, max: B[, log: true]} (integers when A, B are)
      tasks.*.loss: [ccc, utmos]                # `tasks.*.KEY`: the same value for every task of the experiment
      optimizer.lr: {min: 1.0e-4, max: 1.0e-2, log: true}
      # experiment: [mmmos_bienc, mmmos]        # the experiment itself may be swept (each trial composes its own)

Each trial is ``compose(experiment, overrides + its values + command-line extras + run_dir=OUT/NAME)``; NAME
comes from its swept values alone (``head-mlp__loss-ccc-3fa2c1``: readable labels plus a hash of the values),
so the same trial always lands in the same folder. Every trial is composed and its values and shards checked
(:func:`aqa.config.check_values`) before the first one trains; a bad sweep is one line per problem.

Trials run through :func:`aqa.tasks.training.train`, each in ``OUT/NAME`` with ``OUT/NAME/trial.json``
recording its state (``running``, ``done`` with its metrics, ``failed`` with the error). ``OUT/sweep.csv`` is
rewritten after every state change: one row per trial with its swept values, status, rank by ``metric``, the
epoch of its best checkpoint and the validation metrics of that checkpoint (the experiment's
``monitor.metric`` picks it; ``metric`` ranks the trials). ``--resume`` skips finished trials, continues an
interrupted (``running``) one from its ``checkpoints/last.ckpt`` (``resume=true``) and starts failed ones again
(``overwrite=true``: a failed run's last state may be the cause).

``--wandb`` writes ``OUT/wandb_sweep.yaml``, the same search as a W&B sweep whose agents run
``aqa sweep SWEEP.yaml --out OUT --trial ${args_no_hyphens}``: one trial, composed, named and recorded exactly
as here, so agents on a cluster and a local ``--resume`` share trial folders; each agent rewrites
``sweep.csv`` from the trial records when its trial starts and ends.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from omegaconf import DictConfig
from tqdm import tqdm

from aqa.config import ConfigError, available, check_values, compose, find_config
from aqa.data.datamodule import datamodule_from_config
from aqa.files import write_text_atomic
from aqa.heads import HEADS, Kind
from aqa.tasks.multitask import COMPOSITE, load_run

log = logging.getLogger(__name__)

METHODS = ("grid", "random")
MODES = ("max", "min")
SWEEP_KEYS = ("experiment", "method", "trials", "seed", "metric", "mode", "overrides", "parameters")
RANGE_KEYS = ("min", "max", "log")
WILDCARD = "tasks.*."
TRIAL_FILE = "trial.json"
CSV_FILE = "sweep.csv"
WANDB_FILE = "wandb_sweep.yaml"
DONE, FAILED, RUNNING, PENDING = "done", "failed", "running", "pending"


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


@dataclass(frozen=True)
class Trial:
    """One point of a sweep: its swept values, the experiment it composes and its folder name."""

    name: str
    experiment: str
    values: dict[str, Any] = field(default_factory=dict)  # swept key -> value (wildcards unexpanded)
    overrides: tuple[str, ...] = ()  # fixed + command-line extras + swept values, wildcards unexpanded


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


# ---------------------------------------------------------------------------------------------------------
# Running: trial records, the best checkpoint's metrics, sweep.csv


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """A trial folder's ``trial.json`` (None when absent, unreadable or not a JSON object with a status)."""
    try:
        record = json.loads((Path(run_dir) / TRIAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("status"), str) else None


def _recorded_trials(out: Path) -> dict[str, tuple[Trial, dict[str, Any]]]:
    # every trial folder of `out` with a readable record: name -> (the trial as recorded, its record)
    found = {}
    for folder in sorted(out.glob(f"*/{TRIAL_FILE}")):
        record = read_record(folder.parent)
        if record is None:
            continue
        values = record.get("values") if isinstance(record.get("values"), dict) else {}
        overrides = record.get("overrides") if isinstance(record.get("overrides"), list) else []
        trial = Trial(
            folder.parent.name, str(record.get("experiment", "")), values, tuple(map(str, overrides))
        )
        found[trial.name] = (trial, record)
    return found


def _monitor_best(state: Mapping[str, Any]) -> float | None:
    # the ModelCheckpoint's best score among a Lightning checkpoint's callback states
    for name, cb in (state.get("callbacks") or {}).items():
        if str(name).startswith("ModelCheckpoint") and cb.get("best_model_score") is not None:
            return float(cb["best_model_score"])
    return None


def best_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The validation metrics of a trained run's best checkpoint (``best.ckpt``, else ``last.ckpt``).

    The checkpoint is validated again on the run's validation shards (one pass, no logger), so every metric
    the run logs in validation (``val/loss``, ``val/TASK/loss``, ``val/TASK/srcc``, ``val/TASK/srcc_mismatched``,
    ``val/TASK/group_order``) is
    that of the kept model.

    Returns:
        ``{"epoch": E, "monitor_best": the ModelCheckpoint's best score or None, "val/...": value, ...}``.
    """
    run_dir = Path(run_dir)
    which = "best" if (run_dir / "checkpoints" / "best.ckpt").is_file() else "last"
    ckpt = torch.load(
        run_dir / "checkpoints" / f"{which}.ckpt", map_location="cpu", weights_only=True, mmap=True
    )
    module, cfg = load_run(run_dir, which)
    found: dict[str, Any] = {
        "epoch": int(ckpt.get("epoch", -1)),
        "checkpoint": which,
        "monitor_best": _monitor_best(ckpt),
    }
    if not cfg.data.get("val_urls"):
        return found
    # the run's own validation settings (limit_val_batches: the batches its monitor saw), None dropped as
    # build_trainer does
    limit = cfg.trainer.get("limit_val_batches")
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        **({"limit_val_batches": limit} if limit is not None else {}),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    datamodule = datamodule_from_config(cfg, module.encoder.sample_rate)
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    for name, value in (results[0] if results else {}).items():
        found[name] = float(value)
    return found


def _rows(
    trials: Sequence[Trial], records: Mapping[str, dict[str, Any]], metric: str, mode: str, out: Path
) -> tuple[list[str], list[dict[str, Any]]]:
    done = [
        t.name
        for t in trials
        if records.get(t.name, {}).get("status") == DONE
        and _is_number((records[t.name].get("metrics") or {}).get(metric))
    ]
    ordered = sorted(done, key=lambda n: records[n]["metrics"][metric] * (-1 if mode == "max" else 1))
    rank = {name: i + 1 for i, name in enumerate(ordered)}
    params = list(dict.fromkeys(k for t in trials for k in t.values))
    extra_metrics = sorted(
        {
            m
            for r in records.values()
            if isinstance(r.get("metrics"), dict)
            for m in r["metrics"]
            if m.startswith("val/") and m != metric
        }
    )
    header = [
        "trial",
        "status",
        "rank",
        metric,
        "epoch",
        *params,
        *extra_metrics,
        "run_dir",
        "overrides",
        "error",
    ]
    rows = []
    for t in trials:
        rec = records.get(t.name) or {"status": PENDING}
        metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
        rows.append(
            {
                "trial": t.name,
                "status": rec["status"],
                "rank": rank.get(t.name, ""),
                metric: metrics.get(metric, ""),
                "epoch": metrics.get("epoch", ""),
                **{k: override_value(t.values[k]) if k in t.values else "" for k in params},
                **{m: metrics.get(m, "") for m in extra_metrics},
                "run_dir": str(out / t.name),
                "overrides": " ".join(t.overrides),
                "error": rec.get("error", ""),
            }
        )
    return header, rows


def write_csv(
    path: Path, trials: Sequence[Trial], records: Mapping[str, dict[str, Any]], metric: str, mode: str
) -> None:
    """Write ``sweep.csv`` (atomically): one row per trial, in the sweep's order."""
    header, rows = _rows(trials, records, metric, mode, path.parent)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _refresh_csv(
    out: Path, trials: Sequence[Trial], records: Mapping[str, dict[str, Any]], metric: str, mode: str
) -> None:
    # sweep.csv: the sweep's trials in order, then any other trial recorded in `out` (a W&B agent's random
    # draw), so every process that runs trials of the folder leaves it complete
    planned = {t.name for t in trials}
    others = {n: tr for n, tr in _recorded_trials(out).items() if n not in planned}
    write_csv(
        out / CSV_FILE,
        [*trials, *(t for t, _ in others.values())],
        {**{n: r for n, (_, r) in others.items()}, **records},
        metric,
        mode,
    )


def _record(trial: Trial, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "trial": trial.name,
        "status": status,
        "experiment": trial.experiment,
        "values": trial.values,
        "overrides": list(trial.overrides),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **fields,
    }


def run_trial(
    trial: Trial, cfg: DictConfig, train_fn: Callable[[DictConfig], Any] | None = None
) -> dict[str, Any]:
    """Train one trial in ``cfg.run_dir`` and record it. An interrupted trial (``trial.json`` says ``running``, or
    is missing) continues from its ``last.ckpt`` (``resume=true``); a failed one starts again
    (``overwrite=true``: its last state may be what failed, a NaN for one).

    Exceptions other than interrupts (``KeyboardInterrupt``, ``SystemExit``: SIGINT, SIGTERM) are recorded as
    a ``failed`` trial and not raised; an interrupt leaves the trial ``running``, to be resumed.

    Returns:
        The trial's record, also written to ``run_dir/trial.json``.
    """
    if train_fn is None:
        from aqa.tasks.training import train as train_fn
    run_dir = Path(cfg.run_dir)
    cfg = cfg.copy()
    previous = read_record(run_dir)
    if previous is not None and previous["status"] == FAILED:
        cfg.resume, cfg.overwrite = False, True
    elif (run_dir / "checkpoints" / "last.ckpt").is_file():
        cfg.resume = True  # an interrupted trial continues where it stopped
    write_text_atomic(
        run_dir / TRIAL_FILE, json.dumps(_record(trial, RUNNING, resumed=bool(cfg.resume)), indent=1)
    )
    try:
        train_fn(cfg)
        record = _record(trial, DONE, metrics=best_metrics(run_dir))
    except Exception as err:  # noqa: BLE001 - one failed trial must not end the sweep; the error is recorded
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        log.error("trial %s failed: %s: %s", trial.name, type(err).__name__, message)
        record = _record(trial, FAILED, error=f"{type(err).__name__}: {message}")
    write_text_atomic(run_dir / TRIAL_FILE, json.dumps(record, indent=1))
    return record


def default_out(sweep: Sweep) -> Path:
    """Where a sweep's trials go unless ``--out`` says otherwise: ``runs/sweeps/NAME``."""
    return Path("runs") / "sweeps" / sweep.name


def run_sweep(
    sweep: Sweep,
    out: str | Path | None = None,
    extra: Sequence[str] = (),
    resume: bool = False,
    progress: bool = True,
    train_fn: Callable[[DictConfig], Any] | None = None,
) -> list[dict[str, Any]]:
    """Run every trial of ``sweep`` one after another; write ``OUT/sweep.csv`` after each state change.

    Args:
        out: the sweep's folder (default ``runs/sweeps/NAME``); each trial trains in ``OUT/NAME``.
        extra: overrides added to every trial (after the sweep file's, before ``run_dir``).
        resume: continue a sweep in ``out``: finished trials are kept, interrupted ones continue from their
            ``last.ckpt``, failed ones start again. Without it, a folder that already holds trials (a record,
            ``sweep.csv`` or a trial folder with ``checkpoints/``) is refused.
        train_fn: what trains a config (default :func:`aqa.tasks.training.train`; tests inject failures).

    Returns:
        The rows of ``sweep.csv`` (dicts).

    Raises:
        ConfigError: a bad sweep or trial (before anything trains), a folder holding another sweep's trials
            without ``resume``, or a finished trial recorded with other overrides.
    """
    out = Path(out) if out is not None else default_out(sweep)
    trials, configs, metric, mode = plan(sweep, out, extra)
    records = {t.name: r for t in trials if (r := read_record(out / t.name))}
    trained = any((out / t.name / "checkpoints").exists() for t in trials)
    if not resume and (records or trained or (out / CSV_FILE).is_file()):
        raise ConfigError(
            f"{out} already holds a sweep: pass --resume to continue it, or --out DIR for a new one"
        )
    for t in trials:
        rec = records.get(t.name)
        if rec and rec.get("overrides") != list(t.overrides):
            raise ConfigError(
                f"trial {t.name} in {out} was run with overrides {rec.get('overrides')}, now "
                f"{list(t.overrides)}: resume with the same sweep and overrides, or use a new --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    # the sweep as run, for the record
    write_text_atomic(out / "sweep.yaml", sweep.path.read_text(encoding="utf-8"))
    todo = [
        (t, c) for t, c in zip(trials, configs, strict=True) if records.get(t.name, {}).get("status") != DONE
    ]
    if len(todo) < len(trials):
        log.info("resuming %s: %d of %d trials already done", out, len(trials) - len(todo), len(trials))
    _refresh_csv(out, trials, records, metric, mode)
    bar = tqdm(todo, desc=f"sweep {sweep.name}", unit="trial", file=sys.stderr, disable=not progress)
    for trial, cfg in bar:
        bar.set_postfix_str(trial.name)
        records[trial.name] = {"status": RUNNING}
        _refresh_csv(out, trials, records, metric, mode)
        records[trial.name] = run_trial(trial, cfg, train_fn)
        _refresh_csv(out, trials, records, metric, mode)
    return _rows(trials, records, metric, mode, out)[1]


def finished_runs(out: str | Path) -> list[Path]:
    """The run folders of a sweep's finished trials: every ``OUT/NAME/trial.json`` whose status is ``done``
    (trials run locally or by W&B agents), in the order of ``OUT/sweep.csv`` where it lists them, then by name.

    Raises:
        FileNotFoundError: ``out`` holds neither ``sweep.csv`` nor a trial record.
        ValueError: no trial of ``out`` is done.
    """
    out = Path(out)
    recorded = _recorded_trials(out)
    path = out / CSV_FILE
    if not path.is_file() and not recorded:
        raise FileNotFoundError(
            f"{out} is not a sweep folder: no {CSV_FILE} and no */{TRIAL_FILE} "
            f"(run `aqa sweep SWEEP.yaml --out {out}`)"
        )
    order: list[str] = []
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            order = [r.get("trial") or "" for r in csv.DictReader(f)]
    done = [name for name, (_, record) in recorded.items() if record["status"] == DONE]
    position = {name: i for i, name in enumerate(order)}
    done.sort(key=lambda n: (position.get(n, len(order)), n))
    if not done:
        raise ValueError(f"{out}: no finished trial (no */{TRIAL_FILE} with status {DONE!r})")
    return [out / name for name in done]


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


def run_one(
    sweep: Sweep,
    items: Sequence[str],
    out: str | Path | None = None,
    extra: Sequence[str] = (),
    train_fn: Callable[[DictConfig], Any] | None = None,
) -> dict[str, Any]:
    """Run the single trial ``items`` names (``KEY=VALUE`` per swept key), as :func:`run_sweep` would: same
    composition, folder and ``trial.json`` (what the W&B agents' command calls). A finished trial is not rerun.
    ``OUT/sweep.csv`` is rewritten from the folder's trial records when the trial starts and when it ends.

    Returns:
        The trial's record.
    """
    out = Path(out) if out is not None else default_out(sweep)
    trial = _trial(sweep, parse_assignment(sweep, items), extra)
    record = read_record(out / trial.name)
    if record and record.get("status") == DONE:
        log.info("trial %s is already done", trial.name)
        return record
    cfg = compose_trial(trial, out)
    check_values(cfg)
    trials, _, metric, mode = plan(sweep, out, extra, check_data=False)

    def refresh(current: dict[str, Any]) -> None:
        records = {t.name: r for t in trials if (r := read_record(out / t.name))}
        _refresh_csv(out, trials, {**records, trial.name: current}, metric, mode)

    refresh({"status": RUNNING})
    record = run_trial(trial, cfg, train_fn)
    refresh(record)
    return record


def _wandb_distribution(spec: Range) -> str:
    if spec.log:
        return "q_log_uniform_values" if spec.integer else "log_uniform_values"
    return "int_uniform" if spec.integer else "uniform"


def wandb_sweep(
    sweep: Sweep, out: str | Path | None = None, extra: Sequence[str] = (), check_data: bool = True
) -> Path:
    """Write ``OUT/wandb_sweep.yaml``: the sweep as a W&B sweep config (start it with ``wandb sweep FILE``, then
    ``wandb agent ID`` on each machine). Its agents run ``aqa sweep SWEEP.yaml --out OUT [EXTRA...] --trial
    ${args_no_hyphens}``. W&B's random search has no seed: its draws are not this sweep's.

    Returns:
        The file written.
    """
    out = Path(out) if out is not None else default_out(sweep)
    _, configs, metric, mode = plan(sweep, out, extra, check_data=check_data)
    params: dict[str, Any] = {}
    for key, spec in sweep.parameters.items():
        if isinstance(spec, Range):
            params[key] = {"min": spec.low, "max": spec.high, "distribution": _wandb_distribution(spec)}
            if spec.integer and spec.log:
                params[key]["q"] = 1
        else:
            params[key] = {"values": spec}
    config: dict[str, Any] = {
        "name": sweep.name,
        "method": sweep.method,
        "metric": {"name": metric, "goal": "maximize" if mode == "max" else "minimize"},
        "parameters": params,
        "command": [
            "aqa",
            "sweep",
            str(sweep.path.resolve()),
            "--out",
            str(out.resolve()),
            *extra,
            "--trial",
            "${args_no_hyphens}",
        ],
    }
    if sweep.method == "random":
        config["run_cap"] = sweep.trials
    path = out / WANDB_FILE
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
    return path


def command(
    name: str,
    out: str | Path | None,
    extra: Sequence[str] = (),
    *,
    resume: bool = False,
    dry_run: bool = False,
    wandb: bool = False,
    trial: Sequence[str] | None = None,
    progress: bool = True,
) -> int:
    """``aqa sweep NAME [key=value ...]``: run the sweep (``resume``), list its trials (``dry_run``), write its W&B
    sweep file (``wandb``) or run one ``trial`` (``KEY=VALUE`` items, as a W&B agent does). Returns the exit
    code: 0 when every trial it ran finished, 1 otherwise."""
    spec = load_sweep(name)
    if wandb:
        path = wandb_sweep(spec, out, extra)
        print(f"wrote {path}; start it with: wandb sweep {path}, then wandb agent SWEEP_ID on each machine")
        return 0
    if trial:
        return 0 if run_one(spec, trial, out, extra)["status"] == DONE else 1
    folder = Path(out or default_out(spec))
    if dry_run:
        trials, _, metric, mode = plan(spec, folder, extra)
        for t in trials:
            print(f"{t.name}  {t.experiment} {' '.join(t.overrides)}")
        print(f"{len(trials)} trials, ranked by {metric} ({mode})")
        return 0
    rows = run_sweep(spec, out, extra, resume, progress=progress)
    failed = [r["trial"] for r in rows if r["status"] != DONE]
    print(
        f"wrote {folder / CSV_FILE}: {len(rows) - len(failed)} of {len(rows)} trials done"
        + (f"; failed: {' '.join(failed)} (rerun them with --resume)" if failed else "")
    )
    return 1 if failed else 0
