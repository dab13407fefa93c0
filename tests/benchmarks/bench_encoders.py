"""Encoder benchmarks: forward time for 10 s of audio on CPU, real-time factor, and the framework's overhead.

For each full-size encoder (random weights, ``checkpoint: null``) this times the ``aqa`` encoder's forward
(input normalisation, masks, every hidden state) against a bare ``model(x)`` call of an untouched
``transformers`` model of the same class holding the same weights, on the same 10 s input, batch 1,
inference mode. Calls alternate and the best of ``--repeat`` runs counts, so both see the same machine load.
Run with `make bench`. Prints figures; asserts nothing (timings on this shared machine vary up to 3x, so
compare the ratios measured in one run).
"""

from __future__ import annotations

import argparse
import gc
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from aqa.encoders import build_encoder  # noqa: E402
from aqa.encoders.hf import WAV2VEC2_BASE, WAVLM_BASE_PLUS, WAVLM_LARGE  # noqa: E402
from aqa.encoders.mert import MERT_V1_95M, MERT_V1_330M  # noqa: E402

VARIANTS = (MERT_V1_95M, MERT_V1_330M, WAVLM_BASE_PLUS, WAVLM_LARGE, WAV2VEC2_BASE)
OWN_MODULE_ENCODERS = ("beats_iter3_plus_as2m", "m2d_vit_base", "muq_large_msd")


def best_of(fns: dict[str, object], repeat: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="encoder names (default: all)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.seconds:.0f} s of audio, batch 1")
    print(f"{'encoder':<17} {'params':>8} {'aqa fwd':>8} {'RTF':>6} {'bare':>8} {'overhead':>9}")
    for variant in VARIANTS:
        if args.only and variant.name not in args.only:
            continue
        enc = build_encoder({"name": variant.name, "checkpoint": None, "freeze": True, "adapter": None}).eval()
        bare = variant.model_cls(variant.config()).eval()
        bare.load_state_dict(enc.model.state_dict())  # same weights, untouched transformers modules
        x = 0.1 * torch.randn(1, int(args.seconds * enc.sample_rate))
        with torch.inference_mode():
            times = best_of({"aqa": lambda e=enc, x=x: e(x), "bare": lambda m=bare, x=x: m(x)}, args.repeat)
        params = sum(p.numel() for p in enc.parameters()) / 1e6
        overhead = 100 * (times["aqa"] / times["bare"] - 1)
        print(
            f"{variant.name:<17} {params:>7.1f}M {times['aqa']:>7.2f}s {times['aqa'] / args.seconds:>6.3f} "
            f"{times['bare']:>7.2f}s {overhead:>+8.1f}%"
        )
        del enc, bare
        gc.collect()
    # Own-module encoders have no upstream class to compare against here (their published code needs
    # packages this project does not install), so only their forward time and real-time factor are printed.
    for name in OWN_MODULE_ENCODERS:
        if args.only and name not in args.only:
            continue
        enc = build_encoder({"name": name, "checkpoint": None, "freeze": True, "adapter": None}).eval()
        x = 0.1 * torch.randn(1, int(args.seconds * enc.sample_rate))
        with torch.inference_mode():
            t = best_of({"aqa": lambda e=enc, x=x: e(x)}, args.repeat)["aqa"]
        params = sum(p.numel() for p in enc.parameters()) / 1e6
        print(f"{name:<17} {params:>7.1f}M {t:>7.2f}s {t / args.seconds:>6.3f} {'n/a':>8} {'n/a':>9}")
        del enc
        gc.collect()


if __name__ == "__main__":
    main()
