"""JND recipe (SNR grid, pairs, noises), shared shard machinery, and streaming: pipe: URLs, memory."""

from __future__ import annotations

import gc
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aqa.audio import encode_flac
from aqa.data.dataset import GroupedBatchDataset
from data_prep.jnd import build_jnd_shards, jnd_pairs, make_noise, mix_at_snr, snr_grid, snr_key
from data_prep.jnd import main as jnd_main
from data_prep.shards import Sample, plan_shards, run_shards

SR = 8000
SNRS = (0.0, 2.0, 5.0, 10.0)


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Amplitude-modulated harmonic tone, (T,) float32 at about -20 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 200)
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * (1.2 + np.sin(2 * np.pi * 4 * t))
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


def read_tar(path: Path) -> list[tuple[str, dict, np.ndarray]]:
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for m in tar:
            key, ext = m.name.split(".", 1)
            members.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return [
        (k, json.loads(v["json"]), sf.read(io.BytesIO(v["flac"]), dtype="float32")[0])
        for k, v in members.items()
    ]


def test_grid_keys_and_pairs():
    grid = snr_grid()
    assert grid[0] == -5.0 and grid[-1] == 40.0 and len(grid) == 46
    assert snr_grid(0, 10, 2.5) == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert snr_key(-5) == "snrm0050" and snr_key(12.5) == "snrp0125" and snr_key(0) == "snrp0000"
    pairs = jnd_pairs(SNRS, jnd_db=3.0)
    assert len(pairs) == 6
    assert {(i, j): same for i, j, same, _ in pairs} == {
        (0, 1): 1, (0, 2): 0, (0, 3): 0, (1, 2): 0, (1, 3): 0, (2, 3): 0,
    }  # fmt: skip
    assert [(i, j) for i, j, _, _ in jnd_pairs(SNRS, 3.0, max_gap_db=4.0)] == [(0, 1), (1, 2)]
    assert jnd_pairs([0.0, 3.0], 3.0)[0][2] == 0  # the threshold itself is "different"


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_noise_and_mixing_snr(kind):
    speech = speech_like(1.0, 0).astype(np.float64)
    noise = make_noise(kind, speech.size, np.random.default_rng(1), speech)
    assert noise.shape == speech.shape and np.sqrt(np.mean(noise**2)) == pytest.approx(1.0)
    for snr in (-5.0, 10.0):
        mix = mix_at_snr(speech, noise, snr)
        assert 10 * np.log10(np.mean(speech**2) / np.mean((mix - speech) ** 2)) == pytest.approx(snr)
    if kind == "pink":  # more power in the low half of the band
        spec = np.abs(np.fft.rfft(noise)) ** 2
        assert spec[: spec.size // 8].mean() > 4 * spec[spec.size // 2 :].mean()


@pytest.fixture(scope="module")
def jnd_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("jnd")
    src = root / "speech"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"utt{i}.wav", speech_like(0.6, i), SR)
    sf.write(src / "tiny.wav", speech_like(0.1, 9), SR)
    (src / "broken.wav").write_bytes(b"RIFF" + b"\x01" * 40)
    manifest = build_jnd_shards(
        sorted(src.iterdir()), root / "out", snrs=SNRS, jnd_db=3.0, max_pair_gap_db=None, sample_rate=SR,
        min_s=0.3, noise_types=["white", "pink"], noises_per_utterance=2, utterances_per_shard=2,
        val_fraction=0.0, progress=False,
    )  # fmt: skip
    return root, manifest


