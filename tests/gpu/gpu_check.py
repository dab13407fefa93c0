"""`make gpu-check`: every experiment's full-size architecture (random weights) on a CUDA GPU in bf16.

For each system it runs what a user runs (not part of `make test`; CI has no GPU):

1. ``aqa train EXP trainer=gpu`` for a few bf16-mixed steps on small shards this script writes itself, one
   validation, checkpoints; then ``aqa eval RUN`` and ``aqa score RUN FILE`` on the GPU in bf16;
2. fp32 CPU against fp32 CUDA (TF32 off) on the same clip: the largest relative difference of the outputs;
3. a throughput table: training and scoring clips/s, TFLOP/s, MFU and peak memory, batch 32 x 10 s;
4. the scoring table of ``tests/benchmarks/bench_scoring.py`` (files/s and real-time factor, end-to-end and bare
   forward, DeePAQ / HAAQI-Net / student; ``OUT/scoring.md``).

It needs nothing from ``../shared`` and no ffmpeg: the shards hold synthetic signals (harmonic tones with noise
and low-pass degradations) whose labels are the degradation level, for every label any experiment reads. They
check plumbing, dtypes and speed; they say nothing about quality. Results: ``OUT/gpu_check.md`` and ``.json``.

    python tests/gpu/gpu_check.py --out runs/gpu_check              # on the GPU machine (about 8 min on an H200)
    python tests/gpu/gpu_check.py --device cpu --tiny --out /tmp/g  # the same path with tiny models, on a CPU
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from throughput import format_table, system_throughput  # noqa: E402

from aqa.audio import encode_flac  # noqa: E402
from aqa.cli import main as aqa  # noqa: E402
from aqa.config import compose  # noqa: E402
from aqa.tasks import build_module, load_run  # noqa: E402
from aqa.tasks.training import train  # noqa: E402

SR = 16000
FUSION_NULL = "encoder.encoders=[{name: wavlm_base_plus, checkpoint: null},{name: muq_large_msd, checkpoint: null},{name: m2d_vit_base, checkpoint: null}]"
# experiment -> (its tiny twin for --tiny, extra overrides); order matters: jsqa_mos starts from jsqa_jnd,
# the student distils from haaqi_net
SYSTEMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "deepaq_lora": ("deepaq_lora_tiny", ()),
    "jsqa_jnd": ("jsqa_jnd_tiny", ()),
    "jsqa_mos": ("jsqa_mos", ("init_from={runs}/jsqa_jnd",)),
    "haaqi_net": ("haaqi_net_tiny", ()),
    "haaqi_net_student": ("haaqi_net_student_tiny", ("distill.teacher={runs}/haaqi_net",)),
    "mmmos": ("mmmos_tiny", ()),
}
THROUGHPUT_EXTRA = {"deepaq_lora, MERT-330M": ("deepaq_lora", ["encoder=mert_v1_330m", "encoder.checkpoint=null"], 16)}
AUDIOGRAM = [10.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 60.0]


def tone(seconds: float, f0: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 10)) + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def degrade(x: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Level 0 = clean; higher levels: more noise and a lower moving-average low-pass."""
    if level == 0:
        return x
    width = 1 + 2 * level
    y = np.convolve(x, np.ones(width) / width, mode="same")
    return (y + 0.01 * level * rng.standard_normal(x.size)).astype(np.float32)


