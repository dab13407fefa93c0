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

Build DeePAQ-style codec training data: clean excerpts plus every codec/bit-rate version, as WebDataset shards.

Each source file is a *piece* and a work unit of :mod:`data_prep.shards` (deterministic split over
``--shard-id/--num-shards`` jobs, resumable shards, per-job and merged manifests). A piece is cut into
non-overlapping excerpts of ``excerpt_s`` seconds (near-silent ones are dropped); each excerpt is a
*group*: the clean reference followed by its codec versions (every codec x every bit rate), written
whole and consecutively. ``pieces_per_shard`` pieces make one shard ``{split}-{job:04d}-{index:05d}.tar``;
the split is decided per piece, so validation never shares a recording with training.

Labels: ``bitrate_kbps``/``bitrate_rank`` and, unless ``visqol=False``, the ViSQOL v3 audio-mode MOS-LQO
(``visqol_moslqo``, plus ``visqol_nsim``) of each version against the clean excerpt. ViSQOL audio mode
works at 48 kHz: it scores the excerpts at the source rate (resampled to 48 kHz inside the metric),
before any down-mix or store-rate resampling. The reference gets ViSQOL(ref, ref), the top of the scale.

Sample layout (one tar member per field)::

    {piece}-{excerpt:04d}-{codec}-{bitrate}.flac   16-bit FLAC at the store rate
    {piece}-{excerpt:04d}-{codec}-{bitrate}.json   {"piece", "group", "excerpt", "codec", "bitrate_kbps",
                                                    "bitrate_rank", "is_reference", "start_s",
                                                    "sample_rate", "source", "visqol_moslqo", "visqol_nsim"}

The clean reference uses codec ``"clean"`` and bitrate ``"ref"`` in its key, ``bitrate_kbps`` null and
``bitrate_rank`` equal to the number of bit rates (one above the best coded version).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aqa import metrics  # the module: tests replace metrics.compute_arrays with a fast stand-in
from aqa.audio import encode_flac, ffmpeg_binary, load_audio, resample_np, to_mono_np
from data_prep.codecs import CODECS, codec_sample_rate, encode_decode_many
from data_prep.recipe import report, run_main
from data_prep.shards import (
    MANIFEST_NAME,
    Sample,
    Skip,
    SourceInfo,
    SourceUnit,
    add_common_args,
    assign_split,
    list_sources,
    plan_shards,
    run_shards,
    safe_id,
    short_error,
    source_units,
)

__all__ = ["build_codec_shards", "piece_id_for", "assign_split", "MANIFEST_NAME"]

LABEL_KEYS = ("bitrate_kbps", "bitrate_rank", "visqol_moslqo", "visqol_nsim")


def piece_id_for(path: Path) -> str:
    """Key-safe identifier of a source file: its stem with anything but ``[A-Za-z0-9_-]`` turned into ``_``.

    Long names are cut to 60 characters (the tail replaced by a short hash) so keys fit in tar headers.
    """
    return safe_id(Path(path).stem)


@dataclass(frozen=True)
class _Config:
    excerpt_s: float
    max_excerpts: int | None
    codecs: tuple[str, ...]
    bitrates: tuple[float, ...]
    ladder: tuple[float, ...]
    store_rate: int | None
    mono: bool
    silence_db: float
    visqol: bool
    versions: int | None = None  # coded versions per excerpt (a seeded subset); None: every codec x bit rate
    seed: int = 0


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _visqol(ref: np.ndarray, deg: np.ndarray, sr: int) -> tuple[float, float]:
    r = metrics.compute_arrays("visqol", ref, sr, deg, sr, mode="audio")
    return float(r["moslqo"]), float(r["nsim"])


