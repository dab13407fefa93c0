"""Import a published listening test into WebDataset shards: ``aqa prep import --src CORPUS --out OUT``.

``--src`` is the unpacked corpus (or, for ``--format csv`` / ``aes``, the score file itself); ``--format``
picks the reader (:data:`data_prep.corpora.READERS`; ``auto`` guesses it from the files). Each rated
stimulus becomes one sample: ``{key}.flac`` (16-bit FLAC at the source rate, or ``--store-rate``) and
``{key}.json`` with ``corpus, split, mos, scores`` (per axis, also at top level: NISQA ``noi col dis loud``,
AES ``pq pc ce cu``), ``scale, system, reference, group, sample_rate, duration_s, source``. Splits are the
corpus' own (NISQA ``db``, BVCC list, AES file name; ODAQ and TCD-VoIP are test sets; generic CSV rows
without a split are hashed into train/val). Unreadable, silent, too short or non-finite audio is skipped
and listed in ``manifest.json``. Example::

    aqa prep import --src ~/data/NISQA_Corpus --out data/nisqa --store-rate 16000 --jobs 4

``--csv-out FILE`` writes the listening-test CSV that ``aqa eval --test`` reads instead of (or besides) the
shards: one row per rated stimulus, ``degraded,score,reference,system,condition,listener_count,corpus,split,
key,scale_min,scale_max`` plus one column per rated axis, with full paths and the corpus' references where it
has them (NISQA, ODAQ, TCD-VoIP, a generic CSV's ``reference`` column). Audio is not decoded for it (a
stimulus whose file is missing is dropped; ``aqa eval`` reports files it cannot decode)::

    aqa prep import --src ~/data/ODAQ --csv-out ~/data/odaq_test.csv

Raw ratings (one score per listener and stimulus) are read by ``--format long | lists | sebass``
(:mod:`data_prep.ratings`: layouts, column options, BS.1534-3 post-screening, per-stimulus ``score`` = mean,
``std``, Student-t ``ci95``, ``listener_count``). The screening report goes to ``FILE_screening.csv`` and the
excluded listeners and counts to ``FILE_import.json`` beside ``--csv-out FILE.csv`` (in ``--out`` without it)::

    aqa prep import --src ratings.csv --format lists --trial signal --audio 'audio/{file}' \\
        --reference-condition Reference --csv-out test.csv

Every run ends with a report line (used, skipped and why) and exits 1 when a rated stimulus was dropped
(unparsable row, missing, unreadable, silent or too-short audio) unless ``--allow-partial`` is given.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from aqa.audio import encode_flac, load_audio, resample_np, to_mono_np
from aqa.files import write_text_atomic
from aqa.tables import COLUMN_ALIASES, read_rows
from data_prep.corpora import GENERIC_LAYOUT, READERS, Rating, read_corpus
from data_prep.ratings import RAW_FORMATS, RAW_LAYOUT, SCREEN_COLUMNS, RawImport, import_raw
from data_prep.recipe import run_main
from data_prep.shards import (
    Sample,
    Skip,
    SourceInfo,
    add_common_args,
    assign_split,
    audio_problem,
    plan_shards,
    run_shards,
    short_error,
    split_warnings,
)

RECIPE = "import"
# the listening-test CSV's leading columns (aqa eval --test reads degraded, score, reference, system, ...)
TEST_COLUMNS = (
    "degraded",
    "score",
    "reference",
    "system",
    "condition",
    "listener_count",
    "corpus",
    "split",
    "key",
    "scale_min",
    "scale_max",
)


def listening_rows(
    ratings: Sequence[Rating], score: str = "mos", extra_columns: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The listening-test CSV's rows (:data:`TEST_COLUMNS` plus one column per rated axis) for ``ratings``.

    Args:
        ratings: from :func:`data_prep.corpora.read_corpus`.
        score: ``mos`` or a rated axis (NISQA ``noi col dis loud``, AES ``pq pc ce cu``) for the ``score`` column.
        extra_columns: keys of each record's ``extra`` written as columns after the axes (raw ratings:
            ``std, ci95, trial``; None -> empty cell).

    Returns:
        ``(rows, dropped)``: a stimulus without that score or whose audio file is missing is dropped, as
        ``{"source", "reason"}``; a named reference that is missing is left empty (reason counted, row kept).
    """
    axes = sorted({a for r in ratings for a in r.scores})
    rows: list[dict[str, Any]] = []
    dropped: list[dict[str, str]] = []
    for r in ratings:
        value = r.mos if score == "mos" else r.scores.get(score)
        if value is None:
            dropped.append(
                {"source": str(r.path), "reason": f"no score: the stimulus has no {score!r} rating"}
            )
            continue
        if not r.path.is_file():
            dropped.append({"source": str(r.path), "reason": "missing file: the rated audio is not there"})
            continue
        ref = r.reference_path if r.reference_path is not None and r.reference_path.is_file() else None
        if r.reference_path is not None and ref is None:
            dropped.append(
                {"source": str(r.reference_path), "reason": "missing reference: left empty, row kept"}
            )
        lo, hi = r.scale or (None, None)
        rows.append(
            {
                "degraded": str(r.path.resolve()),
                "score": value,
                "reference": str(ref.resolve()) if ref else "",
                "system": r.system or "",
                "condition": r.condition or "",
                "listener_count": "" if r.listeners is None else r.listeners,
                "corpus": r.corpus,
                "split": r.split,
                "key": r.key,
                "scale_min": "" if lo is None else lo,
                "scale_max": "" if hi is None else hi,
                **{a: r.scores.get(a, "") for a in axes},
                **{c: "" if r.extra.get(c) is None else r.extra[c] for c in extra_columns},
            }
        )
    return rows, dropped


