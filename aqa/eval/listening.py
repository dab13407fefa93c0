"""Evaluate models and reference metrics against a listening test:
``aqa eval [RUN_DIR ...] --test TEST.csv [--baselines visqol,pesq,...] [--by COLUMN] --out DIR``.

A listening test is a CSV with the columns ``degraded`` (audio path) and ``score`` (the subjective rating:
MOS, MUSHRA, ...), optionally ``reference`` (the clean original), ``system``, ``condition``,
``listener_count``, ``scale_min`` and ``scale_max`` (the rating scale's ends, e.g. 1 and 5 for ACR MOS, 0 and 100
for MUSHRA; the same on every row) and any other column usable with ``--by``. Relative paths are taken from the
CSV's folder. ``aqa prep import --csv-out`` writes one from a published corpus, scale columns included.

Raw MSE is reported only for a predictor whose outputs are on the test's scale (:mod:`aqa.eval.scales`: a run's
label scale, a metric's range); for the others only MSE_mapped (after the cubic mapping) is, and ``summary.md``
says why, one line per predictor naming both scales (:func:`scale_notes`). An unknown scale on either side counts
as not shared.

Each run is scored in its own mode (:func:`predict_model`): score heads predict from the degraded clip
alone; embedding heads (DeePAQ, JSQA) score by minus the embedding distance to the row's reference, or in
DeePAQ's mismatched-reference mode to another piece's (:func:`row_references`). Reference metrics run through :mod:`aqa.metrics.runner`
(:func:`predict_baseline`), one principal value each (:data:`BASELINE_KEYS`).

Outputs in ``out``: ``predictions.csv`` (the test's rows, one column per model or baseline, rewritten after
each one, so a crash keeps the columns done so far for inspection), ``summary.csv`` (:data:`SUMMARY_COLUMNS`, see
:func:`summarise_test`), ``summary.md`` (the same as readable tables), ``scatter_MODEL.png`` per column, and
the table to W&B when a ``wandb`` run is active.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aqa.eval.scales import Scale, baseline_scale, fmt_scale, same_scale, scale_of_test, scorer_scale
from aqa.eval.stats import MIN_ITEMS, summary_stats, system_means
from aqa.eval.summary import SUMMARY_COLUMNS, csv_text, fmt_value, markdown_table, pivot
from aqa.files import numbered, write_text_atomic
from aqa.tables import COLUMN_ALIASES, find_column, sniff_delimiter

__all__ = [
    "BASELINE_KEYS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SUMMARY_COLUMNS",
    "evaluate_test",
    "plot_scatter",
    "predict_baseline",
    "predict_model",
    "row_references",
    "read_test",
    "scale_notes",
    "summarise_test",
    "task_columns",
    "write_summary_md",
]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("degraded", "score")
OPTIONAL_COLUMNS = ("reference", "system", "condition", "listener_count", "scale_min", "scale_max")
METRIC_ORDER = ("MSE", "LCC", "SRCC", "KTAU", "MSE_mapped", "LCC_mapped")
# metric -> the value of its record that is compared with the subjective scores (higher = better except
# cdpam, a distance: its correlations come out negative; the mapped metrics absorb the sign)
BASELINE_KEYS: dict[str, str] = {
    "visqol": "moslqo",  # ViSQOL v3 MOS-LQO, 1..5 (audio mode)
    "visqol_speech": "moslqo",  # ViSQOL v3 MOS-LQO, 1..5 (speech mode)
    "pesq": "pesq",  # PESQ MOS-LQO (wide band by default)
    "stoi": "stoi",
    "estoi": "estoi",
    "haaqi": "haaqi",  # 0..1, normal hearing unless an audiogram option is given
    "dnsmos": "dnsmos_ovrl",  # DNSMOS P.835 overall quality, no reference
    "cdpam": "cdpam",  # a distance: lower = better
    "peaq": "odg",  # PEAQ basic objective difference grade, -4..0
    "2f_model": "mms",  # the 2f-model's MUSHRA-scale score, 0..100
}
CHUNK = 16  # clips per forward


# ------------------------------------------------------------------------------------------ the test CSV


def read_test(path: str | Path) -> list[dict[str, Any]]:
    """Read a listening-test CSV.

    Args:
        path: CSV (``,`` ``;`` or tab separated, sniffed) with a header naming at least ``degraded`` and ``score``,
            or their aliases (:data:`aqa.tables.COLUMN_ALIASES`: ``file``/``filename``/``wav``, ``mos``/``rating``,
            ``ref``, ...); audio paths relative to its folder.

    Returns:
        One dict per row: every column as text, ``degraded`` and ``reference`` as absolute paths (``reference``
        ``""`` when absent) and ``score`` as a float.

    Raises:
        FileNotFoundError: the CSV, or audio it names, does not exist (one line, the first few named).
        ValueError: empty file, a missing column, no rows, an empty ``degraded`` cell or a non-numeric score
            (one line naming the file and the row; rows count the header as row 1).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"listening test {path} not found")
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text), delimiter=sniff_delimiter(text))
    fields = [(f or "").strip() for f in reader.fieldnames or []]
    for role in ("degraded", "score", "reference"):  # the aliases aqa prep import accepts (aqa.tables)
        if role not in fields and (alias := find_column(fields, role)) is not None:
            fields[fields.index(alias)] = role
    reader.fieldnames = fields
    layout = f"needs a header with {','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)},...]"
    if not any(fields):
        raise ValueError(f"{path}: empty file; a listening-test CSV {layout}")
    missing = [c for c in REQUIRED_COLUMNS if c not in fields]
    if missing:
        aliases = "; ".join(f"{c}: {'|'.join(COLUMN_ALIASES[c][1:])}" for c in missing)
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(fields)}; also accepted: {aliases}); "
            f"it {layout}"
        )
    base = path.resolve().parent
    rows: list[dict[str, Any]] = []
    absent: list[str] = []
    for number, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(row.values()):
            continue
        if not row["degraded"]:
            raise ValueError(f"{path}: row {number}: empty 'degraded' cell")
        try:
            score = float(row["score"])
        except ValueError:
            score = float("nan")
        if not math.isfinite(score):
            raise ValueError(f"{path}: row {number}: score {row['score']!r} is not a number")
        row["score"] = score
        for key in ("degraded", "reference"):
            cell = row.get(key, "")
            row[key] = str(base / cell) if cell and not Path(cell).is_absolute() else cell
            if cell and not Path(row[key]).is_file():
                absent.append(f"row {number}: {key} {row[key]}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows after the header")
    if absent:
        more = f"; and {len(absent) - 2} more" if len(absent) > 2 else ""
        raise FileNotFoundError(
            f"{path}: {len(absent)} audio file(s) not found ({'; '.join(absent[:2])}{more})"
        )
    return rows


