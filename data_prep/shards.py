"""Shared shard-building machinery for every ``data_prep`` recipe: work split, resumable writing, manifests.

A recipe (``codec``, ``jnd``, ``haaqi``, ``import``, ...) only describes its *work units* and how to turn one
unit into samples; this module does the rest, the same way for all recipes:

1. **Work units.** A unit is anything picklable with a stable, unique string key (a source file, an
   utterance, a listening-test trial folder...). :func:`plan_shards` sorts the units by key, keeps those
   of job ``shard_id`` of ``num_shards`` (round-robin over the sorted list: ``index % num_shards ==
   shard_id``) and cuts each split's units into consecutive chunks of ``units_per_shard``. N jobs on any
   scheduler (SLURM array, Kubernetes indexed job) thus build disjoint shards whose union is the
   single-job build; a shard's content depends only on its units, never on ``--jobs`` or on interruptions.
2. **Names.** Shard ``k`` of split ``s`` built by job ``i`` is ``{s}-{i:04d}-{k:05d}.tar`` (the job id is in
   the name, so jobs never collide; ``train-*.tar`` still globs every job's shards).
3. **Writing.** :func:`run_shards` builds each planned shard in a process pool (``jobs`` processes, one
   whole shard per task): samples go to ``NAME.tar.tmp``; when the shard is complete its record
   (counts, durations, label sums, sources, skipped files) is written to ``.records/NAME.json`` and the
   tar renamed to ``NAME.tar``. A shard is *finished* when ``NAME.tar`` exists and its record names the
   same units and config fingerprint; a rerun skips finished shards, redoes partial ones (their
   ``.tmp`` files are deleted first) and deletes this job's shards that are no longer in the plan.
4. **Bad inputs.** The unit builder yields whole groups (a list of :class:`Sample`) and :class:`Skip`
   entries; an exception escaping the builder skips the rest of that unit with the exception as reason.
   A group is written completely or not at all, so a shard never holds a broken group. Use
   :func:`audio_problem` for the standard checks (non-finite, too short, silent).
5. **Manifests.** Each job writes ``manifest-{i:04d}-of-{N:04d}.json`` (config, counts and durations per
   split, label statistics min/max/mean per numeric label, sources, skipped inputs with reasons, shards,
   timing). :func:`merge_manifests` combines the job manifests into ``manifest.json``; ``run_shards``
   calls it after every job, so the last job to finish writes the complete ``manifest.json``.

A recipe in ~20 lines::

    def build_unit(path: str) -> Iterator[list[Sample] | Skip | SourceInfo]:
        try:
            x, sr = load_audio(path)
        except Exception as exc:
            yield Skip(path, f"cannot load: {short_error(exc)}"); return
        if (why := audio_problem(x, sr, min_s=1.0)) is not None:
            yield Skip(path, why); return
        yield SourceInfo(path, {"duration_s": x.shape[1] / sr})
        yield [Sample(key=unit_id(path), fields={"flac": encode_flac(x, sr)},
                      meta={"group": unit_id(path), "score": 3.2}, duration_s=x.shape[1] / sr, source=path)]

    plans = plan_shards(paths, key=str, split_of=lambda p: "train", shard_id=i, num_shards=n)
    manifest = run_shards(plans, build_unit, out_dir, config={...}, recipe="mine", shard_id=i, num_shards=n,
                          jobs=j, label_keys=("score",))

``build_unit`` must be picklable (a module-level function or a ``functools.partial`` of one) when
``jobs > 1``. Samples are written as tar members ``{key}.{field}`` plus ``{key}.json`` (``meta``, sorted keys).
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aqa.audio import AUDIO_SUFFIXES
from aqa.files import numbered

__all__ = [
    "AUDIO_SUFFIXES",
    "MANIFEST_NAME",
    "RECORDS_DIR",
    "Sample",
    "Skip",
    "SourceInfo",
    "ShardPlan",
    "SourceUnit",
    "add_common_args",
    "assign_split",
    "audio_problem",
    "fingerprint",
    "list_sources",
    "merge_manifests",
    "plan_shards",
    "run_shards",
    "safe_id",
    "short_error",
    "source_units",
    "split_warnings",
    "unit_hash",
]

MANIFEST_NAME = "manifest.json"
RECORDS_DIR = ".records"
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_]+$")
_JOB_MANIFEST_RE = re.compile(r"^manifest-(\d{4})-of-(\d{4})\.json$")
_MAX_ID = 60  # keeps tar member names under the 100-byte USTAR limit


# ----------------------------------------------------------------------------------------------- items


@dataclass
class Sample:
    """One sample of a shard.

    Args:
        key: ``__key__`` of the sample (unique in the dataset; ``[A-Za-z0-9_-]``, no dots).
        fields: extra tar members, e.g. ``{"flac": bytes}`` (member name ``{key}.{field}``).
        meta: JSON metadata and labels, written as ``{key}.json``; numeric entries named in
            ``label_keys`` feed the manifest's label statistics.
        duration_s: audio duration in seconds (for the manifest's durations).
        source: the input file(s) it came from.
    """

    key: str
    fields: dict[str, bytes]
    meta: dict[str, Any]
    duration_s: float = 0.0
    source: str = ""


@dataclass
class Skip:
    """An input (file, excerpt, trial) that was not used, with the reason (goes to ``manifest["skipped"]``)."""

    source: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceInfo:
    """Per-input information for ``manifest["sources"]`` (e.g. duration, excerpts kept, attribution)."""

    source: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardPlan:
    """One planned shard: file ``{name}.tar`` in split ``split`` holding the samples of ``units``."""

    name: str
    split: str
    units: tuple[Any, ...]
    unit_keys: tuple[str, ...]


# --------------------------------------------------------------------------------------- small helpers


def safe_id(text: str, max_len: int = _MAX_ID) -> str:
    """Key-safe id: anything but ``[A-Za-z0-9_-]`` becomes ``_``; long ids are cut and end in a short hash."""
    pid = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"
    if len(pid) > max_len:
        pid = f"{pid[: max_len - 9]}_{hashlib.sha1(pid.encode()).hexdigest()[:8]}"
    return pid


def unit_hash(text: str) -> float:
    """Deterministic number in ``[0, 1)`` from ``sha1(text)`` (platform- and run-independent)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / float(16**12)


def assign_split(unit_id: str, val_fraction: float, seed: int = 0) -> str:
    """``"val"`` when ``sha1(f"{seed}:{unit_id}")`` falls below ``val_fraction``, else ``"train"``."""
    return "val" if unit_hash(f"{seed}:{unit_id}") < val_fraction else "train"


@dataclass(frozen=True)
class SourceUnit:
    """One source file as a work unit: its key-safe ``name`` (the piece or utterance id), path and split."""

    name: str
    source: str
    split: str

    def __str__(self) -> str:
        return self.source


def source_units(
    paths: Sequence[str | os.PathLike],
    splits: Mapping[str, str] | None,
    val_fraction: float,
    seed: int = 0,
    max_len: int = _MAX_ID,
) -> list[SourceUnit]:
    """Name each source and give it its split, identically in every job (from names only).

    Names are :func:`safe_id` of the file stem (at most ``max_len`` characters), repeated stems numbered ``_2``,
    ``_3``, ... A split given in ``splits`` (keyed by the name, the path as given or resolved, the file name or
    the stem) wins; the others are hashed (:func:`assign_split`). When at least two are hashed and one split
    came out empty, the most extreme hash of the other moves over, so that a short list still has both.
    """
    paths = [Path(p) for p in paths]
    names = numbered(safe_id(p.stem, max_len) for p in paths)
    split_of: dict[str, str] = {}
    hashed: list[str] = []
    for p, name in zip(paths, names, strict=True):
        keys = (name, str(p), str(p.resolve()), p.name, p.stem)
        given = next((splits[k] for k in keys if k in splits), None) if splits else None
        if given is None:
            given = assign_split(name, val_fraction, seed)
            hashed.append(name)
        split_of[name] = str(given)
    if len(hashed) >= 2 and 0.0 < val_fraction < 1.0:
        for side, other, pick in (("val", "train", min), ("train", "val", max)):
            if side not in split_of.values():
                movable = [n for n in hashed if split_of[n] == other]
                if len(movable) >= 2:
                    split_of[pick(movable, key=lambda n: unit_hash(f"{seed}:{n}"))] = side
    return [SourceUnit(name, str(p), split_of[name]) for p, name in zip(paths, names, strict=True)]


def fingerprint(config: Mapping[str, Any]) -> str:
    """Short hash of a JSON-serialisable config; a finished shard is reused only under the same fingerprint."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def short_error(exc: BaseException) -> str:
    """One-line ``Type: first line | last line`` description of an exception (max 500 characters)."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else repr(exc)
    if len(lines) > 1:
        text += " | " + lines[-1]
    return f"{type(exc).__name__}: {text}"[:500]


def audio_problem(
    x: np.ndarray, sr: int, *, min_s: float = 0.0, silence_db: float | None = -60.0
) -> str | None:
    """The standard input checks; returns the reason to skip ``x`` or ``None`` when it is usable.

    Args:
        x: audio ``(C, T)`` or ``(T,)``, float, full scale +/-1.
        sr: sample rate in Hz.
        min_s: shorter audio is ``"too short"``.
        silence_db: audio whose RMS (dBFS) is below this is ``"silent"``; ``None`` disables the check.
    """
    if x.size == 0 or x.shape[-1] == 0:
        return "empty: no samples"
    if not np.all(np.isfinite(x)):
        return "non-finite: NaN or infinite samples"
    dur = x.shape[-1] / float(sr)
    if dur < min_s:
        return f"too short: {dur:.2f} s < {min_s:g} s"
    if silence_db is not None:
        rms = float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))
        if rms < silence_db:
            return f"silent: RMS {rms:.1f} dBFS < {silence_db:g} dBFS"
    return None


