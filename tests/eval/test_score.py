"""`aqa score`: a trained run scores the user's own files (score heads, embedding heads, conditioned heads)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from synth import make_run
from torch import nn

from aqa.cli import main
from aqa.eval.score import score_clips, score_files


def tone(path: Path, seconds: float, sr: int = 44100, channels: int = 2, noise: float = 0.0) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + noise * rng.standard_normal(t.size)
    sf.write(path, np.stack([x] * channels, axis=1).astype(np.float32), sr)
    return path


def records(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_score_head_run_scores_files_and_reports_bad_ones(tmp_path, capsys):
    run = make_run(tmp_path, "mmmos_tiny")
    good = tone(tmp_path / "a.wav", 1.0)
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(run), str(good), str(tmp_path / "bad.wav"), "--out", str(out), "--no-progress"]) == 1
    got = records(capsys)
    assert [r["file"] for r in got] == [str(good), str(tmp_path / "bad.wav")]
    assert np.isfinite(got[0]["quality"]) and "error" in got[1] and "quality" not in got[1]
    assert [json.loads(line) for line in out.read_text().splitlines()] == got


def test_scores_match_the_model_on_the_same_audio(tmp_path):
    run = make_run(tmp_path, "mmmos_tiny")
    from aqa.tasks.multitask import load_run

    module, _ = load_run(run)
    path = tone(tmp_path / "mono16k.wav", 1.0, sr=module.encoder.sample_rate, channels=1)
    (rec,) = score_files(module, [path])
    wav = torch.from_numpy(sf.read(path, dtype="float32")[0])
    with torch.no_grad():
        direct = module(wav[None], torch.tensor([wav.numel()]))["quality"]
    assert rec["quality"] == pytest.approx(float(direct[0]), abs=1e-5)


def test_embedding_run_needs_a_reference_and_scores_it_zero(tmp_path, capsys):
    run = make_run(tmp_path, "deepaq_lora_tiny")
    clean = tone(tmp_path / "clean.wav", 1.0)
    noisy = tone(tmp_path / "noisy.wav", 1.0, noise=0.05)
    assert main(["score", str(run), str(clean), "--no-progress"]) == 2
    assert "--reference" in capsys.readouterr().err
    assert main(["score", str(run), str(clean), str(noisy), "--reference", str(clean), "--no-progress"]) == 0
    itself, other = records(capsys)
    tasks = [k for k in itself if k != "file"]
    assert tasks and all(itself[t] == pytest.approx(0.0, abs=1e-4) for t in tasks)  # the reference: distance 0
    assert all(other[t] < -1e-3 for t in tasks)  # anything else lies some distance away: a negative score


class WaveformEmbedding(nn.Module):
    """A stand-in for a trained embedding run whose embedding is a known function of its input: the waveform
    itself (as ``aqa score`` hands it over: mono, at ``encoder.sample_rate``). Its distance to the reference is
    then the norm of their difference, so more noise must mean a lower score."""

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.encoder = SimpleNamespace(sample_rate=sample_rate)
        head = nn.Identity()
        head.is_embedding, head.condition_dims = True, {}
        self.heads = nn.ModuleDict({"quality": head})

    def forward(self, wav, lengths, conditions=None):
        return {"quality": wav[:, : self.encoder.sample_rate]}


def test_embedding_scores_rank_files_by_distance_to_the_given_reference(tmp_path):
    """A clean file, a lightly and a heavily degraded version (the same noise at 10x the level), read as 44.1 kHz
    stereo: scored against the clean one they rank clean > light > heavy, with scores in proportion to the
    noise; scored against the heavy one the order turns round, so the reference file is the anchor."""
    files = {name: tone(tmp_path / f"{name}.wav", 1.0, noise=level) for name, level in
             (("clean", 0.0), ("light", 0.01), ("heavy", 0.1))}
    module = WaveformEmbedding()

    def scores(reference: str) -> dict[str, float]:
        got = score_files(module, files.values(), files[reference], device="cpu", precision="fp32")
        return {Path(r["file"]).stem: r["quality"] for r in got}

    vs_clean = scores("clean")
    assert vs_clean["clean"] == pytest.approx(0.0, abs=1e-6)
    assert vs_clean["clean"] > vs_clean["light"] > vs_clean["heavy"]
    assert vs_clean["heavy"] / vs_clean["light"] == pytest.approx(10.0, rel=0.02)  # minus the noise's norm
    vs_heavy = scores("heavy")
    assert vs_heavy["heavy"] == pytest.approx(0.0, abs=1e-6)
    assert vs_heavy["heavy"] > vs_heavy["light"] > vs_heavy["clean"]


def test_conditioned_run_needs_the_audiogram(tmp_path, capsys):
    run = make_run(tmp_path, "haaqi_net_tiny")
    clip = tone(tmp_path / "m.wav", 1.0)
    assert main(["score", str(run), str(clip), "--no-progress"]) == 2
    assert "--audiogram" in capsys.readouterr().err
    assert main(["score", str(run), str(clip), "--audiogram", "10,10,20,30,40,50,60,60", "--no-progress"]) == 0
    normal = records(capsys)[0]["haaqi"]
    assert main(["score", str(run), str(clip), "--audiogram", "0,0,0,0,0,0,0,0", "--no-progress"]) == 0
    assert 0.0 <= normal <= 1.0 and records(capsys)[0]["haaqi"] != normal
    assert main(["score", str(run), str(clip), "--audiogram", "10,20", "--no-progress"]) == 2


def test_score_clips_handles_any_length(tmp_path):
    from aqa.tasks.multitask import load_run

    module, _ = load_run(make_run(tmp_path, "mmmos_tiny"))
    clips = [torch.randn(n) * 0.1 for n in (8000, 24000, 70000)]
    got = score_clips(module, clips)["quality"]
    assert got.shape == (3,) and torch.isfinite(got).all()


def test_score_adds_calibrated_values_after_aqa_calibrate(tmp_path, capsys):
    from aqa.eval.calibration import fit_cubic

    run = make_run(tmp_path, "mmmos_tiny")
    x = np.linspace(-1, 1, 20)
    cal = fit_cubic(x, 3 + 2 * x)
    (run / "calibration.json").write_text(json.dumps({"quality": cal.to_dict()}))
    clip = tone(tmp_path / "a.wav", 1.0)
    assert main(["score", str(run), str(clip), "--no-progress"]) == 0
    (rec,) = records(capsys)
    assert rec["quality_calibrated"] == pytest.approx(float(cal([rec["quality"]])[0]))


@pytest.mark.parametrize("experiment", ["deepaq_lora_tiny", "haaqi_net_tiny"])  # the others: test_systems (bf16 train, eval, score)
def test_scores_in_bf16_are_float32_and_close_to_fp32(experiment, tmp_path):
    from aqa.tasks.multitask import load_run

    module, _ = load_run(make_run(tmp_path, experiment))
    paths = [tone(tmp_path / f"x{i}.wav", 1.0, 16000, 1, noise=0.02 * i) for i in range(3)]
    ref = tone(tmp_path / "ref.wav", 1.0, 16000, 1)
    cond = {"audiogram": [10, 10, 20, 30, 40, 50, 60, 60]} if experiment.startswith("haaqi") else None
    fp32 = list(score_files(module, paths, ref, cond, device="cpu", precision="fp32"))
    bf16 = list(score_files(module, paths, ref, cond, device="cpu", precision="bf16"))
    for a, b in zip(fp32, bf16, strict=True):
        assert "error" not in b, b
        tasks = [k for k in a if k != "file"]
        assert tasks and all(isinstance(b[t], float) and np.isfinite(b[t]) for t in tasks)
        for t in tasks:  # bf16 keeps 8 bits of mantissa: close, not equal
            assert b[t] == pytest.approx(a[t], rel=0.1, abs=0.05), (t, a[t], b[t])
