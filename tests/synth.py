"""Shared test material: synthetic broadband audio, a small codec shard set, a shard reader, a tiny run folder,
an ensemble folder."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import correlate, lfilter

from data_prep.codec import build_codec_shards
from data_prep.render import bright_music as music  # noqa: F401  (the tests' bright music)

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


def make_run(tmp_path: Path, experiment: str = "mmmos_tiny") -> Path:
    """A run directory as `aqa train` leaves it (config.yaml + checkpoints/best.ckpt), random tiny weights."""
    import torch

    from aqa.config import compose, save_config
    from aqa.tasks import build_module

    run = tmp_path / experiment
    cfg = compose(experiment, [f"run_dir={run}"])
    torch.manual_seed(0)
    module = build_module(cfg)
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": module.state_dict()}, run / "checkpoints" / "best.ckpt")
    save_config(cfg, run / "config.yaml")
    return run


def two_member_ensemble(tmp_path: Path, zscore: bool) -> Path:
    """An ensemble folder written by hand: two tiny DeePAQ runs (the second's head scaled by 1.5, so its
    distances are 1.5x the first's) and their made-up score stats."""
    import torch
    import yaml

    runs = []
    for name, scale in (("a", 1.0), ("b", 1.5)):
        run = make_run(tmp_path / "runs" / name, "deepaq_lora_tiny").rename(tmp_path / "runs" / name / name)
        ckpt = run / "checkpoints" / "best.ckpt"
        state = torch.load(ckpt, weights_only=True)
        state["state_dict"] = {
            k: v * scale if k.startswith("heads.") else v for k, v in state["state_dict"].items()
        }
        torch.save(state, ckpt)
        runs.append(run)
    spec = {
        "kind": "ensemble",
        "which": "best",
        "zscore": zscore,
        "tasks": ["quality"],
        "members": [
            {"run": str(runs[0]), "stats": {"quality": {"mean": -1.0, "std": 2.0}}},
            {"run": str(runs[1]), "stats": {"quality": {"mean": -3.0, "std": 0.5}}},
        ],
    }
    folder = tmp_path / "ens"
    folder.mkdir()
    (folder / "ensemble.yaml").write_text(yaml.safe_dump(spec))
    return folder
