"""`aqa train` checks the composed config's values and shards before it builds or writes anything."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from aqa.cli import main
from aqa.config import ConfigError, check_values, compose


def _tar(path: Path, members: int) -> Path:
    with tarfile.open(path, "w") as tar:
        for i in range(members):
            data = json.dumps({"bitrate_rank": i, "bitrate_kbps": 32 if i else None}).encode()
            info = tarfile.TarInfo(f"g0/v{i}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def shards(tmp_path) -> Path:
    """A train shard with a member, an empty val shard (what `aqa prep` writes when every val clip is too
    short) and its manifest; an existing non-empty val shard in `full/`."""
    root = tmp_path / "shards"
    root.mkdir()
    _tar(root / "train-0000-00000.tar", 2)
    _tar(root / "val-0000-00000.tar", 0)
    manifest = {
        "splits": {
            "train": {"shards": ["train-0000-00000.tar"], "samples": 2},
            "val": {"shards": ["val-0000-00000.tar"], "samples": 0},
        },
        "skipped": [{"unit": "piece2", "reason": "too short: 0.50 s < excerpt_s 10 s"}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "full").mkdir()
    _tar(tmp_path / "full" / "val-0000-00000.tar", 1)
    return tmp_path


def _data(shards: Path) -> list[str]:
    return [f"data.train_urls={shards}/shards/train-*.tar", f"data.val_urls={shards}/full/val-*.tar"]


@pytest.mark.parametrize(
    "overrides,key,says",
    [
        (["trainer.max_epochs=-1"], "trainer.max_epochs=-1", "trainer.max_steps"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc'", "integer >= 1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0", "integer >= 1"),
        (["optimizer.lr=abc"], "optimizer.lr='abc'", "positive finite number"),
        (["optimizer.lr=-1"], "optimizer.lr=-1", "positive finite number"),
        (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1", ">= 0"),
        (["data.groups_per_batch=0"], "data.groups_per_batch=0", "integer >= 1"),
        (["data.crop_s=-2"], "data.crop_s=-2", "positive number of seconds, or null"),
        (["data.num_workers=-1"], "data.num_workers=-1", "integer >= 0"),
        (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1", "number >= 0, or null"),
        (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5", "fraction in (0.0, 1.0]"),
        (["trainer.devices=0"], "trainer.devices=0", "'auto'"),
        (["seed=abc"], "seed='abc'", "integer"),
        (["data.train_urls=/nonexistent/train-*.tar"], "data.train_urls", "aqa prep NAME --out"),
        (["data.val_urls=/nonexistent/val-*.tar"], "data.val_urls", "no validation shards found"),
        (["data.val_urls={root}/shards/val-*.tar"], "data.val_urls", "hold no samples"),
        (["data.val_urls=null"], "data.val_urls=None", "monitor.metric=val/quality/srcc"),
        (["trainer.limit_val_batches=0"], "trainer.limit_val_batches=0", "monitor.metric=val/quality/srcc"),
    ],
)
def test_bad_values_fail_in_one_line_before_the_run_starts(shards, tmp_path, capsys, overrides, key, says):
    run = tmp_path / "r"
    overrides = [o.replace("{root}", str(shards)) for o in overrides]
    assert main(["train", "deepaq_lora_tiny", *_data(shards), *overrides, f"run_dir={run}", "logger=wandb"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    lines = [line for line in err.splitlines() if line.startswith("aqa train: error:")]
    assert len(lines) == 1 and len(err.splitlines()) == 1, err
    assert key in err and says in err, err
    assert "Traceback" not in captured.err + captured.out
    assert not run.exists(), "a config error must leave no run folder behind"


def test_empty_val_split_names_the_manifest_reason(shards, tmp_path, capsys):
    run = tmp_path / "r"
    argv = ["train", "deepaq_lora_tiny", f"data.train_urls={shards}/shards/train-*.tar",
            f"data.val_urls={shards}/shards/val-*.tar", f"run_dir={run}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "split 'val' has 0 samples" in err and "too short" in err and "monitor.metric=train/loss" in err
    assert not run.exists()


def test_empty_train_shards_are_refused(shards):
    _tar(shards / "shards" / "train-0000-00000.tar", 0)
    with pytest.raises(ConfigError, match=r"data.train_urls: the training shards hold no samples"):
        check_values(compose("deepaq_lora_tiny", _data(shards)))


def test_a_valid_config_passes(shards):
    check_values(compose("deepaq_lora_tiny", _data(shards)))
    # an unbounded epoch count when asked for explicitly, with a step or time limit
    check_values(compose("deepaq_lora_tiny", [*_data(shards), "trainer.max_epochs=-1", "trainer.max_steps=100"]))
    check_values(compose("deepaq_lora_tiny", [*_data(shards), "trainer.max_epochs=-1", "trainer.max_time=00:12:00:00"]))
    # no validation data is fine when a training metric is monitored
    check_values(compose("deepaq_lora_tiny", [*_data(shards), "data.val_urls=null", "monitor.metric=train/loss"]))
    check_values(compose("deepaq_lora_tiny", [f"data.train_urls={shards}/shards/train-*.tar",
                                              f"data.val_urls={shards}/shards/val-*.tar", "monitor.metric=train/loss"]))


def test_relative_shard_paths_resolve_against_aqa_data_not_the_cwd(shards, tmp_path, monkeypatch):
    relative = ["data.train_urls=shards/train-*.tar", "data.val_urls=full/val-*.tar"]
    monkeypatch.chdir(shards)  # the shards are under the cwd, but relative paths must not be read from it
    monkeypatch.delenv("AQA_DATA", raising=False)
    with pytest.raises(ConfigError, match=r"relative paths are read from the checkout .*AQA_DATA"):
        check_values(compose("deepaq_lora_tiny", relative))
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setenv("AQA_DATA", str(shards))
    check_values(compose("deepaq_lora_tiny", relative))
    monkeypatch.setenv("AQA_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match=r"relative paths are read from AQA_DATA="):
        check_values(compose("deepaq_lora_tiny", relative))
