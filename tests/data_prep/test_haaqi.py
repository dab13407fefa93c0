"""HAAQI-Net data: audiogram sampling, processings, and the shard recipe (real HAAQI on one tiny clip)."""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import aqa.metrics
from data_prep.haaqi import BISGAARD, process, profile_levels, sample_audiogram
from data_prep.haaqi import main as haaqi_main

SR = 24000


def music(path: Path, seconds: float, seed: int = 0) -> Path:
    """Harmonic tones with a little noise, stereo 24 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f * (1 + seed / 10) * t) / (k + 1) for k, f in enumerate((220, 440, 660, 1320)))
    x = 0.2 * x / np.abs(x).max() + 0.005 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([x, 0.9 * x], axis=1).astype(np.float32), SR)
    return path


def read(out: Path) -> dict[str, dict]:
    found = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                data = tar.extractfile(m).read()
                key, field = m.name.split(".", 1)
                found.setdefault(key, {})[field] = json.loads(data) if field == "json" else data
    return found


def test_bisgaard_profiles_and_sampling() -> None:
    assert profile_levels("NH").tolist() == [0] * 8
    assert profile_levels("N3").tolist() == [35, 35, 40, 50, 55, 60, 65, 65]  # 8 kHz repeats 6 kHz
    assert profile_levels("S2")[-1] == BISGAARD["S2"][-1] == 95
    rng = random.Random(0)
    draws = [sample_audiogram(rng) for _ in range(200)]
    assert {name for name, _ in draws} >= {"NH", "N6", "S3"} and "N7" not in {name for name, _ in draws}
    assert all(len(lv) == 8 and -10 <= min(lv) and max(lv) <= 120 for _, lv in draws)
    assert sample_audiogram(random.Random(4)) == sample_audiogram(random.Random(4))
    with pytest.raises(KeyError):
        profile_levels("Z9")


def test_processings() -> None:
    t = np.arange(SR // 2) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 11500 * t)).astype(np.float32)
    y, d = process(x, SR, "noise", random.Random(1))
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y / (y @ x / (x @ x)) - x) ** 2))
    assert d["kind"] == "noise" and abs(snr - d["snr_db"]) < 1.0
    y, d = process(x, SR, "lowpass", random.Random(2))
    spec_x, spec_y = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
    k = int(11500 * x.size / SR)  # every drawn cut-off is at most 10 kHz
    assert d["cutoff_hz"] <= 10000 and spec_y[k] < 0.05 * spec_x[k]
    y, d = process(x, SR, "clean", random.Random(3))
    np.testing.assert_array_equal(y, x)
    if shutil.which("ffmpeg"):
        y, d = process(x, SR, "codec", random.Random(4))
        assert y.shape == x.shape and d["codec"] in ("opus", "mp3", "aac")


def _fake_haaqi(name, ref, sr_ref, deg, sr_deg, audiogram, level_db):  # deterministic stand-in
    return {"haaqi": float(1.0 / (1.0 + np.mean(audiogram) / 50 + np.mean(np.abs(ref - deg))))}


def test_recipe_shards_are_split_independent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aqa.metrics, "compute_arrays", _fake_haaqi)
    src = tmp_path / "src"
    for i in range(3):
        music(src / f"piece{i}.wav", 1.0, seed=i)
    (src / "silent.wav").parent.mkdir(exist_ok=True)
    sf.write(src / "silent.wav", np.zeros(SR, np.float32), SR)
    (src / "broken.wav").write_bytes(b"not audio")
    common = ["--src", str(src), "--excerpt-s", "0.5", "--processings", "clean,lowpass,noise", "--audiograms", "2",
              "--no-progress", "--units-per-shard", "1"]
    one = tmp_path / "one"
    assert haaqi_main([*common, "--out", str(one)]) == 0
    got = read(one)
    assert len(got) == 3 * 2 * 3 * 2  # pieces x excerpts x processings x audiograms
    meta = got["piece0-0001-noise-1"]["json"]
    assert meta["group"] == "piece0-0001" and len(meta["audiogram"]) == 8 and 55 <= meta["level_db"] <= 75
    assert meta["processing"]["kind"] == "noise" and 0 < meta["haaqi"] <= 1
    x, sr = sf.read(io.BytesIO(got["piece0-0001-noise-1"]["flac"]))
    assert sr == SR and x.ndim == 1 and x.size == SR // 2
    manifest = json.loads((one / "manifest.json").read_text())
    reasons = sorted(s["reason"].split(":")[0] for s in manifest["skipped"])
    assert reasons == ["cannot load", "silent"]
    two = tmp_path / "two"
    for i in range(2):
        assert haaqi_main([*common, "--out", str(two), "--shard-id", str(i), "--num-shards", "2", "--jobs", "2"]) == 0
    assert read(two) == got


def test_recipe_real_haaqi_tiny(tmp_path: Path) -> None:
    pytest.importorskip("clarity")
    music(tmp_path / "src" / "tune.wav", 0.5)
    out = tmp_path / "out"
    assert haaqi_main(["--src", str(tmp_path / "src"), "--out", str(out), "--excerpt-s", "0.5",
                       "--processings", "clean,lowpass", "--audiograms", "1", "--profiles", "NH,N4",
                       "--no-progress"]) == 0
    got = {k: v["json"] for k, v in read(out).items()}
    assert sorted(got) == ["tune-0000-clean-0", "tune-0000-lowpass-0"]
    for m in got.values():
        assert 0.0 <= m["haaqi"] <= 1.0 and m["audiogram_profile"] in ("NH", "N4")
