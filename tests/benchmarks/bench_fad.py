"""FAD speed: clips per second of the embedding pass (:func:`aqa.eval.fad.embed_files`: decode, resample, encoder
forward, time mean) and the time of one Fréchet distance at the encoder's width.

Encoders: the tiny random MERT of the tests and, unless ``--tiny``, the full-size MERT-v1-95M architecture with
random weights (``checkpoint: null``: the same cost as the published weights, no download). Clips: ``--clips``
noise-and-partials files of ``--seconds`` at 44.1 kHz stereo (resampled to 24 kHz mono as real tests are).
Best of ``--repeat``; this shared 2-core machine varies up to 3x. ``python tests/benchmarks/bench_fad.py``
(``make bench``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from aqa.eval.fad import build_fad_encoder, embed_files, fad  # noqa: E402

SR = 44100


def write_clips(folder: Path, n: int, seconds: float) -> list[str]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    paths = []
    for i in range(n):
        x = 0.05 * rng.standard_normal((2, t.size)) + 0.2 * np.sin(2 * np.pi * (220 + 40 * i) * t)
        sf.write(folder / f"c{i}.wav", x.T.astype(np.float32), SR)
        paths.append(str(folder / f"c{i}.wav"))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="only the tiny random MERT")
    args = parser.parse_args()
    torch.manual_seed(0)
    encoders = {"mert_v1_95m_tiny": "mert_v1_95m_tiny"}
    if not args.tiny:
        encoders["mert_v1_95m (random weights)"] = {"name": "mert_v1_95m", "checkpoint": None}
    with tempfile.TemporaryDirectory(prefix="aqa_bench_fad_") as tmp:
        paths = write_clips(Path(tmp), args.clips, args.seconds)
        print(f"FAD: {args.clips} clips of {args.seconds:g} s (44.1 kHz stereo), batch {args.batch_size}, "
              f"{torch.get_num_threads()} threads, best of {args.repeat}")
        print(f"{'encoder':<30} {'clips/s':>8} {'x real time':>12} {'Frechet distance s':>19}")
        for label, cfg in encoders.items():
            encoder = build_fad_encoder(cfg)
            embed_files(paths[:1], encoder, device="cpu")  # warm-up
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                emb = embed_files(paths, encoder, batch_size=args.batch_size, device="cpu")
                best = min(best, time.perf_counter() - start)
            d = emb[0].shape[0]
            rng = np.random.default_rng(1)  # a system of 20 clips against 40 references, at this width
            start = time.perf_counter()
            fad(rng.standard_normal((20, d)), rng.standard_normal((40, d)))
            t_fd = time.perf_counter() - start
            print(f"{label:<30} {args.clips / best:>8.2f} {args.clips * args.seconds / best:>12.2f} {t_fd:>19.3f}")


if __name__ == "__main__":
    main()
