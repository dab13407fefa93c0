"""End to end: tiny DeePAQ on synthetic coded shards, checkpoints, resume, CLI errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from aqa.cli import main
from aqa.config import compose
from aqa.eval.runs import evaluate
from aqa.tasks import build_module
from aqa.tasks.training import train

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (make install)")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Three synthetic 'pieces' (harmonic tones + noise), coded with two codecs at two bitrates."""
    from data_prep.codec import build_codec_shards

    root = tmp_path_factory.mktemp("music")
    rng = np.random.default_rng(0)
    sr = 24000
    sources = []
    for i, f0 in enumerate((220.0, 330.0, 440.0)):
        t = np.arange(int(2.2 * sr)) / sr
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12)) * 0.2 + 0.02 * rng.standard_normal(t.size)
        path = root / f"piece{i}.wav"
        sf.write(path, np.stack([x, x]).T.astype(np.float32), sr)
        sources.append(path)
    out = tmp_path_factory.mktemp("shards")
    build_codec_shards(
        sources, out, excerpt_s=1.0, codecs=("mp3", "opus"), bitrates=(32, 128), mono=True,
        splits={"piece0": "train", "piece1": "train", "piece2": "val"},
    )
    return out


def tiny_cfg(shards: Path, run_dir: Path, *overrides: str):
    return compose(
        "deepaq_lora_tiny",
        [
            f"data.train_urls={shards}/train-*.tar",
            f"data.val_urls={shards}/val-*.tar",
            f"run_dir={run_dir}",
            "trainer.max_epochs=1",
            "data.crop_s=0.5",
            "data.val_crop_s=1.0",
            "data.groups_per_batch=2",
            *overrides,
        ],
    )


def test_train_writes_checkpoints_config_and_wandb_offline(shards, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    run = tmp_path / "run"
    cfg = tiny_cfg(shards, run, "logger=wandb")
    metrics = train(cfg)
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "config.yaml").is_file()
    assert list((run / "wandb").glob("offline-run-*")), "W&B should log offline without credentials"
    assert np.isfinite(metrics["train/loss_epoch"])
    # the validation SRCC logged while training is the one `aqa eval` measures for the saved model (one epoch:
    # best = last) on the same clips: not a stale, training-split or mis-masked value
    evaluated = evaluate(run, plot=False, device="cpu", precision="fp32")
    for task in cfg.tasks:
        logged = metrics[f"val/{task}/srcc"]
        assert evaluated[task]["all"]["n"] >= 4 and np.isfinite(logged)
        assert logged == pytest.approx(evaluated[task]["all"]["srcc"], abs=1e-5)


def test_resume_continues_from_last_checkpoint(shards, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg(shards, run, "logger=csv"))
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    with pytest.raises(ValueError, match="resume=true"):
        train(tiny_cfg(shards, run, "logger=csv"))
    train(tiny_cfg(shards, run, "logger=csv", "resume=true", "trainer.max_epochs=2"))
    second = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["global_step"] > 0
    assert second["global_step"] == 2 * first["global_step"]  # exactly one more epoch, not two


def test_gradients_reach_only_lora_and_head():
    module = build_module(compose("deepaq_lora_tiny"))
    wav = torch.randn(4, 12000)
    out = module(wav, torch.tensor([12000, 12000, 9000, 6000]))
    loss = sum(module.losses[task](out[task], torch.tensor([0.0, 1.0, 2.0, 3.0])) for task in module.heads)
    loss.backward()
    for name, p in module.named_parameters():
        trainable = "lora_" in name or name.startswith("heads.")
        assert p.requires_grad == trainable, name
        if trainable:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name


def test_cli_rejects_bad_overrides(capsys):
    assert main(["train", "deepaq_lora_tiny", "no_such_key=1"]) == 2
    assert "unknown config key 'no_such_key'" in capsys.readouterr().err
    assert main(["train", "deepaq_lora_tiny", "encoder.name=nope"]) == 2
    assert "unknown encoder 'nope'; choose from" in capsys.readouterr().err


