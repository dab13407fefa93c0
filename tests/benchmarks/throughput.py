"""Training and scoring throughput of a whole system (encoder + heads + losses), with model FLOPs utilisation.

Used by ``tests/gpu/gpu_check.py`` (``make gpu-check``) and ``bench_systems.py`` (``make bench``). A training
step is what ``aqa train`` runs per batch: the module's forward and losses under autocast, backward and an
AdamW step over the trainable parameters; scoring is the forward alone under ``no_grad``. FLOPs are counted
once per step with ``torch.utils.flop_counter`` (matmuls, convolutions and attention; the rest is noise),
MFU = counted FLOPs / time / the accelerator's peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense bf16 matrix peak in TFLOP/s used for MFU (vendor datasheet; 788 measured on random data there).
PEAK_TFLOPS = {"NVIDIA H200": 989.0, "NVIDIA H100 80GB HBM3": 989.0, "NVIDIA A100-SXM4-80GB": 312.0}
GROUP = 8  # clips per group: one reference + 7 degraded versions


def synthetic_batch(module: Any, batch: int, seconds: float, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """A batch shaped like the data module's: (B, T) noise-excited tones at the encoder's rate, every label
    the module's tasks read (uniform 1..5), groups of :data:`GROUP` with a reference first, an audiogram."""
    g = torch.Generator().manual_seed(seed)
    sr = module.encoder.sample_rate
    n = int(seconds * sr)
    t = torch.arange(n) / sr
    f0 = 100.0 + 400.0 * torch.rand(batch, 1, generator=g)
    wav = 0.2 * torch.sin(2 * torch.pi * f0 * t) + 0.02 * torch.randn(batch, n, generator=g)
    group = torch.arange(batch) // GROUP
    return {
        "wav": wav.to(device),
        "lengths": torch.full((batch,), n, device=device),
        "labels": {label: (1 + 4 * torch.rand(batch, generator=g)).to(device) for label in module.labels.values()},
        "group": group.to(device),
        "is_reference": (torch.arange(batch) % GROUP == 0).to(device),
        "conditions": {"audiogram": (60 * torch.rand(batch, 8, generator=g)).to(device)},
    }


def parameter_counts(module: Any) -> dict[str, int]:
    """Parameters of a ``MultiTaskModule`` by part: ``encoder``, ``heads``, ``scoring`` (encoder + heads: what
    scoring runs) and ``all`` (also what only training uses, e.g. the distilled student's projections onto its
    teacher's hidden states)."""
    encoder = sum(p.numel() for p in module.encoder.parameters())
    heads = sum(p.numel() for p in module.heads.parameters())
    return {"encoder": encoder, "heads": heads, "scoring": encoder + heads,
            "all": sum(p.numel() for p in module.parameters())}


def parameter_cut(student: Any, teacher: Any) -> dict[str, float]:
    """Fraction of the teacher's parameters the student does without, per part of :func:`parameter_counts`
    (``encoder``: the backbones alone; ``scoring``: encoder + heads)."""
    s, t = parameter_counts(student), parameter_counts(teacher)
    return {part: 1.0 - s[part] / t[part] for part in ("encoder", "scoring")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _flops(step: Callable[[], Any]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def system_throughput(
    module: Any,
    batch: int = 32,
    seconds: float = 10.0,
    device: str | torch.device = "cuda",
    precision: str = "bf16",
    train: bool = True,
    warmup: int = 2,
    iters: int = 5,
) -> dict[str, float]:
    """Clips/s, peak memory (GiB, CUDA only), TFLOP/s and MFU of training and scoring ``module``.

    Args:
        module: a ``MultiTaskModule`` (random weights are fine).
        batch, seconds: clips per step and their length.
        precision: ``bf16`` (autocast) or ``fp32``.
        train: also time training steps (forward, float32 losses, backward, AdamW step).
    Returns:
        ``{"params_m", "scoring_params_m", "encoder_params_m", "trainable_m", "score_clips_s", "score_peak_gib",
        "score_tflops", "score_mfu", and the same with ``encoder_`` (the encoder's forward alone) and ``train_``}``
        (parameters: :func:`parameter_counts`, in millions); MFU is NaN where the device's peak is unknown (CPU).
    """
    device = torch.device(device)
    module = module.to(device)
    data = synthetic_batch(module, batch, seconds, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    peak = PEAK_TFLOPS.get(torch.cuda.get_device_name(device), float("nan")) if device.type == "cuda" else float("nan")
    out = {
        "params_m": parameter_counts(module)["all"] / 1e6,
        "scoring_params_m": parameter_counts(module)["scoring"] / 1e6,  # without training-only parts
        "encoder_params_m": parameter_counts(module)["encoder"] / 1e6,
        "trainable_m": sum(p.numel() for p in module.parameters() if p.requires_grad) / 1e6,
    }

    def score() -> None:
        with torch.no_grad(), amp:
            module(data["wav"], data["lengths"], data["conditions"])

    def encode() -> None:  # the encoder alone: score minus this is the heads' share
        with torch.no_grad(), amp:
            module.encoder(data["wav"], data["lengths"])

    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5) if params else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with amp:
            loss, _ = module._shared_step(data, "val")  # the training step's computation, without logging state
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes, as `trainer=gpu` (benchmark: true) trains
    runs = [("score", score, module.eval), ("encoder", encode, module.eval)]
    runs += [("train", step, module.train)] if train and optimizer else []
    for name, fn, mode in runs:
        mode()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        seconds_per_step = _timed(fn, device, warmup, iters)
        flops = _flops(fn)
        tflops = flops / seconds_per_step / 1e12
        out[f"{name}_clips_s"] = batch / seconds_per_step
        out[f"{name}_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        out[f"{name}_tflops"] = tflops
        out[f"{name}_mfu"] = tflops / peak
    module.eval()
    return out


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of :func:`system_throughput` results, one row per system."""
    head = ("| system | params M | trainable M | train clips/s | train TFLOP/s | train MFU | train peak GiB | "
            "score clips/s | score TFLOP/s | score MFU | score peak GiB | encoder alone clips/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def f(v: float | None, spec: str) -> str:
        return "-" if v is None or v != v else format(v, spec)

    for name, r in rows.items():
        lines.append(
            f"| {name} | {f(r.get('params_m'), '.1f')} | {f(r.get('trainable_m'), '.2f')} | "
            f"{f(r.get('train_clips_s'), '.1f')} | {f(r.get('train_tflops'), '.3g')} | {f(r.get('train_mfu'), '.1%')} | "
            f"{f(r.get('train_peak_gib'), '.1f')} | {f(r.get('score_clips_s'), '.1f')} | {f(r.get('score_tflops'), '.3g')} | "
            f"{f(r.get('score_mfu'), '.1%')} | {f(r.get('score_peak_gib'), '.1f')} | {f(r.get('encoder_clips_s'), '.1f')} |"
        )
    return "\n".join(lines)
