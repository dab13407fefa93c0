"""Training benchmarks: trainable share and step time of DeePAQ (full-size random MERT and tiny), RnC cost.

Run with `make bench`. Prints figures; asserts nothing (timings on this shared machine vary up to 3x).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from aqa.config import compose  # noqa: E402
from aqa.losses import rank_n_contrast  # noqa: E402
from aqa.tasks import build_module  # noqa: E402


def timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def train_step(module, batch: int, seconds: float):
    sr = module.encoder.sample_rate
    wav = torch.randn(batch, int(seconds * sr)) * 0.1
    labels = torch.arange(batch, dtype=torch.float32)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)

    def step():
        optimizer.zero_grad()
        out = module(wav, None)["quality"]
        module.losses["quality"](out, labels).backward()
        optimizer.step()

    return step


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, overrides, batch, seconds in [
        ("deepaq_lora (full-size MERT-v1-95M, random weights)", ["encoder.checkpoint=null"], 2, 10.0),
        ("deepaq_lora_tiny", [], 8, 3.0),
    ]:
        module = build_module(compose(name.split()[0], overrides)).train()
        total = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        t = timed(train_step(module, batch, seconds), repeat=1 if "full" in name else 3)
        print(
            f"{name}: {total / 1e6:.2f} M parameters, {trainable / 1e6:.3f} M trainable ({100 * trainable / total:.3f} %); "
            f"train step batch {batch} x {seconds:.0f} s: {t:.2f} s ({batch * seconds / t:.1f} s of audio per s)"
        )
    for n in (32, 64, 128):
        z, y = torch.randn(n, 256, requires_grad=True), torch.randint(0, 8, (n,)).float()
        t = timed(lambda z=z, y=y: rank_n_contrast(z, y).backward())
        print(f"RnC loss forward+backward, N={n}: {1e3 * t:.1f} ms")


if __name__ == "__main__":
    main()
