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
from data_prep.haaqi import BISGAARD, parse_spl, process, profile_levels, sample_audiogram
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
    loss = np.mean(audiogram) / 50 + np.mean(np.abs(ref - deg)) + abs(level_db - 65) / 100  # best at 65 dB SPL
    return {"haaqi": float(1.0 / (1.0 + loss))}


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
    assert meta["group"] == "piece0-0001" and len(meta["audiogram"]) == 8 and meta["level_db"] == 65.0  # default
    assert meta["processing"]["kind"] == "noise" and 0 < meta["haaqi"] <= 1
    x, sr = sf.read(io.BytesIO(got["piece0-0001-noise-1"]["flac"]))
    assert sr == SR and x.ndim == 1 and x.size == SR // 2
    assert {v["json"]["level_db"] for v in got.values()} == {65.0}
    manifest = json.loads((one / "manifest.json").read_text())
    assert manifest["config"]["levels_db"] == [65.0] and manifest["config"]["level_range_db"] is None
    reasons = sorted(s["reason"].split(":")[0] for s in manifest["skipped"])
    assert reasons == ["cannot load", "silent"]
    two = tmp_path / "two"
    for i in range(2):
        assert haaqi_main([*common, "--out", str(two), "--shard-id", str(i), "--num-shards", "2", "--jobs", "2"]) == 0
    assert read(two) == got


def test_parse_spl() -> None:
    assert parse_spl("65") == ((65.0,), None)
    assert parse_spl("55, 65,75") == ((55.0, 65.0, 75.0), None)
    assert parse_spl("55:75") == ((), (55.0, 75.0))
    assert parse_spl("62.5") == ((62.5,), None)
    for bad in ("", "loud", "0", "-5", "140", "65,65", "75:55", "65:65", "55:65:75", "nan"):
        with pytest.raises(ValueError, match="--spl"):
            parse_spl(bad)


def test_spl_levels_list_range_and_pairing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--spl: a list labels each (version, listener) at every level, the same listeners as a single level;
    a range draws one level per listener; a bad value is refused before anything runs."""
    calls: list[float] = []

    def fake(*args, **kwargs):
        calls.append(kwargs["level_db"])
        return _fake_haaqi(*args, **kwargs)

    monkeypatch.setattr(aqa.metrics, "compute_arrays", fake)
    music(tmp_path / "src" / "tune.wav", 0.5)
    common = ["--src", str(tmp_path / "src"), "--excerpt-s", "0.5", "--processings", "clean,noise",
              "--audiograms", "2", "--no-progress"]
    assert haaqi_main([*common, "--out", str(tmp_path / "multi"), "--spl", "55,65,75"]) == 0
    multi = {k: v["json"] for k, v in read(tmp_path / "multi").items()}
    assert len(multi) == 2 * 2 * 3 and len(calls) == 12  # versions x listeners x levels, one HAAQI each
    assert multi["tune-0000-noise-1-spl55"]["level_db"] == 55.0
    assert multi["tune-0000-noise-1-spl75"]["level_db"] == 75.0
    assert len({m["group"] for m in multi.values()}) == 1  # all levels of an excerpt stay in its group
    assert haaqi_main([*common, "--out", str(tmp_path / "one"), "--spl", "75"]) == 0
    one = {k: v["json"] for k, v in read(tmp_path / "one").items()}
    assert sorted(one) == sorted(k.removesuffix("-spl75") for k in multi if k.endswith("-spl75"))
    for key, meta in one.items():  # same listeners and label whether 75 dB is built alone or in a list
        twin = multi[f"{key}-spl75"]
        assert meta["audiogram"] == twin["audiogram"] and meta["haaqi"] == twin["haaqi"] and meta["level_db"] == 75
    assert multi["tune-0000-noise-0-spl65"]["haaqi"] > multi["tune-0000-noise-0-spl55"]["haaqi"]  # the stand-in
    assert haaqi_main([*common, "--out", str(tmp_path / "range"), "--spl", "55:75"]) == 0
    drawn = {k: v["json"] for k, v in read(tmp_path / "range").items()}
    assert sorted(drawn) == sorted(one)  # one sample per listener, keys without a level
    levels = [m["level_db"] for m in drawn.values()]
    assert all(55 <= v <= 75 for v in levels) and len(set(levels)) == len(levels)
    assert [drawn[k]["audiogram"] for k in sorted(drawn)] == [one[k]["audiogram"] for k in sorted(one)]
    manifest = json.loads((tmp_path / "range" / "manifest.json").read_text())
    assert manifest["config"]["level_range_db"] == [55.0, 75.0] and manifest["config"]["levels_db"] == []
    assert haaqi_main([*common, "--out", str(tmp_path / "bad"), "--spl", "75:55"]) == 2
    assert not (tmp_path / "bad").exists()


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
        assert 0.0 <= m["haaqi"] <= 1.0 and m["audiogram_profile"] in ("NH", "N4") and m["level_db"] == 65.0
