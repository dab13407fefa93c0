"""The one report pipeline of ``aqa eval``: summary rows (one record per model, subset, level and metric) and the
one writer that lays them out as a table for the console (rich), Markdown or CSV.

Both evaluations build these rows: ``aqa eval RUN`` on shards (:mod:`aqa.eval.report`: SRCC and PCC per task
and subset, :func:`report_rows`) and ``aqa eval --test`` on a listening test (:mod:`aqa.eval.listening`: MSE, LCC,
SRCC, KTAU with bootstrap intervals, utterance and system level). What stays each one's own is the layout of
its files: ``eval_*.json`` keeps its nested summary (task -> subset -> values) and ``summary.csv`` the rows
themselves.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "REPORT_METRICS",
    "SUMMARY_COLUMNS",
    "csv_text",
    "fmt_value",
    "markdown_table",
    "pivot",
    "print_table",
    "report_rows",
]

SUMMARY_COLUMNS = ("model", "subset", "level", "metric", "value", "ci_low", "ci_high", "n")
# aqa eval RUN's summary keys -> the metric names of its rows and table columns
REPORT_METRICS = {"srcc": "SRCC", "pcc": "PCC", "rmse": "RMSE (mapped)", "pcc_calibrated": "PCC (mapped)"}

Row = Mapping[str, Any]


def report_rows(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], level: str = "clip") -> list[dict[str, Any]]:
    """``aqa eval RUN``'s summary (task -> subset -> ``{"n", "srcc", "pcc"[, "rmse", "pcc_calibrated"]}``, see
    :func:`aqa.eval.report.summarise`) as summary rows: ``model`` is the task, a value that is None (too few
    clips) is NaN, and there are no intervals (NaN)."""
    nan = float("nan")
    return [
        {"model": task, "subset": subset, "level": level, "metric": name, "value": nan if m[key] is None else m[key],
         "ci_low": nan, "ci_high": nan, "n": m["n"]}
        for task, subsets in summary.items()
        for subset, m in subsets.items()
        for key, name in REPORT_METRICS.items()
        if key in m
    ]  # fmt: skip


def pivot(rows: Sequence[Row], metrics: Sequence[str], cell: Callable[[Row | None], str]) -> list[list[str]]:
    """One line per (model, subset) of ``rows`` (one level), in the order first seen: model, subset, n, then
    ``cell(row)`` for each of ``metrics`` (``cell(None)`` where that metric has no row)."""
    lines: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        lines.setdefault((str(r["model"]), str(r["subset"])), {})[r["metric"]] = r
    return [
        [model, subset, str(next(iter(found.values()))["n"]), *(cell(found.get(k)) for k in metrics)]
        for (model, subset), found in lines.items()
    ]


def fmt_value(v: Any) -> str:
    """A CSV cell: floats to 6 significant digits, empty when not finite; anything else as text."""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A CSV file's text: the header, then one line per row, cells through :func:`fmt_value`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([fmt_value(v) for v in row])
    return buf.getvalue()


def markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table's lines: the header, the rule, one line per row."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(line) + " |" for line in lines),
    ]


def print_table(header: Sequence[str], lines: Sequence[Sequence[str]], title: str = "", left: int = 2) -> None:
    """Print a table on the console (rich): the first ``left`` columns left-aligned, the others right-aligned."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i < left else "right")
    for line in lines:
        table.add_row(*line)
    Console().print(table)