# -------------------------------------------------------------------------------------------- predictions


def task_columns(name: str, tasks: Sequence[str]) -> dict[str, str]:
    """Task -> prediction column: ``name`` for a single-task run, ``name:task`` for each of several."""
    return {t: name if len(tasks) == 1 else f"{name}:{t}" for t in tasks}


def row_references(
    rows: Sequence[Mapping[str, Any]], mismatched: bool = False, mismatched_reference: str | Path | None = None
) -> list[str | None]:
    """The clean file each row's embedding is compared with, chosen by the rule validation and ``aqa eval`` use
    (:func:`aqa.heads.reference_anchors`).

    A row's piece is its ``piece`` column if the test has one, else its reference file (rows of one reference are
    one item), else its degraded file. Matched: the row's own ``reference``. ``mismatched``: the reference of the
    next row (cyclically) from another piece. ``mismatched_reference``: that file for every row, except rows whose
    piece it is.

    Returns:
        (N,) paths, None where a row has none (no reference; mismatched: no other piece has one).
    """
    from aqa.heads import reference_anchors

    refs = [str(row.get("reference") or "") or None for row in rows]
    if not mismatched and mismatched_reference is None:
        return refs
    pieces = [str(row.get("piece") or _resolved(row.get("reference") or row["degraded"])) for row in rows]
    if mismatched_reference is not None:
        anchors = reference_anchors([*pieces, _resolved(mismatched_reference)], [False] * len(rows) + [True], True)
        return [None if a is None else str(mismatched_reference) for a in anchors[:-1]]
    anchors = reference_anchors(pieces, [r is not None for r in refs], True)
    return [None if a is None else refs[a] for a in anchors]


def _resolved(path: str | Path) -> str:
    return str(Path(path).resolve())


