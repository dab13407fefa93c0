"""Lightning DataModule over codec shards (grouped batches, see :class:`~aqa.data.dataset.GroupedBatchDataset`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from aqa.data.dataset import GroupedBatchDataset
from aqa.data.manifest import shard_group_counts
from aqa.data.urls import expand_shard_urls

__all__ = ["AQADataModule", "datamodule_from_config", "default_num_workers"]


def default_num_workers(limit: int = 4) -> int:
    """DataLoader workers when ``data.num_workers`` is null: ``min(limit, cores - 1)`` (cores this process may
    run on), so the main process keeps a core and torch does not warn about more workers than cores; 0 (load in
    the main process) on one core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(limit, cores - 1))

class _EpochLoader(DataLoader):
    # Lightning calls set_epoch only on samplers, which iterable datasets lack: pass the epoch to the
    # dataset when an epoch's iterator is created (workers receive the dataset with it set).
    # state_dict/load_state_dict: Lightning's stateful-dataloader protocol, saved in every checkpoint, so a
    # run resumed mid-epoch skips the batches it already trained on instead of starting the epoch again.
    def __init__(
        self,
        dataset: GroupedBatchDataset,
        epoch_fn: Callable[[], int | None],
        position_fn: Callable[[], int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        self._epoch_fn = epoch_fn
        self._position_fn = position_fn
        self._calls = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        epoch = self._epoch_fn()
        epoch = self._calls if epoch is None else epoch
        self.dataset.set_epoch(epoch)
        self._calls += 1
        resume, self._resume = self._resume, None
        self.dataset.skip_batches = resume["batches"] if resume and resume["epoch"] == epoch else 0
        try:
            return super().__iter__()
        finally:
            self.dataset.skip_batches = 0

    def state_dict(self) -> dict[str, int]:
        # batches Lightning has trained on in this epoch (not the ones the loader prefetched)
        return {"epoch": int(self.dataset.epoch), "batches": int(self._position_fn()) if self._position_fn else 0}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}


class AQADataModule(L.LightningDataModule):
    """Train/val dataloaders of grouped codec batches (``batch_size=None``: the dataset batches).

    Args:
        train_urls: training shards: path(s) with brace patterns or globs, or ``pipe:`` commands.
        val_urls: validation shards, same forms; ``None`` disables validation.
        sample_rate: audio rate in Hz delivered to the model (the encoder's rate).
        label_keys: numeric JSON fields returned as ``batch["labels"][key]``, e.g. ``["bitrate_rank"]``.
        condition_keys: numeric-list JSON fields returned as ``batch["conditions"][key]`` (B, K), e.g.
            ``["audiogram"]`` for HAAQI-Net.
        condition_defaults: key -> value for samples without that field (see :class:`GroupedBatchDataset`).
        groups_per_batch: whole groups (excerpt x all versions) per batch.
        crop_s: training crop in seconds (random offset shared by a group); ``None`` = whole clips.
        val_crop_s: validation crop in seconds from the clip start; ``None`` = whole clips.
        shuffle_groups: training shuffle buffer, in groups.
        num_workers: DataLoader worker processes (shards are split across them); ``None``:
            :func:`default_num_workers` (``min(4, cores - 1)``). The data order depends on it (each worker reads
            its own shards): a run records the value it used in its ``config.yaml``.
        seed: base seed of shard order, group shuffling and crops (combined with the epoch).
        versions_per_group: cap on versions per group (reference always kept); ``None`` = all.
    """

    def __init__(
        self,
        train_urls: str | list[str],
        val_urls: str | list[str] | None = None,
        *,
        sample_rate: int,
        label_keys: Sequence[str] = ("bitrate_rank",),
        condition_keys: Sequence[str] = (),
        condition_defaults: Mapping[str, Sequence[float]] | None = None,
        groups_per_batch: int = 4,
        crop_s: float | None = 10.0,
        val_crop_s: float | None = None,
        shuffle_groups: int = 64,
        num_workers: int | None = 0,
        seed: int = 0,
        versions_per_group: int | None = None,
    ) -> None:
        super().__init__()
        self.train_urls = train_urls
        self.val_urls = val_urls
        self.sample_rate = int(sample_rate)
        self.label_keys = list(label_keys)
        self.condition_keys = list(condition_keys)
        self.condition_defaults = dict(condition_defaults or {})
        self.groups_per_batch = groups_per_batch
        self.crop_s = crop_s
        self.val_crop_s = val_crop_s
        self.shuffle_groups = shuffle_groups
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.seed = seed
        self.versions_per_group = versions_per_group
        self.train_set: GroupedBatchDataset | None = None
        self.val_set: GroupedBatchDataset | None = None

    def _dataset(self, urls: str | list[str], train: bool, what: str) -> GroupedBatchDataset:
        return GroupedBatchDataset(
            expand_shard_urls(urls, what),
            sample_rate=self.sample_rate,
            label_keys=self.label_keys,
            condition_keys=self.condition_keys,
            condition_defaults=self.condition_defaults,
            groups_per_batch=self.groups_per_batch,
            crop_s=self.crop_s if train else self.val_crop_s,
            train=train,
            shuffle_groups=self.shuffle_groups,
            versions_per_group=self.versions_per_group,
            seed=self.seed,
        )

    def setup(self, stage: str | None = None) -> None:
        """Resolve shard lists (raises ``FileNotFoundError`` with a build hint when none exist)."""
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset(self.train_urls, True, "training shards")
        if stage in (None, "fit", "validate") and self.val_set is None and self.val_urls is not None:
            self.val_set = self._dataset(self.val_urls, False, "validation shards")

    def epoch_batches(self, split: str = "train") -> int | None:
        """Batches per epoch of ``split`` (``train`` or ``val``) on this rank, from the groups per shard that the
        shards' records give (:func:`aqa.data.manifest.shard_group_counts`); None when unknown (remote shards,
        no records). What the progress bar shows as the epoch's length: the loop itself still ends when the
        data does (an iterable dataset has no ``len``)."""
        if split == "train" and self.train_set is None:
            self.setup("fit")
        dataset = self.train_set if split == "train" else self.val_set
        if dataset is None:
            return None
        counts = shard_group_counts(dataset.urls)
        if counts is None:
            return None
        trainer = self.trainer
        rank, world = (0, 1) if trainer is None else (int(trainer.global_rank), int(trainer.world_size))
        epoch = None if trainer is None else int(trainer.current_epoch)  # the shard order of the epoch about to run
        return dataset.epoch_batches(counts, self.num_workers, rank, world, epoch)

    def _current_epoch(self) -> int | None:
        trainer = self.trainer
        return None if trainer is None else int(trainer.current_epoch)

    def _trained_batches(self) -> int:
        trainer = self.trainer
        return 0 if trainer is None else int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def _loader(self, dataset: GroupedBatchDataset, position_fn: Callable[[], int] | None = None) -> DataLoader:
        return _EpochLoader(
            dataset,
            self._current_epoch,
            position_fn,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),  # page-locked batches: the copy to the GPU overlaps compute
            # own generator: creating an iterator must not draw from the global torch RNG (a resumed run
            # creates one more than an uninterrupted one, which would shift every later dropout mask)
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return self._loader(self.train_set, self._trained_batches)

    def eval_dataloader(self, split: str = "val") -> DataLoader:
        """A deterministic pass over ``split`` (``train`` or ``val``): no shuffling, crops from the clip start
        (``val_crop_s``), for evaluating or calibrating a trained model on either split."""
        urls = {"train": self.train_urls, "val": self.val_urls}.get(split)
        if urls is None:
            raise ValueError(f"no {split!r} shards configured (data.{split}_urls); splits are train and val")
        return self._loader(self._dataset(urls, False, f"{split} shards"))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            self.setup("validate")
        return [] if self.val_set is None else self._loader(self.val_set)


def datamodule_from_config(cfg: DictConfig, sample_rate: int) -> AQADataModule:
    """The DataModule an experiment config's ``data`` section describes, at the encoder's ``sample_rate``
    (Hz), seeded with the config's ``seed``."""
    kwargs = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs.pop("name")
    return AQADataModule(**kwargs, sample_rate=sample_rate, seed=cfg.seed)
