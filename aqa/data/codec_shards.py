"""Build DeePAQ-style codec training data: clean excerpts plus every codec/bit-rate version, as WebDataset shards.

Each source file is a *piece*. A piece is cut into non-overlapping excerpts of ``excerpt_s`` seconds
(near-silent ones are dropped); each excerpt is a *group*: the clean reference followed by its
codec versions (every codec x every bit rate). Groups are written whole and consecutively to
``{split}-{index:05d}.tar`` shards, and the split is decided per piece, so validation never shares
a recording with training. ``manifest.json`` records counts, sources, skipped files and the config.

Sample layout (one tar member per field)::

    {piece}-{excerpt:04d}-{codec}-{bitrate}.flac   16-bit FLAC at the store rate
    {piece}-{excerpt:04d}-{codec}-{bitrate}.json   {"piece", "group", "excerpt", "codec", "bitrate_kbps",
                                                    "bitrate_rank", "is_reference", "start_s",
                                                    "sample_rate", "source"}

The clean reference uses codec ``"clean"`` and bitrate ``"ref"`` in its key, ``bitrate_kbps`` null and
``bitrate_rank`` equal to the number of bit rates (one above the best coded version).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import re
import sys
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from tqdm import tqdm

from aqa.data.audio import encode_flac, ffmpeg_binary, load_audio, resample, to_mono
from aqa.data.codecs import CODECS, codec_sample_rate, encode_decode_many

__all__ = ["build_codec_shards", "piece_id_for", "assign_split", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"
_SHARD_RE = re.compile(r"^[A-Za-z0-9_]+-\d{5}\.tar$")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_]+$")
_MAX_ID = 60  # keeps tar member names under the 100-byte USTAR limit


def piece_id_for(path: Path) -> str:
    """Key-safe identifier of a source file: its stem with anything but ``[A-Za-z0-9_-]`` turned into ``_``.

    Long names are cut to 60 characters (the tail replaced by a short hash) so keys fit in tar headers.
    """
    pid = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem).strip("_") or "piece"
    if len(pid) > _MAX_ID:
        digest = hashlib.sha1(pid.encode()).hexdigest()[:8]
        pid = f"{pid[: _MAX_ID - 9]}_{digest}"
    return pid


def _unit_hash(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / float(16**12)


def assign_split(piece_id: str, val_fraction: float, seed: int = 0) -> str:
    """Deterministic split of one piece: ``"val"`` when ``sha1(f"{seed}:{piece_id}")`` falls below ``val_fraction``."""
    return "val" if _unit_hash(f"{seed}:{piece_id}") < val_fraction else "train"


@dataclass(frozen=True)
class _Task:
    piece: str
    source: str
    excerpt: int
    start_s: float
    audio: np.ndarray  # (C, L) at sr
    sr: int
    store_rate: int
    mono: bool
    codecs: tuple[str, ...]
    bitrates: tuple[float, ...]
    ladder: tuple[float, ...]


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _code_group(task: _Task) -> tuple[list[tuple[str, bytes, bytes]], str | None]:
    """Code one excerpt with every codec/bit rate. Returns ``(samples, error)``; runs in worker processes."""
    group = f"{task.piece}-{task.excerpt:04d}"

    def store(x: np.ndarray) -> bytes:
        if task.mono:
            x = to_mono(x, keepdims=True)
        return encode_flac(resample(x, task.sr, task.store_rate), task.store_rate)

    def sample(codec: str, bitrate: float | None, flac: bytes) -> tuple[str, bytes, bytes]:
        meta = {
            "piece": task.piece,
            "group": group,
            "excerpt": task.excerpt,
            "codec": codec,
            "bitrate_kbps": None if bitrate is None else _num(bitrate),
            "bitrate_rank": len(task.ladder) if bitrate is None else task.ladder.index(bitrate),
            "is_reference": bitrate is None,
            "start_s": round(task.start_s, 6),
            "sample_rate": task.store_rate,
            "source": task.source,
        }
        key = f"{group}-{codec}-{'ref' if bitrate is None else _num(bitrate)}"
        return key, flac, json.dumps(meta, sort_keys=True).encode()

    out = [sample("clean", None, store(task.audio))]
    for codec in task.codecs:
        try:
            coded = encode_decode_many(task.audio, task.sr, codec, task.bitrates)
        except (RuntimeError, ValueError) as exc:
            return [], f"{codec} coding failed: {_short(exc)}"
        out.extend(sample(codec, b, store(y)) for b, y in zip(task.bitrates, coded, strict=True))
    return out, None


class _SplitWriter:
    """Writes whole groups to ``{split}-{index:05d}.tar`` (via a ``.tmp`` name renamed when the shard is complete)."""

    def __init__(self, out_dir: Path, split: str, groups_per_shard: int):
        self.out_dir, self.split, self.groups_per_shard = out_dir, split, groups_per_shard
        self.shards: list[str] = []
        self.groups = self.samples = 0
        self._file: Any = None
        self._tar: wds.TarWriter | None = None
        self._in_shard = 0

    def _path(self, index: int) -> Path:
        return self.out_dir / f"{self.split}-{index:05d}.tar"

    def write_group(self, samples: Sequence[tuple[str, bytes, bytes]]) -> None:
        if self._tar is None:
            final = self._path(len(self.shards))
            self._file = open(final.with_name(final.name + ".tmp"), "wb")  # closed in _finish/abort
            self._tar = wds.TarWriter(self._file, encoder=False, mtime=0.0)
        for key, flac, meta in samples:
            self._tar.write({"__key__": key, "flac": flac, "json": meta})
        self.groups += 1
        self.samples += len(samples)
        self._in_shard += 1
        if self._in_shard >= self.groups_per_shard:
            self._finish()

    def _finish(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._file.close()
        final = self._path(len(self.shards))
        os.replace(final.with_name(final.name + ".tmp"), final)
        self.shards.append(final.name)
        self._tar, self._file, self._in_shard = None, None, 0

    def close(self) -> None:
        self._finish()

    def abort(self) -> None:
        if self._tar is not None:
            try:
                self._tar.close()
                self._file.close()
            finally:
                tmp = self._path(len(self.shards))
                tmp.with_name(tmp.name + ".tmp").unlink(missing_ok=True)
                self._tar, self._file = None, None


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
    val_fraction: float = 0.2,
    splits: Mapping[str, str] | None = None,
    groups_per_shard: int = 8,
    jobs: int = 1,
    seed: int = 0,
    silence_db: float = -60.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Cut sources into excerpts, code each with every codec/bit rate and write WebDataset shards.

    Args:
        sources: audio files; each is one piece (anything :func:`~aqa.data.audio.load_audio` reads).
        out_dir: output folder (created); receives ``{split}-{index:05d}.tar`` and ``manifest.json``.
        excerpt_s: excerpt length in seconds; only whole excerpts are kept (shorter files are skipped).
        max_excerpts_per_piece: keep at most this many excerpts per piece, spread evenly over it.
        codecs: subset of ``("opus", "mp3", "aac")``.
        bitrates: bit rates in kbit/s; their sorted order defines ``bitrate_rank``.
        store_rate: sample rate (Hz) of the stored FLAC; ``None`` keeps each source's rate.
            Coding always happens at the source rate/channels; down-mix and resampling follow it.
        mono: store mono down-mixes.
        val_fraction: share of pieces (by hash of the piece id and ``seed``) sent to ``"val"``.
        splits: explicit ``piece -> split`` (keys: piece id, path as given, resolved path, file name
            or stem); pieces not listed fall back to the hash rule.
        groups_per_shard: excerpts (groups) per shard.
        jobs: worker processes for coding; the output is identical for any value.
        seed: salt of the split hash.
        silence_db: excerpts whose RMS is below this level (dBFS) are dropped.
        progress: show a tqdm bar on stderr.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).

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
    if excerpt_s <= 0 or groups_per_shard < 1 or jobs < 1 or not 0.0 <= val_fraction <= 1.0:
        raise ValueError("need excerpt_s > 0, groups_per_shard >= 1, jobs >= 1 and 0 <= val_fraction <= 1")
    if max_excerpts_per_piece is not None and max_excerpts_per_piece < 1:
        raise ValueError(f"max_excerpts_per_piece must be >= 1 or None, got {max_excerpts_per_piece}")
    if store_rate is not None and store_rate <= 0:
        raise ValueError(f"store_rate must be positive, got {store_rate}")
    ffmpeg_binary()  # fail early and clearly when ffmpeg is missing
    ladder = tuple(sorted(bitrates))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale_tmp in out.glob("*.tar.tmp"):
        if _SHARD_RE.match(stale_tmp.name[: -len(".tmp")]):
            stale_tmp.unlink()

    # -- pieces and their splits (decided before decoding, so a skipped file never moves another piece)
    paths = [Path(s) for s in sources]
    ids: list[str] = []
    seen: dict[str, int] = {}
    for p in paths:
        pid = piece_id_for(p)
        seen[pid] = seen.get(pid, 0) + 1
        ids.append(pid if seen[pid] == 1 else f"{pid}_{seen[pid]}")
    piece_split: dict[str, str] = {}
    hashed: list[str] = []
    for p, pid in zip(paths, ids, strict=True):
        explicit = None
        if splits:
            for k in (pid, str(p), str(p.resolve()), p.name, p.stem):
                if k in splits:
                    explicit = splits[k]
                    break
        if explicit is None:
            explicit = assign_split(pid, val_fraction, seed)
            hashed.append(pid)
        if not _SPLIT_RE.match(str(explicit)):
            raise ValueError(f"split names must match [A-Za-z0-9_]+, got {explicit!r} for {p}")
        piece_split[pid] = str(explicit)
    # a tiny source list could hash every piece to one side: move the extreme hash so both splits exist
    if len(hashed) >= 2 and 0.0 < val_fraction < 1.0:
        for side, other, pick in (("val", "train", min), ("train", "val", max)):
            if side not in piece_split.values():
                movable = [pid for pid in hashed if piece_split[pid] == other]
                if len(movable) >= 2:
                    piece_split[pick(movable, key=lambda q: _unit_hash(f"{seed}:{q}"))] = side

    config = {
        "excerpt_s": float(excerpt_s),
        "max_excerpts_per_piece": max_excerpts_per_piece,
        "codecs": list(codecs),
        "bitrates_kbps": [_num(b) for b in bitrates],
        "bitrate_ladder_kbps": [_num(b) for b in ladder],
        "store_rate": store_rate,
        "mono": mono,
        "val_fraction": val_fraction,
        "explicit_splits": bool(splits),
        "groups_per_shard": groups_per_shard,
        "seed": seed,
        "silence_db": silence_db,
    }
    pieces: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    bar = tqdm(
        total=0,
        unit="excerpt",
        desc="codec shards",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )

    def tasks() -> Iterator[_Task]:
        for p, pid in zip(paths, ids, strict=True):
            try:
                x, sr = load_audio(p)
            except Exception as exc:  # one bad file must not stop the build
                skipped.append({"source": str(p), "piece": pid, "reason": f"cannot load: {_short(exc)}"})
                continue
            if x.shape[0] > 2:
                x = to_mono(x, keepdims=True)  # codecs take mono/stereo
            n = int(round(excerpt_s * sr))
            if x.shape[1] < n:
                skipped.append(
                    {
                        "source": str(p),
                        "piece": pid,
                        "reason": f"too short: {x.shape[1] / sr:.2f} s < excerpt_s {excerpt_s:g} s",
                    }
                )
                continue
            slots = [i for i in range(x.shape[1] // n) if _rms_db(x[:, i * n : (i + 1) * n]) >= silence_db]
            silent = x.shape[1] // n - len(slots)
            if not slots:
                skipped.append(
                    {
                        "source": str(p),
                        "piece": pid,
                        "reason": f"silent: every excerpt below {silence_db:g} dBFS RMS",
                    }
                )
                continue
            if max_excerpts_per_piece is not None and len(slots) > max_excerpts_per_piece:
                pick = np.linspace(0, len(slots) - 1, max_excerpts_per_piece).round().astype(int)
                slots = [slots[i] for i in pick]
            pieces.append(
                {
                    "piece": pid,
                    "source": str(p),
                    "split": piece_split[pid],
                    "duration_s": round(x.shape[1] / sr, 3),
                    "sample_rate": sr,
                    "channels": int(x.shape[0]),
                    "excerpts": [int(i) for i in slots],
                    "silent_excerpts_dropped": silent,
                    "attribution": _attribution(p),
                }
            )
            bar.total += len(slots)
            bar.refresh()
            for i in slots:
                yield _Task(
                    pid,
                    str(p),
                    i,
                    i * n / sr,
                    np.ascontiguousarray(x[:, i * n : (i + 1) * n]),
                    sr,
                    store_rate or sr,
                    mono,
                    codecs,
                    bitrates,
                    ladder,
                )

    writers: dict[str, _SplitWriter] = {}

    def consume(task: _Task, result: tuple[list[tuple[str, bytes, bytes]], str | None]) -> None:
        samples, error = result
        bar.update(1)
        if error is not None:
            skipped.append(
                {"source": task.source, "piece": task.piece, "excerpt": task.excerpt, "reason": error}
            )
            return
        split = piece_split[task.piece]
        if split not in writers:
            writers[split] = _SplitWriter(out, split, groups_per_shard)
        writers[split].write_group(samples)

    try:
        if jobs == 1:
            for task in tasks():
                consume(task, _code_group(task))
        else:
            # fork where available: spawn would re-import the caller's __main__ (breaks stdin/notebook callers);
            # workers only run numpy/scipy/ffmpeg, never torch, so forking a torch-importing parent is safe
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                pending: deque[tuple[_Task, cf.Future]] = deque()
                for (
                    task
                ) in tasks():  # bounded window, consumed in submission order => jobs-independent output
                    pending.append((task, pool.submit(_code_group, task)))
                    while len(pending) >= 2 * jobs:
                        t, fut = pending.popleft()
                        consume(t, fut.result())
                while pending:
                    t, fut = pending.popleft()
                    consume(t, fut.result())
        for w in writers.values():
            w.close()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        bar.close()

    # drop shards of an earlier build in this folder that this build did not rewrite
    written = {name for w in writers.values() for name in w.shards}
    removed = []
    if (out / MANIFEST_NAME).is_file():
        for f in sorted(out.iterdir()):
            if _SHARD_RE.match(f.name) and f.name not in written:
                f.unlink()
                removed.append(f.name)

    split_info: dict[str, Any] = {}
    for name in sorted(writers):
        w = writers[name]
        split_info[name] = {
            "shards": w.shards,
            "groups": w.groups,
            "samples": w.samples,
            "pieces": [q["piece"] for q in pieces if q["split"] == name],
            "reference_duration_s": round(w.groups * excerpt_s, 3),
            "audio_duration_s": round(w.samples * excerpt_s, 3),
        }
    manifest = {
        "format": "aqa-codec-shards/1",
        "sample_fields": {
            "flac": "16-bit FLAC",
            "json": "piece, group, excerpt, codec, bitrate_kbps, bitrate_rank, "
            "is_reference, start_s, sample_rate, source",
        },
        "config": config,
        "versions_per_group": 1 + len(codecs) * len(bitrates),
        "bitrate_rank": {**{str(_num(b)): i for i, b in enumerate(ladder)}, "clean": len(ladder)},
        "splits": split_info,
        "totals": {
            "pieces": len(pieces),
            "groups": sum(w.groups for w in writers.values()),
            "samples": sum(w.samples for w in writers.values()),
            "source_duration_s": round(sum(q["duration_s"] for q in pieces), 3),
        },
        "pieces": pieces,
        "skipped": skipped,
        "removed_stale_shards": removed,
    }
    tmp = out / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST_NAME)
    return manifest


def _short(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else repr(exc)
    if len(lines) > 1:
        text += " | " + lines[-1]
    return f"{type(exc).__name__}: {text}"[:500]