def list_sources(
    src: str | os.PathLike, root: str | os.PathLike | None = None, suffixes: Sequence[str] = AUDIO_SUFFIXES
) -> tuple[list[Path], dict[str, str]]:
    """Resolve ``--src``: a folder (recursive, files with ``suffixes``) or a ``.csv``/``.txt`` list.

    A ``.csv`` has rows ``path[,split]`` (an optional ``path`` header row); a ``.txt`` has one path per
    line (``#`` starts a comment). Relative paths resolve against ``root`` or else the list's folder.

    Returns:
        ``(paths, splits)``: resolved paths (sorted for a folder, in listing order for a list) and
        ``{str(path): split}`` for list rows that name a split.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: ``src`` is a file of another type, a list row is malformed, or no audio file is found.
    """
    src = Path(src)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise ValueError(f"no audio files ({' '.join(suffixes)}) under {src}")
        return [p.resolve() for p in files], {}
    if not src.is_file():
        raise FileNotFoundError(f"--src {src} does not exist")
    base = (Path(root) if root is not None else src.parent).expanduser()
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
    if not paths:
        raise ValueError(f"no audio files listed in {src}")
    return paths, splits


def add_common_args(parser: Any, *, units_per_shard: int = 1, unit: str = "source files") -> None:
    """Add the options every recipe shares: ``--src --out --root --shard-id --num-shards --jobs
    --units-per-shard --val-fraction --seed --no-progress``."""
    parser.add_argument("--src", required=True, type=Path, help="input folder (recursive) or .csv/.txt list")
    parser.add_argument("--out", required=True, type=Path, help="output folder for shards and manifest.json")
    parser.add_argument("--root", type=Path, default=None, help="base folder for relative paths in a list")
    parser.add_argument("--shard-id", type=int, default=0, help="this job's index in 0..N-1 (default 0)")
    parser.add_argument(
        "--num-shards", type=int, default=1, help="number of jobs N splitting the work (default 1)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes in this job (same output for any value)"
    )
    parser.add_argument(
        "--units-per-shard",
        type=int,
        default=units_per_shard,
        help=f"{unit} per shard (default {units_per_shard})",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of units hashed into val (default 0.2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split hash and of any randomness")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# ----------------------------------------------------------------------------------------------- plan


def plan_shards(
    units: Iterable[Any],
    *,
    key: Callable[[Any], str],
    split_of: Callable[[Any], str],
    shard_id: int = 0,
    num_shards: int = 1,
    units_per_shard: int = 1,
) -> list[ShardPlan]:
    """Deterministic plan of job ``shard_id`` of ``num_shards``.

    Units are sorted by ``key``; job ``i`` takes those at sorted positions ``p`` with
    ``p % num_shards == i``; each split's share is cut, in key order, into chunks of ``units_per_shard``.

    Args:
        units: work units (picklable).
        key: unique, stable string key of a unit.
        split_of: split name of a unit (``[A-Za-z0-9_]+``).
        shard_id: this job's index, ``0 <= shard_id < num_shards``.
        num_shards: number of jobs.
        units_per_shard: units per shard.

    Raises:
        ValueError: bad ids, duplicate keys or invalid split names.
    """
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"need 0 <= shard_id < num_shards, got shard_id={shard_id} num_shards={num_shards}")
    if units_per_shard < 1:
        raise ValueError(f"units_per_shard must be >= 1, got {units_per_shard}")
    keyed = sorted(((key(u), u) for u in units), key=lambda t: t[0])
    keys = [k for k, _ in keyed]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:3]
        raise ValueError(f"work unit keys must be unique; duplicates: {dup}")
    by_split: dict[str, list[tuple[str, Any]]] = {}
    for pos, (k, u) in enumerate(keyed):
        if pos % num_shards != shard_id:
            continue
        split = str(split_of(u))
        if not _SPLIT_RE.match(split):
            raise ValueError(f"split names must match [A-Za-z0-9_]+, got {split!r} for {k}")
        by_split.setdefault(split, []).append((k, u))
    plans = []
    for split in sorted(by_split):
        items = by_split[split]
        for idx in range(0, len(items), units_per_shard):
            chunk = items[idx : idx + units_per_shard]
            plans.append(
                ShardPlan(
                    name=f"{split}-{shard_id:04d}-{idx // units_per_shard:05d}",
                    split=split,
                    units=tuple(u for _, u in chunk),
                    unit_keys=tuple(k for k, _ in chunk),
                )
            )
    return plans