def predict_model(
    model_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
    *,
    which: str = "best",
    mismatched_reference: str | Path | None = None,
    name: str | None = None,
    reference: str = "matched",
    scales: dict[str, tuple[Scale | None, str]] | None = None,
) -> dict[str, list[float]]:
    """Score the test's rows with a trained run, each task in its own mode.

    Score heads ignore the reference. Embedding heads score by minus the embedding distance to the row's
    ``reference``; with ``reference="mismatched"`` to another piece's reference of the test, with
    ``mismatched_reference`` to that one file (DeePAQ's mismatched mode; :func:`row_references`). Rows without
    one get NaN and a warning. Each distinct reference is decoded once.

    Args:
        model_dir: a run folder, an exported model (``aqa export``) or an ensemble folder (``aqa ensemble``).
        rows: dicts with ``degraded`` and optionally ``reference`` (paths), e.g. from :func:`read_test`.
        device, precision: as for :func:`aqa.inference.engine.score_clips`.
        progress: a tqdm bar on stderr, named by ``name`` (several models in turn: each bar says whose it is).
        scales: when given, filled with column -> (the rating scale of its scores or None, where that came
            from or why it is unknown) (:func:`aqa.eval.scales.task_scale`).

    Returns:
        column (:func:`task_columns` of ``name``, default the folder's name) -> (N,) scores, NaN where a row could
        not be scored.
    """
    from aqa.inference.loading import load

    name = name or Path(model_dir).resolve().name
    scorer = load(model_dir, which, device, precision)  # a run, an exported model or an ensemble folder
    heads = [h for m in scorer.members for h in m.module.heads.values()]
    conditioned = sorted({k for h in heads for k in h.condition_dims})
    if conditioned:
        raise ValueError(
            f"{model_dir}: its heads are conditioned on {conditioned}, which a listening-test CSV "
            "does not give; score it with aqa score"
        )
    embedding = sorted({t for m in scorer.members for t, h in m.module.heads.items() if h.is_embedding})
    if reference not in ("matched", "mismatched"):
        raise ValueError(f"reference must be 'matched' or 'mismatched', got {reference!r}")
    anchors = row_references(rows, reference == "mismatched", mismatched_reference) if embedding else []
    pairs = [(row["degraded"], anchors[i] if embedding else None) for i, row in enumerate(rows)]
    no_reference = sum(ref is None for _, ref in pairs)
    if embedding and no_reference == len(pairs):
        raise ValueError(
            f"{model_dir}: its task(s) {embedding} score by distance to a reference, and no row has "
            "one" + (" from another piece" if reference == "mismatched" else "")
            + ": add a reference column or pass --mismatched-reference FILE"
        )
    scores = {t: [float("nan")] * len(rows) for t in scorer.tasks}
    failed: list[str] = []
    records = scorer.score_files(pairs, batch_size=CHUNK, progress=progress and name)  # each reference embedded once
    for i, record in enumerate(records):
        if "error" in record and not (embedding and pairs[i][1] is None):  # a missing reference: warned below
            failed.append(record["error"])
        for task in scorer.tasks:
            if task in record:
                scores[task][i] = float(record[task])
    if embedding and no_reference:
        log.warning(
            "%s: %d row(s) have no reference (mismatched: of another piece), which its embedding task(s) %s need: "
            "left empty (add a reference column or pass --mismatched-reference FILE)",
            name,
            no_reference,
            embedding,
        )
    if failed:
        log.warning("%s: %d file(s) could not be scored, e.g. %s", name, len(failed), failed[0])
    columns = task_columns(name, list(scorer.tasks))
    if scales is not None:
        scales.update({columns[t]: scorer_scale(scorer, t) for t in scorer.tasks})
    return {columns[t]: v for t, v in scores.items()}


