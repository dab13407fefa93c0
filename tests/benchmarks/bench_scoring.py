"""Scoring benchmark: files/s and real-time factor of scoring audio files with DeePAQ, HAAQI-Net and the
HAAQI-Net student (tiny and full-size), beside a bare forward of the same network on the same tensors and
the reference metrics (pyclarity HAAQI, ViSQOL, DNSMOS, CDPAM) on the same clips.

The clips are ``--clips`` excerpts of ``--seconds`` s cut from the real clean clips in ``../shared/data/clean``
(music first, then speech; synthetic harmonic tones with noise when that folder is absent or with
``--synthetic``), written as FLAC references with a degraded version each: MP3 at 64 kbit/s through ffmpeg,
or a low-pass plus noise FLAC where ffmpeg is missing. Every row scores the degraded files:

- ``end-to-end``: what a user runs from a model folder: decode + down-mix + resample + forward (+ the
  reference for full-reference models: DeePAQ scores each file against its own reference, two forwards per
  file). Through ``aqa.inference.loading.load`` when that module exists, else ``aqa.inference.engine.score_files``
  (the table names the one used). Model loading and one warm-up file are timed apart ("setup s").
- ``bare forward``: ``module(wav, lengths, conditions)`` on the same clips already decoded, resampled and
  on the device, in batches of ``--batch`` (and of 1): the network's share of the end-to-end time.
- reference metrics: :func:`aqa.metrics.compute` on (reference file, degraded file), CPU only; a metric that
  cannot run here (package or weights missing) gets ``unavailable: <reason>`` in its row.

Full-size models have random weights (``encoder.checkpoint=null``): the figures are speed, not quality.
Real-time factor = audio seconds scored per wall-clock second (higher is faster). Prints a markdown table
and writes it to ``--out`` (default ``runs/bench/scoring.md``) with a ``.json`` beside it, after every row.

    python tests/benchmarks/bench_scoring.py                        # CPU: about 4-9 min on 2 busy cores
    python tests/benchmarks/bench_scoring.py --device cuda --metrics none
    python tests/benchmarks/bench_scoring.py --sizes tiny --metrics none --clips 2 --seconds 1   # smoke run
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: the repository's aqa package
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from scipy.signal import lfilter  # noqa: E402
from torch import Tensor  # noqa: E402
from tqdm import tqdm  # noqa: E402

from aqa.config import compose, save_config  # noqa: E402
from aqa.inference.device import autocast, resolve_device  # noqa: E402
from aqa.inference.engine import load_for  # noqa: E402
from aqa.tasks import build_module, load_run  # noqa: E402

# system -> its tiny twin; full size = the experiment itself with encoder.checkpoint=null (random weights)
SYSTEMS: dict[str, str] = {
    "deepaq_lora": "deepaq_lora_tiny",
    "haaqi_net": "haaqi_net_tiny",
    "haaqi_net_student": "haaqi_net_student_tiny",
}
METRICS = ("haaqi", "visqol", "dnsmos", "cdpam")
# clips per reference metric on the CPU, per 10 s clip here: pyclarity HAAQI ~15 s, ViSQOL ~4 s, DNSMOS ~1 s,
# CDPAM ~100 s (on this shared 2-core machine under load)
METRIC_CLIPS = {"haaqi": 2, "visqol": 4, "dnsmos": 8, "cdpam": 1}
AUDIOGRAM = [10.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 60.0]  # dB HL at 250 Hz .. 8 kHz, a sloping loss
SHARED = REPO.parent / "shared" / "data"
MP3_KBPS = 64
SYNTH_SR = 44100


@dataclass(frozen=True)
class Clip:
    """One benchmark item: a degraded file, its reference file and the excerpt's length in seconds."""

    reference: Path
    degraded: Path
    seconds: float
    source: str


# ---------------------------------------------------------------------------------------------- clips