def write_shards(out: Path, groups: dict[str, int], versions: int = 6, seconds: float = 3.0) -> None:
    """WebDataset shards (``{key}.flac`` + ``{key}.json``) with every label the experiments read."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in groups.items():
        with tarfile.open(out / f"{split}-000000.tar", "w") as tar:
            for g in range(n):
                clean = tone(seconds, 110.0 * (1 + g % 5), rng)
                for v in range(versions):
                    key = f"{split}{g:03d}_v{v}"
                    quality = 5.0 - 4.0 * v / (versions - 1)
                    meta = {
                        "group": f"{split}{g}", "is_reference": v == 0, "codec": "clean" if v == 0 else "lowpass",
                        "bitrate_kbps": None if v == 0 else 16 * (versions - v), "bitrate_rank": float(versions - 1 - v),
                        "visqol_moslqo": quality, "snr_db": None if v == 0 else 30.0 - 5 * v, "mos": quality,
                        "pq": 2 * quality, "pc": 2 * quality, "ce": 2 * quality, "cu": 2 * quality,
                        "haaqi": quality / 5, "audiogram": AUDIOGRAM, "processing_kind": "clean" if v == 0 else "lowpass",
                        "system": f"s{v}",
                    }
                    for ext, data in (("flac", encode_flac(degrade(clean, v, rng), SR)), ("json", json.dumps(meta).encode())):
                        info = tarfile.TarInfo(f"{key}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))


def architecture(exp: str, tiny: bool) -> tuple[str, list[str]]:
    """The experiment to compose for system ``exp`` and the overrides that give it random weights."""
    name = SYSTEMS[exp][0] if tiny else exp
    if tiny:  # jsqa_mos has no tiny twin: it takes the stage-1 tiny encoder
        stage1 = OmegaConf.load(REPO / "configs" / "experiment" / "jsqa_jnd_tiny.yaml").defaults.encoder
        return name, [f"encoder={stage1}"] if name == "jsqa_mos" else []
    return name, [FUSION_NULL] if compose(exp).encoder.name == "fusion" else ["encoder.checkpoint=null"]


def overrides(exp: str, shards: Path, runs: Path, device: str, tiny: bool) -> list[str]:
    """``aqa train`` overrides for system ``exp``: the synthetic shards, a few bf16 steps, random weights."""
    return [
        f"data.train_urls={shards}/train-*.tar", f"data.val_urls={shards}/val-*.tar", "data.num_workers=2",
        "data.crop_s=2.0", "data.val_crop_s=3.0", "data.groups_per_batch=2", f"run_dir={runs}/{exp}", "overwrite=true",
        "logger=csv", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.precision=bf16-mixed",
        "checkpoint_every_n_steps=0",
        *(["trainer=gpu", "trainer.devices=1"] if device == "cuda" else ["trainer=cpu"]),
        *(e.format(runs=runs) for e in SYSTEMS[exp][1]),
        *architecture(exp, tiny)[1],
    ]


def fp32_cpu_vs_cuda(run: Path, clip: torch.Tensor) -> float:
    """Largest |cuda - cpu| / max|cpu| over every output of the trained run on one clip, both in fp32."""
    module, _ = load_run(run)
    module = module.float().eval()
    cond = {"audiogram": torch.tensor([AUDIOGRAM])}
    x, n = clip[None], torch.tensor([clip.numel()])
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        cpu = module(x, n, cond)
        module.cuda()
        gpu = module(x.cuda(), n.cuda(), {k: v.cuda() for k, v in cond.items()})
    worst = 0.0
    for task, a in cpu.items():
        a = a["score"] if isinstance(a, dict) else a
        b = gpu[task]["score"] if isinstance(gpu[task], dict) else gpu[task]
        worst = max(worst, float((b.float().cpu() - a).abs().max() / a.abs().max().clamp_min(1e-12)))
    return worst


def check_system(exp: str, args: argparse.Namespace, shards: Path, runs: Path, files: dict[str, Path]) -> dict[str, Any]:
    name = architecture(exp, args.tiny)[0]
    row: dict[str, Any] = {"experiment": name}
    t0 = time.perf_counter()
    metrics = train(compose(name, overrides(exp, shards, runs, args.device, args.tiny)))
    row["train_s"] = round(time.perf_counter() - t0, 1)
    row["val"] = {k: v for k, v in metrics.items() if k.startswith("val/")}
    run = runs / exp
    if not (run / "checkpoints" / "best.ckpt").is_file():
        raise RuntimeError(f"{name}: no best.ckpt after training")
    prec = ["--device", args.device, "--precision", "bf16"]
    if aqa(["eval", str(run), "--no-plot", *prec]) != 0:
        raise RuntimeError(f"{name}: aqa eval failed")
    module, cfg = load_run(run)
    embedding = all(h.is_embedding for h in module.heads.values())
    conditioned = any(h.condition_dims for h in module.heads.values())
    score_args = ["score", str(run), str(files["degraded"]), "--no-progress", "--out", str(run / "scores.jsonl"), *prec]
    score_args += ["--reference", str(files["reference"])] if embedding else []
    score_args += ["--audiogram", ",".join(map(str, AUDIOGRAM))] if conditioned else []
    if aqa(score_args) != 0:
        raise RuntimeError(f"{name}: aqa score failed: {(run / 'scores.jsonl').read_text()}")
    row["score"] = json.loads((run / "scores.jsonl").read_text().splitlines()[0])
    if args.device == "cuda":
        clip = torch.from_numpy(tone(4.0, 220.0, np.random.default_rng(1)))
        if module.encoder.sample_rate != SR:
            from aqa.encoders import resample

            clip = resample(clip[None], SR, module.encoder.sample_rate)[0]
        row["fp32_cpu_vs_cuda_rel"] = fp32_cpu_vs_cuda(run, clip)
    row["ok"] = True
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="the _tiny twins (a quick run of this script on a CPU)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu_check")
    parser.add_argument("--only", nargs="*", choices=sorted(SYSTEMS), help="a subset of systems")
    parser.add_argument("--batch", type=int, default=32, help="throughput batch (clips)")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput clip length")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-scoring", action="store_true", help="skip the scoring table (files/s)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU visible (run it on the GPU machine, or --device cpu --tiny)", file=sys.stderr)
        return 2
    out = Path(args.out)
    shards, runs = out / "shards", out / "runs"
    write_shards(shards, {"train": 8, "val": 3})
    rng = np.random.default_rng(2)
    files = {"reference": out / "reference.flac", "degraded": out / "degraded.flac"}
    clean = tone(4.0, 196.0, rng)
    files["reference"].write_bytes(encode_flac(clean, SR))
    files["degraded"].write_bytes(encode_flac(degrade(clean, 3, rng), SR))
    if args.device == "cuda":
        print(f"gpu-check on {torch.cuda.get_device_name()} (torch {torch.__version__})", flush=True)

    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "systems": {}}
    failed = []
    for exp in args.only or list(SYSTEMS):
        t0 = time.perf_counter()
        try:
            row = check_system(exp, args, shards, runs, files)
        except Exception as err:  # report every system, then fail
            traceback.print_exc()
            row = {"ok": False, "error": f"{type(err).__name__}: {err}"[:500]}
            failed.append(exp)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        report["systems"][exp] = row
        print(f"== {exp}: {'ok' if row['ok'] else 'FAILED ' + row['error']} ({row['wall_s']} s)", flush=True)

    table: dict[str, dict[str, float]] = {}
    if not args.no_throughput:
        todo = {e: (*architecture(e, args.tiny), args.batch) for e in args.only or SYSTEMS}
        if not args.tiny and not args.only:
            todo.update(THROUGHPUT_EXTRA)
        for label, (exp, arch, batch) in todo.items():
            try:
                torch.manual_seed(0)
                table[label] = system_throughput(build_module(compose(exp, arch), with_teacher=False), batch,
                                                 args.seconds, args.device, "bf16")
            except Exception as err:
                traceback.print_exc()
                failed.append(f"throughput {label}")
                table[label] = {}
                print(f"throughput {label}: {type(err).__name__}: {err}", file=sys.stderr)
            if args.device == "cuda":
                torch.cuda.empty_cache()
            print(f"throughput {label}: {table[label]}", flush=True)
    report["throughput"] = table
    scoring_md = ""
    scored = [e for e in args.only or SYSTEMS if e in ("deepaq_lora", "haaqi_net", "haaqi_net_student")]
    if scored and not args.no_scoring:  # tests/benchmarks/bench_scoring.py: end-to-end and bare forward, files/s
        try:
            from bench_scoring import run as scoring_bench

            scoring_args = ["--device", args.device, "--metrics", "none", "--no-progress"]
            scoring_args += ["--systems", ",".join(scored), "--out", str(out / "scoring.md")]
            scoring_args += ["--sizes", "tiny"] if args.tiny else []
            scoring_md, scoring_rows = scoring_bench(scoring_args)
            failed += [f"scoring {r['system']}" for r in scoring_rows if "failed" in r]
        except Exception as err:
            traceback.print_exc()
            failed.append("scoring")
            print(f"scoring: {type(err).__name__}: {err}", file=sys.stderr)
    md = [f"# gpu-check on {report['device']}", "", "| system | trained | eval + score | fp32 CPU vs CUDA (rel) | wall s |", "|---|---|---|---|---|"]
    for exp, row in report["systems"].items():
        rel = row.get("fp32_cpu_vs_cuda_rel")
        md.append(f"| {exp} | {'ok' if row['ok'] else 'FAILED'} | {'ok' if row['ok'] else row.get('error', '')[:80]} | "
                  f"{'-' if rel is None else f'{rel:.1e}'} | {row['wall_s']} |")
    if table:
        md += ["", f"Throughput: batch {args.batch} x {args.seconds:g} s (MERT-330M: 16), bf16 autocast, random weights.", "",
               format_table(table)]
    if scoring_md:
        md += ["", scoring_md.replace("# ", "## ", 1).rstrip()]
    text = "\n".join(md) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.md").write_text(text)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(text)
    if failed:
        print(f"gpu-check FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
