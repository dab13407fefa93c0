"""Trial records (``OUT/NAME/trial.json``), ``OUT/sweep.csv`` (one row per trial, ranked) and the finished
trials of a sweep folder."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aqa.config import ConfigError
from aqa.files import write_text_atomic
from aqa.sweep.spec import Sweep, _is_number
from aqa.sweep.trials import Trial, override_value

TRIAL_FILE = "trial.json"
CSV_FILE = "sweep.csv"
DONE, FAILED, RUNNING, PENDING = "done", "failed", "running", "pending"
INTERRUPTED = "interrupted"  # stopped by SIGTERM or Ctrl-C; --resume continues it from its last.ckpt


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


def recorded_extra(sweep: Sweep, out: str | Path) -> list[str] | None:
    """The command-line overrides the sweep in ``out`` was started with: what follows the sweep file's own
    overrides and the swept values in each trial record's ``overrides`` (``sweep.csv``'s column where no trial
    has a record yet). None where ``out`` holds neither.

    Raises:
        ConfigError: the trials of ``out`` were run with different command-line overrides.
    """
    out = Path(out)
    skip = len(sweep.overrides) + sum(k != "experiment" for k in sweep.parameters)
    found = {trial.overrides[skip:] for trial, _ in _recorded_trials(out).values()}
    if not found and (out / CSV_FILE).is_file():
        with (out / CSV_FILE).open(newline="", encoding="utf-8") as f:
            found = {tuple((row.get("overrides") or "").split())[skip:] for row in csv.DictReader(f)}
    if len(found) > 1:
        raise ConfigError(f"the trials in {out} were run with different overrides: {sorted(found)}; use a new --out")
    return list(found.pop()) if found else None


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
