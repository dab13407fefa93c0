"""DNSMOS speed as x real time (seconds of audio scored per second): speechmos's own loop against aqa's batched one.

Rows, each the best of ``--repeat`` interleaved runs (this 2-core machine is shared; timings vary up to 3x):

- ``speechmos.dnsmos.run`` per clip (what ``aqa metric dnsmos`` called before; speechmos keeps its sessions after
  the first call, which is excluded here);
- ``aqa.metrics.dnsmos.score_batch`` one clip per call (``aqa metric dnsmos``, one pair at a time) and all clips in
  one call (windows batched, :data:`aqa.metrics.dnsmos.BATCH` per onnxruntime run);
- ``aqa metric dnsmos --jobs 2`` (:func:`aqa.metrics.runner.run`: two worker processes, one thread each, started
  inside the timing).

Clips: ``--clips`` excerpts of ``--seconds`` from the shared 16 kHz speech (``../shared/data/clean``), else noise.
Every clip shorter than 9.01 s is one full 9.01 s window to the model (DNSMOS tiles it), so a 2.5 s clip costs as
much as a 9 s one. ``python tests/benchmarks/bench_dnsmos.py [--clips 8 --seconds 2.5 --repeat 3]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from aqa.metrics.dnsmos import RATE, score_batch
from aqa.metrics.runner import run

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "clean"
SPEECH = ("198-209-0000.hq.ogg", "3436-172162-0000.hq.ogg", "5703-47212-0000.hq.ogg")


def clips(n: int, seconds: float) -> list[np.ndarray]:
    """``n`` mono 16 kHz float32 excerpts of ``seconds``: consecutive excerpts of the shared speech, else noise."""
    length = int(seconds * RATE)
    pool = []
    for name in SPEECH:
        path = SHARED / name
        if path.is_file():
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            if sr == RATE:
                x = x.mean(axis=1)
                pool += [x[i : i + length] for i in range(0, x.size - length + 1, length)]
    if len(pool) < n:
        rng = np.random.default_rng(0)
        pool += [0.1 * rng.standard_normal(length).astype(np.float32) for _ in range(n - len(pool))]
    return [np.clip(c, -1, 1).astype(np.float32) for c in pool[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import speechmos.dnsmos

    data = clips(args.clips, args.seconds)
    audio_s = sum(c.size for c in data) / RATE
    speechmos.dnsmos.run(data[0], RATE)  # builds speechmos's sessions: kept out of the timing, as ours are
    score_batch(data[:1])
    runs = {
        "speechmos.dnsmos.run, one clip per call (before)": lambda: [speechmos.dnsmos.run(c, RATE) for c in data],
        "aqa score_batch, one clip per call": lambda: [score_batch([c]) for c in data],
        "aqa score_batch, all clips in one call": lambda: score_batch(data),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="aqa_bench_dnsmos_") as tmp:
        pairs = []
        for i, c in enumerate(data):
            sf.write(Path(tmp) / f"c{i}.wav", c, RATE)
            pairs.append((None, str(Path(tmp) / f"c{i}.wav")))
        start = time.perf_counter()
        records = run("dnsmos", pairs, jobs=2)
        best["aqa metric dnsmos --jobs 2 (incl. worker start)"] = time.perf_counter() - start
        assert not any("error" in r for r in records), records
    print(f"DNSMOS: {len(data)} clips of {args.seconds:g} s ({audio_s:.1f} s of audio), best of {args.repeat}")
    print(f"{'path':<52} {'s/clip':>7} {'x real time':>12}")
    for name, seconds in best.items():
        print(f"{name:<52} {seconds / len(data):>7.3f} {audio_s / seconds:>12.2f}")


if __name__ == "__main__":
    main()