def _code_group(
    piece: SourceUnit, excerpt: int, start_s: float, x: np.ndarray, sr: int, cfg: _Config
) -> list[Sample] | Skip:
    """Code one excerpt ``x`` (C, L) at ``sr`` with every codec/bit rate; a Skip when coding or ViSQOL fails."""
    group = f"{piece.name}-{excerpt:04d}"
    store_rate = cfg.store_rate or sr
    dur = x.shape[-1] / sr

    def store(y: np.ndarray) -> bytes:
        if cfg.mono:
            y = to_mono_np(y, keepdims=True)
        return encode_flac(resample_np(y, sr, store_rate), store_rate)

    def sample(codec: str, bitrate: float | None, y: np.ndarray) -> Sample:
        meta: dict[str, Any] = {
            "piece": piece.name,
            "group": group,
            "excerpt": excerpt,
            "codec": codec,
            "bitrate_kbps": None if bitrate is None else _num(bitrate),
            "bitrate_rank": len(cfg.ladder) if bitrate is None else cfg.ladder.index(bitrate),
            "is_reference": bitrate is None,
            "start_s": round(start_s, 6),
            "sample_rate": store_rate,
            "source": piece.source,
        }
        if cfg.visqol:  # on the source-rate excerpt, before down-mix/store-rate resampling
            meta["visqol_moslqo"], meta["visqol_nsim"] = _visqol(x, y, sr)
        key = f"{group}-{codec}-{'ref' if bitrate is None else _num(bitrate)}"
        return Sample(key, {"flac": store(y)}, meta, duration_s=dur, source=piece.source)

    extra = {"piece": piece.name, "excerpt": excerpt}
    try:
        out = [sample("clean", None, x)]
    except Exception as exc:
        return Skip(piece.source, f"visqol failed: {short_error(exc)}", extra)
    points = version_points(cfg.codecs, cfg.bitrates, cfg.versions, f"{cfg.seed}:{group}")
    for codec in cfg.codecs:
        rates = tuple(b for c, b in points if c == codec)
        if not rates:
            continue
        try:
            coded = encode_decode_many(x, sr, codec, rates)
        except (RuntimeError, ValueError) as exc:
            return Skip(piece.source, f"{codec} coding failed: {short_error(exc)}", extra)
        try:
            out.extend(sample(codec, b, y) for b, y in zip(rates, coded, strict=True))
        except Exception as exc:
            return Skip(piece.source, f"visqol failed: {short_error(exc)}", extra)
    return out


def version_points(
    codecs: Sequence[str], bitrates: Sequence[float], versions: int | None, key: str
) -> list[tuple[str, float]]:
    """The (codec, bit rate) points coded for one excerpt: all of them, or ``versions`` drawn without
    replacement by a generator seeded from ``key`` (the excerpt's group id and the build seed), so any number of
    jobs draws the same subset. Returned in codec, then bit-rate order."""
    grid = [(c, float(b)) for c in codecs for b in bitrates]
    if versions is None or versions >= len(grid):
        return grid
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))
    keep = set(rng.choice(len(grid), size=versions, replace=False).tolist())
    return [point for i, point in enumerate(grid) if i in keep]