# ---------------------------------------------------------------------------------------------- build


def _stats_add(
    stats: dict[str, list[float]], meta: Mapping[str, Any], label_keys: Sequence[str] | None
) -> None:
    keys = label_keys if label_keys is not None else sorted(meta)
    for k in keys:
        v = meta.get(k)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            continue
        s = stats.setdefault(k, [0, 0.0, math.inf, -math.inf])  # count, sum, min, max
        s[0] += 1
        s[1] += float(v)
        s[2] = min(s[2], float(v))
        s[3] = max(s[3], float(v))


def _build_one(
    plan: ShardPlan,
    build_unit: Callable[[Any], Iterable[Any]],
    out: str,
    fp: str,
    label_keys: Sequence[str] | None,
) -> dict[str, Any]:
    # Runs in a worker process: writes NAME.tar.tmp, then the record, then renames the tar.
    out_dir = Path(out)
    final = out_dir / f"{plan.name}.tar"
    tmp = out_dir / f"{plan.name}.tar.tmp"
    t0, c0 = time.perf_counter(), time.process_time()
    groups = samples = 0
    duration = 0.0
    stats: dict[str, list[float]] = {}
    skipped: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    seen: set[str] = set()
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for unit, ukey in zip(plan.units, plan.unit_keys, strict=True):
                items = iter(build_unit(unit))
                while True:
                    try:  # only the builder's own failures skip a unit; write errors abort the shard
                        item = next(items)
                    except StopIteration:
                        break
                    except Exception as exc:  # one bad unit never stops the job
                        skipped.append(
                            {"source": str(unit), "unit": ukey, "split": plan.split,
                             "reason": f"failed: {short_error(exc)}"}
                        )
                        break
                    if isinstance(item, Skip):
                        skipped.append(
                            {"source": item.source, "unit": ukey, "split": plan.split, "reason": item.reason,
                             **item.extra}
                        )
                    elif isinstance(item, SourceInfo):
                        sources.append({"source": item.source, "unit": ukey, **item.info})
                    else:
                        group = list(item)
                        for s in group:
                            if s.key in seen or "." in s.key:
                                raise ValueError(f"sample key {s.key!r} is duplicated or holds a dot")
                            seen.add(s.key)
                        for s in group:
                            for ext, data in (*s.fields.items(), ("json", _meta_bytes(s.meta))):
                                _add_member(tar, f"{s.key}.{ext}", data)
                            duration += float(s.duration_s)
                            _stats_add(stats, s.meta, label_keys)
                        groups += 1
                        samples += len(group)
        record = {
            "name": plan.name,
            "file": final.name,
            "split": plan.split,
            "units": list(plan.unit_keys),
            "fingerprint": fp,
            "groups": groups,
            "samples": samples,
            "duration_s": round(duration, 6),
            "label_sums": stats,
            "sources": sources,
            "skipped": skipped,
            "build_s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3),
        }
        rec_path = out_dir / RECORDS_DIR / f"{plan.name}.json"
        rec_tmp = rec_path.with_name(rec_path.name + ".tmp")
        rec_tmp.write_text(json.dumps(record, indent=1, default=_json_default) + "\n", encoding="utf-8")
        os.replace(rec_tmp, rec_path)
        os.replace(tmp, final)  # the rename marks the shard finished
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return record


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # fixed metadata (mtime 0, root, 0444) so a shard's bytes depend only on its samples
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _meta_bytes(meta: Mapping[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, default=_json_default).encode()


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _finished(out: Path, plan: ShardPlan, fp: str) -> dict[str, Any] | None:
    rec_path = out / RECORDS_DIR / f"{plan.name}.json"
    if not (out / f"{plan.name}.tar").is_file() or not rec_path.is_file():
        return None
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if rec.get("fingerprint") != fp or rec.get("units") != list(plan.unit_keys):
        return None
    return rec


def run_shards(
    plans: Sequence[ShardPlan],
    build_unit: Callable[[Any], Iterable[list[Sample] | Skip | SourceInfo]],
    out_dir: str | os.PathLike,
    *,
    config: Mapping[str, Any],
    recipe: str,
    shard_id: int = 0,
    num_shards: int = 1,
    jobs: int = 1,
    label_keys: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or finish) the planned shards of one job and write its manifest (and ``manifest.json`` when all
    jobs are done).

    Args:
        plans: from :func:`plan_shards` (with the same ``shard_id``/``num_shards``).
        build_unit: ``unit -> iterable`` of groups (``list[Sample]``), :class:`Skip` and :class:`SourceInfo`.
        out_dir: output folder (created).
        config: the recipe's JSON-serialisable config (stored in the manifest; its fingerprint decides
            whether a finished shard of an earlier run is reused).
        recipe: recipe name, stored as ``"format": "aqa-{recipe}-shards/1"``.
        shard_id: this job's index.
        num_shards: number of jobs.
        jobs: worker processes (each builds whole shards); the output is identical for any value.
        label_keys: numeric ``meta`` keys summarised in ``label_stats``; ``None`` = every numeric key.
        extra: more top-level manifest entries (e.g. the sample field description).
        progress: tqdm bar (shards) on stderr.

    Returns:
        The merged manifest when every job has finished, else this job's manifest.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out = Path(out_dir)
    (out / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    fp = fingerprint({"recipe": recipe, "config": config})
    prefix = re.compile(rf"^[A-Za-z0-9_]+-{shard_id:04d}-\d{{5}}\.tar(\.tmp)?$")
    planned = {f"{p.name}.tar" for p in plans}
    legacy = re.compile(r"^[A-Za-z0-9_]+-\d{5}\.tar(\.tmp)?$")  # pre-job-id names (`train-00000.tar`)
    for f in sorted(out.iterdir()):  # this job's partial and stale shards (never another job's)
        if legacy.match(f.name) or (
            prefix.match(f.name) and (f.name.endswith(".tmp") or f.name not in planned)
        ):
            f.unlink()
            (out / RECORDS_DIR / f"{f.name.removesuffix('.tmp').removesuffix('.tar')}.json").unlink(
                missing_ok=True
            )
    for f in (out / RECORDS_DIR).glob("*.json.tmp"):
        f.unlink(missing_ok=True)

    t0, c0 = time.perf_counter(), time.process_time()
    records: dict[str, dict[str, Any]] = {}
    todo: list[ShardPlan] = []
    for p in plans:
        rec = _finished(out, p, fp)
        if rec is not None:
            records[p.name] = rec
        else:
            todo.append(p)
    resumed = len(records)
    bar = tqdm(
        total=len(plans),
        initial=resumed,
        unit="shard",
        desc=f"{recipe} shards",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        if jobs == 1 or len(todo) <= 1:
            for p in todo:
                records[p.name] = _build_one(p, build_unit, str(out), fp, label_keys)
                bar.update(1)
        else:
            # fork where available (spawn re-imports the caller's __main__); builders use numpy/ffmpeg
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with cf.ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx) as pool:
                futs = {pool.submit(_build_one, p, build_unit, str(out), fp, label_keys): p for p in todo}
                for fut in cf.as_completed(futs):
                    records[futs[fut].name] = fut.result()
                    bar.update(1)
    finally:
        bar.close()

    ordered = [records[p.name] for p in plans]
    worker_cpu = sum(r.get("cpu_s", 0.0) for r in ordered if r["name"] in {p.name for p in todo})
    manifest = _job_manifest(
        ordered, recipe=recipe, config=config, fp=fp, shard_id=shard_id, num_shards=num_shards, extra=extra
    )
    manifest["job"].update(
        {
            "jobs": jobs,
            "shards_built": len(todo),
            "shards_resumed": resumed,
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0 + (worker_cpu if jobs > 1 else 0.0), 3),
        }
    )
    _write_json(out / f"manifest-{shard_id:04d}-of-{num_shards:04d}.json", manifest)
    merged = merge_manifests(out)
    return merged if merged is not None else manifest