def test_jnd_shards_labels_pairs_and_snr(jnd_out):
    root, manifest = jnd_out
    rows = [r for p in sorted((root / "out").glob("*.tar")) for r in read_tar(p)]
    assert (
        manifest["totals"]["groups"] == 6
        and len(rows) == 6 * (len(SNRS) + 1) == manifest["totals"]["samples"]
    )
    reasons = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert reasons["broken.wav"].startswith("cannot load") and reasons["tiny.wav"].startswith("too short")
    assert manifest["label_stats"]["snr_db"] == {"count": 24, "min": 0.0, "max": 10.0, "mean": 4.25}
    groups: dict[str, list] = {}
    for key, meta, audio in rows:
        groups.setdefault(meta["group"], []).append((key, meta, audio))
    assert len(groups) == 6 and {len({m["noise"] for _, m, _ in g}) for g in groups.values()} == {1}
    for group, members in groups.items():
        (ref_key, ref, clean), *mixes = members
        assert ref["is_reference"] and ref["snr_db"] is None and ref_key == f"{group}-clean"
        assert [m["snr_db"] for _, m, _ in mixes] == list(SNRS)
        assert [k for k, _, _ in mixes] == [f"{group}-{snr_key(s)}" for s in SNRS]
        assert ref["pairs"] == [[mixes[i][0], mixes[j][0], same, d] for i, j, same, d in jnd_pairs(SNRS, 3.0)]
        for _, meta, mix in mixes:  # the stored mixture holds the clean utterance at the labelled SNR
            assert 10 * np.log10(np.mean(mix**2)) == pytest.approx(-26.0, abs=0.1)
            gain = float(mix @ clean / (clean @ clean))
            resid = mix - gain * clean
            snr = 10 * np.log10(np.mean((gain * clean) ** 2) / np.mean(resid**2))
            assert snr == pytest.approx(meta["snr_db"], abs=0.5)


