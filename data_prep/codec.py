"""Build codec training shards (DeePAQ): ``aqa prep codec --src DIR_OR_LIST --out OUT [options]``.

``--src`` is a folder (searched recursively for .wav .flac .ogg .mp3 .m4a .opus) or a list file:
``.csv`` with a ``path`` column and an optional ``split`` column (header optional), or ``.txt`` with
one path per line (``#`` starts a comment). Relative paths in a list resolve against the list's own
folder, or against ``--root`` when given. Example (the demo set, from the repository root)::

    aqa prep codec --src data_prep/lists/demo_music.csv --root ../shared/data/clean \\
        --out data/codec_demo --excerpt-s 5 --max-excerpts 6 --store-rate 24000 --mono --jobs 2

On a cluster, run the same command N times with ``--shard-id 0..N-1 --num-shards N`` (e.g. a SLURM array:
``--shard-id $SLURM_ARRAY_TASK_ID --num-shards $SLURM_ARRAY_TASK_COUNT``); the last job to finish writes
``manifest.json``. Rerunning a killed job keeps its finished shards. ViSQOL labels cost ~2 s of CPU per
10 s version (22 versions per excerpt by default): ``--no-visqol`` for bit-rate labels only.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aqa.data.codec_shards import build_codec_shards
from aqa.data.codecs import CODECS
from aqa.data.shards import add_common_args, list_sources


def _csv_list(text: str, cast: type) -> list:
    return [cast(t) for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the codec shard builder."""
    p = argparse.ArgumentParser(
        prog="aqa prep codec",
        description="Cut audio into excerpts, code each with Opus/MP3/AAC at several bit rates (ffmpeg), "
        "label them (bit rate, ViSQOL v3) and write grouped WebDataset shards plus manifest.json.",
    )
    add_common_args(p, units_per_shard=1, unit="pieces (source files)")
    p.add_argument("--excerpt-s", type=float, default=10.0, help="excerpt length in seconds (default 10)")
    p.add_argument("--max-excerpts", type=int, default=None, help="max excerpts per piece (spread evenly)")
    p.add_argument(
        "--store-rate", type=int, default=None, help="stored sample rate in Hz (default: source rate)"
    )
    p.add_argument("--mono", action="store_true", help="store mono down-mixes")
    p.add_argument("--codecs", default=",".join(CODECS), help="comma-separated subset of opus,mp3,aac")
    p.add_argument("--bitrates", default="16,32,48,64,80,96,128", help="comma-separated kbit/s")
    p.add_argument(
        "--visqol",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ViSQOL v3 audio-mode MOS label per version (default on; ~2 s CPU per 10 s version)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the builder; returns 0 on success, 1 when no excerpt was written, 2 on bad input."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        sources, splits = list_sources(args.src, args.root)
        start = time.perf_counter()
        manifest = build_codec_shards(
            sources,
            args.out,
            excerpt_s=args.excerpt_s,
            max_excerpts_per_piece=args.max_excerpts,
            codecs=_csv_list(args.codecs, str),
            bitrates=_csv_list(args.bitrates, float),
            store_rate=args.store_rate,
            mono=args.mono,
            visqol=args.visqol,
            val_fraction=args.val_fraction,
            splits=splits or None,
            pieces_per_shard=args.units_per_shard,
            shard_id=args.shard_id,
            num_shards=args.num_shards,
            jobs=args.jobs,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"aqa prep codec: error: {err}", file=sys.stderr)
        return 2
    return report(manifest, args.out, time.perf_counter() - start)


def report(manifest: dict, out: Path, elapsed: float) -> int:
    """Print a manifest summary; 0 when samples were written (by this job or all), else 1."""
    for name, info in manifest["splits"].items():
        print(f"{name}: {info['groups']} groups, {info['samples']} samples, {len(info['shards'])} shards")
    for item in manifest["skipped"]:
        print(f"skipped {item['source']}: {item['reason']}", file=sys.stderr)
    done = out / "manifest.json" if "jobs" in manifest else "this job's manifest (waiting for other jobs)"
    print(f"{done} in {elapsed:.1f} s")
    return 0 if manifest["totals"]["groups"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
