"""System throughput: every experiment's full-size architecture (random weights), scoring and training clips/s
with TFLOP/s and model FLOPs utilisation (MFU, against the GPU's bf16 peak), the encoder's share, and the
HAAQI-Net student's speed-up over its teacher.

On a CPU (`make bench`): scoring only, batch 1 x 10 s, fp32 (training a full-size system here takes minutes a
step). On a GPU: ``python tests/benchmarks/bench_systems.py --device cuda`` trains and scores batch 32 x 10 s in
bf16 (the same table as `make gpu-check`). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE), str(HERE.parent / "gpu")]

import torch  # noqa: E402
from gpu_check import SYSTEMS, architecture  # noqa: E402
from throughput import format_table, system_throughput  # noqa: E402

from aqa.config import compose  # noqa: E402
from aqa.tasks import build_module  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, help="clips per step (default: 32 on CUDA, 1 on CPU)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tiny", action="store_true", help="the _tiny twins (quick)")
    parser.add_argument("--only", nargs="*", choices=sorted(SYSTEMS))
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    batch = args.batch or (32 if cuda else 1)
    rows = {}
    for exp in args.only or [e for e in SYSTEMS if e != "jsqa_mos"]:  # jsqa_mos: jsqa_jnd's encoder + an MLP
        name, arch = architecture(exp, args.tiny)
        torch.manual_seed(0)
        module = build_module(compose(name, arch), with_teacher=False)
        rows[exp] = system_throughput(module, batch, args.seconds, args.device, "bf16" if cuda else "fp32",
                                      train=cuda, warmup=2 if cuda else 1, iters=5 if cuda else 2)
        print(f"{exp}: {rows[exp]}", flush=True)
        del module
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nbatch {batch} x {args.seconds:g} s, {'bf16 autocast' if cuda else 'fp32'}, {where}\n")
    print(format_table(rows))
    if {"haaqi_net", "haaqi_net_student"} <= rows.keys():
        t, s = rows["haaqi_net"], rows["haaqi_net_student"]
        print(f"\nHAAQI-Net student vs teacher: scoring {s['score_clips_s'] / t['score_clips_s']:.2f}x faster "
              f"(encoders alone {s['encoder_clips_s'] / t['encoder_clips_s']:.2f}x); scoring parameters "
              f"{s['scoring_params_m']:.1f} M vs {t['scoring_params_m']:.1f} M "
              f"({1 - s['scoring_params_m'] / t['scoring_params_m']:.2%} fewer; the backbones alone "
              f"{1 - s['encoder_params_m'] / t['encoder_params_m']:.2%} fewer; the paper: 75.85 %)")


if __name__ == "__main__":
    main()
