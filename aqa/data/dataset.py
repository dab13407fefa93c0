"""Streaming dataset over codec shards that yields whole groups per batch (for Rank-N-Contrast).

A *group* is one excerpt with all its versions (clean reference + every codec/bit rate); the shards
written by :mod:`data_prep.codec` store each group as consecutive samples. This dataset reads
shards with webdataset, re-assembles groups, shuffles them in a bounded buffer (train only) and emits
one batch per ``groups_per_batch`` groups, so contrastive losses always see every version of an
excerpt together and time-aligned. Evaluation reads ``groups_per_batch`` shards side by side, one group from
each in turn, so that a batch holds excerpts of several pieces (shards usually hold one piece each) and DeePAQ's
mismatched-reference score always has another piece's reference to use.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import webdataset as wds
from braceexpand import braceexpand
from torch.utils.data import IterableDataset

from aqa.audio import check_audio, decode_flac, resample_np, to_mono_np

__all__ = ["GroupedBatchDataset", "Batch", "piece_of"]

log = logging.getLogger(__name__)

Batch = dict[str, Any]
"""``{"wav": (B, T) float32, "lengths": (B,) int64, "labels": {key: (B,) float32},
"conditions": {key: (B, K) float32}, "group": (B,) int64, "piece": (B,) int64, "is_reference": (B,) bool,
"meta": list[dict]}``."""

# a raw group: list of (json metadata, flac bytes) in shard order
_RawGroup = list[tuple[dict[str, Any], bytes]]


def _expand(urls: str | Sequence[str]) -> list[str]:
    items = [urls] if isinstance(urls, str) else list(urls)
    return [u for item in items for u in braceexpand(str(item))]


def _groups(samples: Iterable[dict[str, Any]]) -> Iterator[_RawGroup]:
    # collect runs of consecutive samples sharing json["group"]
    current: _RawGroup = []
    for s in samples:
        if "json" not in s or "flac" not in s:
            log.warning("skipping sample %r in %r: no .json or .flac member", s.get("__key__"), s.get("__url__"))
            continue
        try:
            meta = json.loads(s["json"])
            if not isinstance(meta, dict):
                raise ValueError(f"metadata is a {type(meta).__name__}, not an object")
        except ValueError as err:
            log.warning("skipping sample %r in %r: bad .json (%s)", s.get("__key__"), s.get("__url__"), err)
            continue
        meta["key"] = s["__key__"]
        if current and meta.get("group") != current[0][0].get("group"):
            yield current
            current = []
        current.append((meta, s["flac"]))
    if current:
        yield current


def _interleaved(urls: Sequence[str], width: int) -> Iterator[_RawGroup]:
    # evaluation order: ``width`` shards read side by side, one group from each in turn (a finished shard's place
    # goes to the next one), deterministic; with one piece per shard a run of ``width`` groups spans ``width`` pieces
    pending = iter(urls)
    streams: list[Iterator[_RawGroup]] = []
    while True:
        while len(streams) < width and (url := next(pending, None)) is not None:
            streams.append(_groups(wds.tarfile_samples([{"url": url}])))
        if not streams:
            return
        for stream in list(streams):
            group = next(stream, None)
            if group is None:
                streams.remove(stream)
            else:
                yield group


def piece_of(meta: Mapping[str, Any]) -> str:
    """The source piece (recording) a sample was cut from: its JSON ``piece`` (codec and HAAQI shards), else its
    ``source`` file (JND shards: the utterance), else its ``group`` (a group is then its own piece)."""
    for key in ("piece", "source", "group"):
        if meta.get(key) is not None:
            return str(meta[key])
    return ""


def _shuffled(groups: Iterable[_RawGroup], size: int, rng: random.Random) -> Iterator[_RawGroup]:
    # bounded shuffle buffer: emit a random resident once the buffer is full
    buf: list[_RawGroup] = []
    for g in groups:
        if len(buf) < size:
            buf.append(g)
            continue
        i = rng.randrange(len(buf))
        buf[i], g = g, buf[i]
        yield g
    rng.shuffle(buf)
    yield from buf


class GroupedBatchDataset(IterableDataset):
    """Iterable over grouped batches read from WebDataset codec shards.

    Each yielded batch holds ``groups_per_batch`` whole groups (fewer in the last batch unless
    ``drop_last``). Shards are split across distributed ranks and DataLoader workers
    (``webdataset.split_by_node`` / ``split_by_worker``); use ``batch_size=None`` in the DataLoader.

    Batch fields (``B`` = total versions in the batch, ``T`` = longest crop in samples):

    - ``wav``: FloatTensor ``(B, T)``, mono at ``sample_rate`` Hz, zero-padded.
    - ``lengths``: LongTensor ``(B,)``, valid samples per row.
    - ``labels``: ``{key: FloatTensor (B,)}`` for each of ``label_keys`` (JSON null -> NaN).
    - ``conditions``: ``{key: FloatTensor (B, K)}`` for each of ``condition_keys``: numeric JSON lists of one
      length K per key, the inputs a head is conditioned on (e.g. HAAQI-Net's 8-value ``audiogram``).
    - ``group``: LongTensor ``(B,)``, group index ``0..G-1`` inside the batch.
    - ``piece``: LongTensor ``(B,)``, index ``0..P-1`` inside the batch of the source piece (:func:`piece_of`); a
      mismatched reference is only taken from another piece (:func:`aqa.heads.scores.reference_anchors`).
    - ``is_reference``: BoolTensor ``(B,)``.
    - ``meta``: list of ``B`` JSON dicts plus ``key`` and ``crop_start_s`` (crop offset in seconds).

    Args:
        urls: shard URLs (local paths or ``pipe:`` commands); brace patterns are expanded.
        sample_rate: output rate in Hz (the encoder's rate).
        label_keys: numeric JSON fields returned under ``labels``.
        condition_keys: numeric-list JSON fields returned under ``conditions``.
        condition_defaults: key -> the value a sample without that field gets (e.g. a normal-hearing
            audiogram of zeros for a MOS corpus that carries none); a missing key without a default is an error.
        groups_per_batch: groups per batch.
        crop_s: crop length in seconds; ``None`` keeps whole clips. Training crops start at a
            random offset shared by all versions of a group; evaluation crops start at 0.
        train: shuffle shard order and groups, random crop offsets. Evaluation (``train=False``) reads
            ``max(2, groups_per_batch)`` shards side by side, a group from each in turn (fixed order).
        shuffle_groups: shuffle buffer size in groups (train only; <= 1 disables it).
        versions_per_group: keep at most this many versions per group (the reference plus a random
            subset of the others, fixed per group in evaluation); ``None`` keeps all.
        seed: base seed; the training order depends on ``seed`` and the epoch (:meth:`set_epoch`).
        drop_last: drop a final batch with fewer than ``groups_per_batch`` groups.
        min_s: groups whose shortest version is shorter than this (seconds) are skipped with a logged
            reason, like groups with an undecodable or non-finite member (encoders need a minimum length).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        sample_rate: int,
        label_keys: Sequence[str] = ("bitrate_rank",),
        condition_keys: Sequence[str] = (),
        condition_defaults: Mapping[str, Sequence[float]] | None = None,
        groups_per_batch: int = 4,
        crop_s: float | None = 10.0,
        train: bool = True,
        shuffle_groups: int = 64,
        versions_per_group: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
        min_s: float = 0.1,
    ) -> None:
        super().__init__()
        self.urls = _expand(urls)
        if not self.urls:
            raise ValueError("GroupedBatchDataset needs at least one shard URL")
        if groups_per_batch < 1:
            raise ValueError(f"groups_per_batch must be >= 1, got {groups_per_batch}")
        if crop_s is not None and crop_s <= 0:
            raise ValueError(f"crop_s must be positive or None, got {crop_s}")
        if versions_per_group is not None and versions_per_group < 1:
            raise ValueError(f"versions_per_group must be >= 1 or None, got {versions_per_group}")
        self.sample_rate = int(sample_rate)
        self.label_keys = list(label_keys)
        self.condition_keys = list(condition_keys)
        self.condition_defaults = {k: [float(x) for x in v] for k, v in (condition_defaults or {}).items()}
        self.groups_per_batch = groups_per_batch
        self.crop_s = crop_s
        self.train = train
        self.shuffle_groups = shuffle_groups
        self.versions_per_group = versions_per_group
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.skip_batches = 0
        self.min_s = float(min_s)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the training order (call before iterating)."""
        self.epoch = int(epoch)

    def epoch_batches(
        self, group_counts: Mapping[str, int], workers: int = 0, rank: int = 0, world: int = 1, epoch: int | None = None
    ) -> int:
        """The batches one epoch yields on ``rank`` (of ``world``) with ``workers`` DataLoader workers (0: none), given
        the groups each shard holds (:func:`aqa.data.manifest.shard_group_counts`): the shards are ordered as
        :meth:`__iter__` orders them for :attr:`epoch`, split by rank then by worker, and each worker batches its
        own groups (a last short batch each, unless ``drop_last``). ``epoch``: the training epoch (default
        :attr:`epoch`). Exact unless every group of a batch is
        malformed (such a batch is skipped); a group spanning two shards is not expected (``aqa prep`` writes
        whole groups per shard)."""
        urls = list(self.urls)
        if self.train:
            random.Random(f"{self.seed}:{self.epoch if epoch is None else epoch}:shards").shuffle(urls)
        mine = urls[rank::world] if world > 1 else urls
        total = 0
        for worker in range(max(1, workers)):
            groups = sum(group_counts[u] for u in (mine[worker :: workers] if workers > 1 else mine))
            total += groups // self.groups_per_batch if self.drop_last else -(-groups // self.groups_per_batch)
        return total

    def __iter__(self) -> Iterator[Batch]:
        # read here, not inside the generator: the DataLoader clears it right after creating the iterator
        return self._batches(self.skip_batches)

    def _batches(self, skip: int) -> Iterator[Batch]:
        # ``skip``: batches of this epoch already consumed (mid-epoch resume, counted over all workers of
        # this rank; the in-order DataLoader takes batch j from worker j % workers). They are rebuilt and
        # dropped, so the random stream (shuffle, crops) continues exactly where the interrupted run was.
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        skip = len(range(worker, skip, workers))
        urls = list(self.urls)
        if self.train:  # same shard order on every rank/worker, then split
            random.Random(f"{self.seed}:{self.epoch}:shards").shuffle(urls)
            rng = random.Random(f"{self.seed}:{self.epoch}:{rank}:{worker}")
        else:
            rng = random.Random(f"{self.seed}:eval:{rank}:{worker}")
        src: Iterable[dict[str, Any]] = ({"url": u} for u in urls)
        src = wds.split_by_worker(wds.split_by_node(src))
        if self.train:
            groups = _groups(wds.tarfile_samples(src))
        else:
            groups = _interleaved([s["url"] for s in src], max(2, self.groups_per_batch))
        if self.train and self.shuffle_groups > 1:
            groups = _shuffled(groups, self.shuffle_groups, rng)
        chunk: list[_RawGroup] = []
        for g in groups:
            chunk.append(g)
            if len(chunk) == self.groups_per_batch:
                batch = self._collate(chunk, rng)
                chunk = []
                if batch is None:  # every group of the chunk was malformed (each logged)
                    continue
                if skip > 0:
                    skip -= 1
                    continue
                yield batch
        if chunk and not self.drop_last and skip <= 0 and (batch := self._collate(chunk, rng)) is not None:
            yield batch

    def _select(self, group: _RawGroup, rng: random.Random) -> _RawGroup:
        k = self.versions_per_group
        if k is None or len(group) <= k:
            return group
        refs = [i for i, (m, _) in enumerate(group) if m.get("is_reference")][:1]
        others = [i for i in range(len(group)) if i not in refs]
        pick_rng = rng if self.train else random.Random(f"{self.seed}:{group[0][0].get('group')}")
        keep = sorted(refs + pick_rng.sample(others, k - len(refs)))
        return [group[i] for i in keep]

    def _collate(self, groups: list[_RawGroup], rng: random.Random) -> Batch | None:
        wavs: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        group_idx: list[int] = []
        gi = -1
        for raw in groups:
            raw = self._select(raw, rng)
            try:  # one bad member drops its group (logged), never the epoch
                decoded = [_decode(meta, flac) for meta, flac in raw]
                rates = {sr for _, sr in decoded}
                if len(rates) != 1:
                    raise ValueError(f"mixes sample rates {sorted(rates)}")
                for meta, _ in raw:
                    for k in self.label_keys:
                        _label(meta, k)
                    for k in self.condition_keys:
                        _condition(meta, k, self.condition_defaults.get(k))
                shortest = min(x.shape[-1] for x, _ in decoded) / next(iter(rates))
                if shortest < self.min_s:
                    raise ValueError(f"a version lasts {shortest:.4f} s, under min_s={self.min_s} s")
            except (ValueError, KeyError, RuntimeError) as err:
                log.warning("skipping group %r: %s", raw[0][0].get("group"), " ".join(str(err).split())[:300])
                continue
            gi += 1
            sr = rates.pop()
            total = min(x.shape[-1] for x, _ in decoded)
            n = total if self.crop_s is None else min(total, int(round(self.crop_s * sr)))
            offset = rng.randrange(total - n + 1) if self.train else 0
            for (meta, _), (x, _) in zip(raw, decoded, strict=True):
                seg = resample_np(to_mono_np(x[:, offset : offset + n]), sr, self.sample_rate)
                wavs.append(seg)
                metas.append({**meta, "crop_start_s": offset / sr})
                group_idx.append(gi)
        if not wavs:
            return None
        lengths = [w.shape[-1] for w in wavs]
        wav = torch.zeros(len(wavs), max(lengths), dtype=torch.float32)
        for i, w in enumerate(wavs):
            wav[i, : w.shape[-1]] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        labels = {
            k: torch.tensor([_label(m, k) for m in metas], dtype=torch.float32) for k in self.label_keys
        }
        conditions = {}
        for k in self.condition_keys:
            rows = [_condition(m, k, self.condition_defaults.get(k)) for m in metas]
            if len({len(r) for r in rows}) != 1:
                raise ValueError(f"condition {k!r} has different lengths in one batch: {sorted({len(r) for r in rows})}")
            conditions[k] = torch.tensor(rows, dtype=torch.float32)
        pieces: dict[str, int] = {}
        return {
            "wav": wav,
            "lengths": torch.tensor(lengths, dtype=torch.long),
            "labels": labels,
            "conditions": conditions,
            "group": torch.tensor(group_idx, dtype=torch.long),
            "piece": torch.tensor([pieces.setdefault(piece_of(m), len(pieces)) for m in metas], dtype=torch.long),
            "is_reference": torch.tensor(
                [bool(m.get("is_reference", False)) for m in metas], dtype=torch.bool
            ),
            "meta": metas,
        }


def _decode(meta: dict[str, Any], data: bytes) -> tuple[np.ndarray, int]:
    try:
        x, sr = decode_flac(data)
    except Exception as err:  # soundfile raises its own error types for truncated/garbage bytes
        raise ValueError(f"member {meta.get('key')!r} does not decode: {err}") from None
    return check_audio(x, f"member {meta.get('key')!r}"), sr


def _label(meta: dict[str, Any], key: str) -> float:
    if key not in meta:
        raise KeyError(f"label key {key!r} not in sample {meta.get('key')!r}; available: {sorted(meta)}")
    v = meta[key]
    if v is None:
        return float("nan")
    if isinstance(v, bool | int | float):
        return float(v)
    raise ValueError(f"label {key!r} of sample {meta.get('key')!r} is not numeric: {v!r}")


def _condition(meta: dict[str, Any], key: str, default: list[float] | None = None) -> list[float]:
    if key not in meta and default is not None:
        return list(default)
    if key not in meta:
        raise KeyError(f"condition key {key!r} not in sample {meta.get('key')!r}; available: {sorted(meta)}")
    v = meta[key]
    if isinstance(v, bool | int | float):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, bool | int | float) for x in v):
        raise ValueError(f"condition {key!r} of sample {meta.get('key')!r} is not a list of numbers: {v!r}")
    out = [float(x) for x in v]
    if not all(np.isfinite(out)):
        raise ValueError(f"condition {key!r} of sample {meta.get('key')!r} is not finite: {v!r}")
    return out
