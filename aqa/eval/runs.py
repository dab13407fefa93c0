"""What ``aqa eval | calibrate | ensemble | score`` do with trained runs: evaluate a run on its held-out shards,
fit a score -> label mapping, evaluate an ensemble, score the user's own files (printed as JSON lines)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from aqa.audio import AUDIO_SUFFIXES
from aqa.config import load_config
from aqa.data.datamodule import datamodule_from_config
from aqa.eval.calibration import FITS, load_calibrations
from aqa.eval.ensemble import COMPOSITE, ensemble_records, select_runs, task_srcc, with_composite
from aqa.eval.report import (
    apply_calibration,
    collect_scores,
    plot_scores,
    print_summary,
    save_results,
    summarise,
)
from aqa.eval.score import score_files
from aqa.tasks.multitask import load_run


def _records(
    run_dir: str | Path, which: str, split: str, mismatched: bool = False, device: str = "auto", precision: str = "auto"
) -> tuple[Any, DictConfig, dict[str, list[dict]]]:
    module, cfg = load_run(run_dir, which)
    loader = datamodule_from_config(cfg, module.encoder.sample_rate).eval_dataloader(split)
    labels = {name: t.label for name, t in cfg.tasks.items()}
    return module, cfg, collect_scores(module, loader, labels, mismatched, device, precision)


def evaluate(
    run_dir: str | Path,
    which: str = "best",
    split: str = "val",
    plot: bool = True,
    reference: str = "matched",
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Score a trained run's held-out shards; print and save (``run_dir/eval_{split}.json``) the results.

    ``reference="mismatched"`` scores embedding tasks against another excerpt's clean reference (DeePAQ's
    mismatched-reference mode; results in ``eval_{split}_mismatched.json``). ``device`` (cpu | cuda | auto)
    and ``precision`` (fp32 | bf16 | auto) say where and how the model runs.

    Returns the summary: task -> subset ("all" and each value of the config's ``report.by``, e.g. each
    codec) -> n, SRCC, PCC; with a ``calibration.json`` (``aqa calibrate``) also the RMSE of the mapped scores.
    """
    if reference not in ("matched", "mismatched"):
        raise ValueError(f"reference must be 'matched' or 'mismatched', got {reference!r}")
    run_dir = Path(run_dir)
    _, cfg, records = _records(run_dir, which, split, reference == "mismatched", device, precision)
    if reference == "matched":  # the calibration was fitted on matched-reference scores
        apply_calibration(records, run_dir / "calibration.json")
    report = cfg.get("report") or {"by": "codec", "x": "bitrate_kbps"}
    summary = summarise(records, by=report["by"])
    name = f"eval_{split}" + ("_mismatched" if reference == "mismatched" else "")
    print_summary(summary, title=f"{cfg.experiment}: {split} ({which} checkpoint, {reference} reference)")
    save_results(run_dir / f"{name}.json", summary, records)
    if plot and (png := plot_scores(records, run_dir / f"{name}.png", x=report["x"], by=report["by"])):
        print(f"plot: {png}")
    return summary


