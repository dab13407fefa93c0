"""Running a sweep: every trial one after another (or the one a W&B agent names), each trained by
:func:`aqa.tasks.training.train` and recorded, with the validation metrics of its best checkpoint."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from aqa.config import ConfigError, check_values
from aqa.data.datamodule import datamodule_from_config
from aqa.files import write_text_atomic
from aqa.sweep.records import (
    CSV_FILE,
    DONE,
    FAILED,
    INTERRUPTED,
    RUNNING,
    TRIAL_FILE,
    _record,
    _refresh_csv,
    _rows,
    read_record,
    recorded_extra,
)
from aqa.sweep.spec import Sweep, default_out
from aqa.sweep.trials import Trial, _trial, compose_trial, parse_assignment, plan
from aqa.tasks.multitask import load_run

log = logging.getLogger(__name__)

_RECEIVED: list[str] = []  # the Ctrl-Cs seen inside sigint_as_sigterm(), oldest first


@contextmanager
def sigint_as_sigterm() -> Iterator[list[str]]:
    """Handle Ctrl-C (SIGINT) as SIGTERM while the block runs (main thread only; ``aqa train`` and ``aqa sweep``).

    The first Ctrl-C goes to the SIGTERM handler Lightning installs while it trains or validates: the current
    batch ends, :class:`aqa.tasks.trainer.Preemption` writes ``last.ckpt`` and Lightning raises its
    ``SIGTERMException``. Outside training, or at a second Ctrl-C, ``KeyboardInterrupt`` is raised at once.

    Yields:
        The list of interrupting signals received (``"SIGINT"`` each); :func:`run_trial` and :func:`run_sweep`
        read it too, to record a trial as interrupted rather than failed and to stop before the next trial.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    _RECEIVED.clear()
    received: list[str] = []  # the caller's copy, kept after the block

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        _RECEIVED.append("SIGINT")
        received.append("SIGINT")
        lightning = signal.getsignal(signal.SIGTERM)
        if len(_RECEIVED) == 1 and callable(lightning):
            lightning(signal.SIGTERM, frame)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)
        _RECEIVED.clear()


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


def run_trial(
    trial: Trial, cfg: DictConfig, train_fn: Callable[[DictConfig], Any] | None = None
) -> dict[str, Any]:
    """Train one trial in ``cfg.run_dir`` and record it. An interrupted trial (``trial.json`` says ``running``, or
    is missing) continues from its ``last.ckpt`` (``resume=true``); a failed one starts again
    (``overwrite=true``: its last state may be what failed, a NaN for one).

    Exceptions other than interrupts (``KeyboardInterrupt``, ``SystemExit``: SIGINT, SIGTERM) are recorded as
    a ``failed`` trial and not raised; an interrupt is recorded as ``interrupted`` (resumed from ``last.ckpt``)
    and raised again. So is an error that follows a Ctrl-C seen by :func:`sigint_as_sigterm` (a terminal's
    Ctrl-C also ends the DataLoader workers), as ``KeyboardInterrupt``.

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
    seen = len(_RECEIVED)

    def interrupted(err: BaseException) -> None:
        name = _RECEIVED[-1] if len(_RECEIVED) > seen else "SIGTERM" if isinstance(err, SystemExit) else "SIGINT"
        record = _record(trial, INTERRUPTED, error=f"stopped by {name}; --resume continues from last.ckpt")
        write_text_atomic(run_dir / TRIAL_FILE, json.dumps(record, indent=1))

    try:
        train_fn(cfg)
        record = _record(trial, DONE, metrics=best_metrics(run_dir))
    except (KeyboardInterrupt, SystemExit) as err:
        interrupted(err)
        raise
    except Exception as err:  # noqa: BLE001 - one failed trial must not end the sweep; the error is recorded
        if len(_RECEIVED) > seen:
            interrupted(err)
            raise KeyboardInterrupt from err
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        log.error("trial %s failed: %s: %s", trial.name, type(err).__name__, message)
        record = _record(trial, FAILED, error=f"{type(err).__name__}: {message}")
    write_text_atomic(run_dir / TRIAL_FILE, json.dumps(record, indent=1))
    return record


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
            ``last.ckpt``, failed ones start again. With no ``extra``, those the sweep was started with (its
            trial records, else ``sweep.csv``) are used; different ones are refused. Without it, a folder that already holds trials (a record,
            ``sweep.csv`` or a trial folder with ``checkpoints/``) is refused.
        train_fn: what trains a config (default :func:`aqa.tasks.training.train`; tests inject failures).

    Returns:
        The rows of ``sweep.csv`` (dicts).

    Raises:
        ConfigError: a bad sweep or trial (before anything trains), a folder holding another sweep's trials
            without ``resume``, a finished trial recorded with other overrides, or ``resume`` with other
            ``extra`` overrides than the sweep was started with.
    """
    out = Path(out) if out is not None else default_out(sweep)
    stored = recorded_extra(sweep, out) if resume else None
    if stored is not None and not extra:
        extra = stored
        if stored:
            log.info("resuming %s with the overrides it was started with: %s", out, " ".join(stored))
    elif stored is not None and list(extra) != stored:
        raise ConfigError(
            f"{out} was started with the overrides {stored}, now {list(extra)}: --resume reuses the stored ones "
            f"(give none, or the same), or use a new --out"
        )
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
        if _RECEIVED:  # a Ctrl-C that came as the last trial ended: stop before the next one
            raise KeyboardInterrupt
        records[trial.name] = {"status": RUNNING}
        _refresh_csv(out, trials, records, metric, mode)
        try:
            records[trial.name] = run_trial(trial, cfg, train_fn)
        except BaseException:  # interrupted: sweep.csv says so before the interrupt goes on
            records[trial.name] = read_record(out / trial.name) or records[trial.name]
            raise
        finally:
            _refresh_csv(out, trials, records, metric, mode)
    return _rows(trials, records, metric, mode, out)[1]


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
    try:
        record = run_trial(trial, cfg, train_fn)
    except BaseException:
        refresh(read_record(out / trial.name) or {"status": RUNNING})
        raise
    refresh(record)
    return record
