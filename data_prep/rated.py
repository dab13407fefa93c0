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
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from aqa.audio import encode_flac, load_audio, resample_np, to_mono_np
from data_prep.corpora import READERS, Rating, read_corpus
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
    meta = {**rating.meta(), "group": rating.key, "sample_rate": sr, "duration_s": round(dur, 6), "source": src}
    yield [Sample(key=rating.key, fields={"flac": encode_flac(x, sr)}, meta=meta, duration_s=dur, source=src)]


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the listening-test importer."""
    p = argparse.ArgumentParser(
        prog="aqa prep import",
        description="Import a listening test (NISQA, BVCC, AudioMOS 2025 track 2 / AES-natural, ODAQ, TCD-VoIP "
        "or a generic file,score CSV) into WebDataset shards plus manifest.json.",
    )
    add_common_args(p, units_per_shard=256, unit="rated stimuli")
    p.add_argument("--format", default="auto", choices=["auto", *READERS], help="corpus layout (default: guess)")
    p.add_argument("--split", default=None, help="put every stimulus in this split instead of the corpus' own")
    p.add_argument("--corpus-name", default=None, help="corpus name for --format csv (default 'csv')")
    p.add_argument("--store-rate", type=int, default=None, help="stored sample rate in Hz (default: source rate)")
    p.add_argument("--mono", action="store_true", help="store mono down-mixes")
    p.add_argument("--min-s", type=float, default=0.1, help="skip clips shorter than this (s, default 0.1)")
    p.add_argument("--silence-db", type=float, default=-70.0, help="skip clips below this RMS (dBFS, default -70)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the importer; returns 0 on success, 1 when nothing was written, 2 on bad input."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    opts: dict[str, Any] = {"split": args.split}
    if args.corpus_name:
        opts["corpus"] = args.corpus_name
    try:
        if args.corpus_name and args.format != "csv":
            raise ValueError("--corpus-name only applies to --format csv")
        ratings, bad_rows = read_corpus(args.src, args.format, **opts)
        ratings = [
            r if r.split else Rating(**{**r.__dict__, "split": assign_split(r.key, args.val_fraction, args.seed)})
            for r in ratings
        ]
        if not ratings:
            raise ValueError(f"no rated stimuli found in {args.src}")
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
        start = time.perf_counter()
        manifest = run_shards(
            plans,
            partial(build_rating, store_rate=args.store_rate, mono=args.mono, min_s=args.min_s,
                    silence_db=args.silence_db),
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
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"aqa prep import: error: {err}", file=sys.stderr)
        return 2
    for name, info in manifest["splits"].items():
        print(f"{name}: {info['samples']} stimuli, {len(info['shards'])} shards, {info['duration_s']:.1f} s of audio")
    for item in manifest["skipped"]:
        print(f"skipped {item['source']}: {item['reason']}", file=sys.stderr)
    if bad_rows:
        print(f"{len(bad_rows)} score rows could not be used (listed under unparsed_rows)", file=sys.stderr)
    if "jobs" in manifest:  # merged: every job is done
        for line in split_warnings(manifest):
            print(line, file=sys.stderr)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    used = manifest["totals"]["samples"]
    print(f"aqa prep import: {import_summary(used, manifest['skipped'], bad_rows)}", file=sys.stderr)
    if used == 0:
        print("aqa prep import: error: nothing usable was written", file=sys.stderr)
    return 0 if used > 0 else 1


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