def predict_baseline(
    metric: str,
    rows: Sequence[Mapping[str, Any]],
    jobs: int = 1,
    progress: bool = True,
    cache: str | Path | bool | None = None,
) -> list[float]:
    """Score the rows with reference metric ``metric`` (``aqa metric``'s registry and parallel runner).

    Full-reference metrics skip rows without a ``reference`` (NaN, with a warning); no-reference ones
    (``dnsmos``) score every row. A row the metric cannot score is NaN, with one warning per metric.
    ``cache``: stored results reused and added to (:func:`aqa.metrics.cache.open_cache`).

    Returns:
        (N,) values of the metric's principal key (:data:`BASELINE_KEYS`).
    """
    from aqa.metrics import NO_REFERENCE
    from aqa.metrics.runner import iter_results

    key = BASELINE_KEYS[metric]
    needs_ref = metric not in NO_REFERENCE
    todo = [i for i, r in enumerate(rows) if r.get("reference") or not needs_ref]
    values = [float("nan")] * len(rows)
    if len(todo) < len(rows):
        log.warning(
            "%s: %d row(s) have no reference and are left empty (it is a full-reference metric)",
            metric,
            len(rows) - len(todo),
        )
    pairs = [(rows[i].get("reference") or None if needs_ref else None, rows[i]["degraded"]) for i in todo]
    errors: list[str] = []
    for i, record in zip(todo, iter_results(metric, pairs, jobs=jobs, progress=progress, cache=cache), strict=True):
        if "error" in record or key not in record:
            errors.append(record.get("error", f"no {key!r} in its result"))
        else:
            values[i] = float(record[key])
    if errors:
        log.warning(
            "%s: %d of %d row(s) could not be scored, e.g. %s", metric, len(errors), len(todo), errors[0]
        )
    return values


