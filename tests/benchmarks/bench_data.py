"""Data pipeline benchmarks: shard building (`codec` with and without ViSQOL, `jnd`) and the DataModule's
streaming rate, next to the rate at which MERT (tiny and full-size, random weights) consumes 10 s clips.

Inputs are synthetic (seeded noise plus partials), so the figures measure the pipeline, not the material.
CPU time counts this process and its children (ffmpeg), via ``getrusage``. "Audio h / CPU h" is the
stored audio (every version) per CPU hour; "source h / CPU h" is the input audio consumed per CPU hour.
Run with `make bench`. Prints figures; asserts nothing (timings on this shared machine vary up to 3x:
compare ratios measured in one run).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from scipy.signal import lfilter  # noqa: E402


def cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def music(seconds: float, sr: int, seed: int, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    noise = lfilter([1.0], [1.0, -0.8], rng.standard_normal((channels, t.size)), axis=-1)
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (196.0, 247.0, 294.0, 1175.0))
    x = noise / np.abs(noise).max() + 0.4 * tones * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def timed(fn):
    c0, t0 = cpu_s(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, cpu_s() - c0


def report(name: str, manifest: dict, wall: float, cpu: float, source_s: float) -> None:
    shards = manifest["totals"]["shards"]
    stored_h = manifest["totals"]["duration_s"] / 3600
    print(
        f"{name:<22} {shards:>3} shards in {wall:6.1f} s wall / {cpu:6.1f} s CPU: {shards / wall:6.3f} shards/s, "
        f"{stored_h / (cpu / 3600):8.1f} audio h / CPU h, {source_s / 3600 / (cpu / 3600):7.2f} source h / CPU h"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=2, help="music pieces of 20 s for `codec`")
    parser.add_argument("--utterances", type=int, default=8, help="utterances of 5 s for `jnd`")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--skip-full-mert", action="store_true")
    args = parser.parse_args(argv)

    from data_prep.codec import build_codec_shards
    from data_prep.jnd import build_jnd_shards

    tmp = Path(tempfile.mkdtemp(prefix="aqa_bench_data_"))
    src = tmp / "music"
    src.mkdir()
    for i in range(args.pieces):
        sf.write(src / f"piece{i}.flac", music(20.0, 44100, i).T, 44100)
    speech = tmp / "speech"
    speech.mkdir()
    for i in range(args.utterances):
        sf.write(speech / f"utt{i}.wav", music(5.0, 16000, 100 + i, channels=1)[0], 16000)

    common = dict(
        excerpt_s=10.0, store_rate=24000, mono=True, val_fraction=0.0, jobs=args.jobs, progress=False
    )
    pieces = sorted(src.iterdir())
    print(
        f"data pipeline, {args.jobs} job(s); 21 codec versions per 10 s excerpt (opus/mp3/aac x 7 bit rates)"
    )
    m, wall, cpu = timed(lambda: build_codec_shards(pieces, tmp / "codec", visqol=False, **common))
    report("codec (no ViSQOL)", m, wall, cpu, m["totals"]["groups"] * 10.0)
    m, wall, cpu = timed(
        lambda: build_codec_shards(
            pieces[:1], tmp / "codec_visqol", visqol=True, max_excerpts_per_piece=1, **common
        )
    )
    report("codec (ViSQOL)", m, wall, cpu, m["totals"]["groups"] * 10.0)
    utts = sorted(speech.iterdir())
    m, wall, cpu = timed(
        lambda: build_jnd_shards(
            utts, tmp / "jnd", utterances_per_shard=2, val_fraction=0.0, jobs=args.jobs, progress=False
        )  # fmt: skip
    )
    report("jnd (46 SNRs + clean)", m, wall, cpu, len(utts) * 5.0)

    import torch

    from aqa.data.dataset import GroupedBatchDataset
    from aqa.encoders import build_encoder

    urls = [str(p) for p in sorted((tmp / "codec").glob("*.tar"))]
    ds = GroupedBatchDataset(
        urls, sample_rate=24000, groups_per_batch=1, crop_s=10.0, shuffle_groups=4, seed=0
    )
    n, t0 = 0, time.perf_counter()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for batch in ds:
            n += batch["wav"].shape[0]
    dm_rate = n / (time.perf_counter() - t0)
    print(f"{'DataModule stream':<22} {dm_rate:8.1f} clips/s (10 s, 24 kHz, decode + crop + pad, 1 process)")

    # Worker processes: each reads its own shards (split_by_worker); batches reach the main process whole.
    from aqa.data.datamodule import AQADataModule

    for workers in (1, 2):
        dm = AQADataModule(train_urls=urls, sample_rate=24000, groups_per_batch=1, crop_s=10.0,
                           shuffle_groups=4, num_workers=workers, seed=0)
        dm.setup("fit")
        loader = dm.train_dataloader()
        next(iter(loader))  # worker start-up is not part of the steady rate
        n, t0 = 0, time.perf_counter()
        for _ in range(2):
            for batch in loader:
                n += batch["wav"].shape[0]
        rate = n / (time.perf_counter() - t0)
        print(f"{f'DataModule {workers} worker(s)':<22} {rate:8.1f} clips/s, {rate / workers:8.1f} clips/s per worker "
              f"({len(urls)} shards; {os.cpu_count()} cores here)")

    from omegaconf import OmegaConf

    repo = Path(__file__).resolve().parents[2]
    for name, batch_size in (("mert_v1_95m_tiny", 8), ("mert_v1_95m", 2)):
        if name == "mert_v1_95m" and args.skip_full_mert:
            continue
        cfg = OmegaConf.to_container(OmegaConf.load(repo / "configs" / "encoder" / f"{name}.yaml"))
        cfg.update(checkpoint=None, adapter=None, freeze=True)
        enc = build_encoder(cfg).eval()
        x = 0.1 * torch.randn(batch_size, 10 * 24000)
        lengths = torch.full((batch_size,), x.shape[1])
        with torch.inference_mode():
            enc(x, lengths)  # warm-up
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                enc(x, lengths)
                best = min(best, time.perf_counter() - t0)
        rate = batch_size / best
        print(
            f"{name + ' forward':<22} {rate:8.2f} clips/s (batch {batch_size} x 10 s, {torch.get_num_threads()} "
            f"threads): the stream is {dm_rate / rate:6.1f}x faster"
        )
        del enc


if __name__ == "__main__":
    main()
