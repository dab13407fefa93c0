"""`aqa score`: a trained run scores the user's own files (score heads, embedding heads, conditioned heads)."""

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from synth import broadband, make_run
from torch import nn

from aqa.cli import main
from aqa.inference.engine import score_clips, score_files, window_bounds


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
    assert main(["score", str(run), str(good), str(tmp_path / "bad.wav"), "--no-progress"]) == 1
    got = records(capsys)
    assert [r["file"] for r in got] == [str(good), str(tmp_path / "bad.wav")]
    assert np.isfinite(got[0]["quality"]) and "error" in got[1] and "quality" not in got[1]
    out = tmp_path / "scores.jsonl"  # --out: the records go to FILE instead of stdout (as in aqa metric)
    assert (
        main(["score", str(run), str(good), str(tmp_path / "bad.wav"), "--out", str(out), "--no-progress"])
        == 1
    )
    captured = capsys.readouterr()
    assert not captured.out.strip() and "1 file(s) scored, 1 with errors" in captured.err
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
    assert tasks == ["quality"]
    assert tasks and all(
        itself[t] == pytest.approx(0.0, abs=1e-4) for t in tasks
    )  # the reference: distance 0
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
    files = {
        name: tone(tmp_path / f"{name}.wav", 1.0, noise=level)
        for name, level in (("clean", 0.0), ("light", 0.01), ("heavy", 0.1))
    }
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
    assert (
        main(["score", str(run), str(clip), "--audiogram", "10,10,20,30,40,50,60,60", "--no-progress"]) == 0
    )
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
    from aqa.inference.calibration import fit_cubic

    run = make_run(tmp_path, "mmmos_tiny")
    x = np.linspace(-1, 1, 20)
    cal = fit_cubic(x, 3 + 2 * x)
    (run / "calibration.json").write_text(json.dumps({"quality": cal.to_dict()}))
    clip = tone(tmp_path / "a.wav", 1.0)
    assert main(["score", str(run), str(clip), "--no-progress"]) == 0
    (rec,) = records(capsys)
    assert rec["quality_calibrated"] == pytest.approx(float(cal([rec["quality"]])[0]))


@pytest.mark.parametrize(
    "experiment", ["deepaq_lora_tiny", "haaqi_net_tiny"]
)  # the others: test_systems (bf16 train, eval, score)
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


# ------------------------------------------------------------------------------------------ batched scoring

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg not installed (`make install`)"
)


def mp3(path: Path, seconds: float, sr: int = 44100) -> Path:
    """A stereo MP3 made by ffmpeg from synthetic audio (bit-exact flags: the same bytes every run)."""
    wav = path.with_suffix(".src.wav")
    sf.write(wav, broadband(seconds, sr, channels=2, seed=3).T, sr)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(wav),
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
            "-fflags",
            "+bitexact",
            "-flags:a",
            "+bitexact",
            str(path),
        ],
        check=True,
    )
    wav.unlink()
    return path


def test_window_bounds_cover_the_clip_with_full_windows():
    assert window_bounds(1000, 100, None) == [(0, 1000)]
    assert window_bounds(1000, 100, 10.0) == [(0, 1000)]  # no longer than one window: the whole clip
    assert window_bounds(2500, 100, 10.0) == [
        (0, 1000),
        (1000, 2000),
        (1500, 2500),
    ]  # the last ends at the end
    assert window_bounds(2000, 100, 10.0, 5.0) == [(0, 1000), (500, 1500), (1000, 2000)]
    with pytest.raises(ValueError, match="window"):
        window_bounds(10, 100, 0.0)