def _build_piece(piece: SourceUnit, cfg: _Config) -> Iterator[list[Sample] | Skip | SourceInfo]:
    # one work unit: decode, check, cut into excerpts, yield one group per excerpt
    p = Path(piece.source)
    try:
        x, sr = load_audio(p)
    except Exception as exc:  # one bad file must not stop the build
        yield Skip(piece.source, f"cannot load: {short_error(exc)}", {"piece": piece.name})
        return
    if x.shape[0] > 2:
        x = to_mono_np(x, keepdims=True)  # codecs take mono/stereo
    n = int(round(cfg.excerpt_s * sr))
    if x.shape[1] < n:
        yield Skip(
            piece.source,
            f"too short: {x.shape[1] / sr:.2f} s < excerpt_s {cfg.excerpt_s:g} s",
            {"piece": piece.name},
        )
        return
    slots = [i for i in range(x.shape[1] // n) if _rms_db(x[:, i * n : (i + 1) * n]) >= cfg.silence_db]
    silent = x.shape[1] // n - len(slots)
    if not slots:
        yield Skip(
            piece.source, f"silent: every excerpt below {cfg.silence_db:g} dBFS RMS", {"piece": piece.name}
        )
        return
    if cfg.max_excerpts is not None and len(slots) > cfg.max_excerpts:
        pick = np.linspace(0, len(slots) - 1, cfg.max_excerpts).round().astype(int)
        slots = [slots[i] for i in pick]
    yield SourceInfo(
        piece.source,
        {
            "piece": piece.name,
            "split": piece.split,
            "sample_rate": sr,
            "channels": int(x.shape[0]),
            "duration_s": round(x.shape[1] / sr, 3),
            "excerpts": [int(i) for i in slots],
            "silent_excerpts_dropped": silent,
            "attribution": _attribution(p),
        },
    )
    for i in slots:
        yield _code_group(piece, i, i * n / sr, np.ascontiguousarray(x[:, i * n : (i + 1) * n]), sr, cfg)


def _attribution(path: Path) -> str | None:
    # librosa-style clips keep their licence in "<name before the first dot>.txt" beside the audio.
    txt = path.with_name(path.name.split(".")[0] + ".txt")
    try:
        return txt.read_text(encoding="utf-8").strip() if txt.is_file() else None
    except OSError:
        return None


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def build_codec_shards(
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    excerpt_s: float = 10.0,
    max_excerpts_per_piece: int | None = None,
    codecs: Sequence[str] = ("opus", "mp3", "aac"),
    bitrates: Sequence[float] = (16, 32, 48, 64, 80, 96, 128),
    store_rate: int | None = None,
    mono: bool = False,
    visqol: bool = True,
    val_fraction: float = 0.2,
    splits: Mapping[str, str] | None = None,
    pieces_per_shard: int = 1,
    shard_id: int = 0,
    num_shards: int = 1,
    jobs: int = 1,
    seed: int = 0,
    versions_per_excerpt: int | None = None,
    silence_db: float = -60.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Cut sources into excerpts, code each with every codec/bit rate and write WebDataset shards.

    Resumable: rerunning with the same arguments keeps finished shards and rebuilds the rest
    (see :mod:`data_prep.shards`).

    Args:
        sources: audio files; each is one piece (anything :func:`~aqa.audio.load_audio` reads). Every
            job of a multi-job build must get the same list.
        out_dir: output folder (created); receives the shards, ``manifest-IIII-of-NNNN.json`` and, once
            every job is done, ``manifest.json``.
        excerpt_s: excerpt length in seconds; only whole excerpts are kept (shorter files are skipped).
        max_excerpts_per_piece: keep at most this many excerpts per piece, spread evenly over it.
        codecs: subset of ``("opus", "mp3", "aac")``.
        bitrates: bit rates in kbit/s; their sorted order defines ``bitrate_rank``.
        store_rate: sample rate (Hz) of the stored FLAC; ``None`` keeps each source's rate.
            Coding (and ViSQOL) always happen at the source rate/channels; down-mix and resampling follow.
        mono: store mono down-mixes.
        visqol: add the ViSQOL v3 audio-mode labels (~2 s of CPU per 10 s version).
        val_fraction: share of pieces (by hash of the piece id and ``seed``) sent to ``"val"``.
        splits: explicit ``piece -> split`` (keys: piece id, path as given, resolved path, file name
            or stem); pieces not listed fall back to the hash rule.
        pieces_per_shard: pieces (work units) per shard.
        shard_id: this job's index in ``0..num_shards-1``.
        num_shards: number of jobs splitting the pieces.
        jobs: worker processes (each builds whole shards); the output is identical for any value.
        seed: salt of the split hash and of the drawn versions.
        versions_per_excerpt: code each excerpt at this many (codec, bit rate) points, a seeded draw per
            excerpt (DeePAQ's data is about 8 coded per clean: 3 x 122 h coded against 45 h clean); None codes
            every point.
        silence_db: excerpts whose RMS is below this level (dBFS) are dropped.
        progress: show a tqdm bar on stderr.

    Returns:
        The merged manifest once every job has finished (also ``out_dir/manifest.json``), else this job's.

    Raises:
        FileNotFoundError: ffmpeg is not installed.
        ValueError: invalid arguments.
    """
    codecs = tuple(codecs)
    bitrates = tuple(float(b) for b in bitrates)
    if not codecs or any(c not in CODECS for c in codecs) or len(set(codecs)) != len(codecs):
        raise ValueError(f"codecs must be distinct names from {list(CODECS)}, got {list(codecs)}")
    if not bitrates or len(set(bitrates)) != len(bitrates) or min(bitrates) <= 0:
        raise ValueError(f"bitrates must be distinct positive numbers, got {list(bitrates)}")
    for c in codecs:
        for b in bitrates:
            codec_sample_rate(c, 48000, b)  # raises on unsupported bit rates before any work
    if excerpt_s <= 0 or pieces_per_shard < 1 or jobs < 1 or not 0.0 <= val_fraction <= 1.0:
        raise ValueError("need excerpt_s > 0, pieces_per_shard >= 1, jobs >= 1 and 0 <= val_fraction <= 1")
    if max_excerpts_per_piece is not None and max_excerpts_per_piece < 1:
        raise ValueError(f"max_excerpts_per_piece must be >= 1 or None, got {max_excerpts_per_piece}")
    if versions_per_excerpt is not None and versions_per_excerpt < 1:
        raise ValueError(f"versions_per_excerpt must be >= 1 or None, got {versions_per_excerpt}")
    if store_rate is not None and store_rate <= 0:
        raise ValueError(f"store_rate must be positive, got {store_rate}")
    ffmpeg_binary()  # fail early and clearly when ffmpeg is missing
    if visqol:
        metrics.require("visqol", "visqol-python", "visqol")  # fail before any work when the extra is missing
    ladder = tuple(sorted(bitrates))

    units = source_units(sources, splits, val_fraction, seed)  # from names only: identical in every job
    config = {
        "excerpt_s": float(excerpt_s),
        "max_excerpts_per_piece": max_excerpts_per_piece,
        "codecs": list(codecs),
        "bitrates_kbps": [_num(b) for b in bitrates],
        "bitrate_ladder_kbps": [_num(b) for b in ladder],
        "store_rate": store_rate,
        "mono": mono,
        "visqol": visqol,
        "val_fraction": val_fraction,
        "explicit_splits": bool(splits),
        "pieces_per_shard": pieces_per_shard,
        "seed": seed,
        "silence_db": silence_db,
        "versions_per_excerpt": versions_per_excerpt,
    }
    cfg = _Config(
        float(excerpt_s),
        max_excerpts_per_piece,
        codecs,
        bitrates,
        ladder,
        store_rate,
        mono,
        silence_db,
        visqol,
        versions_per_excerpt,
        seed,
    )
    plans = plan_shards(
        units,
        key=lambda u: u.name,
        split_of=lambda u: u.split,
        shard_id=shard_id,
        num_shards=num_shards,
        units_per_shard=pieces_per_shard,
    )
    fields = (
        "piece, group, excerpt, codec, bitrate_kbps, bitrate_rank, is_reference, start_s, sample_rate, source"
    )
    extra = {
        "sample_fields": {
            "flac": "16-bit FLAC",
            "json": fields + (", visqol_moslqo, visqol_nsim" if visqol else ""),
        },
        # every group written holds the clean excerpt and each of its drawn points (a group that fails is skipped)
        "versions_per_group": 1 + len(version_points(codecs, bitrates, versions_per_excerpt, "")),
        "bitrate_rank": {**{str(_num(b)): i for i, b in enumerate(ladder)}, "clean": len(ladder)},
    }
    return run_shards(
        plans,
        functools.partial(_build_piece, cfg=cfg),
        out_dir,
        config=config,
        recipe="codec",
        shard_id=shard_id,
        num_shards=num_shards,
        jobs=jobs,
        label_keys=LABEL_KEYS,
        extra=extra,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------------------
# Command line: `aqa prep`


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
        "--versions-per-excerpt", type=int, default=8, metavar="K",
        help="code each excerpt at K codec/bit-rate points drawn per excerpt (seeded; default 8, about DeePAQ's "
        "8 coded per clean); 0: every point",
    )
    p.add_argument(
        "--store-rate", type=int, default=None, help="stored sample rate in Hz (default: source rate)"
    )
    p.add_argument("--mono", action="store_true", help="store mono down-mixes")
    p.add_argument("--codecs", default=",".join(CODECS),
                   help=f"comma-separated subset of opus,mp3,aac (default {','.join(CODECS)})")
    p.add_argument("--bitrates", default="16,32,48,64,80,96,128",
                   help="comma-separated kbit/s (default 16,32,48,64,80,96,128)")
    p.add_argument(
        "--visqol",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ViSQOL v3 audio-mode MOS label per version (default on; ~2 s CPU per 10 s version)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the builder; returns 0 on success, 1 when no excerpt was written, 2 on bad input."""
    return run_main("aqa prep codec", build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    sources, splits = list_sources(args.src, args.root)
    start = time.perf_counter()
    manifest = build_codec_shards(
        sources,
        args.out,
        excerpt_s=args.excerpt_s,
        max_excerpts_per_piece=args.max_excerpts,
        versions_per_excerpt=args.versions_per_excerpt or None,
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
    expected = ("train", "val") if not splits and args.val_fraction > 0 else ()
    return report(manifest, args.out, time.perf_counter() - start, expected=expected, prog="aqa prep codec")


if __name__ == "__main__":
    sys.exit(main())