def test_jnd_noise_folder_cli_and_resume(tmp_path, jnd_out):
    root, _ = jnd_out
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "hum.wav", 0.1 * np.sin(2 * np.pi * 50 * np.arange(SR // 4) / SR), SR)
    args = ["--src", str(root / "speech"), "--out", str(tmp_path / "out"), "--noise-dir", str(noise),
            "--snr-min", "0", "--snr-max", "6", "--snr-step", "3", "--sample-rate", str(SR), "--min-s", "0.3",
            "--no-progress"]  # fmt: skip
    assert jnd_main(args) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["snrs_db"] == [0.0, 3.0, 6.0] and manifest["totals"]["groups"] == 3
    rows = [r for p in sorted((tmp_path / "out").glob("*.tar")) for r in read_tar(p)]
    assert {m["noise_type"] for _, m, _ in rows} == {"file"} and {m["noise"] for _, m, _ in rows} == {"hum"}
    assert jnd_main(args) == 0  # rerun: everything reused
    job = json.loads((tmp_path / "out" / "manifest-0000-of-0001.json").read_text())["job"]
    assert job["shards_built"] == 0 and job["shards_resumed"] == manifest["totals"]["shards"]


def _tone_noise(path: Path, freq: float, sr: int, seconds: float, channels: int, seed: int) -> None:
    """A recording-like noise whose spectrum peaks at ``freq``: tone plus a little white noise."""
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, sr)


def test_jnd_mixes_real_noise_recordings(jnd_out, tmp_path):
    """--noise-dir: every mixture holds one of the given recordings (resampled, mono, looped), named after its
    file; same-stem files in subfolders stay apart; a .txt list works as a folder does; no generated noise."""
    root, _ = jnd_out
    noise = tmp_path / "noise"
    tones = {"bus/bgd.wav": (300.0, 16000, 2.0, 1), "cafe/bgd.wav": (700.0, SR, 0.2, 2),  # short: looped
             "street.flac": (1100.0, 22050, 1.0, 1)}
    for i, (name, (freq, sr, seconds, channels)) in enumerate(tones.items()):
        _tone_noise(noise / name, freq, sr, seconds, channels, seed=i)
    (noise / "readme.txt").write_text("not audio")
    common = ["--src", str(root / "speech"), "--snr-min", "0", "--snr-max", "10", "--snr-step", "10",
              "--sample-rate", str(SR), "--min-s", "0.3", "--noises-per-utterance", "3", "--val-fraction", "0",
              "--no-progress"]  # fmt: skip
    assert jnd_main([*common, "--out", str(tmp_path / "out"), "--noise-dir", str(noise)]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["totals"]["groups"] == 3 * 3 and manifest["config"]["noise_dir"] == str(noise)
    rows = [r for p in sorted((tmp_path / "out").glob("*.tar")) for r in read_tar(p)]
    assert len({k for k, _, _ in rows}) == len(rows) == 9 * 3  # groups x (clean + 2 SNRs), keys unique
    assert {m["noise_type"] for _, m, _ in rows} == {"file"}
    assert {m["noise"] for _, m, _ in rows} == {"bgd", "bgd_2", "street"}
    freq_of = {str((noise / name).resolve()): f for name, (f, *_) in tones.items()}
    assert {m["noise_source"] for _, m, _ in rows} == set(freq_of)
    groups: dict[str, list] = {}
    for _, meta, audio in rows:
        groups.setdefault(meta["group"], []).append((meta, audio))
    for members in groups.values():
        (_, clean), *mixes = members
        for meta, mix in mixes:  # the residual after removing the speech is the named recording
            resid = mix - float(mix @ clean / (clean @ clean)) * clean
            spec = np.abs(np.fft.rfft(resid))
            peak_hz = np.argmax(spec) * SR / resid.size
            assert peak_hz == pytest.approx(freq_of[meta["noise_source"]], abs=15), meta["noise_source"]
    listing = tmp_path / "chime_ch1.txt"  # a list picks files (e.g. one CHiME-3 channel) out of a folder
    listing.write_text(f"# one channel only\n{noise / 'street.flac'}\n")
    assert jnd_main([*common, "--out", str(tmp_path / "listed"), "--noise-dir", str(listing)]) == 0
    listed = [r for p in sorted((tmp_path / "listed").glob("*.tar")) for r in read_tar(p)]
    assert {m["noise"] for _, m, _ in listed} == {"street"} and len(listed) == 3 * 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert jnd_main([*common, "--out", str(tmp_path / "none"), "--noise-dir", str(empty)]) == 2
    assert jnd_main([*common, "--out", str(tmp_path / "both"), "--noise-dir", str(noise), "--noise-types", "pink"]) == 2
    assert jnd_main([*common, "--out", str(tmp_path / "gen"), "--noise-types", "pink, white"]) == 0
    generated = [r for p in sorted((tmp_path / "gen").glob("*.tar")) for r in read_tar(p)]
    assert {m["noise_type"] for _, m, _ in generated} == {"pink", "white"}
    assert {m["noise_source"] for _, m, _ in generated} == {None}


def test_jnd_batches_through_pipe_urls(jnd_out):
    root, manifest = jnd_out
    urls = [f"pipe:cat {p}" for p in sorted((root / "out").glob("*.tar"))]
    ds = GroupedBatchDataset(
        urls, sample_rate=16000, label_keys=["snr_db"], groups_per_batch=2, crop_s=0.25, train=True, seed=0
    )
    batches = list(ds)
    assert sum(len(b["group"].unique()) for b in batches) == manifest["totals"]["groups"]
    b = batches[0]
    assert b["wav"].shape == (2 * (len(SNRS) + 1), 4000) and bool((b["lengths"] == 4000).all())
    assert b["labels"]["snr_db"].isnan().sum() == 2  # the clean references
    assert "pairs" in b["meta"][0]


def test_plan_is_deterministic_and_disjoint():
    units = [f"u{i:02d}" for i in range(11)]
    plans = [plan_shards(units, key=str, split_of=lambda u: "train", shard_id=i, num_shards=3, units_per_shard=2)
             for i in range(3)]  # fmt: skip
    got = [u for job in plans for p in job for u in p.units]
    assert sorted(got) == units and len(got) == len(set(got))
    assert [p.name for p in plans[1]] == ["train-0001-00000", "train-0001-00001"]
    with pytest.raises(ValueError, match="unique"):
        plan_shards(["a", "a"], key=str, split_of=lambda u: "train")
    with pytest.raises(ValueError):
        plan_shards(units, key=str, split_of=lambda u: "train", shard_id=3, num_shards=3)


def _tiny_group(unit: str):
    x = np.full((1, 1600), 0.1, np.float32)
    yield [
        Sample(f"{unit}-{v}", {"flac": encode_flac(x, SR)}, {"group": unit, "v": v}, 0.2) for v in range(2)
    ]


def test_streaming_memory_does_not_grow_with_shards(tmp_path):
    units = [f"g{i:04d}" for i in range(300)]
    plans = plan_shards(units, key=str, split_of=lambda u: "train")
    run_shards(plans, _tiny_group, tmp_path, config={}, recipe="tiny", progress=False)
    urls = [str(p) for p in sorted(tmp_path.glob("*.tar"))]
    assert len(urls) == 300
    ds = GroupedBatchDataset(urls, sample_rate=SR, label_keys=["v"], groups_per_batch=1, crop_s=None, seed=0)
    counts = []
    for i, batch in enumerate(ds):
        assert batch["wav"].shape == (2, 1600)
        if i in (50, 290):
            gc.collect()
            counts.append(len(gc.get_objects()))
    assert counts[1] - counts[0] < 2000, counts  # no per-shard accumulation (300 shards, 240 between checks)