@needs_ffmpeg
def test_a_folder_of_mixed_files_in_one_call_and_batch_size_does_not_change_scores(tmp_path, capsys):
    """44.1 kHz stereo MP3, 16 kHz mono WAV, a 0.2 s clip, a 3-minute clip (per-window records and a whole-file
    record) and a corrupt file, scored in one call; batch size 1 and 8 give the same scores. HAAQI-Net (tiny
    BEATs, an audiogram-conditioned head): the cheapest no-reference system on 3 minutes of audio."""
    run = make_run(tmp_path, "haaqi_net_tiny")
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    mp3(folder / "a_stereo.mp3", 2.0)
    sf.write(folder / "b_mono16k.wav", broadband(1.5, 16000, channels=1, seed=4).T, 16000)
    sf.write(folder / "c_short.wav", broadband(0.2, 22050, channels=1, seed=5).T, 22050)
    sf.write(folder / "sub" / "d_long.flac", broadband(180.0, 16000, channels=1, seed=6).T, 16000)
    (folder / "e_corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 20)
    got = {}
    for batch in ("1", "8"):
        code = main(
            [
                "score",
                str(run),
                str(folder),
                "--window-s",
                "10",
                "--batch-size",
                batch,
                "--no-progress",
                "--audiogram",
                "10,10,20,30,40,50,60,60",
            ]
        )
        captured = capsys.readouterr()
        assert (
            code == 1 and "Traceback" not in captured.err
        )  # the corrupt file failed, the others were scored
        got[batch] = [json.loads(line) for line in captured.out.splitlines()]
    recs = got["8"]
    names = [Path(r["file"]).name for r in recs]
    assert names == ["a_stereo.mp3", "b_mono16k.wav", "c_short.wav", "e_corrupt.wav"] + ["d_long.flac"] * 19
    by_name = {Path(r["file"]).name: r for r in recs if "start_s" not in r}
    for name in ("a_stereo.mp3", "b_mono16k.wav"):
        assert np.isfinite(by_name[name]["haaqi"]) and "note" not in by_name[name], by_name[name]
    assert "too short (0.200 s" in by_name["c_short.wav"]["note"] and np.isfinite(
        by_name["c_short.wav"]["haaqi"]
    )
    error = by_name["e_corrupt.wav"]["error"]
    assert (
        "e_corrupt.wav" in error
        and "\n" not in error
        and len(error) < 200
        and "haaqi" not in by_name["e_corrupt.wav"]
    )
    windows = [r for r in recs if "start_s" in r]
    assert [(w["start_s"], w["end_s"]) for w in windows] == [(10.0 * i, 10.0 * (i + 1)) for i in range(18)]
    whole = by_name["d_long.flac"]
    assert whole["windows"] == 18 and whole["haaqi"] == pytest.approx(np.mean([w["haaqi"] for w in windows]))
    assert len({round(w["haaqi"], 4) for w in windows}) > 1  # the windows are scored each, not copied
    assert len(got["1"]) == len(recs)
    for one, eight in zip(got["1"], recs, strict=True):
        assert (one["file"], one.get("start_s")) == (eight["file"], eight.get("start_s"))
        if "haaqi" in eight:
            assert one["haaqi"] == pytest.approx(eight["haaqi"], abs=1e-5)


def test_pairs_csv_is_one_model_load_and_each_reference_decoded_once(tmp_path, capsys, monkeypatch):
    """100 (reference, degraded) pairs in one call: the model is loaded once; 10 references shared by 10 pairs
    each are decoded once each; each pair is scored against its own reference."""
    import aqa.inference.engine as score_mod
    import aqa.inference.loading as loading_mod

    run = make_run(tmp_path, "deepaq_lora_tiny")
    data = tmp_path / "pairs"
    data.mkdir()
    rows = ["reference,degraded"]
    for r in range(10):
        sf.write(data / f"ref{r}.wav", broadband(0.6, 16000, channels=1, seed=100 + r).T, 16000)
        for d in range(10):
            noisy = broadband(0.6, 16000, channels=1, seed=100 + r).T + 0.01 * d * np.random.default_rng(
                d
            ).standard_normal((9600, 1))
            sf.write(data / f"deg{r}_{d}.wav", noisy.astype(np.float32), 16000)
            rows.append(f"ref{r}.wav,deg{r}_{d}.wav")
    (data / "pairs.csv").write_text("\n".join(rows) + "\n")
    loads, decodes = [], []
    real_load, real_decode = loading_mod.load_module, score_mod.load_audio
    monkeypatch.setattr(loading_mod, "load_module", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(
        score_mod, "load_audio", lambda p, **k: decodes.append(Path(p).name) or real_decode(p, **k)
    )
    assert main(["score", str(run), "--pairs", str(data / "pairs.csv"), "--no-progress", "--jobs", "3"]) == 0
    recs = records(capsys)
    assert len(loads) == 1 and len(recs) == 100
    assert sorted(n for n in decodes if n.startswith("ref")) == [f"ref{r}.wav" for r in range(10)]
    assert [Path(r["reference"]).name for r in recs] == [f"ref{i // 10}.wav" for i in range(100)]
    for r in range(10):  # the undistorted copy of its reference scores 0, more noise scores lower
        q = [rec["quality"] for rec in recs[10 * r : 10 * r + 10]]
        assert q[0] == pytest.approx(0.0, abs=1e-4) and q[9] < q[1] < -1e-4


def test_ref_dir_matches_by_name_and_csv_format(tmp_path, capsys):
    run = make_run(tmp_path, "deepaq_lora_tiny")
    refs, degs = tmp_path / "refs", tmp_path / "degs"
    refs.mkdir()
    degs.mkdir()
    for name in ("x", "y"):
        clean = tone(refs / f"{name}.wav", 1.0, 16000, 1)
        sf.write(degs / f"{name}.wav", sf.read(clean)[0], 16000)  # identical to its own reference
    tone(degs / "orphan.wav", 1.0, 16000, 1)
    out = tmp_path / "scores.csv"
    assert (
        main(
            [
                "score",
                str(run),
                str(degs),
                "--ref-dir",
                str(refs),
                "--format",
                "csv",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 1
    )  # the orphan has no reference
    import csv

    rows = {Path(r["file"]).name: r for r in csv.DictReader(out.open())}
    assert Path(rows["x.wav"]["reference"]).parent == refs and float(
        rows["x.wav"]["quality"]
    ) == pytest.approx(0, abs=1e-4)
    assert float(rows["y.wav"]["quality"]) == pytest.approx(0.0, abs=1e-4)
    assert "no reference" in rows["orphan.wav"]["error"] and rows["orphan.wav"]["quality"] == ""


def test_score_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    run = make_run(tmp_path, "mmmos_tiny")
    clip = tone(tmp_path / "a.wav", 1.0)
    header_only = tmp_path / "pairs.csv"
    header_only.write_text("reference,degraded\n")
    cases = [
        (["--pairs", str(header_only)], "no pairs"),
        ([str(clip), "--window-s", "-1"], "window"),
        ([str(tmp_path / "missing.wav")], "missing.wav"),
        ([str(clip), "--batch-size", "0"], "--batch-size"),
    ]
    for extra, message in cases:
        assert main(["score", str(run), *extra, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and message in err, err
    with pytest.raises(SystemExit) as stop:  # argparse: --reference and --pairs exclude each other
        main(["score", str(run), str(clip), "--reference", str(clip), "--pairs", str(header_only)])
    assert stop.value.code == 2


class EnergyEmbedding(nn.Module):
    """A stand-in embedding model whose embedding is (mean, mean square) of each clip's own samples (padding
    masked by ``lengths``), so a reference segment of other loudness lies some distance away. With ``mixed`` it
    also has a score task ``level`` (the mean square), as a model with score and embedding tasks."""

    def __init__(self, mixed: bool = False) -> None:
        super().__init__()
        self.encoder = SimpleNamespace(sample_rate=16000)
        heads = {"quality": nn.Identity()}
        heads["quality"].is_embedding, heads["quality"].condition_dims = True, {}
        if mixed:
            heads["level"] = nn.Identity()
            heads["level"].is_embedding, heads["level"].condition_dims = False, {}
        self.heads = nn.ModuleDict(heads)

    def forward(self, wav, lengths, conditions=None):
        mask = (torch.arange(wav.shape[-1])[None] < lengths[:, None]).float()
        mean = (wav * mask).sum(1) / lengths
        power = (wav**2 * mask).sum(1) / lengths
        out = {"quality": torch.stack([mean, power], dim=1)}
        if "level" in self.heads:
            out["level"] = power
        return out


def ramp(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise whose loudness grows over time (16 kHz mono): its segments differ in energy."""
    n = round(seconds * 16000)
    return (np.random.default_rng(seed).standard_normal(n) * np.linspace(0.05, 1.0, n)).astype(np.float32)


def test_windows_are_compared_with_the_reference_at_the_same_times(tmp_path):
    """A 2.5 s excerpt of a 3 s reference, windowed 1 s: windows (0-1, 1-2, 1.5-2.5 s) meet the reference's own
    samples (score 0), not the reference's 3rd window (2-3 s). A 0.5 s file is not windowed and is compared with
    the whole reference: --window-s does not change its score."""
    ref = ramp(3.0)
    sf.write(tmp_path / "ref.wav", ref, 16000, subtype="FLOAT")
    sf.write(tmp_path / "part.wav", ref[:40000], 16000, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", ref[:8000], 16000, subtype="FLOAT")
    files = [tmp_path / "part.wav", tmp_path / "short.wav"]
    opts = dict(device="cpu", precision="fp32", jobs=0)
    windowed = list(score_files(EnergyEmbedding(), files, tmp_path / "ref.wav", window_s=1.0, **opts))
    assert [(r.get("start_s"), r.get("end_s")) for r in windowed] == [
        (0.0, 1.0),
        (1.0, 2.0),
        (1.5, 2.5),
        (None, None),
        (None, None),
    ]
    assert all(r["quality"] == pytest.approx(0.0, abs=1e-6) for r in windowed[:4])
    (_, plain_short) = score_files(EnergyEmbedding(), files, tmp_path / "ref.wav", **opts)
    assert plain_short["quality"] < -1e-3  # the 0.5 s start is quieter than the whole reference
    assert windowed[4]["quality"] == pytest.approx(plain_short["quality"], abs=1e-6)


def test_mixed_model_without_a_reference_says_embedding_tasks_are_left_out(tmp_path):
    sf.write(tmp_path / "a.wav", ramp(0.5), 16000, subtype="FLOAT")
    (rec,) = score_files(EnergyEmbedding(mixed=True), [tmp_path / "a.wav"], device="cpu", jobs=0)
    assert "quality" not in rec and rec["level"] > 0
    assert rec["note"] == "no reference: embedding tasks left out"


def test_usage_errors_are_raised_by_the_call_not_the_first_record(tmp_path):
    sf.write(tmp_path / "a.wav", ramp(0.5), 16000, subtype="FLOAT")
    files = [tmp_path / "a.wav"]
    with pytest.raises(ValueError, match="one sample"):  # 1e-5 s: not one sample at 16 kHz
        score_files(EnergyEmbedding(), files, files[0], window_s=1e-5)
    with pytest.raises(ValueError, match="pass reference="):  # the API's argument (aqa score prints --reference)
        score_files(EnergyEmbedding(), files)
    with pytest.raises(ValueError, match="reference .*missing.wav"):  # one line naming the reference
        score_files(EnergyEmbedding(), files, tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="one sample"):  # a short clip does not hide a hop under one sample
        window_bounds(10, 16000, 1.0, 1e-5)


def test_score_cli_usage_error_leaves_out_untouched_and_no_reference_decoded_for_score_models(
    tmp_path, capsys
):
    run = make_run(tmp_path, "mmmos_tiny")
    clip = tone(tmp_path / "a.wav", 1.0)
    out = tmp_path / "scores.csv"
    out.write_text("earlier results\n")
    args = ["score", str(run), str(clip), "--out", str(out), "--format", "csv", "--no-progress"]
    assert main([*args, "--window-s", "0.00001"]) == 2  # shorter than one sample
    err = capsys.readouterr().err
    assert "Traceback" not in err and "one sample" in err and out.read_text() == "earlier results\n"
    # a score-only model never uses --reference: a missing one is not decoded and changes nothing
    assert main([*args, "--reference", str(tmp_path / "missing.wav")]) == 0
    assert "1 file(s) scored, 0 with errors" in capsys.readouterr().err
