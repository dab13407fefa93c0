"""Stored reference-metric results: a pair scored once is never scored again (``aqa eval --test``, ``aqa metric``).

One entry per (metric, options, versions, degraded file, reference file), each a small JSON file named by the
SHA-256 of its key::

    {"key": {"format", "metric", "options", "versions", "degraded", "reference"}, "result": {values..., "notes"}}

- ``versions``: the installed version of each package the metric wraps (``importlib.metadata``: ViSQOL's
  ``visqol-python``, ``pesq``, ``pystoi``, ...; :data:`PACKAGES`) and aqa's own version (its input policy --
  resampling, alignment, trimming -- and ``peaq``/``2f_model``, written here, are aqa code). Upgrading either
  misses every old entry.
- ``degraded``/``reference``: the BLAKE2b hash of the files' bytes (None for a no-reference metric's
  reference), so a renamed or copied file still hits and a rewritten one misses.
- Errors are never stored: a missing package, a file being written, or a metric crash may be gone next time,
  and an error costs little to reproduce.
- Writes are atomic (:func:`aqa.files.write_text_atomic`: a temporary file renamed into place), so worker
  processes writing the same entry at once leave one whole file; a corrupt or foreign entry (unparsable JSON,
  another key) is ignored, recomputed and overwritten.

The folder is ``--cache DIR``, else ``$AQA_METRIC_CACHE``, else ``$AQA_CACHE/metrics``, else
``$XDG_CACHE_HOME/aqa/metrics`` (``~/.cache/aqa/metrics``) (:func:`default_dir`); ``--no-cache`` turns it off.
Delete the folder to clear it. The test suite points ``$AQA_METRIC_CACHE`` at a temporary folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aqa.files import write_text_atomic

__all__ = ["FORMAT", "PACKAGES", "MetricCache", "default_dir", "file_hash", "metric_versions", "open_cache"]

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the entry layout or the meaning of a stored value changes
# metric -> the distributions whose code computes it (aqa's own version is always part of the key)
PACKAGES: dict[str, tuple[str, ...]] = {
    "visqol": ("visqol-python",),
    "visqol_speech": ("visqol-python",),
    "pesq": ("pesq",),
    "stoi": ("pystoi",),
    "estoi": ("pystoi",),
    "haaqi": ("pyclarity",),
    "dnsmos": ("speechmos", "onnxruntime"),
    "cdpam": ("cdpam",),
    "peaq": (),  # aqa.metrics.peaq: aqa's version
    "2f_model": (),
}


def default_dir() -> Path:
    """``$AQA_METRIC_CACHE``, else ``$AQA_CACHE/metrics``, else ``$XDG_CACHE_HOME/aqa/metrics``, else
    ``~/.cache/aqa/metrics`` (read now, so a changed environment applies)."""
    if os.environ.get("AQA_METRIC_CACHE"):
        return Path(os.environ["AQA_METRIC_CACHE"]).expanduser()
    root = os.environ.get("AQA_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aqa"
    return Path(root).expanduser() / "metrics"


@functools.cache
def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def metric_versions(name: str) -> dict[str, str]:
    """``{distribution: version}`` of the packages metric ``name`` runs on, aqa's included. A metric this table
    does not know (one registered at run time) is keyed by its function's module and name as well."""
    out = {d: _version(d) for d in PACKAGES.get(name, ())}
    out["aqa"] = _version("aqa")
    if name not in PACKAGES:
        from aqa.metrics import METRICS

        entry = METRICS.get(name)
        qualname = getattr(entry, "__qualname__", None)  # a plain function; a _Lazy entry's repr names its own
        out["function"] = f"{entry.__module__}.{qualname}" if qualname else repr(entry)
    return out


_HASHES: dict[tuple[str, int, int, int], str] = {}


def file_hash(path: str | Path) -> str:
    """BLAKE2b (256 bit) of the file's bytes, hex; remembered per (path, size, mtime, inode) in this process.

    Raises:
        OSError: the file cannot be read.
    """
    st = os.stat(path)
    memo = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _HASHES:
        h = hashlib.blake2b(digest_size=32)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[memo] = h.hexdigest()
    return _HASHES[memo]


class MetricCache:
    """The results stored in ``folder`` (created on the first write). Picklable: worker processes get a copy.

    Args:
        folder: where the entries live (``folder/ab/abcd....json``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self._warned = False

    def __repr__(self) -> str:
        return f"MetricCache({str(self.folder)!r})"

    def key(
        self, name: str, ref: str | None, deg: str, options: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The fields an entry is stored under (the files are hashed; OSError when one cannot be read)."""
        from aqa.metrics import NO_REFERENCE

        return {
            "format": FORMAT,
            "metric": name,
            "options": json.loads(json.dumps(dict(options or {}), sort_keys=True, default=str)),
            "versions": metric_versions(name),
            "degraded": file_hash(deg),
            "reference": None if name in NO_REFERENCE or not ref else file_hash(ref),
        }

    def _path(self, key: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.json"

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored result for ``key``, or None (absent, unreadable, corrupt or stored under another key)."""
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("result"), dict):
            return None
        return entry["result"]

    def put(self, key: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Store ``result`` (a metric's values and notes, JSON) under ``key``, atomically; a failed write is
        logged once and otherwise ignored (the result is still returned to the caller)."""
        try:
            write_text_atomic(self._path(key), json.dumps({"key": key, "result": result}))
        except (OSError, TypeError, ValueError) as err:
            if not self._warned:
                log.warning("metric cache %s: cannot store results (%s); going on without", self.folder, err)
                self._warned = True


def open_cache(cache: str | Path | bool | MetricCache | None) -> MetricCache | None:
    """``True``: the cache in :func:`default_dir`; a folder: that one; ``False``/None: no cache."""
    if isinstance(cache, MetricCache) or cache is None:
        return cache
    if cache is True:
        return MetricCache(default_dir())
    if cache is False:
        return None
    return MetricCache(cache)
