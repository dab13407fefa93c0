"""Scoring stands apart from training: ``aqa.load(...).score(...)`` builds the model alone (:mod:`aqa.model`), never
the LightningModule, and loads the weights of checkpoints and exports written by training as they always were."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from synth import broadband, make_run

from aqa.cli import main
from aqa.config import compose, save_config
from aqa.model import build_model, load_model
from aqa.tasks import build_module

LIGHTNING = ("lightning", "pytorch_lightning")  # and their submodules, e.g. lightning.pytorch


def test_load_and_score_import_no_lightning(tmp_path):
    run = make_run(tmp_path, "deepaq_lora_tiny")
    assert main(["export", str(run), str(tmp_path / "model")]) == 0
    x = broadband(0.5, 16000, channels=1, seed=3)[0]
    sf.write(tmp_path / "x.wav", x, 16000, subtype="FLOAT")
    sf.write(tmp_path / "reversed.wav", x[::-1], 16000, subtype="FLOAT")
    code = (
        "import json, sys, aqa\n"
        "clip, ref, *models = sys.argv[1:]\n"
        "scores = [float(aqa.load(p, device='cpu').score(clip, reference=ref)['quality']) for p in models]\n"
        f"print(json.dumps([scores, sorted(m for m in sys.modules if m.split('.')[0] in {LIGHTNING!r})]))\n"
    )
    # a run and an export (ensembles load their members as these; aqa.inference.ensemble is imported by either)
    paths = [str(tmp_path / "x.wav"), str(tmp_path / "reversed.wav"), str(run), str(tmp_path / "model")]
    done = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    scores, imported = json.loads(done.stdout.splitlines()[-1])
    assert imported == [], f"scoring imported {imported}"
    assert all(np.isfinite(scores)) and scores[0] < 0  # a reversed reference is far from the clip
    assert scores[1] == pytest.approx(scores[0], abs=1e-6)  # the export scores as its run


def test_checkpoint_keys_are_the_models_under_their_old_names(tmp_path):
    # a HAAQI-Net student: its checkpoint also holds training-only weights (distill_proj.*: the hidden-state
    # projections), as checkpoints and exports written before scoring had a model of its own do
    cfg = compose("haaqi_net_student_tiny", [f"run_dir={tmp_path / 'run'}", "distill.teacher=null"])
    torch.manual_seed(0)
    module = build_module(cfg, with_teacher=False).eval()
    state = module.state_dict()
    assert {k.split(".")[0] for k in state} == {"encoder", "heads", "distill_proj"}
    assert module.encoder is module.model.encoder and module.heads is module.model.heads
    model_keys = set(build_model(cfg).state_dict())
    assert model_keys == {k for k in state if not k.startswith("distill_proj.")}
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": state}, tmp_path / "run" / "checkpoints" / "best.ckpt")
    save_config(cfg, tmp_path / "run" / "config.yaml")
    model, _ = load_model(tmp_path / "run")
    assert set(model.state_dict()) == model_keys
    wav = torch.from_numpy(broadband(0.5, model.encoder.sample_rate, channels=1, seed=1)).float()
    audiogram = {"audiogram": torch.zeros(1, 8)}
    with torch.no_grad():
        got, want = model(wav, None, audiogram)["haaqi"], module(wav, None, audiogram)["haaqi"]
    torch.testing.assert_close(got["score"], want["score"])
    state["heads.haaqi.extra.weight"] = torch.zeros(1)  # a weight of no part of the model is refused
    torch.save({"state_dict": state}, tmp_path / "run" / "checkpoints" / "best.ckpt")
    with pytest.raises(RuntimeError, match="heads.haaqi.extra.weight"):
        load_model(tmp_path / "run")
