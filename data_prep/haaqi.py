"""Build HAAQI-Net shards: ``python -m data_prep.haaqi --src MUSIC --out OUT``.

Music excerpts (mono, 24 kHz) x processings (clean, real codec, low-pass, noise) x sampled listeners
(Bisgaard-based 8-value audiogram at 250-8000 Hz and a presentation level around 65 dB SPL), each labelled
with HAAQI from pyclarity; see :mod:`aqa.data.haaqi_shards` for the sampling. ``--src`` is a folder
(recursive) or a ``.csv``/``.txt`` list (``path[,split]``). Samples ``{piece}-{excerpt}-{processing}-{k}``
hold ``.flac`` and ``.json`` (``audiogram, audiogram_profile, level_db, processing, haaqi, group, ...``).
HAAQI costs ~1.5x real time per sample on one core: budget ``excerpts x processings x audiograms x
excerpt_s x 1.5`` CPU-seconds. Example (the demo set)::

    python -m data_prep.haaqi --src data_prep/lists/demo_music.csv --root ../shared/data/clean \\
        --out data/haaqi_demo --excerpt-s 2 --max-excerpts 1 --processings clean,codec,noise --audiograms 2 --jobs 2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from aqa.data.haaqi_shards import DEFAULT_PROFILES, PROCESSINGS, HaaqiConfig, build_piece
from aqa.data.shards import add_common_args, assign_split, list_sources, plan_shards, run_shards, safe_id


def _build(path: str, cfg: HaaqiConfig):  # noqa: ANN202  (module-level so the pool can pickle it)
    return build_piece(path, cfg)


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the HAAQI shard builder."""
    p = argparse.ArgumentParser(prog="aqa prep haaqi", description="Music x processing x sampled hearing loss, "
                                "labelled with HAAQI (pyclarity), as WebDataset shards plus manifest.json.")
    add_common_args(p, units_per_shard=4, unit="source files")
    p.add_argument("--excerpt-s", type=float, default=10.0, help="excerpt length in seconds (default 10)")
    p.add_argument("--max-excerpts", type=int, default=None, help="max excerpts per piece (spread evenly)")
    p.add_argument("--sample-rate", type=int, default=24000, help="working and stored rate in Hz (default 24000)")
    p.add_argument("--processings", default=",".join(PROCESSINGS), help=f"comma list of {','.join(PROCESSINGS)}")
    p.add_argument("--audiograms", type=int, default=2, help="listeners drawn per processed version (default 2)")
    p.add_argument("--profiles", default=",".join(DEFAULT_PROFILES), help="hearing-loss profiles to draw from "
                   "(NH, Bisgaard N1-N7, S1-S3; default NH,N1-N6,S1-S3)")
    p.add_argument("--level-min", type=float, default=55.0, help="lowest presentation level, dB SPL (default 55)")
    p.add_argument("--level-max", type=float, default=75.0, help="highest presentation level, dB SPL (default 75)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the builder; returns 0 on success, 1 when nothing was written, 2 on bad input."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        procs = tuple(t.strip() for t in args.processings.split(",") if t.strip())
        profiles = tuple(t.strip() for t in args.profiles.split(",") if t.strip())
        if not procs or any(t not in PROCESSINGS for t in procs):
            raise ValueError(f"--processings must name some of {list(PROCESSINGS)}, got {args.processings!r}")
        if args.excerpt_s <= 0 or args.audiograms < 1 or args.level_min > args.level_max:
            raise ValueError("need --excerpt-s > 0, --audiograms >= 1 and --level-min <= --level-max")
        from aqa.data.haaqi_shards import profile_levels

        for name in profiles:
            profile_levels(name)
        cfg = HaaqiConfig(
            excerpt_s=args.excerpt_s,
            max_excerpts=args.max_excerpts,
            sample_rate=args.sample_rate,
            processings=procs,
            audiograms_per_version=args.audiograms,
            profiles=profiles,
            level_range_db=(args.level_min, args.level_max),
            seed=args.seed,
        )
        sources, splits = list_sources(args.src, args.root)
        keyed = {safe_id(p.stem.split(".")[0], 40): str(p) for p in sources}
        if len(keyed) != len(sources):
            raise ValueError("two sources share a file stem; rename one (the stem is the piece id)")
        split_of = {k: splits.get(v) or assign_split(k, args.val_fraction, args.seed) for k, v in keyed.items()}
        plans = plan_shards(list(keyed.values()), key=lambda v: safe_id(Path(v).stem.split(".")[0], 40),
                            split_of=lambda v: split_of[safe_id(Path(v).stem.split(".")[0], 40)],
                            shard_id=args.shard_id, num_shards=args.num_shards, units_per_shard=args.units_per_shard)
        config = {**cfg.__dict__, "val_fraction": args.val_fraction, "src": str(args.src)}
        start = time.perf_counter()
        manifest = run_shards(
            plans, partial(_build, cfg=cfg), args.out, config=config, recipe="haaqi", shard_id=args.shard_id,
            num_shards=args.num_shards, jobs=args.jobs, label_keys=("haaqi", "level_db"),
            extra={"sample_fields": {"flac": "16-bit FLAC, mono", "json": "piece, group, excerpt, start_s, processing, "
                                     "processing_kind, is_reference, audiogram, audiogram_frequencies, "
                                     "audiogram_profile, level_db, haaqi, sample_rate, source"}},
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"aqa prep haaqi: error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    for name, info in manifest["splits"].items():
        print(f"{name}: {info['groups']} excerpts, {info['samples']} samples, {len(info['shards'])} shards")
    for item in manifest["skipped"]:
        print(f"skipped {item['source']}: {item['reason']}", file=sys.stderr)
    n = manifest["totals"]["samples"]
    print(f"wrote {args.out} in {elapsed:.1f} s" + (f" ({elapsed / n:.2f} s per labelled sample)" if n else ""))
    return 0 if n > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
