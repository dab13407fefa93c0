"""Build JSQA JND pairs: ``aqa prep jnd --src SPEECH_DIR_OR_LIST --out OUT [options]``.

Clean speech (``--src``: folder or .csv/.txt list, as for ``aqa prep codec``) is mixed with noise at every
SNR of a grid (default -5..40 dB in 1 dB steps); each (utterance, noise) is a group of mixtures plus the
clean reference, and pairs of mixtures are "same" when their SNRs differ by less than ``--jnd-db``
(default 3 dB, the speech-to-noise-ratio JND of McShefferty et al. 2015). Noise comes from ``--noise-dir``
or is generated (``--noise-types white,pink,babble``). See :mod:`aqa.data.jnd_shards`. Example::

    aqa prep jnd --src ../shared/data/clean/speech --out data/jnd_demo --snr-step 2.5 --jobs 2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aqa.data.jnd_shards import NOISE_TYPES, build_jnd_shards, snr_grid
from aqa.data.shards import add_common_args, list_sources
from data_prep.codec import report


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the JND pair builder."""
    p = argparse.ArgumentParser(
        prog="aqa prep jnd",
        description="Mix clean speech with noise on an SNR grid and write JND-pair WebDataset shards.",
    )
    add_common_args(p, units_per_shard=16, unit="utterances")
    p.add_argument("--noise-dir", type=Path, default=None, help="noise recordings (default: generated noise)")
    p.add_argument(
        "--noise-types", default=",".join(NOISE_TYPES), help="generated noises: subset of white,pink,babble"
    )
    p.add_argument(
        "--noises-per-utterance", type=int, default=1, help="noise groups per utterance (default 1)"
    )
    p.add_argument("--snr-min", type=float, default=-5.0, help="lowest SNR in dB (default -5)")
    p.add_argument("--snr-max", type=float, default=40.0, help="highest SNR in dB (default 40)")
    p.add_argument("--snr-step", type=float, default=1.0, help="SNR grid step in dB (default 1)")
    p.add_argument(
        "--jnd-db", type=float, default=3.0, help="pairs closer than this are 'same' (default 3 dB)"
    )
    p.add_argument("--max-pair-gap-db", type=float, default=10.0, help="list pairs at most this far apart")
    p.add_argument("--sample-rate", type=int, default=16000, help="stored rate in Hz (default 16000)")
    p.add_argument("--min-s", type=float, default=1.0, help="skip utterances shorter than this (s)")
    p.add_argument("--max-s", type=float, default=10.0, help="cut utterances to this length (s)")
    p.add_argument("--level-dbfs", type=float, default=-26.0, help="RMS level of every stored clip")
    p.add_argument("--no-clean", action="store_true", help="do not store the clean reference")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the builder; 0 on success, 1 when nothing was written, 2 on bad input."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        sources, splits = list_sources(args.src, args.root)
        start = time.perf_counter()
        manifest = build_jnd_shards(
            sources,
            args.out,
            noise_dir=args.noise_dir,
            noise_types=[t for t in args.noise_types.split(",") if t.strip()],
            noises_per_utterance=args.noises_per_utterance,
            snrs=snr_grid(args.snr_min, args.snr_max, args.snr_step),
            jnd_db=args.jnd_db,
            max_pair_gap_db=args.max_pair_gap_db,
            sample_rate=args.sample_rate,
            min_s=args.min_s,
            max_s=args.max_s,
            level_dbfs=args.level_dbfs,
            include_clean=not args.no_clean,
            val_fraction=args.val_fraction,
            splits=splits or None,
            utterances_per_shard=args.units_per_shard,
            shard_id=args.shard_id,
            num_shards=args.num_shards,
            jobs=args.jobs,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"aqa prep jnd: error: {err}", file=sys.stderr)
        return 2
    return report(manifest, args.out, time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(main())
