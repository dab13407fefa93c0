"""Metric speed: seconds per 10 s stereo 48 kHz pair for each metric, in one process and with ``--jobs 2``.

Run with ``make bench`` (or ``python tests/benchmarks/bench_metrics.py --metrics visqol,pesq --pairs 4``).
Prints figures, asserts nothing: timings on this shared 2-core machine vary up to 3x. The single-process
figure excludes the first call (imports, numba compilation, model loading), measured on a warm-up pair;
the ``--jobs 2`` figure is wall time over three times as many pairs and includes starting the two
worker processes (spawned: each re-imports numpy/scipy and the metric's package, ~3-5 s here).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from aqa.metrics import METRICS
from aqa.metrics.runner import run

SR = 48000
DEFAULT = "visqol,visqol_speech,pesq,stoi,estoi,dnsmos,cdpam,haaqi,peaq,2f_model"


def _music(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    notes = rng.uniform(110, 880, size=int(seconds * 2))
    x = np.zeros_like(t)
    for k, f0 in enumerate(notes):
        onset = k / 2
        env = np.where(t >= onset, np.exp(-4.0 * (t - onset)), 0.0)
        x += sum(env * np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    x = 0.3 * x / np.max(np.abs(x)) + 0.002 * rng.standard_normal(t.size)
    return np.stack([x, np.roll(x, 11)])


def _pairs(folder: Path, n: int, seconds: float) -> list[tuple[str, str]]:
    sos = butter(6, 6000, fs=SR, output="sos")
    out = []
    for i in range(n):
        ref = _music(seconds, i)
        deg = sosfilt(sos, ref, axis=-1) + 0.005 * np.random.default_rng(100 + i).standard_normal(ref.shape)
        r, d = folder / f"ref{i}.wav", folder / f"deg{i}.wav"
        sf.write(r, ref.T, SR, subtype="PCM_16")
        sf.write(d, deg.T, SR, subtype="PCM_16")
        out.append((str(r), str(d)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", default=DEFAULT)
    parser.add_argument("--pairs", type=int, default=2, help="pairs timed in one process (x3 with --jobs 2)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aqa_bench_metrics_") as tmp:
        many = _pairs(Path(tmp), 3 * args.pairs, args.seconds)
        pairs = many[: args.pairs]
        warm = pairs[:1]  # the first call imports, compiles and loads models: keep it out of the timing
        info = sf.info(pairs[0][0])
        print(
            f"audio measured: {info.duration:.2f} s, {info.channels} channels, {info.samplerate} Hz "
            f"({args.pairs} pairs in one process, {len(many)} with --jobs 2)"
        )
        print(f"{'metric':<14} {'1 process s/pair':>17} {'--jobs 2 s/pair':>16}  note")
        for name in args.metrics.split(","):
            if name not in METRICS:
                print(f"{name:<14} unknown metric")
                continue
            first = run(name, warm)[0]
            if "error" in first:
                print(f"{name:<14} {'-':>17} {'-':>16}  {first['error'][:90]}")
                continue
            start = time.perf_counter()
            serial = run(name, pairs)
            t1 = (time.perf_counter() - start) / len(pairs)
            start = time.perf_counter()
            parallel = run(name, many, jobs=2)
            t2 = (time.perf_counter() - start) / len(many)
            errors = sum("error" in r for r in serial + parallel)
            print(f"{name:<14} {t1:>17.2f} {t2:>16.2f}  {f'{errors} errors' if errors else ''}", flush=True)


if __name__ == "__main__":
    main()
