"""What individual experiment files promise: HAAQI-Net's early stopping and MOS fine-tuning from a trained run,
JSQA's baseline without pretraining, and a header that names the paper and lists the departures."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from aqa.audio import encode_flac
from aqa.config import CONFIG_DIR, available, compose
from aqa.tasks import build_module, init_from_checkpoint, load_run
from aqa.tasks.training import train

HAAQI_NET = ("haaqi_net", "haaqi_net_student", "haaqi_net_mos")
TINY_BEATS = "encoder=beats_iter3_plus_as2m_tiny"


def _plain(cfg, *drop: str) -> dict:
    out = OmegaConf.to_container(cfg, resolve=True)
    for key in drop:
        out.pop(key)
    return out


@pytest.mark.parametrize("experiment", HAAQI_NET)
def test_haaqi_net_experiments_stop_early_on_validation_loss(experiment):
    """The published recipe: EarlyStopping(patience=3) on the validation loss, at most 10 epochs."""
    cfg = compose(experiment)
    assert cfg.early_stopping.patience == 3 and cfg.monitor.metric == "val/loss" and cfg.monitor.mode == "min"
    assert cfg.early_stopping.get("monitor") is None and cfg.trainer.max_epochs == 10


def test_jsqa_mos_scratch_is_jsqa_mos_without_pretraining():
    """The same network and recipe, but neither the JND stage (init_from) nor pretrained weights: random init."""
    pretrained, scratch = compose("jsqa_mos"), compose("jsqa_mos_scratch")
    assert pretrained.init_from and scratch.init_from is None
    assert pretrained.encoder.checkpoint and scratch.encoder.checkpoint is None
    assert pretrained.encoder.adapter is None and scratch.encoder.adapter is None  # both train every weight
    pretrained.encoder.checkpoint = None
    assert _plain(scratch, "init_from", "experiment", "run_dir", "wandb") == _plain(
        pretrained, "init_from", "experiment", "run_dir", "wandb"
    )


def test_haaqi_net_mos_starts_from_the_trained_haaqi_net(tmp_path):
    """Same encoder and head as haaqi_net and the same task name, so init_from copies both; label mos."""
    base, mos = compose("haaqi_net"), compose("haaqi_net_mos")
    assert Path(mos.init_from).parts[:2] == Path(base.run_dir).parts == ("runs", "haaqi_net")
    assert mos.encoder == base.encoder and list(mos.tasks) == list(base.tasks) == ["haaqi"]
    head = {k: v for k, v in mos.tasks.haaqi.head.items() if k != "score_range"}
    assert head == base.tasks.haaqi.head and mos.tasks.haaqi.label == "mos"  # same parameters; scores on 1..5
    assert list(mos.tasks.haaqi.head.score_range) == [1.0, 5.0]
    assert list(mos.data.condition_keys) == ["audiogram"] and list(mos.data.label_keys) == ["mos"]

    trained = build_module(compose("haaqi_net", [TINY_BEATS]), with_teacher=False)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))  # unlike any fresh initialisation
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": trained.state_dict()}, ckpt)
    module = build_module(compose("haaqi_net_mos", [TINY_BEATS, f"init_from={ckpt}"]), with_teacher=False)
    assert init_from_checkpoint(module, ckpt) == {"loaded": ["encoder", "heads.haaqi"], "kept": []}
    theirs = trained.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in module.state_dict().items())


def _write_rated_shards(folder: Path, n_train: int = 6, n_val: int = 4, sr: int = 16000) -> None:
    """A rated corpus as `aqa prep import` writes it: one clip per group, MOS on 1..5, no audiogram."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_val)):
        with tarfile.open(folder / f"{split}-000000.tar", "w") as tar:
            for i in range(n):
                noise = rng.uniform(0.0, 0.3)
                t = np.arange(sr) / sr
                x = 0.2 * np.sin(2 * np.pi * 330 * t) + noise * rng.standard_normal(sr)
                meta = {"group": f"{split}{i}", "mos": round(5.0 - noise * 12, 3), "system": f"s{i % 2}",
                        "sample_rate": sr}
                for ext, data in (("flac", encode_flac(x.astype(np.float32), sr)), ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{split}{i:03d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def test_haaqi_net_mos_fine_tunes_on_rated_shards(tmp_path):
    """End to end on CPU: init_from a (tiny) HAAQI-Net run, then fine-tune on MOS shards without audiograms
    (each clip gets the normal-hearing default) whose scores the head maps to 1..5."""
    trained = build_module(compose("haaqi_net", [TINY_BEATS]), with_teacher=False)
    ckpt = tmp_path / "haaqi_net.ckpt"
    torch.save({"state_dict": trained.state_dict()}, ckpt)
    shards = tmp_path / "rated"
    _write_rated_shards(shards)
    run = tmp_path / "run"
    cfg = compose("haaqi_net_mos", [TINY_BEATS, "trainer=cpu", f"init_from={ckpt}", f"run_dir={run}",
                                    f"data.train_urls={shards}/train-*.tar", f"data.val_urls={shards}/val-*.tar",
                                    "data.num_workers=0", "data.crop_s=1.0", "data.val_crop_s=1.0",
                                    "trainer.max_epochs=1", "logger=csv"])
    metrics = train(cfg)
    assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["val/loss"])
    assert (run / "checkpoints" / "best.ckpt").is_file()
    module, _ = load_run(run)
    with torch.no_grad():
        score = module(torch.zeros(1, 16000), torch.tensor([16000]), {"audiogram": torch.zeros(1, 8)})["haaqi"]["score"]
    assert 1.0 <= float(score) <= 5.0  # on the MOS scale


def _header(experiment: str) -> str:
    lines = (CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    return "\n".join(line for line in lines[: next(i for i, s in enumerate(lines) if not s.startswith("#"))])


@pytest.mark.parametrize("experiment", [e for e in available("experiment") if e.startswith(("haaqi_net", "jsqa"))])
def test_header_names_the_paper_and_its_departures(experiment):
    head = _header(experiment)
    full = experiment.removesuffix("_tiny")
    assert "Departures" in head, f"{experiment}.yaml: list the departures from the paper in its header"
    if full == experiment:  # a full-size experiment cites the paper file; a tiny one points at its full-size file
        assert "../shared/papers/" in head and ("Wisnu et al." in head or "Fan & Williamson" in head)
    else:
        assert f"as {full}" in head
