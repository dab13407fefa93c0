"""`aqa export`: a self-contained model folder that scores like its run, read without unpickling anything."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from synth import broadband, make_run

from aqa.cli import main


def wav(path: Path, seconds: float, seed: int, noise: float = 0.0, sr: int = 44100) -> Path:
    x = broadband(seconds, sr, channels=2, seed=seed)
    x = x + noise * np.random.default_rng(seed + 1).standard_normal(x.shape).astype(np.float32)
    sf.write(path, x.T, sr)
    return path


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_exported_model_scores_like_the_run_in_a_fresh_process_after_the_run_is_deleted(tmp_path, capsys):
    from aqa.inference.calibration import fit_cubic

    run = make_run(tmp_path, "deepaq_lora_tiny")
    (run / "eval_val.json").write_text(
        json.dumps({"summary": {"quality": {"all": {"n": 12, "srcc": 0.8123, "pcc": 0.7}}}})
    )
    cal = fit_cubic(np.linspace(-3, 0, 20), 1 + np.linspace(0, 4, 20))
    (run / "calibration.json").write_text(json.dumps({"quality": cal.to_dict()}))
    clean, noisy = wav(tmp_path / "clean.wav", 1.0, 1), wav(tmp_path / "noisy.wav", 1.0, 1, noise=0.05)
    args = [str(clean), str(noisy), "--reference", str(clean), "--no-progress"]
    assert main(["score", str(run), *args]) == 0
    expected = lines(capsys.readouterr().out)
    out = tmp_path / "model"
    assert main(["export", str(run), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "calibration.json",
        "config.yaml",
        "model.safetensors",
    ]
    card = (out / "README.md").read_text()
    for text in (
        "`quality`",
        "embedding",
        "full-reference",
        "mismatched",
        "bitrate_kbps",
        "0.812",
        "higher is better",
        "no audiogram",
        "quality_calibrated",
    ):
        assert text in card, text
    shutil.rmtree(run)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "aqa.cli", "score", str(out), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    got = lines(done.stdout)
    assert [r["file"] for r in got] == [r["file"] for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert a["quality"] == pytest.approx(b["quality"], abs=1e-6)
        assert a["quality_calibrated"] == pytest.approx(b["quality_calibrated"], abs=1e-6)
    assert got[0]["quality"] == pytest.approx(0.0, abs=1e-4) and got[1]["quality"] < -1e-3


def test_loading_an_export_never_unpickles(tmp_path, monkeypatch):
    import pickle

    import aqa

    run = make_run(tmp_path, "deepaq_lora_tiny")
    assert main(["export", str(run), str(tmp_path / "model")]) == 0

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling while loading an exported model")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    scorer = aqa.load(tmp_path / "model", device="cpu")
    emb = scorer.embed(broadband(0.5, 16000, channels=1)[0], sr=16000)["quality"]
    assert emb.ndim == 1 and np.isfinite(emb).all()


def _hf_checkpoint(folder: Path) -> Path:
    """A local pretrained checkpoint (config.json + model.safetensors) of a tiny WavLM, as a hub download is."""
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(5)
    cfg = WavLMConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=[32] * 7,
        conv_kernel=[10, 3, 3, 3, 3, 2, 2],
        conv_stride=[5, 2, 2, 2, 2, 2, 2],
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    WavLMModel(cfg).save_pretrained(folder)
    return folder


def test_without_encoder_stores_only_what_differs_from_the_named_checkpoint(tmp_path, capsys):
    from safetensors import safe_open

    from aqa.config import compose, save_config
    from aqa.tasks import build_module

    ckpt = _hf_checkpoint(tmp_path / "wavlm_ckpt")
    run = tmp_path / "run"
    lora = "encoder.adapter={name: lora, r: 8, alpha: 16, dropout: 0.05, target_modules: [q_proj, v_proj]}"
    cfg = compose("jsqa_jnd_tiny", [f"run_dir={run}", f"encoder.checkpoint={ckpt}", "encoder.arch=null", lora])
    torch.manual_seed(0)
    module = build_module(cfg)  # the pretrained backbone (frozen by LoRA) plus random LoRA and head weights
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))  # as after training: the adapters differ from their init
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": module.state_dict()}, run / "checkpoints" / "best.ckpt")
    save_config(cfg, run / "config.yaml")
    clip, ref = wav(tmp_path / "c.wav", 1.0, 2, noise=0.02), wav(tmp_path / "r.wav", 1.0, 2)
    args = [str(clip), "--reference", str(ref), "--no-progress"]
    assert main(["score", str(run), *args]) == 0
    expected = lines(capsys.readouterr().out)[0]["jnd"]
    out = tmp_path / "model"
    assert main(["export", str(run), str(out), "--without-encoder"]) == 0
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    encoder_keys = [k for k in keys if k.startswith("encoder.")]
    assert encoder_keys and all("lora_" in k for k in encoder_keys)  # the adapters only, not the backbone
    assert any(k.startswith("heads.") for k in keys) and meta["without_encoder"] == "true"
    assert (
        str(ckpt) in json.loads(meta["encoder_checkpoints"]) and str(ckpt) in (out / "README.md").read_text()
    )
    full = tmp_path / "full"
    assert main(["export", str(run), str(full)]) == 0
    assert (out / "model.safetensors").stat().st_size < 0.5 * (full / "model.safetensors").stat().st_size
    shutil.rmtree(run)
    assert main(["score", str(out), *args]) == 0
    assert lines(capsys.readouterr().out)[0]["jnd"] == pytest.approx(expected, abs=1e-6)
    shutil.rmtree(ckpt)  # the checkpoint it names is gone: one line saying which one is needed
    assert main(["score", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "without encoder weights" in err and str(ckpt) in err


def test_without_encoder_refuses_random_weights_and_bad_folders(tmp_path, capsys):
    run = make_run(tmp_path, "deepaq_lora_tiny")
    assert main(["export", str(run), str(tmp_path / "m"), "--without-encoder"]) == 2
    err = capsys.readouterr().err
    assert "random weights" in err and "Traceback" not in err
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "m2")]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_ensemble_export_writes_members_and_a_relative_ensemble_yaml(tmp_path, capsys):
    from omegaconf import OmegaConf
    from test_scorer import two_member_ensemble

    ens = two_member_ensemble(tmp_path, zscore=True)
    clean, noisy = wav(tmp_path / "clean.wav", 1.0, 1), wav(tmp_path / "noisy.wav", 1.0, 1, noise=0.05)
    args = [str(noisy), "--reference", str(clean), "--no-progress"]
    assert main(["score", str(ens), *args]) == 0
    expected = lines(capsys.readouterr().out)[0]["quality"]
    out = tmp_path / "exported"
    assert main(["export", str(ens), str(out)]) == 0
    spec = OmegaConf.to_container(OmegaConf.load(out / "ensemble.yaml"))
    assert [m["run"] for m in spec["members"]] == ["members/a", "members/b"] and spec["zscore"] is True
    assert all((out / m["run"] / "model.safetensors").is_file() for m in spec["members"])
    moved = tmp_path / "elsewhere"
    shutil.move(out, moved)  # relative member paths: the folder can move
    shutil.rmtree(tmp_path / "runs")
    assert main(["score", str(moved), *args]) == 0
    assert lines(capsys.readouterr().out)[0]["quality"] == pytest.approx(expected, abs=1e-6)


def test_export_replaces_a_previous_export_whole_and_refuses_other_folders(tmp_path, capsys):
    from aqa.inference.calibration import fit_cubic

    run = make_run(tmp_path, "mmmos_tiny")
    cal = fit_cubic(np.linspace(-1, 1, 20), 3 + np.linspace(-1, 1, 20))
    (run / "calibration.json").write_text(json.dumps({"quality": cal.to_dict()}))
    out = tmp_path / "model"
    assert main(["export", str(run), str(out)]) == 0
    assert (out / "calibration.json").is_file()
    (run / "calibration.json").unlink()
    (out / "members").mkdir()  # as a stale ensemble export would leave
    assert main(["export", str(run), str(out)]) == 0  # a previous export: replaced whole
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    inside = run / "checkpoints" / "exported"
    for target, message in ((mine, "not empty"), (inside, "checkpoints/"), (tmp_path, "holds the source")):
        assert main(["export", str(run), str(target)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and message in err, err
    assert (mine / "notes.txt").read_text() == "keep me" and not inside.exists()


def test_model_card_says_what_was_trained_adapter_and_random_init(tmp_path, capsys):
    # deepaq_lora_tiny trained without its LoRA adapter, from a random-weight encoder (checkpoint: null)
    from aqa.config import compose, save_config
    from aqa.tasks import build_module

    run = tmp_path / "no_adapter"
    cfg = compose("deepaq_lora_tiny", [f"run_dir={run}", "encoder.adapter=null"])
    torch.manual_seed(0)
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": build_module(cfg).state_dict()}, run / "checkpoints" / "best.ckpt")
    save_config(cfg, run / "config.yaml")
    cards = {}
    for name, src in (("plain", make_run(tmp_path, "deepaq_lora_tiny")), ("no_adapter", run)):
        assert main(["export", str(src), str(tmp_path / f"out_{name}")]) == 0
        cards[name] = (tmp_path / f"out_{name}" / "README.md").read_text()
    title = cards["no_adapter"].splitlines()[0]
    assert title == "# deepaq_lora_tiny (encoder.adapter=null)", title
    assert cards["plain"].splitlines()[0] == "# deepaq_lora_tiny"  # as its experiment file: nothing added
    assert "adapter: none" in cards["no_adapter"] and "adapter: `lora` (r=8" in cards["plain"]
    for card in cards.values():
        assert "None" not in card and "no pretrained checkpoint (trained from random init)" in card
