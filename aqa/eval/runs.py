"""What ``aqa eval | calibrate | ensemble | score`` do with trained runs: evaluate a run on its held-out shards,
fit a score -> label mapping, evaluate an ensemble, score the user's own files (printed as JSON lines)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aqa.config import load_config
from aqa.data.datamodule import datamodule_from_config
from aqa.eval.report import (
    apply_calibration,
    collect_scores,
    collect_scores_each,
    plot_scores,
    print_summary,
    save_results,
    summarise,
)
from aqa.inference.calibration import FITS
from aqa.inference.ensemble import (
    COMPOSITE,
    ensemble_records,
    held_bytes,
    member_stats,
    select_runs,
    share_encoders,
    task_srcc,
    with_composite,
)
from aqa.inference.loading import is_ensemble, load_module, read_ensemble, write_ensemble


def _records(
    run_dir: str | Path, which: str, split: str, mismatched: bool = False, device: str = "auto", precision: str = "auto"
) -> tuple[Any, DictConfig, dict[str, list[dict]]]:
    module, cfg = load_module(run_dir, which)
    loader = datamodule_from_config(cfg, module.encoder.sample_rate).eval_dataloader(split)
    labels = {name: t.label for name, t in cfg.tasks.items()}
    return module, cfg, collect_scores(module, loader, labels, mismatched, device, precision)


def score_runs(
    runs: Sequence[str | Path],
    which: str,
    data: DictConfig,
    sets: Sequence[str] = ("val",),
    tasks: Sequence[str] | None = None,
    mismatched: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> list[dict[str, dict[str, list[dict]]]]:
    """Each run's records (set -> task -> records, as :func:`~aqa.eval.report.collect_scores` gives them) on the
    shards of ``data`` (a run config): a set is ``val``, ``train`` or a shard pattern (scored as ``val``).

    Runs load in turn, their equal encoders shared (:func:`~aqa.inference.ensemble.share_encoders`: MMMOS' frozen
    WavLM, MuQ and M2D), and stay loaded while the weights held are within twice the first run's; each group is
    then scored in one pass per set, every run on the same batch in turn, so a shared encoder runs once per
    batch. Runs that share nothing are thus scored two at a time. ``tasks``: the tasks to score (None: all).
    """
    results: list[dict[str, dict[str, list[dict]]]] = [{} for _ in runs]
    group: list[tuple[int, Any, DictConfig]] = []
    pool: list = []
    budget = 0

    def score_group() -> None:
        for name in sets:
            split = name if name in ("val", "train") else "val"
            shards = data if split == name else OmegaConf.merge(data, {"data": {"val_urls": name}})
            for rate in dict.fromkeys(int(m.encoder.sample_rate) for _, m, _ in group):
                same = [(i, m, c) for i, m, c in group if int(m.encoder.sample_rate) == rate]
                loader = datamodule_from_config(shards, rate).eval_dataloader(split)
                labels = [{n: t.label for n, t in c.tasks.items() if tasks is None or n in tasks} for _, _, c in same]
                got = collect_scores_each([m for _, m, _ in same], loader, labels, mismatched, device, precision)
                for (i, _, _), records in zip(same, got, strict=True):
                    results[i][name] = records

    for i, run in enumerate(runs):
        module, cfg = load_module(run, which)
        share_encoders(module, pool)
        group.append((i, module, cfg))
        held = held_bytes([m for _, m, _ in group])
        budget = budget or 2 * held
        if held > budget:  # sharing does not keep the group small: score it, go on from this run
            newest = group.pop()
            score_group()
            group[:], pool[:] = [newest], []
            share_encoders(newest[1], pool)
    score_group()
    return results


def _report(cfg: DictConfig) -> Mapping[str, str]:
    # the config's `report` (the subset column and the plot's x axis), the codec sets' by default
    return cfg.get("report") or {"by": "codec", "x": "bitrate_kbps"}


def _publish(
    folder: Path, split: str, reference: str, records: dict[str, list[dict]], cfg: DictConfig, title: str, plot: bool,
    **extra: Any,
) -> dict[str, Any]:
    # what `aqa eval` shows and keeps, for a run or an ensemble: the summary printed, folder/eval_{split}[_mismatched]
    # .json with the records (and `extra`), and its plot
    report = _report(cfg)
    summary = summarise(records, by=report["by"])
    name = f"eval_{split}" + ("_mismatched" if reference == "mismatched" else "")
    print_summary(summary, title=title)
    save_results(folder / f"{name}.json", summary, records, **extra)
    if plot and (png := plot_scores(records, folder / f"{name}.png", x=report["x"], by=report["by"])):
        print(f"plot: {png}")
    return summary


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

    An ensemble folder (``aqa ensemble --out DIR``, holding ``ensemble.yaml``) is evaluated as one model on its
    first member's shards (its own ``which``; members may be runs or exported models).

    Returns the summary: task -> subset ("all" and each value of the config's ``report.by``, e.g. each
    codec) -> n, SRCC, PCC; with a ``calibration.json`` (``aqa calibrate``) also the RMSE of the mapped scores.
    """
    if reference not in ("matched", "mismatched"):
        raise ValueError(f"reference must be 'matched' or 'mismatched', got {reference!r}")
    if is_ensemble(run_dir):  # an `aqa ensemble --out` folder: its members' mean on the first member's shards
        return _evaluate_ensemble(run_dir, split, plot, reference, device, precision)
    run_dir = Path(run_dir)
    _, cfg, records = _records(run_dir, which, split, reference == "mismatched", device, precision)
    if reference == "matched":  # the calibration was fitted on matched-reference scores
        apply_calibration(records, run_dir / "calibration.json")
    title = f"{cfg.experiment}: {split} ({which} checkpoint, {reference} reference)"
    return _publish(run_dir, split, reference, records, cfg, title, plot)


