"""Labels read from shards without decoding any audio (what ``tasks.X.normalize`` z-scores by)."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Sequence

import numpy as np
import webdataset as wds

from aqa.data.urls import _is_remote, expand_shard_urls


def _label(meta: dict, key: str) -> float:
    value = meta.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def _metas(url: str) -> list[dict]:
    if _is_remote(url):  # a stream: read it through, the audio bytes are skipped, not decoded
        return [json.loads(s["json"]) for s in wds.WebDataset(url, shardshuffle=False) if "json" in s]
    metas = []
    with tarfile.open(url, "r:*") as tar:  # a local file: seeks over the audio members
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                f = tar.extractfile(member)
                if f is not None:
                    metas.append(json.loads(f.read()))
    return metas


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


__all__ = ["shard_labels"]
