"""aqa.data: the grouped dataset and the DataModule over codec shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synth import STORE_SR, VERSIONS, read_shards, xcorr_lag

from aqa.data.datamodule import AQADataModule
from aqa.data.dataset import GroupedBatchDataset
from aqa.data.urls import expand_shard_urls

REPO = Path(__file__).resolve().parents[2]

def dataset(root: Path, split: str, **kw) -> GroupedBatchDataset:
    args = dict(
        sample_rate=STORE_SR,
        label_keys=["bitrate_rank", "bitrate_kbps"],
        groups_per_batch=2,
        crop_s=0.5,
        train=split == "train",
        shuffle_groups=4,
        seed=0,
    )
    args.update(kw)
    return GroupedBatchDataset(sorted(str(p) for p in (root / "out").glob(f"{split}-*.tar")), **args)


def check_batch(batch: dict, crop_samples: int | None) -> None:
    b = batch["wav"].shape[0]
    assert batch["wav"].dtype == torch.float32 and batch["wav"].ndim == 2
    assert batch["lengths"].dtype == torch.long and batch["lengths"].shape == (b,)
    assert batch["group"].dtype == torch.long and batch["is_reference"].dtype == torch.bool
    assert set(batch["labels"]) == {"bitrate_rank", "bitrate_kbps"}
    assert all(v.dtype == torch.float32 and v.shape == (b,) for v in batch["labels"].values())
    assert len(batch["meta"]) == b
    if crop_samples is not None:
        assert batch["wav"].shape[1] == crop_samples and bool((batch["lengths"] == crop_samples).all())
    for g in batch["group"].unique().tolist():
        idx = (batch["group"] == g).nonzero().flatten().tolist()
        metas = [batch["meta"][i] for i in idx]
        assert len(idx) == VERSIONS and len({m["group"] for m in metas}) == 1  # whole groups only
        assert batch["is_reference"][idx].sum() == 1 and batch["is_reference"][idx[0]]
        assert torch.isnan(batch["labels"]["bitrate_kbps"][idx[0]])
        assert batch["labels"]["bitrate_rank"][idx[0]] == 2
        assert len({m["crop_start_s"] for m in metas}) == 1  # one offset per group


def test_dataset_train_batches_are_whole_aligned_groups(shards):
    root, _, manifest = shards
    ds = dataset(root, "train")
    batches = list(ds)
    assert sum(len(b["group"].unique()) for b in batches) == manifest["splits"]["train"]["groups"]
    assert all(len(b["group"].unique()) == 2 for b in batches[:-1])
    stored = {k: a for _, k, a, _ in read_shards(sorted((root / "out").glob("train-*.tar")))}
    for batch in batches:
        check_batch(batch, crop_samples=STORE_SR // 2)
        for i, meta in enumerate(batch["meta"]):  # crops are the stored audio at the shared offset
            start = round(meta["crop_start_s"] * STORE_SR)
            assert np.allclose(batch["wav"][i].numpy(), stored[meta["key"]][0, start : start + STORE_SR // 2])
        for g in batch["group"].unique().tolist():
            idx = (batch["group"] == g).nonzero().flatten().tolist()
            ref = batch["wav"][idx[0]].numpy()
            for i in idx[1:]:
                if batch["meta"][i]["bitrate_kbps"] == 64:
                    assert abs(xcorr_lag(ref, batch["wav"][i].numpy(), max_lag=200)) <= 1
    again = list(dataset(root, "train"))
    assert [m["key"] for b in again for m in b["meta"]] == [m["key"] for b in batches for m in b["meta"]]
    assert all(torch.equal(x["wav"], y["wav"]) for x, y in zip(batches, again, strict=True))


def test_dataset_val_is_deterministic_and_uncropped(shards):
    root, _, manifest = shards
    first, second = list(dataset(root, "val", crop_s=None)), list(dataset(root, "val", crop_s=None))
    assert sum(len(b["group"].unique()) for b in first) == manifest["splits"]["val"]["groups"]
    for a, b in zip(first, second, strict=True):
        check_batch(a, crop_samples=STORE_SR)
        assert torch.equal(a["wav"], b["wav"]) and a["meta"] == b["meta"]
        assert all(m["crop_start_s"] == 0.0 for m in a["meta"])
    resampled = next(iter(dataset(root, "val", crop_s=0.25, sample_rate=16000)))
    assert resampled["wav"].shape[1] == 4000


def test_dataset_versions_per_group_keeps_reference(shards):
    root, _, _ = shards
    batch = next(iter(dataset(root, "val", versions_per_group=3)))
    for g in batch["group"].unique().tolist():
        idx = (batch["group"] == g).nonzero().flatten().tolist()
        assert len(idx) == 3 and batch["is_reference"][idx[0]] and batch["is_reference"][idx].sum() == 1
    again = next(iter(dataset(root, "val", versions_per_group=3)))
    assert [m["key"] for m in batch["meta"]] == [m["key"] for m in again["meta"]]


def test_datamodule_workers_epochs_and_missing_shards(shards, tmp_path):
    root, _, manifest = shards
    last = len(manifest["splits"]["val"]["shards"]) - 1
    dm = AQADataModule(
        train_urls=str(root / "out" / "train-*.tar"),
        val_urls=[str(root / "out" / f"val-0000-{{00000..{last:05d}}}.tar")],
        sample_rate=STORE_SR,
        label_keys=["bitrate_rank"],
        groups_per_batch=2,
        crop_s=0.5,
        shuffle_groups=4,
        num_workers=2,
        seed=0,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    epoch0 = [m["key"] for b in loader for m in b["meta"]]
    assert len(epoch0) == manifest["splits"]["train"]["samples"] == len(set(epoch0))  # each shard once
    assert dm.train_set.epoch == 0
    epoch1 = [m["key"] for b in loader for m in b["meta"]]
    assert dm.train_set.epoch == 1 and sorted(epoch1) == sorted(epoch0)
    val = [b for b in dm.val_dataloader()]
    assert sum(len(b["group"].unique()) for b in val) == manifest["splits"]["val"]["groups"]

    with pytest.raises(FileNotFoundError, match=r"aqa prep NAME --out") as missing:
        AQADataModule(train_urls=str(tmp_path / "none" / "train-*.tar"), sample_rate=16000).setup("fit")
    assert "make data" not in str(missing.value)  # not a demo folder: no demo target to name
    with pytest.raises(FileNotFoundError):
        expand_shard_urls([str(tmp_path / "x-{00000..00002}.tar")])
    assert expand_shard_urls("pipe:cat a-{0..1}.tar") == ["pipe:cat a-0.tar", "pipe:cat a-1.tar"]


def test_codec_demo_config_builds_a_datamodule():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "data" / "codec_demo.yaml"))
    assert cfg.pop("name") == "codec_demo"
    dm = AQADataModule(**cfg, sample_rate=24000)
    assert dm.crop_s == 3.0 and dm.val_crop_s == 5.0 and dm.label_keys == ["bitrate_kbps", "bitrate_rank"]


@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_batches_from_the_shard_records_equal_the_batches_an_epoch_yields(shards, workers):
    # the progress bar's epoch length (issue 24 item 5): shards of 1-2 groups, so workers get unequal shares
    root, _, manifest = shards
    dm = AQADataModule(train_urls=str(root / "out" / "train-*.tar"), val_urls=str(root / "out" / "val-*.tar"),
                       sample_rate=STORE_SR, label_keys=["bitrate_rank"], groups_per_batch=2, crop_s=0.25,
                       shuffle_groups=0, num_workers=workers, seed=0)
    dm.setup("fit")
    for split, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader())):
        assert dm.epoch_batches(split) == len(list(loader)), split
    assert dm.epoch_batches("train") >= manifest["splits"]["train"]["groups"] // 2


def test_default_num_workers_leaves_a_core_and_null_resolves_to_it(monkeypatch):
    import os

    from aqa.data.datamodule import default_num_workers

    for cores, expected in ((1, 0), (2, 1), (3, 2), (16, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert default_num_workers() == expected
        assert AQADataModule("x", sample_rate=16000, num_workers=None).num_workers == expected
    from aqa.config import compose

    for preset in ("codec", "haaqi", "jnd", "rated"):  # the presets that used to ask for 4 on any machine
        assert compose("deepaq_lora_tiny", [f"data={preset}"]).data.num_workers is None, preset


def test_every_demo_folder_hint_names_the_make_target_that_builds_it(tmp_path, monkeypatch):
    # issue 24 item 4: `data/mos_demo` named `make data-demo`, which builds data/codec_demo
    import re

    from aqa.config import available, compose

    monkeypatch.setenv("AQA_DATA", str(tmp_path))  # no demo data there: every preset's shards are missing

    makefile = (REPO / "Makefile").read_text()
    rules = dict(re.findall(r"^([\w./-]+):[^=\n]*\n((?:\t.*\n?)+)", makefile, flags=re.M))
    phony = dict(re.findall(r"^([\w-]+): ([\w./ -]+)$", makefile, flags=re.M))
    for preset in available("data"):
        folder = str(compose("deepaq_lora_tiny", [f"data={preset}"]).data.train_urls).rsplit("/", 1)[0]
        if not folder.endswith("_demo"):
            continue
        with pytest.raises(FileNotFoundError) as missing:
            expand_shard_urls(f"{folder}/train-*.tar", "training shards")
        target = re.search(r"`make ([^`]+)`", str(missing.value)).group(1)
        recipe = rules.get(target) or rules.get(phony.get(target, "").split()[0], "")
        assert f"--out {folder}" in recipe, (preset, target, recipe)
