"""Render synthetic source audio: ``python -m data_prep.render --kind music|speech --out DIR --n N --seed S``.

Music comes from the music21 corpus through fluidsynth (44.1 kHz stereo), speech from espeak-ng
(22.05 kHz mono); see :mod:`aqa.data.render`. Clip ``k`` (``0 <= k < n``) is written as
``OUT/{kind}_{k:05d}_{name}.wav`` (16-bit) with ``.json`` metadata beside it (score or voice and text,
instrument, tempo, attribution); the set is a pure function of ``--seed``. ``--shard-id i --num-shards N``
renders the clips with ``k % N == i``; ``--jobs`` renders in parallel; a clip is written under a temporary
name and renamed, and a rerun keeps clips already rendered with the same settings. Each job writes
``render-{kind}-IIII-of-NNNN.json`` and, once all jobs are done, ``render-{kind}.json`` lists every clip
(and every failure). Example::

    python -m data_prep.render --kind music --out data/render/music --n 8 --seed 0 --max-seconds 15 --jobs 2
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import soundfile as sf

from aqa.data.render import find_soundfont, render_music, render_speech, require_tool
from aqa.data.shards import short_error


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    s: dict[str, Any] = {"kind": args.kind, "seed": args.seed, "max_seconds": args.max_seconds}
    if args.kind == "music":
        s["composers"] = list(args.composers)
    return s


def _existing(out: Path, index: int, kind: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    for meta_path in out.glob(f"{kind}_{index:05d}_*.json"):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("settings") == settings and meta_path.with_suffix(".wav").is_file():
            return meta
    return None


def render_one(index: int, out: str, settings: dict[str, Any], soundfont: str | None, timeout_s: float) -> dict[str, Any]:
    """Render clip ``index`` into ``out`` (temp name, then rename); returns its metadata or an error entry."""
    out_dir = Path(out)
    kind = settings["kind"]
    done = _existing(out_dir, index, kind, settings)
    if done is not None:
        return {**done, "resumed": True}
    t0 = time.perf_counter()
    try:
        if kind == "music":
            clip = render_music(index, seed=settings["seed"], max_seconds=settings["max_seconds"],
                                composers=tuple(settings["composers"]), soundfont=soundfont, timeout_s=timeout_s)
        else:
            clip = render_speech(index, seed=settings["seed"], max_seconds=settings["max_seconds"], timeout_s=timeout_s)
    except Exception as exc:  # one failing clip must not stop the job
        return {"index": index, "error": short_error(exc)}
    for stale in out_dir.glob(f"{kind}_{index:05d}_*"):  # an earlier render with other settings
        stale.unlink()
    wav, meta_path = out_dir / f"{clip.name}.wav", out_dir / f"{clip.name}.json"
    meta = {**clip.meta, "file": wav.name, "sample_rate": clip.sample_rate, "settings": settings,
            "render_s": round(time.perf_counter() - t0, 3)}
    tmp = wav.with_name(wav.name + ".tmp")
    sf.write(tmp, clip.audio.T, clip.sample_rate, subtype="PCM_16", format="WAV")
    meta_tmp = meta_path.with_name(meta_path.name + ".tmp")
    meta_tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, wav)
    os.replace(meta_tmp, meta_path)  # the json marks the clip finished
    return meta


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the renderer."""
    p = argparse.ArgumentParser(prog="aqa prep render", description="Render music (music21 + fluidsynth) or "
                                "speech (espeak-ng) reproducibly, with capped lengths.")
    p.add_argument("--kind", required=True, choices=["music", "speech"])
    p.add_argument("--out", required=True, type=Path, help="output folder for the wav/json files")
    p.add_argument("--n", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="fixes scores/voices/sentences (default 0)")
    p.add_argument("--max-seconds", type=float, default=None, help="clip length cap (default music 20, speech 8)")
    p.add_argument("--composers", default="bach", help="music21 corpus composers, comma-separated (default bach)")
    p.add_argument("--soundfont", default=None, help="General MIDI .sf2 (default: fluid-soundfont-gm)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-clip fluidsynth/espeak-ng timeout (s)")
    p.add_argument("--shard-id", type=int, default=0, help="this job's index in 0..N-1 (default 0)")
    p.add_argument("--num-shards", type=int, default=1, help="number of jobs N splitting the clips (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="parallel renders in this job (same output for any value)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Render; returns 0 when every clip was rendered, 1 when some failed, 2 on bad input or missing tools."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    if args.max_seconds is None:
        args.max_seconds = 20.0 if args.kind == "music" else 8.0
    args.composers = tuple(c.strip() for c in args.composers.split(",") if c.strip())
    try:
        if args.n < 0 or args.max_seconds <= 0 or args.jobs < 1:
            raise ValueError("need --n >= 0, --max-seconds > 0 and --jobs >= 1")
        if args.num_shards < 1 or not 0 <= args.shard_id < args.num_shards:
            raise ValueError(f"need 0 <= --shard-id < --num-shards, got {args.shard_id} of {args.num_shards}")
        if args.kind == "music":
            require_tool("fluidsynth")
            soundfont = str(find_soundfont(args.soundfont))
            import music21  # noqa: F401  (fail early with a clear message)
        else:
            require_tool("espeak-ng")
            soundfont = None
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as err:
        print(f"aqa prep render: error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for tmp in args.out.glob(f"{args.kind}_*.tmp"):
        tmp.unlink()
    settings = _settings(args)
    indices = [k for k in range(args.n) if k % args.num_shards == args.shard_id]
    t0 = time.perf_counter()
    if args.jobs == 1 or len(indices) <= 1:
        results = [render_one(k, str(args.out), settings, soundfont, args.timeout_s) for k in indices]
    else:
        with cf.ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(render_one, indices, [str(args.out)] * len(indices), [settings] * len(indices),
                                    [soundfont] * len(indices), [args.timeout_s] * len(indices)))
    clips = [r for r in results if "error" not in r]
    errors = [r for r in results if "error" in r]
    job = {"settings": settings, "shard_id": args.shard_id, "num_shards": args.num_shards, "n": args.n,
           "clips": clips, "failed": errors, "elapsed_s": round(time.perf_counter() - t0, 3)}
    name = f"render-{args.kind}-{args.shard_id:04d}-of-{args.num_shards:04d}.json"
    (args.out / name).write_text(json.dumps(job, indent=1) + "\n", encoding="utf-8")
    parts = [args.out / f"render-{args.kind}-{i:04d}-of-{args.num_shards:04d}.json" for i in range(args.num_shards)]
    if all(p.is_file() for p in parts):
        loaded = [json.loads(p.read_text(encoding="utf-8")) for p in parts]
        if all(m["settings"] == settings and m["n"] == args.n for m in loaded):
            merged = {"settings": settings, "n": args.n,
                      "clips": sorted((c for m in loaded for c in m["clips"]), key=lambda c: c["index"]),
                      "failed": [e for m in loaded for e in m["failed"]]}
            (args.out / f"render-{args.kind}.json").write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")
    fresh = [c for c in clips if not c.get("resumed")]
    per_clip = sum(c["render_s"] for c in fresh) / len(fresh) if fresh else 0.0
    print(f"{args.kind}: {len(clips)} clips in {args.out} ({len(clips) - len(fresh)} kept from an earlier run), "
          f"{time.perf_counter() - t0:.1f} s" + (f", {per_clip:.2f} s per new clip" if fresh else ""))
    for e in errors:
        print(f"failed clip {e['index']}: {e['error']}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