def calibrate(
    run_dir: str | Path,
    kind: str = "cubic",
    which: str = "best",
    split: str = "train",
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Fit a score -> label mapping per task on ``split`` and save it as ``run_dir/calibration.json``.

    Afterwards ``aqa eval`` reports the RMSE of the mapped scores and ``aqa score`` adds ``TASK_calibrated``.
    Returns task -> the calibration's dict.
    """
    if kind not in FITS:
        raise KeyError(f"unknown calibration {kind!r}; choose from {sorted(FITS)}")
    run_dir = Path(run_dir)
    _, _, records = _records(run_dir, which, split, device=device, precision=precision)
    fitted = {}
    for task, rows in records.items():
        cal = FITS[kind]([r["score"] for r in rows], [r["label"] for r in rows])
        cal.extra["split"] = split
        fitted[task] = cal.to_dict()
        print(f"{task}: {kind} mapping fitted on {len(rows)} {split} clips")
    path = run_dir / "calibration.json"
    path.write_text(json.dumps(fitted, indent=1))
    print(f"wrote {path}")
    return fitted


def ensemble(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    which: str = "best",
    split: str = "val",
    zscore: bool = False,
    device: str = "auto",
    precision: str = "auto",
    select: int | None = None,
    select_on: Sequence[str] = ("val",),
    rank_by: str = COMPOSITE,
) -> dict[str, Any]:
    """Evaluate the mean of several runs' scores per clip (MMMOS's ensembles) on the first run's data.

    Every run is scored on the same clips (the first run's ``data`` shards, ``split``); the summary of the
    ensemble, with the composite score (the mean of the tasks, MMMOS §V-A) when the runs have several, is
    printed next to each member's and saved, with the per-clip records, to ``out/ensemble_{split}.json``.

    With ``select=k`` the members are chosen first, as MMMOS §V-D: every run is ranked by the SRCC of
    ``rank_by`` (default the composite) on each set of ``select_on``, and the runs in the top ``k`` of every set
    are kept: the top ``k`` on one set, or the intersection of the top ``k`` on two (the paper: the top 12 on
    its development set and on the PAM development set). A set is ``val`` or ``train`` (the first run's
    shards) or a shard pattern (another corpus imported with ``aqa prep import``, e.g. ``data/pam/val-*.tar``).
    """
    if any(str(r).endswith(".tar") for r in run_dirs):
        raise ValueError("a run directory ends in .tar: quote shard patterns given to --on (e.g. --on 'dir/val-*.tar')")
    if select is None and tuple(select_on) != ("val",):
        raise ValueError("--on names selection sets for --select K; add --select")
    if select is not None and select < 1:
        raise ValueError(f"--select K needs K >= 1, got {select}")
    first = load_config(Path(run_dirs[0]) / "config.yaml")  # its data and report (the loop builds its model)
    report = first.get("report") or {"by": "codec", "x": "bitrate_kbps"}
    sets = list(dict.fromkeys([split, *(select_on if select is not None else ())]))
    scored = []  # per run: set -> task -> records
    for run in run_dirs:
        module, cfg = load_run(run, which)
        labels = {name: t.label for name, t in cfg.tasks.items()}
        per_set = {}
        for name in sets:
            data = first if name in ("val", "train") else OmegaConf.merge(first, {"data": {"val_urls": name}})
            loader = datamodule_from_config(data, module.encoder.sample_rate).eval_dataloader(
                name if name in ("val", "train") else "val")
            per_set[name] = collect_scores(module, loader, labels, False, device, precision)
        print_summary(summarise(with_composite(per_set[split]), by=report["by"]), title=f"member {run}")
        scored.append(per_set)
    chosen = list(range(len(run_dirs)))
    extra: dict[str, Any] = {}
    if select is not None:
        ranks = {name: [task_srcc(with_composite(r[name]), rank_by) for r in scored] for name in select_on}
        chosen = select_runs(list(ranks.values()), select)
        print(f"selection: top {select} by {rank_by} SRCC on " + " and ".join(map(str, ranks)))
        for i, run in enumerate(run_dirs):
            cells = " ".join(f"{values[i]:7.3f}" for values in ranks.values())
            print(f"  {'*' if i in chosen else ' '} {cells}  {run}")
        if len(chosen) < 2:
            raise ValueError(f"{len(chosen)} run(s) in the top {select} of every selection set; an ensemble needs two "
                             "(raise --select)")
        extra = {"selection": {"k": select, "rank_by": rank_by, "on": list(ranks), "candidates": [str(r) for r in run_dirs],
                               "srcc": {name: dict(zip(map(str, run_dirs), values, strict=True))
                                        for name, values in ranks.items()}}}
    records = with_composite(ensemble_records([scored[i][split] for i in chosen], zscore=zscore))
    summary = summarise(records, by=report["by"])
    print_summary(summary, title=f"ensemble of {len(chosen)} runs: {split}")
    save_results(Path(out) / f"ensemble_{split}.json", summary, records, runs=[str(run_dirs[i]) for i in chosen], **extra)
    return summary


def score(
    run_dir: str | Path,
    files: Sequence[str],
    reference: str | None = None,
    conditions: dict[str, list[float]] | None = None,
    which: str = "best",
    out: str | None = None,
    progress: bool = True,
    device: str = "auto",
    precision: str = "auto",
) -> int:
    """Score audio files (or folders of them) with a trained run; print one JSON object per file.

    Returns 0 when every file was scored, 1 when some gave an error (each in its record).
    """
    paths: list[Path] = []
    for item in files:
        p = Path(item)
        paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES) if p.is_dir() else [p]
    if not paths:
        raise FileNotFoundError(f"no audio files in {list(files)}")
    module, _ = load_run(run_dir, which)
    calibrations = load_calibrations(Path(run_dir) / "calibration.json")  # written by `aqa calibrate`
    sink = open(out, "w") if out else None  # noqa: SIM115 - closed below; records are flushed one by one
    failed = 0
    try:
        records = score_files(module, paths, reference, conditions, calibrations, device, precision)
        for record in tqdm(records, total=len(paths), disable=not progress or len(paths) < 2, file=sys.stderr):
            failed += "error" in record
            line = json.dumps(record)
            print(line, flush=True)
            if sink:
                sink.write(line + "\n")
                sink.flush()
    finally:
        if sink:
            sink.close()
    return 1 if failed else 0
