"""Listening-test tables: the column aliases that ``aqa prep import`` and ``aqa eval --test`` both accept, and
delimiter sniffing (``,`` ``;`` or tab), so that a ``;``-separated export reads as its columns, not as one.

A header cell matches a role when, lower-cased with spaces and ``-`` turned into ``_``, it equals one of the
role's aliases (``Rating score``, ``rating-score`` and ``rating_score`` are one name). Pure Python; imports nothing
of aqa, so :mod:`data_prep` and :mod:`aqa.eval` can both use it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

__all__ = ["COLUMN_ALIASES", "find_column", "norm_column", "read_rows", "sniff_delimiter"]

# role -> accepted header names (normalised by norm_column), the canonical name first
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "degraded": (
        "degraded",
        "file",
        "filename",
        "file_name",
        "filepath",
        "path",
        "wav",
        "audio",
        "stimulus_file",
    ),
    "score": ("score", "mos", "rating", "ratingscore", "rating_score", "grade"),
    "reference": ("reference", "ref", "reference_file", "ref_file", "reference_path"),
    "system": ("system", "algorithm", "sys", "model", "codec", "condition"),
    "listener": (
        "listener",
        "listener_id",
        "listener_name",
        "subject",
        "rater",
        "participant",
        "participant_id",
        "subject_id",
        "pid",
        "worker_id",
    ),
    "trial": ("trial", "trial_name", "trialname", "item"),
    "ratings": ("ratings", "scores", "rating_list", "score_list", "all_ratings"),
    "listeners": (
        "listeners",
        "listener_ids",
        "participant_ids",
        "raters",
        "rater_ids",
        "subjects",
        "subject_ids",
        "participants",
    ),
}


def norm_column(name: str) -> str:
    """``" Rating score "`` -> ``"rating_score"``: how header cells are compared with :data:`COLUMN_ALIASES`."""
    return "_".join(name.strip().lower().replace("-", " ").split())


def find_column(columns: Sequence[str], role: str) -> str | None:
    """The header cell of ``columns`` that names ``role`` (the first alias, in :data:`COLUMN_ALIASES` order, that
    is present), or None.

    Raises:
        KeyError: unknown role (the valid ones named).
    """
    if role not in COLUMN_ALIASES:
        raise KeyError(f"unknown column role {role!r}; choose from {sorted(COLUMN_ALIASES)}")
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(norm_column(c), c)
    return next((by_norm[a] for a in COLUMN_ALIASES[role] if a in by_norm), None)


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV's header line: whichever of ``,`` ``;`` tab occurs most (``,`` on a tie or none)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def read_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Parse CSV ``text`` (delimiter sniffed) into ``(columns, rows)``: header cells and cells stripped, blank rows
    and rows starting with ``#`` left out."""
    reader = csv.reader(io.StringIO(text), delimiter=sniff_delimiter(text))
    lines = [r for r in reader if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not lines:
        return [], []
    columns = [c.strip() for c in lines[0]]
    rows = [{k: (v or "").strip() for k, v in zip(columns, r, strict=False) if k} for r in lines[1:]]
    return columns, rows