def write_predictions(
    path: Path, rows: Sequence[Mapping[str, Any]], predictions: Mapping[str, Sequence[float]]
) -> None:
    """``predictions.csv``: the test's columns, then one column per model or baseline (empty = not scored)."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    lines = [[row.get(k, "") for k in fields] + [v[i] for v in predictions.values()] for i, row in enumerate(rows)]
    write_text_atomic(path, csv_text([*fields, *predictions], lines))


# ------------------------------------------------------------------------------------------------ summary


def summarise_test(
    rows: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, Sequence[float]],
    by: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    folds: int = 5,
) -> list[dict[str, Any]]:
    """The summary table: one row per (model, subset, level, metric).

    Subsets are ``all`` and ``{by}={value}`` for each value of column ``by``. Level ``utterance`` compares
    every rated item; level ``system`` (when the test has a ``system`` column) first averages the
    predictions and the subjective scores per system (:func:`~aqa.eval.stats.system_means`, items a model
    could not score left out) and compares the means, bootstrapping over systems. Metrics and intervals
    come from :func:`~aqa.eval.stats.summary_stats`.

    Returns:
        dicts with the keys of :data:`SUMMARY_COLUMNS`.
    """
    target = np.array([float(r["score"]) for r in rows])
    systems = [str(r.get("system") or "") for r in rows]
    has_systems = any(systems)
    subsets: list[tuple[str, np.ndarray]] = [("all", np.arange(len(rows)))]
    if by:
        values = [str(r.get(by, "")) for r in rows]
        subsets += [
            (f"{by}={v}", np.array([i for i, x in enumerate(values) if x == v])) for v in sorted(set(values))
        ]
    out: list[dict[str, Any]] = []
    for model, pred in predictions.items():
        p = np.asarray(pred, dtype=np.float64)
        for subset, idx in subsets:
            levels = [("utterance", p[idx], target[idx])]
            if has_systems:
                keep = [i for i in idx if systems[i] and np.isfinite(p[i])]
                sp, st, _ = system_means(p[keep], target[keep], [systems[i] for i in keep])
                levels.append(("system", sp, st))
            for level, x, y in levels:
                for metric, (value, low, high, n) in summary_stats(x, y, n_boot, seed, folds).items():
                    out.append(
                        {
                            "model": model,
                            "subset": subset,
                            "level": level,
                            "metric": metric,
                            "value": value,
                            "ci_low": low,
                            "ci_high": high,
                            "n": n,
                        }
                    )
    return out


def split_baselines(baselines: str | Sequence[str]) -> tuple[list[str], bool]:
    """``--baselines``: the per-item reference metrics (checked, :func:`aqa.metrics.parse_names`) and whether
    ``fad`` (system level only, :func:`fad_baseline`) is among them."""
    from aqa.metrics import parse_names

    items = baselines.split(",") if isinstance(baselines, str) else list(baselines)
    items = [n.strip() for n in items if n.strip()]
    others = [n for n in items if n != "fad"]
    try:
        return (parse_names(others) if others else []), "fad" in items
    except KeyError as err:
        raise KeyError(f"{err.args[0]} (or fad, per system)" if others else err.args[0]) from None


def fad_baseline(
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    options: Mapping[str, Any] | None = None,
    device: str = "auto",
    n_boot: int = 1000,
    seed: int = 0,
    folds: int = 5,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """DeePAQ's FAD baseline (:func:`aqa.eval.fad.system_fad`): one value per system, compared with the systems'
    mean subjective scores at level ``system`` of subset ``all`` only. No item-level rows (there are no item
    values) and no raw MSE (FAD is on no rating scale). Lower = better, so its correlations come out negative.

    Writes ``fad_systems.csv`` (system, fad, clips, samples, reference_clips, score: the mean subjective score,
    encoder, layer, pooling) and ``scatter_fad.png`` (one point per system) into ``out``.

    Returns:
        Summary rows (:data:`SUMMARY_COLUMNS`) of model ``fad``.
    """
    from aqa.eval.fad import DEFAULT_ENCODER, system_fad

    opts = {"encoder": DEFAULT_ENCODER, "layer": -1, "pooling": "mean", **{k: v for k, v in (options or {}).items() if v is not None}}
    per_system = system_fad(rows, device=device, progress=progress, **opts)
    target = np.array([float(r["score"]) for r in rows])
    systems = [str(r.get("system") or "") for r in rows]
    keep = [i for i, s in enumerate(systems) if s]
    _, means, names = system_means(target[keep], target[keep], [systems[i] for i in keep])
    values = np.array([per_system[n]["fad"] for n in names], dtype=np.float64)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["system", "fad", "clips", "samples", "reference_clips", "score", "encoder", "layer", "pooling"])
    encoder = opts["encoder"] if isinstance(opts["encoder"], str) else opts["encoder"].get("name", "")
    for n, v, m in zip(names, values, means, strict=True):
        info = per_system[n]
        writer.writerow([n, fmt_value(float(v)), info["clips"], info["samples"], info["reference_clips"],
                         fmt_value(float(m)), encoder, opts["layer"], opts["pooling"]])
    write_text_atomic(out / "fad_systems.csv", buf.getvalue())
    plot_scatter(out / "scatter_fad.png", "fad", values, means, names)
    return [
        {"model": "fad", "subset": "all", "level": "system", "metric": metric, "value": value,
         "ci_low": low, "ci_high": high, "n": n}
        for metric, (value, low, high, n) in summary_stats(values, means, n_boot, seed, folds).items()
        if metric != "MSE"
    ]


def write_summary_csv(path: Path, summary: Sequence[Mapping[str, Any]]) -> None:
    """``summary.csv`` with exactly :data:`SUMMARY_COLUMNS` (empty cells for NaN): the rows themselves
    (:func:`aqa.eval.summary.csv_text`)."""
    write_text_atomic(path, csv_text(SUMMARY_COLUMNS, [[row[c] for c in SUMMARY_COLUMNS] for row in summary]))


def _cell(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "-"
    ci = f" [{low:.3f}, {high:.3f}]" if math.isfinite(low) and math.isfinite(high) else ""
    return f"{value:.3f}{ci}"


def summary_markdown(
    summary: Sequence[Mapping[str, Any]], title: str = "Listening-test evaluation", scales: Sequence[str] = ()
) -> str:
    """The summary as Markdown: one table per level, a row per (model, subset), ``value [95 % CI]`` cells, then
    ``scales`` (:func:`scale_notes`: one line per predictor) under "Scales". The tables are the summary rows
    pivoted (:func:`aqa.eval.summary.pivot`), as ``aqa eval RUN`` prints its own."""
    lines = [f"# {title}", ""]
    for level in dict.fromkeys(r["level"] for r in summary):
        level_rows = [r for r in summary if r["level"] == level]
        cells = pivot(level_rows, METRIC_ORDER, lambda m: _cell(m["value"], m["ci_low"], m["ci_high"]) if m else "-")
        lines += [f"## {level} level", "", *markdown_table(["model", "subset", "n", *METRIC_ORDER], cells), ""]
    lines.append(
        "Cells: value [95 % bootstrap CI]. *_mapped: after a cubic mapping fitted by k-fold "
        "cross-validation (held-out predictions). `-`: fewer than "
        f"{MIN_ITEMS} scored items, or not computable"
        + ("; MSE: raw, only where the predictor and the test share a rating scale (below)." if scales else ".")
    )
    if scales:
        lines += ["", "## Scales", "", *scales]
    return "\n".join(lines) + "\n"


def scale_notes(
    scales: Mapping[str, tuple[Scale | None, str]], test: tuple[Scale | None, str]
) -> tuple[list[str], set[str]]:
    """One Markdown line per predictor naming its scale and the test's, and the predictors whose raw MSE is
    reported: those on the test's scale (:func:`aqa.eval.scales.same_scale`; unknown on either side is not shared).

    Args:
        scales: predictor -> (scale or None, where it came from or why unknown).
        test: the test's (:func:`aqa.eval.scales.scale_of_test`).
    """
    lines, shared = [], set()
    theirs = f"the test's {fmt_scale(test[0])} ({test[1]})"
    for name, (scale, why) in scales.items():
        ours = f"`{name}` {fmt_scale(scale)} ({why})"
        if same_scale(scale, test[0]):
            shared.add(name)
            lines.append(f"- {ours} = {theirs}: one scale, raw MSE reported.")
        else:
            lines.append(f"- {ours} vs {theirs}: not one scale, raw MSE left out (see MSE_mapped).")
    return lines, shared


def write_summary_md(
    path: Path,
    summary: Sequence[Mapping[str, Any]],
    title: str = "Listening-test evaluation",
    scales: Sequence[str] = (),
) -> None:
    """``summary.md``: :func:`summary_markdown` written atomically."""
    write_text_atomic(path, summary_markdown(summary, title, scales))


# ------------------------------------------------------------------------------------------------- plots


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def plot_scatter(
    path: Path,
    model: str,
    pred: Sequence[float],
    target: Sequence[float],
    systems: Sequence[str] | None = None,
) -> Path | None:
    """Scatter of one model's predictions (x) against the subjective scores (y), one colour per system,
    with the cubic mapping fitted on all scored items drawn over it. Returns the PNG, None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from aqa.eval.stats import lcc, srcc
    from aqa.inference.calibration import fit_cubic

    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(t)
    names = np.array([str(s) or "-" for s in (systems if systems is not None else [""] * len(p))])
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    groups = sorted(set(names[keep]))
    cmap = plt.get_cmap("tab20" if len(groups) > 10 else "tab10")
    for k, g in enumerate(groups):
        sel = keep & (names == g)
        ax.scatter(
            p[sel], t[sel], s=22, alpha=0.85, color=cmap(k % cmap.N), label=g if len(groups) > 1 else None
        )
    title = f"{model}: {int(keep.sum())} of {len(p)} items scored"
    if keep.sum() >= MIN_ITEMS:
        title += f"; LCC {lcc(p[keep], t[keep]):.3f}, SRCC {srcc(p[keep], t[keep]):.3f}"
        try:
            cal = fit_cubic(p[keep], t[keep])
            xs = np.linspace(p[keep].min(), p[keep].max(), 200)
            ax.plot(xs, cal(xs), color="black", lw=1.5, label="cubic mapping")
        except ValueError:  # too few distinct predictions for a cubic
            pass
    ax.set(xlabel=f"predicted ({model})", ylabel="subjective score", title=title)
    if len(groups) > 1 or keep.sum() >= MIN_ITEMS:
        ax.legend(fontsize=7, ncol=2 if len(groups) > 8 else 1, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _log_wandb(summary: Sequence[Mapping[str, Any]]) -> bool:
    # only when the caller already runs W&B: importing wandb is slow and starting a run is the caller's choice
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    table = wandb.Table(
        columns=list(SUMMARY_COLUMNS), data=[[r[c] for c in SUMMARY_COLUMNS] for r in summary]
    )
    wandb.run.log({"listening_test/summary": table})
    return True


# ------------------------------------------------------------------------------------------- the command


def evaluate_test(
    test: str | Path,
    runs: Sequence[str | Path] = (),
    baselines: str | Sequence[str] = (),
    out: str | Path = "listening_eval",
    by: str | None = None,
    jobs: int = 1,
    device: str = "auto",
    precision: str = "auto",
    which: str = "best",
    mismatched_reference: str | Path | None = None,
    reference: str = "matched",
    n_boot: int = 1000,
    seed: int = 0,
    folds: int = 5,
    progress: bool = True,
    cache: str | Path | bool = True,
    fad: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Score ``runs`` and ``baselines`` on the listening test ``test`` and write the outputs into ``out``.

    Args:
        test: the listening-test CSV (:func:`read_test`).
        runs: trained run folders (:func:`predict_model`).
        baselines: reference metrics, a comma list or a sequence (:data:`BASELINE_KEYS`), and ``fad``
            (:func:`fad_baseline`: per system, reported at the system level only).
        out: output folder (created).
        by: a column of the CSV whose values are reported as subsets, besides ``all``.
        jobs: worker processes for the reference metrics.
        device, precision, which, mismatched_reference, reference: for the runs (:func:`predict_model`).
        n_boot, seed: bootstrap resamples and seed of the 95 % intervals; folds: of the cubic mapping.
        progress: tqdm bars on stderr.
        cache: the baselines' stored results (:mod:`aqa.metrics.cache`): True the default folder, a folder, or
            False to compute every one afresh. A second evaluation with the same baselines computes nothing new.
        fad: options of the ``fad`` baseline (:func:`aqa.eval.fad.system_fad`: ``encoder``, ``layer``,
            ``reference``, ``pooling``, ``batch_size``).

    Returns:
        The summary rows (:func:`summarise_test`).

    Raises:
        ValueError: nothing to evaluate, an unknown ``by`` column or bad input (one line); KeyError: an
            unknown metric; FileNotFoundError: missing CSV, audio or run.
    """
    rows = read_test(test)
    names, fad_wanted = split_baselines(baselines)
    if not runs and not names and not fad_wanted:
        raise ValueError("nothing to evaluate: give run folders and/or --baselines METRIC,...")
    if by and by not in rows[0]:
        raise ValueError(f"--by {by}: {test} has no such column (columns: {', '.join(rows[0])})")
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if mismatched_reference is not None and not Path(mismatched_reference).is_file():
        raise FileNotFoundError(f"--mismatched-reference {mismatched_reference} not found")
    for run in runs:
        if not any((Path(run) / f).is_file() for f in ("config.yaml", "ensemble.yaml")):
            raise FileNotFoundError(f"{run}: not a run, exported model or ensemble folder (no config.yaml)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    predictions: dict[str, list[float]] = {}
    scales: dict[str, tuple[Scale | None, str]] = {}
    test_scale = scale_of_test(rows, Path(test).name)
    for run, name in zip(runs, numbered([Path(r).resolve().name or "model" for r in runs], [*names, *rows[0]]), strict=True):
        predictions.update(
            predict_model(
                run,
                rows,
                device,
                precision,
                progress,
                which=which,
                mismatched_reference=mismatched_reference,
                name=name,
                reference=reference,
                scales=scales,
            )
        )
        write_predictions(out / "predictions.csv", rows, predictions)
    for metric in names:
        predictions[metric] = predict_baseline(metric, rows, jobs, progress, cache)
        scales[metric] = baseline_scale(metric)
        write_predictions(out / "predictions.csv", rows, predictions)
    notes, shared = scale_notes({k: scales.get(k, (None, "unknown")) for k in predictions}, test_scale)
    summary = [  # raw MSE only between numbers on one scale
        r for r in summarise_test(rows, predictions, by, n_boot, seed, folds) if r["metric"] != "MSE" or r["model"] in shared
    ]
    if fad_wanted:  # system-level values only: rows of its own, after the per-item models and baselines
        summary += fad_baseline(rows, out, fad, device, n_boot, seed, folds, progress)
    write_summary_csv(out / "summary.csv", summary)
    title = f"{Path(test).name}: {len(rows)} items"
    write_summary_md(out / "summary.md", summary, title, notes)
    target = [r["score"] for r in rows]
    systems = [str(r.get("system") or "") for r in rows]
    for model, pred in predictions.items():
        plot_scatter(out / f"scatter_{_safe(model)}.png", model, pred, target, systems)
    _log_wandb(summary)
    print(summary_markdown(summary, title, notes), end="")
    print(f"wrote {out}/predictions.csv, summary.csv, summary.md and {len(predictions)} scatter plot(s)")
    return summary