def _evaluate_ensemble(
    folder: str | Path,
    split: str = "val",
    plot: bool = True,
    reference: str = "matched",
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """``aqa eval ENSEMBLE_DIR``: score every member on the first member's ``split`` shards, average per clip
    (standardised with the saved stats when ``zscore``), add the composite; print and save
    ``folder/eval_{split}.json`` (and its plot) as ``aqa eval`` does for a run.

    Returns:
        The summary: task (and ``composite`` for several tasks) -> subset -> n, SRCC, PCC.
    """
    folder = Path(folder)
    spec = read_ensemble(folder)
    runs = [m["run"] for m in spec["members"]]
    first = load_config(Path(runs[0]) / "config.yaml")
    scored = [per_set[split] for per_set in score_runs(  # runs or exported models
        runs, spec["which"], first, (split,), spec["tasks"], reference == "mismatched", device, precision)]
    stats = [m["stats"] for m in spec["members"]] if spec["zscore"] else None
    records = with_composite(ensemble_records(scored, zscore=spec["zscore"], stats=stats))
    title = f"ensemble of {len(runs)} runs ({folder}): {split}, {spec['which']} checkpoints"
    return _publish(folder, split, reference, records, first, title, plot, runs=runs)


def calibrate(
    run_dir: str | Path,
    kind: str = "cubic",
    which: str = "best",
    split: str = "train",
    device: str = "auto",
    precision: str = "auto",
    test: str | None = None,
) -> dict[str, Any]:
    """Fit a score -> label mapping per task on ``split`` and save it as ``run_dir/calibration.json``.

    With ``test`` (a listening-test CSV, :func:`aqa.eval.listening.read_test`) the mapping is fitted to its
    subjective ``score`` column instead (DeePAQ's mapping onto MOS), each task scored in its own mode
    (:func:`aqa.eval.listening.predict_model`; rows it cannot score are left out of the fit).
    Afterwards ``aqa eval`` reports the RMSE of the mapped scores and ``aqa score`` adds ``TASK_calibrated``.
    Returns task -> the calibration's dict.
    """
    if kind not in FITS:
        raise KeyError(f"unknown calibration {kind!r}; choose from {sorted(FITS)}")
    run_dir = Path(run_dir)
    if test is not None:
        return _calibrate_on_test(run_dir, kind, which, device, precision, test)
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


def _calibrate_on_test(run_dir: Path, kind: str, which: str, device: str, precision: str, test: str) -> dict[str, Any]:
    # `aqa calibrate RUN --test TEST.csv`: each task's scores on the test's rows against its subjective scores
    from aqa.eval.listening import predict_model, read_test, task_columns

    rows = read_test(test)
    preds = predict_model(run_dir, rows, device, precision, progress=len(rows) > 1, which=which)
    tasks = list(load_config(run_dir / "config.yaml").tasks)
    columns = task_columns(run_dir.name, tasks)
    labels = [r["score"] for r in rows]
    fitted = {}
    for task in tasks:
        try:
            cal = FITS[kind](preds[columns[task]], labels)
        except ValueError as err:
            raise ValueError(f"{test}: cannot fit task {task!r}: {err}") from None
        cal.extra["test"] = str(test)
        fitted[task] = cal.to_dict()
        print(f"{task}: {kind} mapping fitted on {cal.n} rated items of {test}")
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

    ``out`` also gets ``ensemble.yaml`` (:func:`aqa.inference.loading.write_ensemble`: the chosen members, their
    score stats on ``split``, their shared tasks), which ``aqa eval out`` and ``aqa score out`` read like a run.
    """
    if any(str(r).endswith(".tar") for r in run_dirs):
        raise ValueError("a run directory ends in .tar: quote shard patterns given to --on (e.g. --on 'dir/val-*.tar')")
    if select is None and tuple(select_on) != ("val",):
        raise ValueError("--on names selection sets for --select K; add --select")
    if select is not None and select < 1:
        raise ValueError(f"--select K needs K >= 1, got {select}")
    first = load_config(Path(run_dirs[0]) / "config.yaml")  # its data and report (the loop builds its model)
    report = _report(first)
    sets = list(dict.fromkeys([split, *(select_on if select is not None else ())]))
    scored = score_runs(run_dirs, which, first, sets, device=device, precision=precision)  # run -> set -> records
    for run, per_set in zip(run_dirs, scored, strict=True):
        print_summary(summarise(with_composite(per_set[split]), by=report["by"]), title=f"member {run}")
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
    members = [scored[i][split] for i in chosen]
    records = with_composite(ensemble_records(members, zscore=zscore))
    summary = summarise(records, by=report["by"])
    print_summary(summary, title=f"ensemble of {len(chosen)} runs: {split}")
    save_results(Path(out) / f"ensemble_{split}.json", summary, records, runs=[str(run_dirs[i]) for i in chosen], **extra)
    # the folder `aqa eval` and `aqa score` take like a run: members, their score stats on `split`, shared tasks
    path = write_ensemble(out, [run_dirs[i] for i in chosen], [member_stats(m) for m in members], zscore, which)
    print(f"wrote {path}")
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
    *,
    pairs: str | None = None,
    ref_dir: str | None = None,
    batch_size: int = 8,
    jobs: int = 1,
    window_s: float | None = None,
    hop_s: float | None = None,
    fmt: str = "jsonl",
) -> int:
    """``aqa score``: score files, folders (recursive), list files or a ``--pairs`` CSV with a run, an exported
    model or an ensemble (:func:`aqa.inference.loading.load`, loaded once); write one record per file (and window) as
    JSON lines or CSV to stdout, or to ``out`` instead. References: ``reference`` (one for all), ``pairs``
    (``reference,degraded`` CSV, paths relative to it) or ``ref_dir`` (matched by file name).

    Returns 0 when every file was scored, 1 when some gave an error record (or a pairs row was skipped).
    """
    import csv

    from aqa.inference.engine import collect_inputs, match_references
    from aqa.inference.loading import load
    from aqa.metrics.runner import read_pairs

    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"--format must be jsonl or csv, got {fmt!r}")
    if batch_size < 1 or jobs < 0:
        raise ValueError(f"--batch-size must be >= 1 and --jobs >= 0, got {batch_size} and {jobs}")
    if sum(x is not None for x in (reference, pairs, ref_dir)) > 1:
        raise ValueError("give one of --reference, --pairs and --ref-dir")
    skipped: list[str] = []
    items: list[Any]
    if pairs is not None:
        if files:
            raise ValueError("--pairs names the files: give no INPUTS with it")
        items = [(deg, ref) for ref, deg in read_pairs(pairs, skipped)]
        if not items:
            raise ValueError(f"{pairs}: no pairs to score" + (f" ({'; '.join(skipped[:3])})" if skipped else
                                                              " (only a header, or blank rows)"))
    else:
        if not files:
            raise ValueError("name the files to score (files, folders or list files), or give --pairs CSV")
        paths = collect_inputs(files)
        items = match_references(paths, ref_dir) if ref_dir is not None else list(paths)
    scorer = load(run_dir, which, device, precision)
    columns = ["file", "reference", "start_s", "end_s", "windows", *scorer.tasks,
               *[f"{t}_calibrated" for t in scorer.tasks if t in scorer.calibrations], "note", "error"]
    # usage errors (reference, audiogram, window) are raised here, before --out is opened and truncated
    records = scorer.score_files(items, reference, (conditions or {}).get("audiogram"), batch_size=batch_size,
                                 jobs=jobs, window_s=window_s, hop_s=hop_s, progress=progress)
    sink = open(out, "w", newline="") if out else sys.stdout  # noqa: SIM115 - closed below; flushed record by record
    writer = csv.DictWriter(sink, columns, extrasaction="ignore") if fmt == "csv" else None
    failed = files_out = 0
    try:
        if writer is not None:
            writer.writeheader()
        for record in records:
            if "start_s" not in record:
                files_out += 1
                failed += "error" in record
            if writer is not None:
                writer.writerow(record)
            else:
                sink.write(json.dumps(record) + "\n")
            sink.flush()
    finally:
        if sink is not sys.stdout:
            sink.close()
    if out or pairs or skipped:
        report = f"aqa score: {files_out - failed} file(s) scored, {failed} with errors"
        if pairs:
            report += f", {len(skipped)} row(s) skipped" + (f" ({'; '.join(skipped[:3])})" if skipped else "")
        print(report + (f" -> {out}" if out else ""), file=sys.stderr)
    return 1 if failed or skipped else 0
