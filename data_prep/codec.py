"""Build codec training shards (DeePAQ): ``python -m data_prep.codec --src DIR_OR_LIST --out OUT``.

``--src`` is a folder (searched recursively for .wav .flac .ogg .mp3 .m4a .opus) or a list file:
``.csv`` with a ``path`` column and an optional ``split`` column (header optional), or ``.txt`` with
one path per line (``#`` starts a comment). Relative paths in a list resolve against the list's own
folder, or against ``--root`` when given. Example (the demo set, from the repository root)::

    python -m data_prep.codec --src data_prep/lists/demo_music.csv --root ../shared/data/clean \\
        --out data/codec_demo --excerpt-s 5 --max-excerpts 6 --store-rate 24000 --mono --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aqa.data.codec_shards import build_codec_shards
from aqa.data.codecs import CODECS

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")


def read_sources(src: Path, root: Path | None = None) -> tuple[list[Path], dict[str, str]]:
    """Resolve ``--src`` into audio paths and explicit splits.

    Args:
        src: a folder or a ``.csv`` / ``.txt`` list.
        root: base folder for relative paths in a list (default: the list's folder).

    Returns:
        ``(paths, splits)``: resolved paths in listing order and ``{str(path): split}`` for list rows
        that name a split.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: ``src`` is a file of another type, or a list row is malformed.
    """
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        return [p.resolve() for p in files], {}
    if not src.is_file():
        raise FileNotFoundError(f"--src {src} does not exist")
    base = (root if root is not None else src.parent).expanduser()
    rows: list[tuple[str, str]] = []
    if src.suffix.lower() == ".csv":
        with src.open(newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f)):
                cells = [c.strip() for c in row]
                if not cells or not cells[0] or cells[0].startswith("#"):
                    continue
                if i == 0 and cells[0].lower() == "path":
                    continue
                if len(cells) > 2:
                    raise ValueError(f"{src}:{i + 1}: expected `path[,split]`, got {row!r}")
                rows.append((cells[0], cells[1] if len(cells) > 1 else ""))
    elif src.suffix.lower() == ".txt":
        for line in src.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                rows.append((line, ""))
    else:
        raise ValueError(f"--src must be a folder, a .csv or a .txt list; got {src}")
    paths: list[Path] = []
    splits: dict[str, str] = {}
    for name, split in rows:
        p = Path(name).expanduser()
        p = (p if p.is_absolute() else base / p).resolve()
        paths.append(p)
        if split:
            splits[str(p)] = split
    return paths, splits


def _csv_list(text: str, cast: type) -> list:
    return [cast(t) for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the codec shard builder."""
    p = argparse.ArgumentParser(
        prog="python -m data_prep.codec",
        description="Cut audio into excerpts, code each with Opus/MP3/AAC at several bit rates (ffmpeg) "
        "and write grouped WebDataset shards plus manifest.json.",
    )
    p.add_argument("--src", required=True, type=Path, help="audio folder (recursive) or .csv/.txt list")
    p.add_argument(
        "--out", required=True, type=Path, help="output folder for {split}-NNNNN.tar and manifest.json"
    )
    p.add_argument("--root", type=Path, default=None, help="base folder for relative paths in a list")
    p.add_argument("--excerpt-s", type=float, default=10.0, help="excerpt length in seconds (default 10)")
    p.add_argument("--max-excerpts", type=int, default=None, help="max excerpts per piece (spread evenly)")
    p.add_argument(
        "--store-rate", type=int, default=None, help="stored sample rate in Hz (default: source rate)"
    )
    p.add_argument("--mono", action="store_true", help="store mono down-mixes")
    p.add_argument("--jobs", type=int, default=1, help="coding processes (output is identical for any value)")
    p.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of pieces hashed into val (default 0.2)"
    )
    p.add_argument("--codecs", default=",".join(CODECS), help="comma-separated subset of opus,mp3,aac")
    p.add_argument("--bitrates", default="16,32,48,64,80,96,128", help="comma-separated kbit/s")
    p.add_argument("--groups-per-shard", type=int, default=8, help="excerpts per shard (default 8)")
    p.add_argument("--seed", type=int, default=0, help="salt of the split hash")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the builder; returns 0 on success, 1 when no excerpt was written, 2 on bad input."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        sources, splits = read_sources(args.src, args.root)
        if not sources:
            raise ValueError(f"no audio files ({' '.join(AUDIO_SUFFIXES)}) under {args.src}")
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
            val_fraction=args.val_fraction,
            splits=splits or None,
            groups_per_shard=args.groups_per_shard,
            jobs=args.jobs,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"data_prep.codec: error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    for name, info in manifest["splits"].items():
        print(
            f"{name}: {info['groups']} excerpts, {info['samples']} samples, {len(info['shards'])} shards, "
            f"pieces: {', '.join(info['pieces'])}"
        )
    for item in manifest["skipped"]:
        print(f"skipped {item['source']}: {item['reason']}", file=sys.stderr)
    print(f"wrote {args.out / 'manifest.json'} in {elapsed:.1f} s")
    return 0 if manifest["totals"]["groups"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
