"""Labels read from shards without decoding any audio (what ``tasks.X.normalize`` z-scores by)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aqa.data.manifest import json_members
from aqa.data.urls import _is_remote, expand_shard_urls


def _label(meta: dict, key: str) -> float:
    value = meta.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def _metas(url: str) -> list[dict]:
    if _is_remote(url):  # a stream: read it through, the audio bytes are skipped, not decoded
        import webdataset as wds  # only streams need it: reading local shards' labels stays light

        return [json.loads(s["json"]) for s in wds.WebDataset(url, shardshuffle=False) if "json" in s]
    return list(json_members(url))


def shard_labels(urls: str | Sequence[str], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Every sample's numeric ``keys`` from the shards' ``.json`` members: key -> (N,) float64, NaN where the
    sample has no number for it (JSON null, missing). Reads no audio.

    Args:
        urls: shard patterns as ``data.train_urls`` takes them (globs, braces; relative paths as
            :func:`aqa.data.urls.expand_shard_urls` resolves them).
        keys: the label fields.
    """
    metas = [m for url in expand_shard_urls(urls, "training shards") for m in _metas(url) if isinstance(m, dict)]
    return {key: np.array([_label(m, key) for m in metas], dtype=np.float64) for key in keys}


def scale_pair(value: Any) -> tuple[float, float] | None:
    """``[min, max]`` (two finite numbers, max > min) as floats, else None."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and hi > lo else None


def rating_scale(urls: str | Sequence[str], label: str) -> tuple[tuple[float, float] | None, str]:
    """The rating scale ``(min, max)`` of ``label`` in the shards' JSON, and where it came from or why it is
    unknown (``(None, "unknown: ...")``).

    ``aqa prep import`` writes the corpus' scale into every sample (``scale``: MOS 1..5, MUSHRA 0..100); it applies
    to the ``mos`` label and the rated axes of ``scores``. All samples with a number for the label must agree.
    Only local shards are read (their JSON members, no audio); remote ones are not fetched for this.
    """
    try:
        shards = expand_shard_urls(urls, "training shards")
    except (OSError, ValueError) as err:
        return None, f"unknown: training shards not readable here ({' '.join(str(err).split())[:100]})"
    if any(_is_remote(u) for u in shards):
        return None, "unknown: remote training shards are not read for it"
    scales: set[tuple[float, float] | None] = set()
    for url in shards:
        for meta in _metas(url):
            if isinstance(meta, dict) and math.isfinite(_label(meta, label)):
                rated = label == "mos" or label in (meta.get("scores") or {})
                scales.add(scale_pair(meta.get("scale")) if rated else None)
    if len(scales) == 1 and None not in scales:
        lo, hi = next(iter(scales))  # type: ignore[misc]
        return (lo, hi), f"the training shards' scale of label {label!r}"
    if len(scales) > 1:
        return None, f"unknown: the training shards' samples of label {label!r} are not all on one rating scale"
    return None, f"unknown: the training shards give no rating scale for label {label!r}"


__all__ = ["rating_scale", "scale_pair", "shard_labels"]