def excerpts(folder: Path, n: int, seconds: float) -> list[tuple[str, np.ndarray, int]]:
    """``n`` non-overlapping excerpts of ``seconds`` s from the clips in ``folder``, round-robin over the
    sources (multi-channel music first, then the rest, each by name) so any prefix mixes sources.

    Returns:
        ``[(name, audio (C, T) float32, rate Hz)]``; fewer than ``n`` when the clips are too short.
    """
    sources = []
    for path in sorted(folder.glob("*.ogg")) + sorted(folder.glob("*.wav")) + sorted(folder.glob("*.flac")):
        info = sf.info(str(path))
        if info.duration >= seconds:
            sources.append((info.channels == 1, path.name.split(".")[0], path, info))
    sources.sort(key=lambda s: (s[0], s[1]))
    decoded: dict[Path, np.ndarray] = {}
    out: list[tuple[str, np.ndarray, int]] = []
    k = 0
    while len(out) < n and sources:
        alive = []
        for mono, name, path, info in sources:
            if len(out) >= n:
                break
            start = int(k * seconds * info.samplerate)
            stop = start + int(seconds * info.samplerate)
            if stop > info.frames:
                continue
            if path not in decoded:
                decoded[path] = sf.read(str(path), dtype="float32", always_2d=True)[0].T
            out.append((f"{name}@{k * seconds:g}s", decoded[path][:, start:stop].copy(), info.samplerate))
            alive.append((mono, name, path, info))
        sources, k = alive, k + 1
    return out


