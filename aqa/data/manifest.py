"""What the shards' own records say about them, read before a run builds anything: the label keys they carry,
their excerpt length and the groups each shard holds (for the epoch length).

``aqa prep`` writes ``manifest.json`` beside the shards (``label_stats``, ``splits``, ``config.excerpt_s``) and one
record per shard in ``.records/NAME.json`` (``groups``, ``samples``, ``duration_s``). Shards without them (written
by hand, copied without the folder's records) fall back to the first sample's JSON, or to "unknown" (None).
Remote shards (``pipe:``, ``s3://``) are never read here. Imports neither Lightning nor webdataset (what
:func:`aqa.config.check_values` may use).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aqa.data.urls import _is_remote

__all__ = ["excerpt_seconds", "json_members", "shard_group_counts", "shard_label_keys"]


def _local(shards: Sequence[str]) -> list[Path] | None:
    """The shards as paths, or None when any of them is remote (its records cannot be read here)."""
    if any(_is_remote(s) for s in shards):
        return None
    return [Path(s) for s in shards]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _manifests(paths: Sequence[Path]) -> dict[Path, dict[str, Any] | None]:
    """Each shard folder's ``manifest.json`` (None where absent or unreadable)."""
    return {folder: _read_json(folder / "manifest.json") for folder in dict.fromkeys(p.parent for p in paths)}


def json_members(path: str | Path) -> Iterator[Any]:
    """The parsed ``.json`` member of each sample of a local shard, in order; the audio members are skipped
    over (seeked past), not read."""
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                f = tar.extractfile(member)
                if f is not None:
                    yield json.loads(f.read())


def _first_meta(path: Path) -> dict[str, Any] | None:
    """The JSON of the first sample of a local shard, or None (none, unreadable, not an object)."""
    try:
        meta = next(json_members(path), None)
    except (OSError, ValueError, tarfile.TarError):
        return None
    return meta if isinstance(meta, dict) else None


def shard_label_keys(shards: Sequence[str]) -> tuple[list[str], str] | None:
    """The label keys local shards carry: the keys of their manifest's ``label_stats`` (numeric labels counted
    over every sample) together with the first sample's numeric or null JSON fields (a clean reference's
    ``snr_db`` is null). Returns ``(sorted keys, where they were read)``, or None for remote shards or when
    nothing could be read.

    Args:
        shards: expanded shard paths (:func:`aqa.data.urls.expand_shard_urls`).
    """
    paths = _local(shards)
    if not paths:
        return None
    keys: set[str] = set()
    where = []
    for folder, manifest in _manifests(paths).items():
        stats = (manifest or {}).get("label_stats")
        if isinstance(stats, dict):
            keys |= {k for k, v in stats.items() if not isinstance(v, dict) or v.get("count", 1)}
            where.append(str(folder / "manifest.json"))
    meta = _first_meta(paths[0])
    if meta is not None:
        keys |= {k for k, v in meta.items() if v is None or (isinstance(v, int | float) and not isinstance(v, bool))}
        where.append(f"the first sample of {paths[0]}")
    return (sorted(keys), " and ".join(where)) if where else None


def shard_group_counts(shards: Sequence[str]) -> dict[str, int] | None:
    """Groups held by each local shard, from the shard records ``aqa prep`` writes (``.records/NAME.json``
    beside the shards); None when any shard's record is missing or the shards are remote."""
    paths = _local(shards)
    if not paths:
        return None
    counts = {}
    for shard, path in zip(shards, paths, strict=True):
        name = path.name[: -len(".tar")] if path.name.endswith(".tar") else path.stem
        record = _read_json(path.parent / ".records" / f"{name}.json")
        groups = (record or {}).get("groups")
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 0:
            return None
        counts[shard] = groups
    return counts


def excerpt_seconds(shards: Sequence[str]) -> float | None:
    """The length in seconds of the shards' clips as their manifest states it: ``config.excerpt_s`` (codec and
    HAAQI shards: every clip is one excerpt), else the mean clip length of the splits the shards belong to
    (``duration_s / samples``); the shortest such value over the shard folders. None when unknown."""
    paths = _local(shards)
    if not paths:
        return None
    names = {p.name for p in paths}
    found = []
    for manifest in _manifests(paths).values():
        if not manifest:
            continue
        excerpt = (manifest.get("config") or {}).get("excerpt_s")
        if isinstance(excerpt, int | float) and excerpt > 0:
            found.append(float(excerpt))
            continue
        for split in (manifest.get("splits") or {}).values():
            if names & set(split.get("shards") or []) and split.get("samples"):
                found.append(float(split.get("duration_s", 0.0)) / float(split["samples"]))
    return min(found) if found else None