def write_listening_csv(
    path: str | os.PathLike, rows: Sequence[dict[str, Any]], leading: Sequence[str] = TEST_COLUMNS
) -> None:
    """Write ``rows`` (:func:`listening_rows`) as a CSV, atomically (a temporary file renamed into place), with the
    ``leading`` columns first (also the screening report: :data:`data_prep.ratings.SCREEN_COLUMNS`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys([*leading, *(k for r in rows for k in r)]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def build_rating(
    rating: Rating, *, store_rate: int | None, mono: bool, min_s: float, silence_db: float
) -> Iterator[list[Sample] | Skip | SourceInfo]:
    """Load one rated stimulus and yield its sample (or a :class:`Skip` saying why not)."""
    src = str(rating.path)
    try:
        x, sr = load_audio(rating.path)
    except Exception as exc:  # one bad file must not stop the import
        yield Skip(src, f"cannot load: {short_error(exc)}")
        return
    if (why := audio_problem(x, sr, min_s=min_s, silence_db=silence_db)) is not None:
        yield Skip(src, why)
        return
    if mono:
        x = to_mono_np(x, keepdims=True)
    if store_rate and store_rate != sr:
        x, sr = resample_np(x, sr, store_rate), store_rate
    dur = x.shape[-1] / sr
    meta = {
        **rating.meta(),
        "group": rating.key,
        "sample_rate": sr,
        "duration_s": round(dur, 6),
        "source": src,
    }
    yield [Sample(key=rating.key, fields={"flac": encode_flac(x, sr)}, meta=meta, duration_s=dur, source=src)]


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the listening-test importer."""
    p = argparse.ArgumentParser(
        prog="aqa prep import",
        description="Import a listening test (NISQA, BVCC, AudioMOS 2025 track 2 / AES-natural, ODAQ, TCD-VoIP, "
        "a generic file,score CSV, or raw per-listener ratings: long, lists, SEBASS-DB) into WebDataset shards plus manifest.json (--out), and/or into the "
        "listening-test CSV that aqa eval --test reads (--csv-out).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=GENERIC_LAYOUT
        + "\n\n"
        + RAW_LAYOUT
        + "\n\nexit codes: 0 every rated stimulus was used; 1 some were dropped (listed, "
        "with the reason; --allow-partial makes it 0) or nothing usable was written; 2 bad input.",
    )
    add_common_args(p, units_per_shard=256, unit="rated stimuli")
    next(a for a in p._actions if a.dest == "out").required = False  # --csv-out alone needs no shard folder
    p.add_argument(
        "--csv-out",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the listening-test CSV (degraded,score,reference,system,condition,listener_count,...) "
        "for aqa eval --test; without --out no shards are written",
    )
    p.add_argument(
        "--score",
        default=None,
        metavar="AXIS|COL",
        help="corpus formats: the rating --csv-out puts in its score column, mos or an axis such as pq or noi "
        "(default mos); --format long/sebass: the score column (default: score, mos, rating, ratingscore, ...)",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="exit 0 even when some rated stimuli were dropped (default: exit 1)",
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", *READERS, *RAW_FORMATS],
        help="corpus layout (default: guess); long, lists and sebass read raw ratings (per listener)",
    )
    raw = p.add_argument_group(
        "raw ratings (--format long | lists | sebass)",
        "column names are matched case-, space- and _-insensitively; unnamed roles fall back to aliases",
    )
    raw.add_argument(
        "--listener", metavar="COL", help="listener id column (long; default listener, subject, ...)"
    )
    raw.add_argument(
        "--stimulus",
        metavar="COL[,COL]",
        help="columns that identify a stimulus (default: trial columns + system, else the file column)",
    )
    raw.add_argument(
        "--system", metavar="COL", help="condition / system column (default system, algorithm, ...)"
    )
    raw.add_argument(
        "--trial",
        metavar="COL[,COL]",
        help="columns naming the items rated together in one MUSHRA trial (screening counts trials; "
        "default the trial/item column, else the stimulus columns without the system)",
    )
    raw.add_argument("--ratings", metavar="COL", help="lists: the column with each stimulus' list of ratings")
    raw.add_argument("--listeners", metavar="COL", help="lists: the parallel list of listener ids (optional)")
    raw.add_argument(
        "--audio",
        metavar="TEMPLATE",
        help="audio path template, fields are column names: 'audio/{file}', '{Target}_{Algorithm}.wav' "
        "(default: the file column: degraded, file, filename, wav, path, ...)",
    )
    raw.add_argument(
        "--audio-root",
        type=Path,
        metavar="DIR",
        help="base of relative audio paths (default: the ratings file's folder)",
    )
    raw.add_argument(
        "--reference-condition",
        metavar="NAME",
        help="the hidden reference's condition: each stimulus' reference is its trial's hidden-reference file; "
        "turns on --screen bs1534 by default",
    )
    raw.add_argument("--reference-audio", metavar="TEMPLATE", help="reference path template instead")
    raw.add_argument(
        "--screen",
        default="auto",
        choices=["auto", "bs1534", "none"],
        help="listener post-screening, ITU-R BS.1534-3 4.1.2: exclude a listener who rated the hidden reference "
        "below 90 in more than 15%% of the trials they rated with it (auto: bs1534 with --reference-condition, "
        "else none)",
    )
    raw.add_argument(
        "--mid-anchor",
        metavar="NAME",
        help="the mid-range anchor's condition: also exclude a listener who rated it above 90 in > 15%% of trials",
    )
    raw.add_argument(
        "--anchors", default="", metavar="NAME[,NAME]", help="further anchor conditions (left out)"
    )
    raw.add_argument(
        "--keep-reference",
        action="store_true",
        help="keep the hidden reference and anchors as rows of the test (default: left out)",
    )
    raw.add_argument(
        "--scale", metavar="MIN,MAX", help="rating scale (default 0,100 for sebass and screened tests)"
    )
    p.add_argument(
        "--split", default=None, help="put every stimulus in this split instead of the corpus' own"
    )
    p.add_argument("--corpus-name", default=None, help="corpus name for --format csv (default 'csv')")
    p.add_argument(
        "--store-rate", type=int, default=None, help="stored sample rate in Hz (default: source rate)"
    )
    p.add_argument("--mono", action="store_true", help="store mono down-mixes")
    p.add_argument("--min-s", type=float, default=0.1, help="skip clips shorter than this (s, default 0.1)")
    p.add_argument(
        "--silence-db", type=float, default=-70.0, help="skip clips below this RMS (dBFS, default -70)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the importer; returns 0 when every rated stimulus was used, 1 when some were dropped (0 with
    ``--allow-partial``) or nothing usable was written, 2 on bad input."""
    return run_main("aqa prep import", build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    if args.out is None and args.csv_out is None:
        raise ValueError("give --out DIR (shards) and/or --csv-out FILE (listening-test CSV)")
    opts: dict[str, Any] = {"split": args.split}
    if args.corpus_name:
        opts["corpus"] = args.corpus_name
    start = time.perf_counter()
    reports: list[str] = []  # one count line per output
    usable, dropped = True, False
    raw: RawImport | None = None
    if args.corpus_name and args.format not in ("csv", *RAW_FORMATS):
        raise ValueError(f"--corpus-name only applies to --format csv, {', '.join(RAW_FORMATS)}")
    if args.format in RAW_FORMATS:
        raw = _import_raw(args)
        ratings, bad_rows = raw.ratings, raw.skipped
    else:
        ratings, bad_rows = read_corpus(args.src, args.format, **opts)
    if not ratings:
        raise ValueError(no_stimuli_message(args.src, args.format) if raw is None else "no stimulus left")
    if args.csv_out is not None:
        score = "mos" if raw is not None else args.score or "mos"
        rows, csv_skipped = listening_rows(ratings, score, ("std", "ci95", "trial") if raw else ())
        if not rows and all(s["reason"].startswith("no score") for s in csv_skipped):
            raise ValueError(f"--score {score}: no stimulus of {args.src} has that rating")
        write_listening_csv(args.csv_out, rows)
        print(
            f"wrote {args.csv_out}: {len(rows)} rated stimuli, "
            f"{sum(1 for r in rows if r['reference'])} with a reference"
        )
        lost = [s for s in csv_skipped if not s["reason"].startswith("missing reference")]
        for item in csv_skipped:
            print(f"skipped {item['source']}: {item['reason']}", file=sys.stderr)
        reports.append(f"csv: {import_summary(len(rows), lost, bad_rows)}")
        usable &= bool(rows)
        dropped |= bool(lost or bad_rows)
        if len(lost) < len(csv_skipped):
            reports[-1] += f"; {len(csv_skipped) - len(lost)} reference(s) missing (left empty)"
    if args.out is not None:
        used, skipped = _write_shards(args, ratings, bad_rows)
        reports.append(f"shards: {import_summary(used, skipped, bad_rows)}")
        usable &= used > 0
        dropped |= bool(skipped or bad_rows)
    if raw is not None:
        reports.append(_write_raw_report(args, raw))
    if bad_rows:
        print(
            f"{len(bad_rows)} score rows could not be used"
            + (" (listed under unparsed_rows in manifest.json)" if args.out is not None else ""),
            file=sys.stderr,
        )
        for item in bad_rows[:3]:
            print(f"  {item.source}: {item.reason}", file=sys.stderr)
    print(f"done in {time.perf_counter() - start:.1f} s")
    for line in reports:
        print(f"aqa prep import: {line}", file=sys.stderr)
    if not usable:
        print("aqa prep import: error: nothing usable was written", file=sys.stderr)
        return 1
    if dropped and not args.allow_partial:
        print(
            "aqa prep import: some rated stimuli were dropped (above): exit 1; pass --allow-partial to accept "
            "a partial import",
            file=sys.stderr,
        )
        return 1
    return 0


def no_stimuli_message(src: str | os.PathLike, fmt: str) -> str:
    """The error when a corpus format finds no stimulus: for a single CSV it names the columns sought and found,
    and the raw-ratings formats that read a table of per-listener ratings."""
    msg = f"no rated stimuli found in {src}"
    path = Path(src).expanduser()
    if not path.is_file() or fmt not in ("auto", "csv"):
        return msg
    columns, _ = read_rows(path.read_text(encoding="utf-8-sig"))
    return (
        f"{msg} (--format csv): looked for a file column ({'|'.join(COLUMN_ALIASES['degraded'])}) and a score "
        f"column with one number per row ({'|'.join(COLUMN_ALIASES['score'])}); found columns: "
        f"{', '.join(columns) or '(none)'}. Ratings per listener: --format long (one row per rating: --listener, "
        "--score, --stimulus) or --format lists (one row per stimulus: --ratings COL [--listeners COL])"
    )


def _import_raw(args: argparse.Namespace) -> RawImport:
    # the raw-ratings half of `aqa prep import` (data_prep.ratings does the work)
    scale = None
    if args.scale:
        try:
            lo, hi = (float(v) for v in args.scale.split(","))
        except ValueError:
            raise ValueError(f"--scale {args.scale!r}: expected MIN,MAX, e.g. 0,100") from None
        scale = (lo, hi)
    columns = {
        k: getattr(args, k)
        for k in ("listener", "score", "stimulus", "system", "ratings", "listeners", "trial")
    }
    return import_raw(
        args.src,
        args.format,
        columns=columns,
        audio=args.audio,
        audio_root=args.audio_root,
        reference_condition=args.reference_condition,
        reference_audio=args.reference_audio,
        screen=args.screen,
        mid_anchor=args.mid_anchor,
        anchors=[a.strip() for a in args.anchors.split(",") if a.strip()],
        keep_reference=args.keep_reference,
        corpus=args.corpus_name,
        split=args.split,
        scale=scale,
    )


def _write_raw_report(args: argparse.Namespace, raw: RawImport) -> str:
    # print the screening table, write {stem}_screening.csv and {stem}_import.json beside the CSV (or in --out);
    # returns the closing count line
    def beside(name: str) -> Path:
        return (
            args.csv_out.with_name(f"{args.csv_out.stem}_{name}") if args.csv_out else Path(args.out) / name
        )

    c = raw.counts
    if raw.screening:
        print(
            f"screening (ITU-R BS.1534-3 4.1.2, {args.reference_condition!r} < 90 / mid anchor > 90 in > 15 %):"
        )
        for r in raw.screening:
            fr = "-" if r["reference_fraction"] is None else f"{r['reference_fraction']:.2f}"
            fa = "-" if r["anchor_fraction"] is None else f"{r['anchor_fraction']:.2f}"
            anchor = f", anchor {r['anchor_above_90']}/{r['anchor_trials']} = {fa}" if args.mid_anchor else ""
            print(
                f"  {r['listener']}: reference {r['reference_below_90']}/{r['reference_trials']} = {fr}{anchor}: "
                + ("EXCLUDED (" + r["reason"] + ")" if r["excluded"] else "kept")
            )
        write_listening_csv(beside("screening.csv"), raw.screening, leading=SCREEN_COLUMNS)
    summary = {
        "src": str(args.src),
        "format": args.format,
        "screen": "bs1534" if raw.screening else "none",
        "reference_condition": args.reference_condition,
        "mid_anchor": args.mid_anchor,
        "excluded_listeners": raw.excluded,
        "screening_only_conditions": raw.screening_only,
        "counts": c,
    }
    write_text_atomic(beside("import.json"), json.dumps(summary, indent=1) + "\n")
    for cond in raw.screening_only:
        print(f"condition {cond!r} has no audio file: used for screening only", file=sys.stderr)
    return (
        f"ratings: {c['ratings']} by {c['listeners']} listeners, {c['excluded_listeners']} excluded "
        f"({', '.join(raw.excluded) or 'none'}); {c['stimuli']} stimuli, {c['left_out']} hidden reference/anchor "
        f"left out, {c['screening_only']} screening only, {c['written']} written; report {beside('import.json')}"
    )


def _write_shards(
    args: argparse.Namespace, ratings: Sequence[Rating], bad_rows: Sequence[Any]
) -> tuple[int, list[dict]]:
    # the shard half of `aqa prep import`: returns (samples written, skipped stimuli) and prints per split
    ratings = [
        r if r.split else Rating(**{**r.__dict__, "split": assign_split(r.key, args.val_fraction, args.seed)})
        for r in ratings
    ]
    plans = plan_shards(
        ratings,
        key=lambda r: r.key,
        split_of=lambda r: r.split,
        shard_id=args.shard_id,
        num_shards=args.num_shards,
        units_per_shard=args.units_per_shard,
    )
    config = {
        "src": str(args.src),
        "format": args.format,
        "corpora": sorted({r.corpus for r in ratings}),
        "split_override": args.split,
        "store_rate": args.store_rate,
        "mono": args.mono,
        "min_s": args.min_s,
        "silence_db": args.silence_db,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
    }
    manifest = run_shards(
        plans,
        partial(
            build_rating,
            store_rate=args.store_rate,
            mono=args.mono,
            min_s=args.min_s,
            silence_db=args.silence_db,
        ),
        args.out,
        config=config,
        recipe=RECIPE,
        shard_id=args.shard_id,
        num_shards=args.num_shards,
        jobs=args.jobs,
        label_keys=("mos", "noi", "col", "dis", "loud", "pq", "pc", "ce", "cu"),
        extra={
            "sample_fields": {
                "flac": "16-bit FLAC of the rated stimulus",
                "json": "corpus, split, mos, scores (+ each axis at top level), scale, system, reference, "
                "group, sample_rate, duration_s, source, extra",
            },
            "unparsed_rows": [{"source": s.source, "reason": s.reason} for s in bad_rows],
        },
        progress=not args.no_progress,
    )
    for name, info in manifest["splits"].items():
        print(
            f"{name}: {info['samples']} stimuli, {len(info['shards'])} shards, {info['duration_s']:.1f} s of audio"
        )
    for item in manifest["skipped"]:
        print(f"skipped {item['source']}: {item['reason']}", file=sys.stderr)
    if "jobs" in manifest:  # merged: every job is done
        for line in split_warnings(manifest):
            print(line, file=sys.stderr)
    print(f"wrote {args.out}")
    return manifest["totals"]["samples"], list(manifest["skipped"])


def import_summary(used: int, skipped: Sequence[dict], bad_rows: Sequence[Any]) -> str:
    """``"4 used, 2 skipped (silent: 1, unparsed row: 1)"``: the importer's closing count line."""
    why: dict[str, int] = {}
    for item in skipped:
        reason = str(item["reason"]).split(":")[0]
        why[reason] = why.get(reason, 0) + 1
    if bad_rows:
        why["unparsed row"] = len(bad_rows)
    n_skipped = len(skipped) + len(bad_rows)
    detail = f" ({', '.join(f'{k}: {v}' for k, v in why.items())})" if why else ""
    return f"{used} used, {n_skipped} skipped{detail}"


if __name__ == "__main__":
    sys.exit(main())
