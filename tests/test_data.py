"""Data pipeline: audio helpers, real codecs (ffmpeg), codec shards, grouped dataset, DataModule, CLI."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import correlate, lfilter

from aqa.data.audio import check_audio, load_audio, resample, run_ffmpeg, to_mono
from aqa.data.codec_shards import assign_split, build_codec_shards, piece_id_for
from aqa.data.codecs import codec_sample_rate, encode_decode, estimate_lag
from aqa.data.datamodule import AQADataModule, expand_shard_urls
from aqa.data.dataset import GroupedBatchDataset
from aqa.data.shards import list_sources
from data_prep.codec import main as codec_main

REPO = Path(__file__).resolve().parent.parent
needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg not installed (`make install`)"
)

PIECES = {"p0": 2.0, "p1": 2.5, "p2": 3.0}  # seconds; excerpt_s=1 -> 2 + 2 + 3 groups
CODECS = ("opus", "mp3")
BITRATES = (64, 16)  # deliberately unsorted: rank follows the sorted ladder
VERSIONS = 1 + len(CODECS) * len(BITRATES)
SRC_SR, STORE_SR = 16000, 8000


def broadband(seconds: float, sr: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Pink-ish noise plus a few partials, (C, T) float32 at about -15 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    noise = lfilter([1.0], [1.0, -0.7], rng.standard_normal((channels, t.size)), axis=-1)
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (220.0, 330.0, 1250.0))
    x = noise / np.abs(noise).max() + 0.3 * tones
    return (0.25 * x / np.abs(x).max()).astype(np.float32)


def xcorr_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> int:
    """Lag (samples) by which b trails a, from a direct full cross-correlation."""
    r = correlate(b.astype(np.float64), a.astype(np.float64), mode="full")
    lags = np.arange(-(a.size - 1), b.size)
    keep = np.abs(lags) <= max_lag
    return int(lags[keep][np.argmax(r[keep])])


def read_shards(paths: list[Path]) -> list[tuple[str, str, np.ndarray, dict]]:
    """(shard name, key, decoded flac (C, T), json) in file order."""
    out = []
    for path in paths:
        members: dict[str, dict[str, bytes]] = {}
        order: list[str] = []
        with tarfile.open(path) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                if key not in members:
                    members[key] = {}
                    order.append(key)
                members[key][ext] = tar.extractfile(m).read()
        for key in order:
            audio, _ = sf.read(io.BytesIO(members[key]["flac"]), dtype="float32", always_2d=True)
            out.append((path.name, key, audio.T, json.loads(members[key]["json"])))
    return out


# ---------------------------------------------------------------------------------------------- audio


def test_resample_length_and_round_trip():
    t = np.arange(8000) / 16000
    x = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    assert resample(x, 16000, 16000) is x
    up = resample(x, 16000, 44100)
    assert up.shape == (2, int(np.ceil(x.shape[1] * 44100 / 16000))) and up.dtype == np.float32
    back = resample(up, 44100, 16000)[:, : x.shape[1]]
    core = slice(400, -400)  # filter edges aside
    assert np.max(np.abs(back[:, core] - x[:, core])) < 5e-3  # passband ripple
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def test_to_mono_and_checks():
    x = np.stack([np.ones(5), 3 * np.ones(5)]).astype(np.float32)
    assert np.allclose(to_mono(x), 2.0) and to_mono(x).shape == (5,)
    assert to_mono(x, keepdims=True).shape == (1, 5)
    row = x[0]
    assert to_mono(row) is row
    with pytest.raises(ValueError, match="empty"):
        check_audio(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="NaN"):
        check_audio(np.array([0.0, np.nan]))


def test_load_audio_paths_bytes_and_errors(tmp_path):
    x = broadband(0.25, 16000, channels=2)
    sf.write(tmp_path / "a.flac", x.T, 16000)
    y, sr = load_audio(tmp_path / "a.flac")
    assert sr == 16000 and y.shape == x.shape and y.dtype == np.float32
    assert np.max(np.abs(y - x)) < 1e-3
    y2, _ = load_audio((tmp_path / "a.flac").read_bytes())
    assert np.array_equal(y, y2)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    with pytest.raises(ValueError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")


@needs_ffmpeg
def test_load_audio_falls_back_to_ffmpeg(tmp_path):
    sf.write(tmp_path / "a.wav", broadband(0.5, 16000, channels=1).T, 16000)
    run_ffmpeg(["-i", str(tmp_path / "a.wav"), "-c:a", "aac", "-b:a", "64k", str(tmp_path / "a.m4a")])
    y, sr = load_audio(tmp_path / "a.m4a")  # libsndfile cannot read MP4
    assert sr == 16000 and y.shape[0] == 1 and y.shape[1] >= 8000
    (tmp_path / "junk.mp3").write_bytes(b"\x00not audio" * 10)
    with pytest.raises(RuntimeError, match="cannot decode"):
        load_audio(tmp_path / "junk.mp3")


# ---------------------------------------------------------------------------------------------- codecs


def test_codec_sample_rates():
    assert codec_sample_rate("opus", 44100, 16) == 48000
    assert codec_sample_rate("mp3", 44100, 16) == 22050  # LAME would clamp 16 kbps to 32 kbps at 44.1 kHz
    assert codec_sample_rate("mp3", 44100, 128) == 44100
    assert codec_sample_rate("mp3", 48000, 16) == 24000
    assert codec_sample_rate("aac", 44100, 16) == 44100
    assert codec_sample_rate("aac", 20000, 64) == 22050
    with pytest.raises(ValueError, match="unknown codec"):
        codec_sample_rate("vorbis", 44100, 64)


def test_estimate_lag_on_shifted_signal():
    x = broadband(0.3, 16000, channels=1)
    y = np.zeros_like(x)
    y[:, 37:] = x[:, :-37]
    assert estimate_lag(x, y, 100) == 37
    assert estimate_lag(y, x, 100) == -37
    assert estimate_lag(np.zeros_like(x), y, 100) == 0


@needs_ffmpeg
@pytest.mark.parametrize("codec", ["opus", "mp3", "aac"])
def test_encode_decode_aligned_and_ordered_by_bitrate(codec):
    sr = 44100  # exercises the MP3 low-rate path (22.05 kHz) and Opus' 48 kHz
    x = broadband(1.0, sr, channels=2, seed=1)
    errors = {}
    for kbps in (16, 128):
        y = encode_decode(x, sr, codec, kbps)
        assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
        assert abs(xcorr_lag(x[0], y[0], max_lag=3000)) <= 1
        errors[kbps] = float(np.mean((y - x) ** 2))
    assert errors[128] < errors[16]
    assert encode_decode(x[0], sr, codec, 128).shape == x[0].shape  # 1-D in, 1-D out


@needs_ffmpeg
def test_codec_errors(monkeypatch, tmp_path):
    x = broadband(0.2, 16000, channels=1)
    with pytest.raises(ValueError, match="unknown codec"):
        encode_decode(x, 16000, "wma", 64)
    with pytest.raises(ValueError, match="channels"):
        encode_decode(np.zeros((3, 100), np.float32) + 0.1, 16000, "mp3", 64)
    with pytest.raises(RuntimeError, match="ffmpeg exited"):
        run_ffmpeg(["-i", str(tmp_path / "nope.wav"), str(tmp_path / "out.wav")])
    monkeypatch.setenv("AQA_FFMPEG", str(tmp_path / "no-ffmpeg-here"))
    with pytest.raises(FileNotFoundError, match="make install"):
        encode_decode(x, 16000, "mp3", 64)


# ---------------------------------------------------------------------------------------------- shards


def write_pieces(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, seconds) in enumerate(PIECES.items()):
        sf.write(folder / f"{name}.wav", broadband(seconds, SRC_SR, channels=2, seed=10 + i).T, SRC_SR)
        paths.append(folder / f"{name}.wav")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 20)
    sf.write(folder / "quiet.wav", np.zeros((2 * SRC_SR, 1), np.float32), SRC_SR)
    sf.write(folder / "short.wav", broadband(0.5, SRC_SR, channels=1).T, SRC_SR)
    return [*paths, folder / "corrupt.wav", folder / "quiet.wav", folder / "short.wav"]


def build(sources: list[Path], out: Path, jobs: int, **kw) -> dict:
    return build_codec_shards(
        sources,
        out,
        excerpt_s=1.0,
        codecs=CODECS,
        bitrates=BITRATES,
        store_rate=STORE_SR,
        mono=True,
        val_fraction=0.34,
        visqol=False,
        jobs=jobs,
        seed=0,
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (`make install`)")
    root = tmp_path_factory.mktemp("codec")
    sources = write_pieces(root / "src")
    manifest = build(sources, root / "out", jobs=1)
    return root, sources, manifest


def test_shards_counts_keys_and_grouping(shards):
    root, _, manifest = shards
    out = root / "out"
    tars = sorted(out.glob("*.tar"))
    assert {p.name for p in tars} == {s for info in manifest["splits"].values() for s in info["shards"]}
    assert all(re.fullmatch(r"(train|val)-0000-\d{5}\.tar", p.name) for p in tars)
    assert not list(out.glob("*.tmp"))
    rows = read_shards(tars)
    n_groups = sum(int(s) for s in PIECES.values())  # 1 s excerpts: floor(duration)
    assert len(rows) == n_groups * VERSIONS == manifest["totals"]["samples"]
    assert manifest["totals"]["groups"] == n_groups

    key_re = re.compile(r"(p[0-2])-(\d{4})-(clean-ref|opus-16|opus-64|mp3-16|mp3-64)")
    by_group: dict[str, list[tuple[str, str, np.ndarray, dict]]] = defaultdict(list)
    order: list[str] = []
    for row in rows:
        shard, key, audio, meta = row
        assert key_re.fullmatch(key), key
        assert meta["group"] == f"{meta['piece']}-{meta['excerpt']:04d}" and key.startswith(meta["group"])
        assert audio.shape == (1, STORE_SR) and meta["sample_rate"] == STORE_SR
        if not order or order[-1] != meta["group"]:
            assert meta["group"] not in by_group, "a group's samples must be consecutive"
            order.append(meta["group"])
        by_group[meta["group"]].append(row)
    for group, members in by_group.items():
        assert len(members) == VERSIONS and len({m[0] for m in members}) == 1, (
            group
        )  # whole group in one shard
        first = members[0][3]
        assert first["is_reference"] and first["codec"] == "clean" and first["bitrate_kbps"] is None
        assert first["bitrate_rank"] == 2 and members[0][1].endswith("-clean-ref")
        for _, key, _, meta in members[1:]:
            assert not meta["is_reference"] and meta["codec"] in CODECS
            assert meta["bitrate_rank"] == {16: 0, 64: 1}[meta["bitrate_kbps"]]
            assert key.endswith(f"-{meta['codec']}-{meta['bitrate_kbps']}")
        assert {m[3]["start_s"] for m in members} == {float(first["excerpt"])}


def test_shards_split_by_piece_and_manifest(shards):
    root, sources, manifest = shards
    rows = read_shards(sorted((root / "out").glob("*.tar")))
    split_of: dict[str, set[str]] = defaultdict(set)
    for shard, _, _, meta in rows:
        split_of[meta["piece"]].add(shard.split("-")[0])
    assert all(len(s) == 1 for s in split_of.values()), split_of  # no piece in two splits
    assert set(manifest["splits"]) == {"train", "val"}  # both exist even for three pieces
    pieces = {q["piece"]: q for q in manifest["sources"]}
    for name, info in manifest["splits"].items():
        assert sorted(p for p, q in pieces.items() if q["split"] == name) == sorted(
            p for p, s in split_of.items() if s == {name}
        )
        assert info["samples"] == info["groups"] * VERSIONS
        assert info["duration_s"] == pytest.approx(info["samples"] * 1.0)
    assert {p: q["split"] for p, q in pieces.items()} == {p: s.pop() for p, s in split_of.items()}
    reasons = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"corrupt.wav", "quiet.wav", "short.wav"}
    assert reasons["corrupt.wav"].startswith("cannot load")
    assert reasons["quiet.wav"].startswith("silent") and reasons["short.wav"].startswith("too short")
    assert manifest["totals"]["skipped"] == 3
    assert manifest["config"]["codecs"] == list(CODECS) and manifest["config"]["store_rate"] == STORE_SR
    assert manifest["bitrate_rank"] == {"16": 0, "64": 1, "clean": 2}
    stats = manifest["label_stats"]
    assert stats["bitrate_rank"]["min"] == 0 and stats["bitrate_rank"]["max"] == 2
    assert stats["bitrate_kbps"]["count"] == manifest["totals"]["samples"] - manifest["totals"]["groups"]
    assert stats["bitrate_kbps"]["mean"] == pytest.approx(40.0)
    on_disk = json.loads((root / "out" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert (root / "out" / "manifest-0000-of-0001.json").is_file()
    assert sorted(Path(p).name for p in pieces.values() for p in [p["source"]]) == [
        p.name for p in sources[:3]
    ]


def test_shards_identical_for_any_jobs(shards):
    root, sources, manifest = shards
    manifest2 = build(sources, root / "out_jobs2", jobs=2)
    a = read_shards(sorted((root / "out").glob("*.tar")))
    b = read_shards(sorted((root / "out_jobs2").glob("*.tar")))
    assert [(s, k, m) for s, k, _, m in a] == [(s, k, m) for s, k, _, m in b]
    assert all(np.array_equal(x[2], y[2]) for x, y in zip(a, b, strict=True))
    assert manifest2["splits"] == manifest["splits"]
    again = build(sources, root / "out_jobs2", jobs=2)  # a rerun reuses every finished shard
    job = json.loads((root / "out_jobs2" / "manifest-0000-of-0001.json").read_text())["job"]
    assert job["shards_built"] == 0 and job["shards_resumed"] == manifest["totals"]["shards"]
    assert again["splits"] == manifest["splits"]


def shard_rows(folder: Path) -> dict[str, tuple[dict, np.ndarray, str]]:
    """key -> (json, audio, shard name) over every shard of a folder (keys must be unique)."""
    rows = read_shards(sorted(folder.glob("*.tar")))
    out = {k: (m, a, s) for s, k, a, m in rows}
    assert len(out) == len(rows), "duplicate keys across shards"
    return out


def test_shard_id_jobs_are_disjoint_and_union_is_the_single_build(shards):
    root, sources, manifest = shards
    out = root / "out_split"
    first = build(sources, out, jobs=1, shard_id=0, num_shards=2)
    assert "jobs" not in first and not (out / "manifest.json").exists()  # waits for job 1
    merged = build(sources, out, jobs=1, shard_id=1, num_shards=2)
    assert merged["jobs"] == {**merged["jobs"], "num_shards": 2, "merged": [0, 1], "missing": []}
    names = sorted(p.name for p in out.glob("*.tar"))
    per_job = [{n for n in names if re.fullmatch(rf"(train|val)-000{i}-\d{{5}}\.tar", n)} for i in (0, 1)]
    assert per_job[0] and per_job[1] and per_job[0] | per_job[1] == set(names)
    keys = [set(k for k, (_, _, s) in shard_rows(out).items() if s in job) for job in per_job]
    assert not keys[0] & keys[1]
    split_rows, single = shard_rows(out), shard_rows(root / "out")
    assert set(split_rows) == set(single)
    for k, (meta, audio, _) in single.items():
        assert split_rows[k][0] == meta and np.array_equal(split_rows[k][1], audio)
    assert merged["totals"] == {**manifest["totals"], "shards": merged["totals"]["shards"]}
    assert sorted(s["source"] for s in merged["skipped"]) == sorted(s["source"] for s in manifest["skipped"])


@needs_ffmpeg
def test_prep_codec_killed_midway_resumes_to_identical_shards(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        sf.write(src / f"k{i}.wav", broadband(1.0, SRC_SR, channels=1, seed=40 + i).T, SRC_SR)
    (src / "k9_corrupt.flac").write_bytes(b"fLaC" + b"\x00" * 64)

    def cmd(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "aqa.cli", "prep", "codec", "--src", str(src), "--out", str(out),
            "--excerpt-s", "0.5", "--codecs", "mp3", "--bitrates", "32", "--val-fraction", "0",
            "--no-visqol", "--no-progress",
        ]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"  # the uninterrupted build, in-process (same function the CLI calls)
    build_codec_shards(
        sorted(src.iterdir()), full, excerpt_s=0.5, codecs=["mp3"], bitrates=[32], val_fraction=0.0,
        visqol=False, progress=False,
    )  # fmt: skip
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(killed.glob("*.tar")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(killed.glob("*.tar")))
    assert finished >= 1 and not (killed / "manifest.json").exists()
    if finished == 5:  # four pieces + the corrupt file (an empty shard marks it done)
        pytest.skip("the build finished before it could be killed")
    subprocess.run(cmd(killed), check=True, env=env, capture_output=True, timeout=300)
    assert not list(killed.glob("*.tmp")) and not list((killed / ".records").glob("*.tmp"))
    job = json.loads((killed / "manifest-0000-of-0001.json").read_text())["job"]
    assert job["shards_resumed"] == finished and job["shards_built"] == 5 - finished
    assert sorted(p.name for p in killed.glob("*.tar")) == sorted(p.name for p in full.glob("*.tar"))
    a, b = shard_rows(full), shard_rows(killed)
    assert set(a) == set(b)
    assert all(a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]) for k in a)
    manifest = json.loads((killed / "manifest.json").read_text())
    assert [s["unit"] for s in manifest["skipped"]] == ["k9_corrupt"]
    assert manifest["totals"]["groups"] == 8 and manifest["totals"]["samples"] == 16


@needs_ffmpeg
def test_codec_visqol_labels(tmp_path):
    pytest.importorskip("visqol")
    sf.write(tmp_path / "v.wav", broadband(1.0, SRC_SR, channels=1, seed=7).T, SRC_SR)
    manifest = build_codec_shards(
        [tmp_path / "v.wav"], tmp_path / "out", excerpt_s=1.0, codecs=["mp3"], bitrates=[8, 64],
        store_rate=STORE_SR, progress=False,
    )  # fmt: skip
    rows = {
        m["codec"] + str(m["bitrate_kbps"]): m
        for _, _, _, m in read_shards(sorted((tmp_path / "out").glob("*.tar")))
    }
    assert set(rows) == {"cleanNone", "mp38", "mp364"}
    assert all(1.0 <= m["visqol_moslqo"] <= 5.0 for m in rows.values())
    assert rows["cleanNone"]["visqol_moslqo"] > rows["mp364"]["visqol_moslqo"] > rows["mp38"]["visqol_moslqo"]
    assert manifest["label_stats"]["visqol_moslqo"]["count"] == 3


def test_split_rules():
    assert assign_split("piece", 0.0) == "train" and assign_split("piece", 1.0) == "val"
    names = [f"piece{i}" for i in range(2000)]
    share = np.mean([assign_split(n, 0.2) == "val" for n in names])
    assert 0.17 < share < 0.23
    assert [assign_split(n, 0.2, seed=3) for n in names[:50]] == [
        assign_split(n, 0.2, seed=3) for n in names[:50]
    ]
    assert piece_id_for(Path("/x/Kevin_MacLeod_-_Vibe_Ace.hq.ogg")) == "Kevin_MacLeod_-_Vibe_Ace_hq"
    assert len(piece_id_for(Path("a" * 300 + ".wav"))) <= 60


@needs_ffmpeg
def test_cli_list_with_explicit_splits(tmp_path):
    src = tmp_path / "audio"
    src.mkdir()
    for name in ("a", "b", "c"):
        sf.write(src / f"{name}.flac", broadband(1.0, 8000, channels=1, seed=ord(name)).T, 8000)
    (tmp_path / "list.csv").write_text("path,split\na.flac,val\nb.flac,train\nc.flac\n")
    paths, splits = list_sources(tmp_path / "list.csv", root=src)
    assert [p.name for p in paths] == ["a.flac", "b.flac", "c.flac"]
    assert splits == {str(src / "a.flac"): "val", str(src / "b.flac"): "train"}
    code = codec_main(
        [
            "--src",
            str(tmp_path / "list.csv"),
            "--root",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--excerpt-s",
            "1",
            "--codecs",
            "mp3",
            "--bitrates",
            "32",
            "--no-progress",
            "--val-fraction",
            "0",
        ]
    )
    assert code == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {q["piece"]: q["split"] for q in manifest["sources"]} == {"a": "val", "b": "train", "c": "train"}
    assert list_sources(src)[0] == [src / "a.flac", src / "b.flac", src / "c.flac"]
    assert codec_main(["--src", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")]) == 2


def test_demo_list_resolves(shared_data):
    paths, splits = list_sources(REPO / "data_prep" / "lists" / "demo_music.csv", root=shared_data / "clean")
    assert len(paths) == 5 and all(p.is_file() for p in paths)
    assert sorted(splits.values()) == ["train"] * 4 + ["val"]
    assert [Path(p).name for p, s in splits.items() if s == "val"] == ["Kevin_MacLeod_-_Vibe_Ace.hq.ogg"]


# ---------------------------------------------------------------------------------------------- dataset


def dataset(root: Path, split: str, **kw) -> GroupedBatchDataset:
    args = dict(
        sample_rate=STORE_SR,
        label_keys=["bitrate_rank", "bitrate_kbps"],
        groups_per_batch=2,
        crop_s=0.5,
        train=split == "train",
        shuffle_groups=4,
        seed=0,
    )
    args.update(kw)
    return GroupedBatchDataset(sorted(str(p) for p in (root / "out").glob(f"{split}-*.tar")), **args)


def check_batch(batch: dict, crop_samples: int | None) -> None:
    b = batch["wav"].shape[0]
    assert batch["wav"].dtype == torch.float32 and batch["wav"].ndim == 2
    assert batch["lengths"].dtype == torch.long and batch["lengths"].shape == (b,)
    assert batch["group"].dtype == torch.long and batch["is_reference"].dtype == torch.bool
    assert set(batch["labels"]) == {"bitrate_rank", "bitrate_kbps"}
    assert all(v.dtype == torch.float32 and v.shape == (b,) for v in batch["labels"].values())
    assert len(batch["meta"]) == b
    if crop_samples is not None:
        assert batch["wav"].shape[1] == crop_samples and bool((batch["lengths"] == crop_samples).all())
    for g in batch["group"].unique().tolist():
        idx = (batch["group"] == g).nonzero().flatten().tolist()
        metas = [batch["meta"][i] for i in idx]
        assert len(idx) == VERSIONS and len({m["group"] for m in metas}) == 1  # whole groups only
        assert batch["is_reference"][idx].sum() == 1 and batch["is_reference"][idx[0]]
        assert torch.isnan(batch["labels"]["bitrate_kbps"][idx[0]])
        assert batch["labels"]["bitrate_rank"][idx[0]] == 2
        assert len({m["crop_start_s"] for m in metas}) == 1  # one offset per group


def test_dataset_train_batches_are_whole_aligned_groups(shards):
    root, _, manifest = shards
    ds = dataset(root, "train")
    batches = list(ds)
    assert sum(len(b["group"].unique()) for b in batches) == manifest["splits"]["train"]["groups"]
    assert all(len(b["group"].unique()) == 2 for b in batches[:-1])
    stored = {k: a for _, k, a, _ in read_shards(sorted((root / "out").glob("train-*.tar")))}
    for batch in batches:
        check_batch(batch, crop_samples=STORE_SR // 2)
        for i, meta in enumerate(batch["meta"]):  # crops are the stored audio at the shared offset
            start = round(meta["crop_start_s"] * STORE_SR)
            assert np.allclose(batch["wav"][i].numpy(), stored[meta["key"]][0, start : start + STORE_SR // 2])
        for g in batch["group"].unique().tolist():
            idx = (batch["group"] == g).nonzero().flatten().tolist()
            ref = batch["wav"][idx[0]].numpy()
            for i in idx[1:]:
                if batch["meta"][i]["bitrate_kbps"] == 64:
                    assert abs(xcorr_lag(ref, batch["wav"][i].numpy(), max_lag=200)) <= 1
    again = list(dataset(root, "train"))
    assert [m["key"] for b in again for m in b["meta"]] == [m["key"] for b in batches for m in b["meta"]]
    assert all(torch.equal(x["wav"], y["wav"]) for x, y in zip(batches, again, strict=True))


def test_dataset_val_is_deterministic_and_uncropped(shards):
    root, _, manifest = shards
    first, second = list(dataset(root, "val", crop_s=None)), list(dataset(root, "val", crop_s=None))
    assert sum(len(b["group"].unique()) for b in first) == manifest["splits"]["val"]["groups"]
    for a, b in zip(first, second, strict=True):
        check_batch(a, crop_samples=STORE_SR)
        assert torch.equal(a["wav"], b["wav"]) and a["meta"] == b["meta"]
        assert all(m["crop_start_s"] == 0.0 for m in a["meta"])
    resampled = next(iter(dataset(root, "val", crop_s=0.25, sample_rate=16000)))
    assert resampled["wav"].shape[1] == 4000


def test_dataset_versions_per_group_keeps_reference(shards):
    root, _, _ = shards
    batch = next(iter(dataset(root, "val", versions_per_group=3)))
    for g in batch["group"].unique().tolist():
        idx = (batch["group"] == g).nonzero().flatten().tolist()
        assert len(idx) == 3 and batch["is_reference"][idx[0]] and batch["is_reference"][idx].sum() == 1
    again = next(iter(dataset(root, "val", versions_per_group=3)))
    assert [m["key"] for m in batch["meta"]] == [m["key"] for m in again["meta"]]


def test_datamodule_workers_epochs_and_missing_shards(shards, tmp_path):
    root, _, manifest = shards
    last = len(manifest["splits"]["val"]["shards"]) - 1
    dm = AQADataModule(
        train_urls=str(root / "out" / "train-*.tar"),
        val_urls=[str(root / "out" / f"val-0000-{{00000..{last:05d}}}.tar")],
        sample_rate=STORE_SR,
        label_keys=["bitrate_rank"],
        groups_per_batch=2,
        crop_s=0.5,
        shuffle_groups=4,
        num_workers=2,
        seed=0,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    epoch0 = [m["key"] for b in loader for m in b["meta"]]
    assert len(epoch0) == manifest["splits"]["train"]["samples"] == len(set(epoch0))  # each shard once
    assert dm.train_set.epoch == 0
    epoch1 = [m["key"] for b in loader for m in b["meta"]]
    assert dm.train_set.epoch == 1 and sorted(epoch1) == sorted(epoch0)
    val = [b for b in dm.val_dataloader()]
    assert sum(len(b["group"].unique()) for b in val) == manifest["splits"]["val"]["groups"]

    with pytest.raises(FileNotFoundError, match=r"make data-demo.*aqa prep codec"):
        AQADataModule(train_urls=str(tmp_path / "none" / "train-*.tar"), sample_rate=16000).setup("fit")
    with pytest.raises(FileNotFoundError):
        expand_shard_urls([str(tmp_path / "x-{00000..00002}.tar")])
    assert expand_shard_urls("pipe:cat a-{0..1}.tar") == ["pipe:cat a-0.tar", "pipe:cat a-1.tar"]


def test_codec_demo_config_builds_a_datamodule():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "data" / "codec_demo.yaml"))
    assert cfg.pop("name") == "codec_demo"
    dm = AQADataModule(**cfg, sample_rate=24000)
    assert dm.crop_s == 3.0 and dm.val_crop_s == 5.0 and dm.label_keys == ["bitrate_rank"]


def test_list_sources_refuses_an_empty_folder_or_list(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match="no audio files"):
        list_sources(tmp_path / "empty")
    (tmp_path / "list.csv").write_text("path,split\n")
    with pytest.raises(ValueError, match="no audio files listed"):
        list_sources(tmp_path / "list.csv")
    assert codec_main(["--src", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
