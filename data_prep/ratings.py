"""Raw listening-test ratings (one score per listener and stimulus) -> per-stimulus means with confidence
intervals, after ITU-R BS.1534-3 post-screening: ``aqa prep import --format long|lists|sebass``.

Layouts (``--src`` is the ratings file; ``,`` ``;`` or tab separated, sniffed; column names are matched as in
:data:`aqa.tables.COLUMN_ALIASES`, case-, space- and ``_``-insensitively):

- ``long``: one row per rating: a listener column (``--listener``; aliases ``listener, subject, rater,
  participant, pid, ...``), a score (``--score``; ``score, mos, rating, ratingscore, ...``), the stimulus' key
  columns (``--stimulus COL[,COL...]``; default: the trial columns plus the system, else the file column), the
  condition / system (``--system``; ``system, algorithm, ...``) and the trial (``--trial COL[,COL...]``: the items
  rated together in one MUSHRA trial, each trial holding one hidden reference; default the ``trial``/``item``
  column, else the stimulus keys without the system).
- ``lists``: one row per stimulus: a column with the list of its ratings (``--ratings``; ``ratings, scores, ...``)
  as JSON (``[80, 75]``) or separated by ``,`` ``;`` or spaces, and optionally a parallel list of listener ids
  (``--listeners``; ``listeners, listener_ids, raters, ...``). Each list entry becomes one rating of ``long``.
- ``sebass``: SEBASS-DB's parsed rating CSVs (Kastner & Herre, IWAENC 2022; the SiSEC08, SASSEC, PEASS and SAOC
  subsets DeePAQ evaluates on), a preset of ``long``: ``Testname, Listener, Type, Source, Target, Algorithm,
  Ratingscore`` (the subsets' own README names the same fields ``Testname, Listener, Trial, Condition, Rating
  score``; both are read). Listener = ``Listener``, score = ``Ratingscore`` (MUSHRA 0..100), system = ``Algorithm``
  (or ``Condition``), trial = ``Testname`` plus whichever of ``Type, Source, Target, Trial`` are present, stimulus
  = trial + system. The audio comes from ``--audio``; SiSEC08 publishes it as ``Signals/{Condition}/{Trial}.wav``
  (e.g. ``Signals/Algo34/male_inst_sim_1.wav``), so ``--audio 'Signals/{Algorithm}/{Target}.wav'`` for the
  parsed files. Its hidden reference is the condition the export names for it (``--reference-condition``).

Audio: a file column (``degraded, file, filename, wav, path, ...``) or ``--audio TEMPLATE`` whose ``{fields}`` are
column names (``'audio/{file}'``, ``'{Target}_{Algorithm}.wav'``), relative to the ratings file's folder or
``--audio-root``. A condition none of whose files exists (an anchor exported without audio) is used for
screening only; a single missing file of a condition that has audio is reported as dropped.

Per stimulus: each listener's ratings are averaged (a repeated stimulus counts once per listener), then ``score`` =
mean over listeners, ``std`` = sample standard deviation (ddof 1), ``ci95`` = Student-t half-width
``t(0.975, n-1) * std / sqrt(n)`` (empty for one listener), ``listener_count`` = n (:func:`stimulus_stats`).

Post-screening (:func:`screen_bs1534`, ITU-R BS.1534-3 §4.1.2): an assessor is excluded who rated the hidden
reference below 90 for more than 15 % of the test items, or the mid-range anchor (``--mid-anchor``) above 90 for
more than 15 %. "Items" are the trials that listener rated which contain the hidden reference (resp. the mid
anchor) among their own ratings: the fraction is (such trials where the listener's mean rating of the hidden
reference was < 90) / (such trials). A listener with no hidden-reference rating has no fraction and is kept.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from aqa.files import numbered
from aqa.tables import COLUMN_ALIASES, find_column, read_rows
from data_prep.corpora import Rating
from data_prep.shards import Skip, safe_id

__all__ = [
    "RAW_FORMATS",
    "RAW_LAYOUT",
    "SCREEN_COLUMNS",
    "RawImport",
    "RawRating",
    "aggregate",
    "import_raw",
    "parse_list",
    "read_raw",
    "screen_bs1534",
    "stimulus_stats",
]

RAW_FORMATS = ("long", "lists", "sebass")
SCREEN_COLUMNS = (
    "listener",
    "ratings",
    "trials",
    "reference_trials",
    "reference_below_90",
    "reference_fraction",
    "anchor_trials",
    "anchor_above_90",
    "anchor_fraction",
    "excluded",
    "reason",
)
RAW_LAYOUT = """raw ratings (--format long | lists | sebass; --src is the ratings file, , ; or tab separated):
  long    one row per rating: listener, score and the stimulus' keys (e.g. listener,trial,system,score,file)
  lists   one row per stimulus: --ratings COL holds its ratings ([80, 75] or 80;75), --listeners COL the
          parallel listener ids (optional; needed for screening)
  sebass  SEBASS-DB's parsed CSVs: Testname,Listener,Type,Source,Target,Algorithm,Ratingscore (or the
          README's Testname,Listener,Trial,Condition,Rating score); stimulus = trial + Algorithm, MUSHRA 0..100
  audio: a file column or --audio TEMPLATE ({column} fields); a condition without any audio file (an anchor
  exported without one) is used for screening only. Output per stimulus: score (mean over listeners), std,
  ci95 (Student-t 95 % half-width), listener_count, system, trial; beside --csv-out FILE: FILE_screening.csv
  (every listener, each rule's fraction, the decision) and FILE_import.json (excluded listeners, counts).
  Post-screening (ITU-R BS.1534-3 4.1.2; default with --reference-condition): a listener is excluded who
  rated the hidden reference below 90 in more than 15 % of the trials they rated it in (--mid-anchor NAME: or
  that anchor above 90 in more than 15 %). The hidden reference and anchors are left out of the test CSV
  unless --keep-reference."""
# BS.1534-3 §4.1.2: hidden reference below 90 (mid anchor above 90) for more than 15 % of the items
SCREEN_LEVEL = 90.0
SCREEN_FRACTION = 0.15
_SEBASS_TRIAL = ("Testname", "Type", "Source", "Target", "Trial")


@dataclass(frozen=True)
class RawRating:
    """One listener's rating of one stimulus.

    Args:
        stimulus: the stimulus' key (the values of the stimulus columns).
        trial: the trial it was rated in (the values of the trial columns).
        condition: its system / condition name ("" when the table has none).
        listener: the listener id, None when the table names none.
        score: the rating.
        row: the table row it came from (the audio templates read it).
    """

    stimulus: tuple[str, ...]
    trial: tuple[str, ...]
    condition: str
    listener: str | None
    score: float
    row: Mapping[str, str] = field(default_factory=dict)


@dataclass
class RawImport:
    """What :func:`import_raw` returns: the stimuli as :class:`~data_prep.corpora.Rating` records (``extra`` holds
    ``std, ci95, trial``), unusable rows, the screening report (:data:`SCREEN_COLUMNS` per listener), the
    excluded listeners, conditions used for screening only, and counts for the report line."""

    ratings: list[Rating]
    skipped: list[Skip]
    screening: list[dict[str, Any]]
    excluded: list[str]
    screening_only: list[str]
    counts: dict[str, int]


# ------------------------------------------------------------------------------------------- parsing


def parse_list(text: str) -> list[str]:
    """``"[80, 75]"`` / ``'["a", "b"]'`` / ``"80,75"`` / ``"80; 75"`` / ``"80 75"`` -> ``["80", "75"]``."""
    t = text.strip()
    if t.startswith("["):
        try:
            return [str(v).strip() for v in json.loads(t)]
        except ValueError:
            t = t.strip("[]")
    return [v.strip().strip("'\"") for v in re.split(r"[,;\s]+", t) if v.strip().strip("'\"")]


def _number(text: str) -> float | None:
    try:
        v = float(text.replace(",", ".")) if text.count(",") == 1 and "." not in text else float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _pick(columns: Sequence[str], given: str | None, role: str, what: str, sought: list[str]) -> str | None:
    # the column for role: the one named (must exist), else the first alias present; records what was sought
    if given:
        hit = next((c for c in columns if c == given), None) or next(
            (c for c in columns if c.strip().lower() == given.strip().lower()), None
        )
        if hit is None:
            raise ValueError(f"{what} column {given!r} not found; the columns are: {', '.join(columns)}")
        return hit
    sought.append(f"{what} ({'|'.join(COLUMN_ALIASES[role])})")
    return find_column(columns, role)


def _pick_many(columns: Sequence[str], given: str | None, what: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in (given or "").split(",") if c.strip())
    return tuple(_pick(columns, n, "trial", what, []) or n for n in names)


def _no_stimuli(path: Path, fmt: str, sought: Sequence[str], columns: Sequence[str], hint: str) -> ValueError:
    return ValueError(
        f"no rated stimuli found in {path} (--format {fmt}): looked for {'; '.join(sought)}; "
        f"found columns: {', '.join(columns) or '(none)'}. {hint}"
    )


def read_raw(
    path: str | Path,
    fmt: str,
    *,
    listener: str | None = None,
    score: str | None = None,
    stimulus: str | None = None,
    system: str | None = None,
    ratings: str | None = None,
    listeners: str | None = None,
    trial: str | None = None,
) -> tuple[list[RawRating], list[Skip], list[str]]:
    """Read a raw-ratings table in layout ``fmt`` (:data:`RAW_FORMATS`) into one :class:`RawRating` per rating.

    Args:
        path: the ratings CSV.
        fmt: ``long``, ``lists`` or ``sebass``.
        listener, score, stimulus, system, ratings, listeners, trial: column names (``stimulus`` and ``trial``
            comma lists) overriding the defaults and aliases (module docstring).

    Returns:
        ``(ratings, skipped_rows, columns)``.

    Raises:
        ValueError: unknown format, a named column missing, or no rating found (naming the columns sought and
            the columns found).
    """
    path = Path(path).expanduser()
    if fmt not in RAW_FORMATS:
        raise ValueError(f"unknown raw-ratings format {fmt!r}; choose from {', '.join(RAW_FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"ratings file {path} not found")
    columns, rows = read_rows(path.read_text(encoding="utf-8-sig"))
    sought: list[str] = []
    if fmt == "sebass":
        trial = trial or ",".join(c for c in _SEBASS_TRIAL if c in columns)
        system = system or next((c for c in ("Algorithm", "Condition") if c in columns), None)
    who = _pick(columns, listener, "listener", "listener", sought)
    sys_col = _pick(columns, system, "system", "system", sought)
    file_col = find_column(columns, "degraded")
    trial_cols = _pick_many(columns, trial, "trial") or tuple(
        c for c in [find_column(columns, "trial")] if c is not None
    )
    if stimulus:
        stim_cols = _pick_many(columns, stimulus, "stimulus")
    elif trial_cols and sys_col:
        stim_cols = (*trial_cols, sys_col)
    elif file_col:
        stim_cols = (file_col,)
    else:
        stim_cols = ()
    if not trial_cols:
        trial_cols = tuple(c for c in stim_cols if c != sys_col) or stim_cols
    if fmt == "lists":
        value_col = _pick(columns, ratings, "ratings", "ratings list", sought)
        ids_col = (
            _pick(columns, listeners, "listeners", "listener-id list", [])
            if listeners
            else find_column(columns, "listeners")
        )
    else:
        value_col = _pick(columns, score, "score", "score", sought)
        ids_col = None
    hint = (
        "Name them with --score/--ratings, --listener/--listeners, --stimulus, --trial, --system "
        "(one row per rating: --format long; one row per stimulus with a list of ratings: --format lists)."
    )
    if value_col is None or (not stim_cols and fmt != "lists"):
        if not stim_cols:
            sought.append("stimulus keys (--stimulus COL[,COL], or trial + system columns, or a file column)")
        raise _no_stimuli(path, fmt, sought, columns, hint)
    out: list[RawRating] = []
    skipped: list[Skip] = []
    for n, row in enumerate(rows, start=2):
        where = f"{path.name}:{n}"
        key = tuple(row.get(c, "") for c in stim_cols) if stim_cols else (str(n),)
        if not any(key):
            skipped.append(Skip(where, f"{fmt}: no stimulus key ({', '.join(stim_cols)} empty)"))
            continue
        cond = row.get(sys_col, "") if sys_col else ""
        tri = tuple(row.get(c, "") for c in trial_cols) if trial_cols else key
        if fmt == "lists":
            values = parse_list(row.get(value_col, ""))
            ids: list[str | None] = (
                list(parse_list(row.get(ids_col, ""))) if ids_col else [None] * len(values)
            )
            if len(ids) != len(values):
                skipped.append(Skip(where, f"lists: {len(values)} ratings but {len(ids)} listener ids"))
                continue
            pairs = list(zip(ids, values, strict=True))
        else:
            pairs = [(row.get(who, "") if who else None, row.get(value_col, ""))]
        for lid, text in pairs:
            v = _number(text)
            if v is None:
                skipped.append(Skip(where, f"{fmt}: score {text!r} is not a number"))
                continue
            out.append(RawRating(key, tri, cond, lid or None, v, row))
    if not out:
        raise _no_stimuli(path, fmt, sought, columns, hint)
    return out, skipped, columns


# ------------------------------------------------------------------------------------------- statistics


def stimulus_stats(scores: Sequence[float]) -> tuple[float, float | None, float | None]:
    """``(mean, std, ci95)`` of one stimulus' per-listener scores: sample std (ddof 1) and the Student-t 95 %
    half-width ``t.ppf(0.975, n-1) * std / sqrt(n)``; std and ci95 are None for fewer than 2 scores."""
    n = len(scores)
    if n == 0:
        raise ValueError("stimulus_stats: no scores")
    mean = math.fsum(scores) / n
    if n < 2:
        return mean, None, None
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / (n - 1))
    return mean, std, float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def _per_listener(ratings: Iterable[RawRating]) -> dict[tuple[str, ...], dict[str, list[float]]]:
    # stimulus -> listener (anonymous ratings get their own ids) -> scores
    table: dict[tuple[str, ...], dict[str, list[float]]] = {}
    for i, r in enumerate(ratings):
        table.setdefault(r.stimulus, {}).setdefault(
            r.listener if r.listener is not None else f"#{i}", []
        ).append(r.score)
    return table


def aggregate(ratings: Sequence[RawRating]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Stimulus key -> ``{"score", "std", "ci95", "listener_count", "condition", "trial", "row"}``: each listener's
    ratings of a stimulus averaged, then :func:`stimulus_stats` over listeners. ``row`` is its first table row."""
    first: dict[tuple[str, ...], RawRating] = {}
    for r in ratings:
        first.setdefault(r.stimulus, r)
    out = {}
    for key, by in _per_listener(ratings).items():
        means = [math.fsum(v) / len(v) for v in by.values()]
        mean, std, ci = stimulus_stats(means)
        r = first[key]
        out[key] = {
            "score": mean,
            "std": std,
            "ci95": ci,
            "listener_count": len(means),
            "condition": r.condition,
            "trial": r.trial,
            "row": r.row,
        }
    return out


def screen_bs1534(
    ratings: Sequence[RawRating],
    reference: str,
    mid_anchor: str | None = None,
    *,
    level: float = SCREEN_LEVEL,
    max_fraction: float = SCREEN_FRACTION,
) -> list[dict[str, Any]]:
    """ITU-R BS.1534-3 §4.1.2 post-screening, one report row per listener (:data:`SCREEN_COLUMNS`).

    Args:
        ratings: every rating, hidden reference and anchors included.
        reference: the hidden reference's condition name.
        mid_anchor: the mid-range anchor's condition name (its rule is skipped when None).
        level, max_fraction: exclude when the reference is rated below ``level`` (the anchor above it) in more
            than ``max_fraction`` of the items.

    Returns:
        Rows sorted by listener (numbers in ids compared as numbers): ``reference_trials`` = trials where the listener rated the hidden reference,
        ``reference_below_90`` = those where their (mean) rating of it was below ``level``, the fraction of the
        two (None without such trials), the same for the anchor (``anchor_above_90``), ``excluded`` and the reason.

    Raises:
        ValueError: a rating without a listener id.
    """
    if any(r.listener is None for r in ratings):
        raise ValueError("screening needs a listener id on every rating (--listener COL, or --listeners COL)")
    per: dict[str, dict[str, Any]] = {}
    for r in ratings:
        p = per.setdefault(str(r.listener), {"n": 0, "trials": set(), "ref": {}, "anchor": {}})
        p["n"] += 1
        p["trials"].add(r.trial)
        for name, slot in ((reference, "ref"), (mid_anchor, "anchor")):
            if name is not None and r.condition == name:
                p[slot].setdefault(r.trial, []).append(r.score)
    rows = []
    for who in sorted(per, key=lambda w: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", w)]):
        p = per[who]
        ref_bad = sum(1 for v in p["ref"].values() if math.fsum(v) / len(v) < level)
        anc_bad = sum(1 for v in p["anchor"].values() if math.fsum(v) / len(v) > level)
        ref_frac = ref_bad / len(p["ref"]) if p["ref"] else None
        anc_frac = anc_bad / len(p["anchor"]) if p["anchor"] else None
        reasons = []
        if ref_frac is not None and ref_frac > max_fraction:
            reasons.append(f"hidden reference < {level:g} in {ref_frac:.0%} of {len(p['ref'])} trials")
        if anc_frac is not None and anc_frac > max_fraction:
            reasons.append(f"mid anchor > {level:g} in {anc_frac:.0%} of {len(p['anchor'])} trials")
        rows.append(
            {
                "listener": who,
                "ratings": p["n"],
                "trials": len(p["trials"]),
                "reference_trials": len(p["ref"]),
                "reference_below_90": ref_bad,
                "reference_fraction": ref_frac,
                "anchor_trials": len(p["anchor"]) if mid_anchor else None,
                "anchor_above_90": anc_bad if mid_anchor else None,
                "anchor_fraction": anc_frac,
                "excluded": bool(reasons),
                "reason": "; ".join(reasons)
                or ("kept" if p["ref"] else "kept (rated no hidden reference: rule not applicable)"),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------- audio + records


def _fill(template: str, row: Mapping[str, str]) -> str:
    # str.format over the row's columns (also matched case-insensitively); an unknown field names the columns
    low = {k.lower(): v for k, v in row.items()}
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    values = {}
    for f in fields:
        if f in row:
            values[f] = row[f]
        elif f.lower() in low:
            values[f] = low[f.lower()]
        else:
            raise ValueError(
                f"audio template {template!r}: no column {f!r}; the columns are: {', '.join(row)}"
            )
    return template.format(**values)


def _audio_path(
    base: Path, template: str | None, file_col: str | None, row: Mapping[str, str]
) -> Path | None:
    rel = _fill(template, row) if template else (row.get(file_col, "") if file_col else "")
    if not rel:
        return None
    p = Path(rel).expanduser()
    return p if p.is_absolute() else base / p


def import_raw(
    path: str | Path,
    fmt: str,
    *,
    columns: Mapping[str, str | None] | None = None,
    audio: str | None = None,
    audio_root: str | Path | None = None,
    reference_condition: str | None = None,
    reference_audio: str | None = None,
    screen: str = "auto",
    mid_anchor: str | None = None,
    anchors: Sequence[str] = (),
    keep_reference: bool = False,
    corpus: str | None = None,
    split: str | None = None,
    scale: tuple[float, float] | None = None,
) -> RawImport:
    """Read raw ratings, screen the listeners, aggregate per stimulus and build one
    :class:`~data_prep.corpora.Rating` per stimulus for the listening-test CSV (or shards).

    Args:
        path: the ratings file; fmt: :data:`RAW_FORMATS`.
        columns: ``listener, score, stimulus, system, ratings, listeners, trial`` column options (:func:`read_raw`).
        audio: path template (``{column}`` fields); None: the file column.
        audio_root: base folder of relative audio paths (default: the ratings file's folder).
        reference_condition: the hidden reference's condition: each stimulus' reference is its trial's
            hidden-reference file; screening defaults to ``bs1534`` with it.
        reference_audio: a reference path template instead (wins over ``reference_condition``'s file).
        screen: ``bs1534``, ``none`` or ``auto`` (``bs1534`` when ``reference_condition`` is given).
        mid_anchor: the mid-range anchor's condition (second screening rule); anchors: further anchor conditions.
        keep_reference: keep the hidden reference and anchors as rows (default: left out).
        corpus, split, scale: written into each record (default corpus: the format; scale: 0..100 for ``sebass``
            and for screened (MUSHRA) tests, else unknown).

    Raises:
        ValueError: bad options, no stimuli (columns sought and found named), or nothing left after screening.
    """
    path = Path(path).expanduser()
    if screen not in ("auto", "bs1534", "none"):
        raise ValueError(f"--screen {screen!r}; choose from auto, bs1534, none")
    if screen == "auto":
        screen = "bs1534" if reference_condition else "none"
    if screen == "bs1534" and not reference_condition:
        raise ValueError(
            "--screen bs1534 needs --reference-condition NAME (the hidden reference's condition)"
        )
    if mid_anchor and screen != "bs1534":
        raise ValueError("--mid-anchor applies to --screen bs1534 (with --reference-condition)")
    raw, skipped, header = read_raw(path, fmt, **dict(columns or {}))
    conditions = sorted({r.condition for r in raw})
    for name, what in (
        (reference_condition, "--reference-condition"),
        (mid_anchor, "--mid-anchor"),
        *((a, "--anchors") for a in anchors),
    ):
        if name and name not in conditions:
            raise ValueError(
                f"{what} {name!r} is not a condition of {path.name}; the conditions are: "
                f"{', '.join(conditions)}"
            )
    report = screen_bs1534(raw, reference_condition, mid_anchor) if screen == "bs1534" else []
    excluded = [r["listener"] for r in report if r["excluded"]]
    kept = [r for r in raw if r.listener not in set(excluded)]
    if not kept:
        raise ValueError(f"screening excluded every listener ({len(excluded)}) of {path.name}")
    stimuli = aggregate(kept)
    base = Path(audio_root).expanduser() if audio_root else path.parent
    file_col = None if audio else find_column(header, "degraded")
    if audio is None and file_col is None:
        raise ValueError(
            f"{path.name}: no audio: give --audio TEMPLATE (fields are column names, e.g. "
            f"'audio/{{file}}') or a file column ({'|'.join(COLUMN_ALIASES['degraded'])}); "
            f"found columns: {', '.join(header)}"
        )
    paths = {k: _audio_path(base, audio, file_col, s["row"]) for k, s in stimuli.items()}
    with_audio = {s["condition"] for k, s in stimuli.items() if paths[k] is not None and paths[k].is_file()}
    screening_only = sorted({s["condition"] for s in stimuli.values()} - with_audio)
    hidden = {reference_condition} if reference_condition else set()
    left_out = set() if keep_reference else hidden | ({mid_anchor} - {None}) | set(anchors)
    ref_of_trial = {
        s["trial"]: paths[k]
        for k, s in stimuli.items()
        if reference_condition and s["condition"] == reference_condition and paths[k] is not None
    }
    corpus = corpus or fmt
    if scale is None and (fmt == "sebass" or screen == "bs1534"):
        scale = (0.0, 100.0)
    chosen = [
        k for k, s in stimuli.items() if s["condition"] not in left_out and s["condition"] in with_audio
    ]
    keys = numbered([safe_id("-".join([corpus, *k]), 90) for k in chosen])
    records = []
    for key, k in zip(keys, chosen, strict=True):
        s = stimuli[k]
        ref = (
            _audio_path(base, reference_audio, None, s["row"])
            if reference_audio
            else ref_of_trial.get(s["trial"])
        )
        records.append(
            Rating(
                key=key,
                path=paths[k] or base / f"(no audio for {key})",
                corpus=corpus,
                split=split or "",
                mos=s["score"],
                scale=scale,
                system=s["condition"] or None,
                reference=str(ref) if ref else None,
                extra={"std": s["std"], "ci95": s["ci95"], "trial": "/".join(s["trial"])},
                reference_path=ref,
                condition=s["condition"] or None,
                listeners=s["listener_count"],
            )
        )
    counts = {
        "ratings": len(raw),
        "listeners": len({r.listener for r in raw if r.listener is not None}),
        "excluded_listeners": len(excluded),
        "stimuli": len(stimuli),
        "left_out": sum(1 for s in stimuli.values() if s["condition"] in left_out),
        "screening_only": sum(
            1 for s in stimuli.values() if s["condition"] in screening_only and s["condition"] not in left_out
        ),
        "written": len(records),
    }
    return RawImport(records, skipped, report, excluded, screening_only, counts)