def _label_stats(sums: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    return {
        k: {"count": int(c), "min": lo, "max": hi, "mean": (s / c if c else float("nan"))}
        for k, (c, s, lo, hi) in sorted(sums.items())
    }


def _merge_sums(into: dict[str, list[float]], sums: Mapping[str, Sequence[float]]) -> None:
    for k, (c, s, lo, hi) in sums.items():
        cur = into.setdefault(k, [0, 0.0, math.inf, -math.inf])
        cur[0] += c
        cur[1] += s
        cur[2] = min(cur[2], lo)
        cur[3] = max(cur[3], hi)


def _job_manifest(
    records: Sequence[Mapping[str, Any]],
    *,
    recipe: str,
    config: Mapping[str, Any],
    fp: str,
    shard_id: int,
    num_shards: int,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    splits: dict[str, dict[str, Any]] = {}
    sums: dict[str, list[float]] = {}
    for r in records:
        s = splits.setdefault(
            r["split"], {"shards": [], "units": 0, "groups": 0, "samples": 0, "duration_s": 0.0}
        )
        s["shards"].append(r["file"])
        s["units"] += len(r["units"])
        s["groups"] += r["groups"]
        s["samples"] += r["samples"]
        s["duration_s"] = round(s["duration_s"] + r["duration_s"], 6)
        _merge_sums(sums, r["label_sums"])
    return {
        "format": f"aqa-{recipe}-shards/1",
        "recipe": recipe,
        "config": dict(config),
        "fingerprint": fp,
        **(dict(extra) if extra else {}),
        "job": {"shard_id": shard_id, "num_shards": num_shards},
        "splits": dict(sorted(splits.items())),
        "totals": _totals(splits.values(), sum(len(r["skipped"]) for r in records)),
        "label_sums": sums,
        "label_stats": _label_stats(sums),
        "sources": [s for r in records for s in r["sources"]],
        "skipped": [s for r in records for s in r["skipped"]],
    }


def _totals(splits: Iterable[Mapping[str, Any]], skipped: int) -> dict[str, Any]:
    splits = list(splits)
    return {
        "shards": sum(len(s["shards"]) for s in splits),
        "units": sum(s["units"] for s in splits),
        "groups": sum(s["groups"] for s in splits),
        "samples": sum(s["samples"] for s in splits),
        "duration_s": round(sum(s["duration_s"] for s in splits), 6),
        "skipped": skipped,
    }


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def merge_manifests(out_dir: str | os.PathLike, *, allow_partial: bool = False) -> dict[str, Any] | None:
    """Merge the job manifests ``manifest-IIII-of-NNNN.json`` in ``out_dir`` into ``manifest.json``.

    Only manifests with the newest fingerprint and job count are merged. Without ``allow_partial``
    nothing is written (and ``None`` returned) until all ``N`` jobs have written theirs.

    Returns:
        The merged manifest (also written to ``out_dir/manifest.json``), or ``None``.
    """
    out = Path(out_dir)
    found: list[tuple[float, dict[str, Any]]] = []
    for f in out.iterdir():
        if _JOB_MANIFEST_RE.match(f.name):
            try:
                found.append((f.stat().st_mtime, json.loads(f.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                continue
    if not found:
        return None
    newest = max(found, key=lambda t: t[0])[1]
    n = newest["job"]["num_shards"]
    jobs = {
        m["job"]["shard_id"]: m
        for _, m in found
        if m.get("fingerprint") == newest.get("fingerprint") and m["job"]["num_shards"] == n
    }
    missing = sorted(set(range(n)) - set(jobs))
    if missing and not allow_partial:
        return None
    ordered = [jobs[i] for i in sorted(jobs)]
    splits: dict[str, dict[str, Any]] = {}
    sums: dict[str, list[float]] = {}
    for m in ordered:
        for name, s in m["splits"].items():
            t = splits.setdefault(
                name, {"shards": [], "units": 0, "groups": 0, "samples": 0, "duration_s": 0.0}
            )
            t["shards"].extend(s["shards"])
            for k in ("units", "groups", "samples"):
                t[k] += s[k]
            t["duration_s"] = round(t["duration_s"] + s["duration_s"], 6)
        _merge_sums(sums, m["label_sums"])
    skip_keys = {"job", "splits", "totals", "label_sums", "label_stats", "sources", "skipped"}
    merged = {k: v for k, v in newest.items() if k not in skip_keys}
    merged.update(
        {
            "jobs": {
                "num_shards": n,
                "merged": sorted(jobs),
                "missing": missing,
                "elapsed_s": round(sum(m["job"].get("elapsed_s", 0.0) for m in ordered), 3),
                "cpu_s": round(sum(m["job"].get("cpu_s", 0.0) for m in ordered), 3),
            },
            "splits": dict(sorted(splits.items())),
            "totals": _totals(splits.values(), sum(len(m["skipped"]) for m in ordered)),
            "label_stats": _label_stats(sums),
            "sources": [s for m in ordered for s in m["sources"]],
            "skipped": [s for m in ordered for s in m["skipped"]],
        }
    )
    _write_json(out / MANIFEST_NAME, merged)
    return merged


def split_warnings(manifest: Mapping[str, Any], expected: Sequence[str] = ()) -> list[str]:
    """One ``warning: split 'val' is empty: ...`` line per split of ``manifest`` (or of ``expected``) that
    holds no sample, saying why: its inputs were skipped (count and the first reason, e.g. ``too short:
    5.00 s < excerpt_s 10 s``) or no input was assigned to it. Empty list when every split has samples."""
    splits = manifest.get("splits", {})
    lines = []
    for name in dict.fromkeys([*expected, *splits]):
        info = splits.get(name)
        if info and info.get("samples", 0) > 0:
            continue
        skipped = [s for s in manifest.get("skipped", []) if s.get("split") == name]
        if skipped:
            first = skipped[0]
            why = f"{len(skipped)} input(s) skipped, e.g. {Path(str(first.get('source', ''))).name}: {first['reason']}"
        elif info is None:
            why = "no input was assigned to it (too few inputs for the split fraction?)"
        else:
            why = "its inputs gave no samples"
        lines.append(f"warning: split {name!r} is empty: {why}")
    return lines


def iter_shard_names(manifest: Mapping[str, Any], split: str) -> Iterator[str]:
    """Shard file names of ``split`` listed in a (merged or job) manifest."""
    yield from manifest.get("splits", {}).get(split, {}).get("shards", [])