def test_full_deepaq_without_weights_fails_fast(shards, tmp_path, capsys):
    missing = tmp_path / "MERT-v1-95M"
    data = [f"data.train_urls={shards}/train-*.tar", f"data.val_urls={shards}/val-*.tar"]  # checked first
    assert main(["train", "deepaq_lora", *data, f"encoder.checkpoint={missing}", f"run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "encoder.checkpoint" in err


def test_early_stopping_ends_training_after_patience_validations(shards, tmp_path):
    # min_delta 1000: no validation counts as an improvement, so training stops after 1 + patience epochs
    run = tmp_path / "run"
    metrics = train(tiny_cfg(shards, run, "logger=csv", "trainer.max_epochs=6",
                             "early_stopping={patience: 2, monitor: val/loss, mode: min, min_delta: 1000.0}"))
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert np.isfinite(metrics["val/loss"])
    assert last["epoch"] == 2, last["epoch"]  # epochs 0, 1, 2 ran; without early stopping: 6
    # last.ckpt (the resume point) holds the callbacks' state after the epoch's validation, not one behind it
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    state = {k.split("{")[0]: v for k, v in last["callbacks"].items()}
    kept = next(v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert state["ModelCheckpoint"]["best_model_score"] == kept["best_model_score"]
    assert state["EarlyStopping"]["wait_count"] == 2 and state["EarlyStopping"]["stopped_epoch"] == 2


def test_validate_before_logs_the_untrained_model_and_the_cli_prints_before_and_after(shards, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [f"data.train_urls={shards}/train-*.tar", f"data.val_urls={shards}/val-*.tar", f"run_dir={run}",
                 "trainer.max_epochs=1", "data.crop_s=0.5", "data.val_crop_s=1.0", "data.groups_per_batch=2",
                 "logger=csv", "validate_before=true"]
    assert main(["train", "deepaq_lora_tiny", *overrides]) in (0, None)
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("val/")}
    assert next(x for x in lines if x.startswith("validation")).split()[1:] == ["before", "after"]
    assert set(table) >= {"val/loss", "val/quality/srcc"}
    assert "val/quality/srcc_mismatched" not in table  # one validation piece: no other piece's reference to use
    logged = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    rows = [dict(zip(logged[0].split(","), r.split(","), strict=True)) for r in logged[1:]]
    val = [r for r in rows if r["val/loss"]]
    assert len(val) == 2  # before training (epoch 0) and after its one epoch
    for key, (before, after) in table.items():  # the printed columns are the logged values, rounded
        assert float(before) == pytest.approx(float(val[0][key]), abs=5e-4)
        assert float(after) == pytest.approx(float(val[1][key]), abs=5e-4)
    assert float(val[0]["val/loss"]) != float(val[1]["val/loss"])  # the weights moved in between


def test_a_label_the_shards_lack_is_refused_before_the_run_folder_is_made(shards, tmp_path, capsys):
    # issue 24 item 1: a typo in the label used to build the model, start the loop and die with "'bitrate_rnk'"
    run = tmp_path / "run"
    data = [f"data.train_urls={shards}/train-*.tar", f"data.val_urls={shards}/val-*.tar", f"run_dir={run}"]
    assert main(["train", "deepaq_lora_tiny", *data, "tasks.quality.label=bitrate_rnk"]) == 2
    err = capsys.readouterr().err
    assert "tasks.quality.label='bitrate_rnk'" in err and "['bitrate_kbps', 'bitrate_rank'" in err, err
    assert "manifest.json" in err and not run.exists()


def test_cli_training_reads_a_label_the_preset_omits_and_logs_for_a_person(shards, tmp_path):
    # issue 24 items 1, 4, 5 through the console script's code path (a subprocess: the CLI's own logging setup).
    # The preset lists only bitrate_rank; the task trains on bitrate_kbps, which the shards carry (it used to die
    # in the loop with "'bitrate_kbps'"). The default crop (3 s) is longer than the shards' 1 s excerpts.
    import os
    import re
    import subprocess
    import sys

    run = tmp_path / "run"
    argv = ["train", "deepaq_lora_tiny", f"data.train_urls={shards}/train-*.tar", f"data.val_urls={shards}/val-*.tar",
            f"run_dir={run}", "trainer.max_epochs=1", "data.groups_per_batch=2", "data.label_keys=[bitrate_rank]",
            "logger=csv"]
    done = subprocess.run([sys.executable, "-m", "aqa.cli", *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert out.count("`Trainer.fit` stopped") == 1 and out.count("Seed set to") == 1, out  # each line once
    assert "exists and is not empty" not in out, out  # a fresh run's checkpoint folder is empty when fit starts
    assert (run / "checkpoints" / "config.yaml").is_file()
    crop = [line for line in out.splitlines() if "data.crop_s=3 s is longer than the train shards' clips (1 s" in line]
    assert len(crop) == 1, out  # said once, with both lengths
    # the epoch's length comes from the shard records: 2 training pieces x 1 group, 2 groups per batch -> 1/1
    bars = re.findall(r"Epoch 0/0 .*? (\d+)/(\S+) ", out)
    assert bars and all(done_ == total for done_, total in bars), bars
    assert re.search(r"^best val/quality/srcc \(max\): -?\d\.\d{4}$", done.stdout, flags=re.M), done.stdout
    assert f"best checkpoint: {run / 'checkpoints' / 'best.ckpt'}" in done.stdout
    assert "{" not in done.stdout  # no raw dict