def synthetic(n: int, seconds: float, seed: int = 0) -> list[tuple[str, np.ndarray, int]]:
    """``n`` stereo harmonic tones (random f0 100-500 Hz, 12 partials) with pink-ish noise, 44.1 kHz, -15 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SYNTH_SR)) / SYNTH_SR
    out = []
    for i in range(n):
        f0 = rng.uniform(100.0, 500.0)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 13))
        noise = lfilter([1.0], [1.0, -0.7], rng.standard_normal((2, t.size)), axis=-1)
        x = tone + 0.5 * noise / np.abs(noise).max()
        out.append((f"synthetic{i}", (0.18 * x / np.abs(x).max()).astype(np.float32), SYNTH_SR))
    return out


def lowpass_noise(x: np.ndarray, seed: int) -> np.ndarray:
    """A degraded copy without ffmpeg: 9-tap moving-average low-pass plus white noise at about -40 dBFS."""
    rng = np.random.default_rng(seed)
    kernel = np.ones(9) / 9
    y = np.stack([np.convolve(c, kernel, mode="same") for c in x])
    return (y + 0.01 * rng.standard_normal(y.shape)).astype(np.float32)


def make_clips(
    folder: Path, n: int, seconds: float, shared: Path | None, codec: bool = True
) -> tuple[list[Clip], str]:
    """Write ``n`` (reference FLAC, degraded) pairs into ``folder``.

    Args:
        shared: the folder holding ``clean/`` (real clips); None or missing: synthetic clips.
        codec: degrade with MP3 at :data:`MP3_KBPS` kbit/s when ffmpeg exists (else low-pass + noise).

    Returns:
        ``(clips, one line describing them)``.
    """
    from aqa.audio import run_ffmpeg

    clean = shared / "clean" if shared is not None else None
    items = excerpts(clean, n, seconds) if clean is not None and clean.is_dir() else []
    what = f"excerpts of the real clips in {clean}" if items else "synthetic harmonic tones with noise"
    if len(items) < n:
        items = synthetic(n, seconds)
        what = "synthetic harmonic tones with noise"
    use_mp3 = codec and shutil.which("ffmpeg") is not None
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, (name, x, sr) in enumerate(items):
        ref = folder / f"{i:02d}_ref.flac"
        sf.write(str(ref), x.T, sr)
        if use_mp3:
            deg = folder / f"{i:02d}_deg.mp3"
            run_ffmpeg(
                ["-i", str(ref), "-c:a", "libmp3lame", "-b:a", f"{MP3_KBPS}k", str(deg)], what="mp3 encode"
            )
        else:
            deg = folder / f"{i:02d}_deg.flac"
            sf.write(str(deg), lowpass_noise(x, i).T, sr)
        clips.append(Clip(ref, deg, x.shape[-1] / sr, name))
    rates = sorted({f"{sr / 1000:g} kHz {x.shape[0]} ch" for _, x, sr in items})
    how = f"MP3 {MP3_KBPS} kbit/s (ffmpeg)" if use_mp3 else "low-pass + noise FLAC (no ffmpeg)"
    return clips, f"{len(clips)} x {seconds:g} s {what} ({', '.join(rates)}); FLAC reference, degraded: {how}"


# ---------------------------------------------------------------------------------------------- models


def write_run(experiment: str, overrides: Sequence[str], run: Path, seed: int = 0) -> torch.nn.Module:
    """A run folder as ``aqa train`` leaves it (``config.yaml`` + ``checkpoints/best.ckpt``) with seeded random
    weights; returns the module (eval mode, CPU) holding the same weights."""
    cfg = compose(experiment, [*overrides, f"run_dir={run}"])
    torch.manual_seed(seed)
    module = build_module(cfg, with_teacher=False).eval()
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict()}, run / "checkpoints" / "best.ckpt")
    save_config(cfg, run / "config.yaml")
    return module


def needs(module: torch.nn.Module) -> tuple[bool, dict[str, list[float]]]:
    """(whether the model scores against a reference, the conditions its heads read: audiogram -> 8 dB HL)."""
    heads = module.heads.values()
    conditions = {
        k: (AUDIOGRAM if k == "audiogram" else [0.0] * n) for h in heads for k, n in h.condition_dims.items()
    }
    return all(h.is_embedding for h in heads), conditions


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # fn(*args, **kwargs) keeping only the keywords fn accepts (the scorer API may not take all of them)
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def open_scorer(
    run: Path, device: str, precision: str, batch: int, reference: bool, conditions: dict[str, list[float]]
) -> tuple[Callable[[Sequence[Clip]], list[Any]], str, int]:
    """Load the model in ``run`` for end-to-end scoring of degraded files (with their references when
    ``reference``).

    Returns:
        ``(score(clips) -> one result per clip, the API used, the batch size it scores with)``: the batched
        ``aqa.inference.loading.load(run).score(paths, reference=..., audiogram=...)`` when that module exists, else
        ``aqa.inference.engine.score_files`` (one file at a time; one call per pair for reference models).
    """
    try:
        from aqa.inference import loading as api  # the batched scorer / Python API, where present
    except ImportError:
        api = None
    if api is not None and hasattr(api, "load"):
        model = _call(api.load, str(run), device=device, precision=precision, batch_size=batch)

        def score_api(clips: Sequence[Clip]) -> list[Any]:
            extra: dict[str, Any] = {"batch_size": batch, "sr": None}
            if reference:
                extra["reference"] = [str(c.reference) for c in clips]
            if "audiogram" in conditions:
                extra["audiogram"] = conditions["audiogram"]
            out = _call(model.score, [str(c.degraded) for c in clips], **extra)
            if not isinstance(out, dict):  # records, one per file
                return list(out)
            # task -> (N,) scores: one result per file, every task finite
            values = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in out.values()]
            if not values or any(v.shape != (len(clips),) or not np.all(np.isfinite(v)) for v in values):
                raise RuntimeError(f"Scorer.score gave {out!r} for {len(clips)} files")
            return [{task: float(v[i]) for task, v in out.items()} for i in range(len(clips))]

        return score_api, "aqa.inference.loading.load", batch

    from aqa.inference.engine import score_files

    module, _ = load_run(run)

    def score_old(clips: Sequence[Clip]) -> list[Any]:
        if reference:  # one reference per file: one call per pair
            groups = [([c.degraded], c.reference) for c in clips]
        else:
            groups = [([c.degraded for c in clips], None)]
        records = []
        for paths, ref in groups:
            records += list(
                score_files(module, paths, ref, conditions or None, device=device, precision=precision)
            )
        bad = [r for r in records if "error" in r]
        if bad:
            raise RuntimeError(f"score_files: {bad[0]['error']}")
        return records

    return score_old, "aqa.inference.engine.score_files", 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_seconds(
    module: torch.nn.Module,
    waves: Sequence[Tensor],
    conditions: dict[str, list[float]],
    batch: int,
    device: torch.device,
    precision: str,
    repeats: int = 1,
) -> float:
    """Wall seconds of ``module(wav, lengths, conditions)`` over ``waves`` (mono (T_i,) at the encoder's rate,
    zero-padded per batch with their true lengths), already on ``device``: the best of ``repeats`` passes after
    one warm-up batch."""
    batches = []
    for i in range(0, len(waves), batch):
        chunk = waves[i : i + batch]
        wav = torch.nn.utils.rnn.pad_sequence(list(chunk), batch_first=True).to(device)
        lengths = torch.tensor([w.numel() for w in chunk], device=device)
        cond = {k: torch.tensor([v] * len(chunk), device=device) for k, v in conditions.items()}
        batches.append((wav, lengths, cond))
    module = module.to(device).eval()

    def run(items: Sequence[tuple[Tensor, Tensor, dict[str, Tensor]]]) -> None:
        with torch.no_grad(), autocast(device, precision):
            for wav, lengths, cond in items:
                module(wav, lengths, cond)

    run(batches[:1])
    _sync(device)
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batches)
        _sync(device)
        walls.append(time.perf_counter() - start)
    return min(walls)


def row(name: str, path: str, **values: Any) -> dict[str, Any]:
    """A table row: ``files`` scored in ``wall_s`` of ``audio_s`` audio -> files/s, real-time factor."""
    out = {"system": name, "path": path, **values}
    if out.get("wall_s"):
        out["files_s"] = out["files"] / out["wall_s"]
        out["s_per_file"] = out["wall_s"] / out["files"]
        out["rtf"] = out["audio_s"] / out["wall_s"]
    return out


def bench_system(
    system: str, size: str, clips: Sequence[Clip], args: argparse.Namespace, work: Path
) -> list[dict[str, Any]]:
    """End-to-end and bare-forward rows for one system at one size (``tiny`` or ``full``). The first clip is
    scored once, untimed, after loading (first calls on a new shape are several times slower on the CPU)."""
    device = resolve_device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    experiment = SYSTEMS[system] if size == "tiny" else system
    overrides = [] if size == "tiny" else ["encoder.checkpoint=null"]
    name = f"{experiment}" + (" (full size, random weights)" if size == "full" else " (random weights)")
    run = work / experiment
    common = {"size": size, "device": f"{device.type} {precision}", "files": len(clips)}
    audio_s = sum(c.seconds for c in clips)
    try:
        module = write_run(experiment, overrides, run)
        reference, conditions = needs(module)
        params = sum(p.numel() for p in module.parameters()) / 1e6
        common["params_m"] = params
        t0 = time.perf_counter()
        score, api, batch = open_scorer(run, args.device, precision, args.batch, reference, conditions)
        score(clips[:1])  # warm-up: first-call costs (allocator, kernels) count as setup
        _sync(device)
        setup = time.perf_counter() - t0
        walls = []
        for _ in range(args.repeats):  # the best pass: the machine's other load only ever adds time
            t0 = time.perf_counter()
            results = score(clips)
            _sync(device)
            walls.append(time.perf_counter() - t0)
        wall = min(walls)
        if len(results) != len(clips):
            raise RuntimeError(f"{api} returned {len(results)} results for {len(clips)} files")
        rows = [
            row(
                name,
                f"end-to-end ({api})",
                batch=batch,
                setup_s=setup,
                wall_s=wall,
                audio_s=audio_s,
                **common,
            )
        ]
        sr = module.encoder.sample_rate
        waves = [load_for(c.degraded, sr) for c in clips]
        if reference:
            waves += [load_for(c.reference, sr) for c in clips]
        what = "bare forward" + (" (degraded + reference)" if reference else "")
        for b in sorted({1, args.batch}):
            wall = forward_seconds(module, waves, conditions, b, device, precision, args.repeats)
            rows.append(row(name, what, batch=b, wall_s=wall, audio_s=audio_s, **common))
        return rows
    except Exception as err:  # one failing system is reported in its row; the others still run
        traceback.print_exc()
        return [
            row(
                name,
                "end-to-end",
                failed=f"{type(err).__name__}: {' '.join(str(err).split())}"[:300],
                **common,
            )
        ]
    finally:
        shutil.rmtree(run, ignore_errors=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- metrics


def bench_metric(name: str, clips: Sequence[Clip]) -> dict[str, Any]:
    """:func:`aqa.metrics.compute` on each (reference, degraded) pair on the CPU; a metric that cannot run
    here gives a row with ``unavailable: <reason>``. One untimed warm-up call on a 1 s excerpt (imports,
    model loading) is the row's setup time."""
    from aqa.metrics import compute, compute_arrays, read

    label = {
        "haaqi": "HAAQI (pyclarity)",
        "visqol": "ViSQOL v3 (visqol-python)",
        "dnsmos": "DNSMOS (speechmos)",
        "cdpam": "CDPAM (cdpam)",
    }.get(name, name)
    opts: dict[str, Any] = {"audiogram": AUDIOGRAM} if name == "haaqi" else {}
    common = {"size": "-", "device": "cpu", "files": len(clips), "batch": 1}
    try:
        t0 = time.perf_counter()
        ref, sr_ref = read(clips[0].reference, "reference")
        deg, sr_deg = read(clips[0].degraded, "degraded")
        compute_arrays(name, ref[:, :sr_ref], sr_ref, deg[:, :sr_deg], sr_deg, **opts)
        setup = time.perf_counter() - t0
    except Exception as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        return row(label, "reference metric", unavailable=reason, **common)
    t0 = time.perf_counter()
    try:
        for clip in clips:
            compute(name, clip.reference, clip.degraded, **opts)
    except Exception as err:  # reported in the row; the other rows still run
        return row(label, "reference metric", failed=" ".join(str(err).split())[:200], **common)
    wall = time.perf_counter() - t0
    return row(
        label,
        "reference metric, decode + score",
        setup_s=setup,
        wall_s=wall,
        audio_s=sum(c.seconds for c in clips),
        **common,
    )


