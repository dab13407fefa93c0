"""Evaluate a trained model on labelled batches and report correlations per task and per condition."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aqa.correlation import pearson, spearman
from aqa.eval.summary import REPORT_METRICS, pivot, print_table, report_rows
from aqa.heads import quality_scores
from aqa.inference.calibration import load_calibrations
from aqa.inference.device import autocast, resolve_device, resolve_precision, to_device


def collect_scores(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str],
    mismatched: bool = False,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> dict[str, list[dict]]:
    """Run ``model`` over batches and return, per task, one record per scored clip.

    Args:
        model: a :class:`~aqa.model.QualityModel` (``model(wav, lengths) -> {task: output}``) with ``heads``; moved to
            ``device``.
        batches: dicts with ``wav`` (B, T), ``lengths`` (B,), ``labels``, ``group``, ``is_reference``, ``meta``.
        labels: task name -> label key.
        device: ``cpu``, ``cuda``, ``auto`` or a ``torch.device``.
        precision: ``fp32``, ``bf16`` (autocast) or ``auto`` (bf16 on CUDA); scores are float32 either way.

    Returns:
        task -> list of ``{"score", "label", **meta}``; embedding tasks score by minus the distance to the
        group's reference, or with ``mismatched`` to another group's (references are left out).
    """
    return collect_scores_each([model], batches, [labels], mismatched, device, precision)[0]


@torch.no_grad()
def collect_scores_each(
    models: Sequence[nn.Module],
    batches: Iterable[Mapping[str, Any]],
    labels: Sequence[Mapping[str, str]],
    mismatched: bool = False,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> list[dict[str, list[dict]]]:
    """:func:`collect_scores` for several models in one pass: every model scores each batch in turn (so
    encoders they share, see :func:`aqa.inference.ensemble.share_encoders`, run once per batch). ``labels``: one
    task -> label key mapping per model. Returns one ``collect_scores`` result per model."""
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    for model in models:
        model.eval().to(device)
    records: list[dict[str, list[dict]]] = [defaultdict(list) for _ in models]
    for batch in batches:
        batch = to_device(batch, device)
        for model, keys, out in zip(models, labels, records, strict=True):
            with autocast(device, precision):
                outputs = model(batch["wav"], batch["lengths"], batch.get("conditions"))
            for name, pred in outputs.items():
                if name not in keys:  # a task the caller does not score
                    continue
                scores, mask = quality_scores(pred, model.heads[name].is_embedding, batch, mismatched)
                target = batch["labels"][keys[name]]
                for i in torch.nonzero(mask & torch.isfinite(target)).flatten().tolist():
                    meta = batch["meta"][i] if "meta" in batch else {}
                    out[name].append({**meta, "score": float(scores[i]), "label": float(target[i])})
    return [dict(r) for r in records]


def apply_calibration(records: Mapping[str, list[dict]], path: Path) -> bool:
    """Add ``calibrated`` (the score mapped onto the label's scale) to every record of a task that has a
    mapping in ``path`` (written by ``aqa calibrate``). Returns whether any mapping was found."""
    fitted = load_calibrations(path)
    for task, rows in records.items():
        if task in fitted and rows:
            for row, value in zip(rows, fitted[task]([r["score"] for r in rows]), strict=True):
                row["calibrated"] = float(value)
    return bool(fitted)


def summarise(records: Mapping[str, list[dict]], by: str = "codec") -> dict[str, Any]:
    """Spearman and Pearson correlation of score vs label per task, overall and per value of ``by``
    (``None`` for subsets of fewer than :data:`MIN_CLIPS` clips)."""
    summary: dict[str, Any] = {}
    for task, rows in records.items():
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            groups[str(row.get(by, "all"))].append(row)
        table = {"all": rows, **dict(sorted(groups.items()))} if len(groups) > 1 else {"all": rows}
        summary[task] = {key: _correlations(sub) for key, sub in table.items()}
    return summary


MIN_CLIPS = 3  # fewer clips than this give a trivial (+-1) or undefined correlation: reported as None


def _correlations(rows: list[dict]) -> dict[str, Any]:
    if len(rows) < MIN_CLIPS:
        return {"n": len(rows), "srcc": None, "pcc": None}
    scores, labels = torch.tensor([r["score"] for r in rows]), torch.tensor([r["label"] for r in rows])
    out = {"n": len(rows), "srcc": spearman(scores, labels), "pcc": pearson(scores, labels)}
    if all("calibrated" in r for r in rows):  # after `aqa calibrate`: error on the label's own scale
        mapped = torch.tensor([r["calibrated"] for r in rows], dtype=torch.float64)
        out["rmse"] = float(torch.sqrt(torch.mean((mapped - labels.double()) ** 2)))
        out["pcc_calibrated"] = pearson(mapped.float(), labels)
    return out


def _fmt(row: Mapping[str, Any] | None) -> str:
    # a table cell: the value to 3 decimals, "-" where there is none (too few clips, not computable)
    return "-" if row is None or not math.isfinite(row["value"]) else f"{row['value']:.3f}"


def print_summary(summary: Mapping[str, Any], title: str = "evaluation") -> None:
    """Print the summary as a table (rich): its summary rows (:func:`aqa.eval.summary.report_rows`), one line per
    task and subset; the mapped-score columns after ``aqa calibrate``."""
    rows = report_rows(summary)
    calibrated = any(r["metric"] == REPORT_METRICS["rmse"] for r in rows)
    metrics = list(REPORT_METRICS.values())[: 4 if calibrated else 2]
    print_table(["task", "subset", "n", *metrics], pivot(rows, metrics, _fmt), title)


def plot_scores(records: Mapping[str, list[dict]], path: Path, x: str = "bitrate_kbps", by: str = "codec") -> Path | None:
    """Plot each task's scores, one colour per value of ``by``; None if matplotlib is absent.

    ``x`` names a metadata field: the mean score at each of its values is drawn as a line (score against
    bit rate, SNR, ...); ``x="label"`` draws a scatter of score against the task's label instead.
    """
    try:  # plotting is optional: without matplotlib the results are still written
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(records), figsize=(5 * len(records), 4), squeeze=False)
    for ax, (task, rows) in zip(axes[0], records.items(), strict=True):
        curves: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            if r.get(x) is not None:
                curves[str(r.get(by, "all"))][float(r[x])].append(r["score"])
        for name, pts in sorted(curves.items()):
            xs = sorted(pts)
            if x == "label":
                ax.scatter([v for v in xs for _ in pts[v]], [s for v in xs for s in pts[v]], s=12, label=name)
            else:
                ax.plot(xs, [sum(pts[v]) / len(pts[v]) for v in xs], marker="o", label=name)
        ax.set(title=task, xlabel=x, ylabel="score (higher = better)")
        if curves:
            ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_results(
    path: Path, summary: Mapping[str, Any], records: Mapping[str, list[dict]], **extra: Any
) -> None:
    """Write the summary, the per-clip records and any ``extra`` top-level fields as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**extra, "summary": summary, "records": records}, indent=1, default=str))
