"""Ensemble scoring with and without shared encoders: an N-run MMMOS ensemble (full-size fusion, random weights)
whose runs differ in their layer weights and heads but freeze the same WavLM, MuQ and M2D, as MMMOS' runs do.

Prints, for each mode, the weights held (unique parameter storage, MiB), the encoder forwards run and the seconds
to score the clips; the scores of both modes must agree (it exits 1 when they do not). Prints figures; asserts
nothing else. ``--tiny`` uses the tiny fusion (quick).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE), str(HERE.parent / "gpu")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gpu_check import architecture  # noqa: E402

from aqa.config import compose  # noqa: E402
from aqa.inference.ensemble import ForwardMemo, held_bytes, share_encoders  # noqa: E402
from aqa.inference.scorer import Member, Scorer  # noqa: E402
from aqa.tasks import build_module  # noqa: E402


def members(n: int, tiny: bool) -> list[Member]:
    """``n`` MMMOS runs built from one seed (equal encoders), each with its own layer weights and head."""
    name, extra = ("mmmos_tiny", []) if tiny else architecture("mmmos", tiny=False)
    cfg = compose(name, extra)
    out = []
    for i in range(n):
        torch.manual_seed(0)
        module = build_module(cfg, with_teacher=False)
        with torch.no_grad():
            for p in [*module.heads.parameters(), *module.encoder.layer_weights.parameters()]:
                p.add_(0.05 * i * torch.randn_like(p))
        out.append(Member(module.eval(), cfg))
    return out


def held_mib(scorer: Scorer) -> float:
    return held_bytes([m.module for m in scorer.members]) / 2**20


def encoder_runs(scorer: Scorer) -> int:
    encoders = {id(e): e for m in scorer.members for e in m.module.encoder.members}
    return sum(e.forward.runs for e in encoders.values() if isinstance(e.forward, ForwardMemo))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32) for _ in range(args.clips)]
    rows, scores = [], {}
    for mode in ("separate", "shared"):
        built = members(args.members, args.tiny)
        if mode == "shared":
            pool: list = []
            for m in built:
                share_encoders(m.module, pool)
        scorer = Scorer(built, device="cpu", precision="fp32")
        start = time.perf_counter()
        scores[mode] = scorer.score(clips, sr=16000, batch_size=args.batch)  # task -> (clips,)
        seconds = time.perf_counter() - start
        runs = encoder_runs(scorer) if mode == "shared" else args.members * 3 * -(-args.clips // args.batch)
        rows.append((mode, held_mib(scorer), runs, seconds))
        del scorer, built
    size = "tiny" if args.tiny else "full-size"
    print(f"\n{args.members}-run MMMOS ensemble ({size} fusion, random weights), {args.clips} x {args.seconds:g} s, "
          f"batch {args.batch}, CPU fp32, {torch.get_num_threads()} threads\n")
    print("| encoders | weights held MiB | member-encoder forwards | s to score |")
    print("|---|---|---|---|")
    for mode, mib, runs, seconds in rows:
        print(f"| {mode} | {mib:.1f} | {runs} | {seconds:.1f} |")
    gap = max(float(np.max(np.abs(v - scores["separate"][t]))) for t, v in scores["shared"].items())
    print(f"\nlargest score difference shared vs separate: {gap:.2e}")
    return 0 if gap < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