# ---------------------------------------------------------------------------------------------- report


def _f(value: Any, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table of :func:`bench_system` and :func:`bench_metric` rows."""
    lines = [
        "| system | path | device | params M | batch | files | setup s | s / file | files/s | x real time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "unavailable" in r or "failed" in r:
            why = f"unavailable: {r['unavailable']}" if "unavailable" in r else f"FAILED: {r['failed']}"
            lines.append(f"| {r['system']} | {r['path']} | {r['device']} | {why} | | | | | | |")
            continue
        lines.append(
            f"| {r['system']} | {r['path']} | {r['device']} | {_f(r.get('params_m'), '.2f')} | {r['batch']} | "
            f"{r['files']} | {_f(r.get('setup_s'), '.1f')} | {_f(r['s_per_file'], '.3g')} | "
            f"{_f(r['files_s'], '.3g')} | {_f(r['rtf'], '.3g')} |"
        )
    return "\n".join(lines)


def comparisons(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Lines set against the HAAQI-Net paper: HAAQI-Net vs pyclarity HAAQI per file, student vs teacher."""

    def find(system: str, path: str) -> dict[str, Any] | None:
        for r in rows:
            if r["system"].startswith(system) and r["path"].startswith(path) and "s_per_file" in r:
                return r
        return None

    out = []
    haaqi = find("HAAQI (pyclarity)", "reference metric")
    for size, teacher_name, student_name in (
        ("full size", "haaqi_net ", "haaqi_net_student "),
        ("tiny", "haaqi_net_tiny", "haaqi_net_student_tiny"),
    ):
        teacher, student = find(teacher_name, "end-to-end"), find(student_name, "end-to-end")
        if haaqi and teacher:
            out.append(
                f"- HAAQI-Net ({size}) vs HAAQI: {haaqi['s_per_file']:.2f} s -> {teacher['s_per_file']:.3f} s "
                f"per {clip_s(rows):g} s file, {haaqi['s_per_file'] / teacher['s_per_file']:.0f}x faster "
                "(the paper: 62.5 s -> 2.5 s, 25x)"
            )
        if teacher and student:
            cut = 1 - student["s_per_file"] / teacher["s_per_file"]
            out.append(
                f"- student vs HAAQI-Net ({size}), end-to-end: {teacher['s_per_file']:.3f} s -> "
                f"{student['s_per_file']:.3f} s per file, {abs(cut):.0%} {'less' if cut >= 0 else 'more'} time "
                "(the paper: a further 96 % cut)"
            )
    return out


def clip_s(rows: Sequence[dict[str, Any]]) -> float:
    r = next((r for r in rows if r.get("audio_s")), None)
    return r["audio_s"] / r["files"] if r else float("nan")


def render(rows: Sequence[dict[str, Any]], header: Sequence[str]) -> str:
    return "\n".join([*header, "", format_table(rows), "", *comparisons(rows)]).rstrip() + "\n"


def _write(path: Path, text: str) -> None:
    # atomic: a crash never leaves a half-written table
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _counts(text: str, names: Sequence[str]) -> dict[str, int]:
    out = dict(METRIC_CLIPS)
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, _, value = item.partition("=")
        if key not in names or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--metric-clips: {item!r} is not NAME=N with NAME in {list(names)} and N >= 1")
        out[key] = int(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="cuda" if cuda else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--clips", type=int, default=16, help="clips for the models (default 16)")
    p.add_argument(
        "--full-clips", type=int, help="clips for full-size models (default: 4 on CPU, --clips on CUDA)"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds (default 10)")
    p.add_argument(
        "--batch", type=int, help="batch size of the batched scorer and bare forward (16 CUDA, 1 CPU)"
    )
    p.add_argument(
        "--repeats", type=int, default=2, help="timed passes per model row, the best kept (default 2)"
    )
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list from {list(SYSTEMS)}")
    p.add_argument("--sizes", default="tiny,full", help="comma list from tiny,full")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma list from {list(METRICS)}, or none")
    p.add_argument("--metric-clips", default="", help=f"NAME=N,... clips per metric (default {METRIC_CLIPS})")
    p.add_argument("--synthetic", action="store_true", help="synthetic clips even when ../shared/data exists")
    p.add_argument("--shared", type=Path, default=SHARED, help=f"the shared data folder (default {SHARED})")
    p.add_argument("--out", type=Path, default=Path("runs/bench/scoring.md"), help="markdown table (+ .json)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(argv: Sequence[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Run the benchmark (see the module docstring); returns (the markdown written to ``--out``, the rows).

    Raises:
        ValueError: a bad option (the message is one line naming it).
    """
    args = build_parser().parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    sizes = [s for s in args.sizes.split(",") if s]
    metrics = [] if args.metrics.strip() == "none" else [m for m in args.metrics.split(",") if m]
    for flag, items, known in (
        ("--systems", systems, SYSTEMS),
        ("--sizes", sizes, ("tiny", "full")),
        ("--metrics", metrics, METRICS),
    ):
        unknown = [i for i in items if i not in known]
        if unknown:
            raise ValueError(f"{flag}: unknown {unknown}; choose from {list(known)}")
    counts = _counts(args.metric_clips, METRICS)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible here (use --device cpu)")
    args.batch = args.batch or (16 if cuda else 1)
    full_clips = args.full_clips or (args.clips if cuda else min(args.clips, 4))
    if min(args.clips, full_clips, args.batch, args.repeats) < 1 or args.seconds <= 0:
        raise ValueError("--clips, --full-clips, --batch and --repeats must be >= 1 and --seconds > 0")
    torch.manual_seed(0)
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} torch threads"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aqa_scoring_bench_") as tmp:
        work = Path(tmp)
        n = max([args.clips] + [counts[m] for m in metrics])
        clips, described = make_clips(
            work / "clips", n, args.seconds, None if args.synthetic else args.shared
        )
        header = [
            f"# Scoring benchmark on {where} (torch {torch.__version__})",
            "",
            f"- Clips: {described}. Models score the degraded files; full-size rows use the first {full_clips}, "
            "reference metrics (CPU) the first 'files'.",
            "- Full-size models have random weights (encoder.checkpoint=null): speed figures, not quality.",
            "- End-to-end = decode + resample + forward (+ the file's own reference for DeePAQ: two forwards per "
            "file); bare forward = the same network on the same clips already decoded, resampled and on the device.",
            f"- Model rows: best of {args.repeats} timed passes; setup s = model load + one warm-up file (metrics: "
            "imports, weights and a 1 s warm-up pair, then one pass).",
            "- x real time = audio seconds scored per wall second (higher is faster). Timings on a shared machine "
            "vary run to run: compare rows of one run.",
        ]
        todo = [(s, z) for z in sizes for s in systems] + [(m, "metric") for m in metrics]
        bar = tqdm(todo, desc="scoring bench", disable=args.no_progress, file=sys.stderr)
        for what, size in bar:
            bar.set_postfix_str(f"{what} ({size})")
            if size == "metric":
                rows.append(bench_metric(what, clips[: counts[what]]))
            else:
                picked = clips[: full_clips if size == "full" else args.clips]
                rows += bench_system(what, size, picked, args, work)
            text = render(rows, header)
            _write(args.out, text)
            _write(
                args.out.with_suffix(".json"),
                json.dumps({"header": header, "clips": [c.source for c in clips], "rows": rows}, indent=1),
            )
    return text, rows


def main(argv: Sequence[str] | None = None) -> int:
    try:
        text, rows = run(argv)
    except ValueError as err:
        print(f"scoring bench: {err}", file=sys.stderr)
        return 2
    print(text)
    failed = [r["system"] for r in rows if "failed" in r]
    if failed:
        print(f"scoring bench: FAILED {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
