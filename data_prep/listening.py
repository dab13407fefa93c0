"""Build a listening-test CSV from clean clips and real codecs, scored by ViSQOL v3 (not by listeners):
``aqa prep listening --src CLIP_OR_DIR ... --out DIR``.

For each clean clip, an excerpt of ``--excerpt-s`` seconds (from ``--offset-s``) is written as the reference
``{clip}_ref.wav`` and coded with every codec at every bit rate (:func:`data_prep.codecs.encode_decode_many`),
each version as ``{clip}_{codec}{kbps}.wav`` at the clip's rate. Every coded version and the reference
itself (a hidden reference, as in MUSHRA; ``--no-hidden-reference`` leaves it out) is then scored with
ViSQOL v3 in audio mode against the reference (``aqa metric`` machinery, ``--jobs`` workers), and
``DIR/test.csv`` is written with ``degraded,score,reference,system,condition,bitrate_kbps,clip,score_source,
scale_min,scale_max`` (``system`` = ``{codec}_{kbps}k``, e.g. ``mp3_16k``, ``condition`` = the codec,
``score_source`` = ``visqol_v3_moslqo``, the scale 1..5 of MOS-LQO).

The ``score`` column is ViSQOL's MOS-LQO, a model's estimate: it stands in for subjective ratings so the
``aqa eval --test`` pipeline can be run end to end here; it is not a listening test.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf

from aqa.audio import load_audio, resample_np
from aqa.files import numbered, write_text_atomic
from aqa.metrics.runner import iter_results
from data_prep.codecs import CODECS, encode_decode_many
from data_prep.recipe import run_main
from data_prep.shards import AUDIO_SUFFIXES, list_sources

SCORE_SOURCE = "visqol_v3_moslqo"
COLUMNS = (
    "degraded", "score", "reference", "system", "condition", "bitrate_kbps", "clip", "score_source", "scale_min", "scale_max"
)
SCALE = (1, 5)  # MOS-LQO's range (aqa.eval.scales.BASELINE_SCALES["visqol"]): aqa eval --test reports raw MSE on it


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the listening-test builder."""
    p = argparse.ArgumentParser(
        prog="aqa prep listening",
        description="Code clean clips with real codecs and write a listening-test CSV (for aqa eval --test) whose "
        "score column is ViSQOL v3 MOS-LQO against the clean excerpt: a stand-in, not human ratings.",
    )
    p.add_argument(
        "--src",
        nargs="+",
        required=True,
        type=Path,
        help="clean clips, folders of them (recursive) or .txt/.csv lists",
    )
    p.add_argument("--out", required=True, type=Path, help="folder for the wav files and test.csv")
    p.add_argument(
        "--codecs", default="opus,mp3,aac", help=f"comma list of {','.join(CODECS)} (default opus,mp3,aac)"
    )
    p.add_argument(
        "--bitrates",
        type=_numbers,
        default=[16.0, 32.0, 64.0],
        help="comma list of bit rates in kbps (default 16,32,64)",
    )
    p.add_argument("--excerpt-s", type=float, default=5.0, help="excerpt length in seconds (default 5)")
    p.add_argument("--offset-s", type=float, default=0.0, help="excerpt start in seconds (default 0)")
    p.add_argument(
        "--rate", type=int, default=48000, help="sample rate of the written files, Hz (default 48000)"
    )
    p.add_argument(
        "--no-hidden-reference",
        action="store_true",
        help="leave the clean excerpt out of the rated items (default: rated, system 'reference')",
    )
    p.add_argument("--jobs", type=int, default=1, help="ViSQOL worker processes (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def code_clip(
    path: Path,
    out: Path,
    codecs: Sequence[str],
    bitrates: Sequence[float],
    excerpt_s: float,
    offset_s: float,
    rate: int,
    name: str | None = None,
) -> list[dict[str, str]]:
    """Write one clip's reference excerpt and its coded versions into ``out`` as ``{name}_ref.wav`` and
    ``{name}_{codec}{kbps}.wav`` (``name``: default the file's stem); returns their CSV rows (``score`` still
    empty). Raises ValueError when the clip is shorter than ``offset_s + excerpt_s``."""
    x, sr = load_audio(path)
    x = resample_np(x, sr, rate) if sr != rate else x
    start, n = int(offset_s * rate), int(excerpt_s * rate)
    if x.shape[-1] < start + n:
        raise ValueError(f"{path}: {x.shape[-1] / rate:.1f} s long, shorter than --offset-s + --excerpt-s")
    x = x[:2, start : start + n]
    name = name or path.stem
    ref = out / f"{name}_ref.wav"
    sf.write(ref, x.T, rate, subtype="FLOAT")
    rows = []
    for codec in codecs:
        for kbps, y in zip(bitrates, encode_decode_many(x, rate, codec, bitrates), strict=True):
            deg = out / f"{name}_{codec}{kbps:g}.wav"
            sf.write(deg, y.T, rate, subtype="FLOAT")
            rows.append(
                {
                    "degraded": deg.name,
                    "reference": ref.name,
                    "system": f"{codec}_{kbps:g}k",
                    "condition": codec,
                    "bitrate_kbps": f"{kbps:g}",
                    "clip": name,
                }
            )
    return [
        {
            "degraded": ref.name,
            "reference": ref.name,
            "system": "reference",
            "condition": "reference",
            "bitrate_kbps": "",
            "clip": name,
        },
        *rows,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Build the test; returns 0 when every item was scored, 1 when some were not (left out, reported), 2 on
    bad input."""
    return run_main("aqa prep listening", build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = [c for c in codecs if c not in CODECS]
    if unknown or not codecs:
        raise ValueError(f"--codecs: unknown {unknown or 'none given'}; choose from {list(CODECS)}")
    if args.jobs < 1 or args.excerpt_s <= 0 or args.offset_s < 0:
        raise ValueError("--jobs must be >= 1, --excerpt-s > 0 and --offset-s >= 0")
    # an audio file is taken as it is; a folder or a .txt/.csv list is expanded
    sources = [
        p
        for src in args.src
        for p in ([src] if src.suffix.lower() in AUDIO_SUFFIXES else list_sources(src)[0])
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows: list[dict[str, str]] = []
    skipped: list[str] = []
    clips = 0
    names = numbered(p.stem for p in sources)  # clips of one name in two folders keep their files apart
    for path, name in zip(sources, names, strict=True):
        try:
            got = code_clip(
                path, args.out, codecs, args.bitrates, args.excerpt_s, args.offset_s, args.rate, name
            )
        except (ValueError, RuntimeError) as err:  # too short, undecodable, ffmpeg failed: say so, go on
            skipped.append(str(err).splitlines()[0])
            continue
        rows += got[1:] if args.no_hidden_reference else got
        clips += 1
    if not rows:
        raise ValueError(f"no clip could be used ({'; '.join(skipped[:3])})")
    pairs = [(str(args.out / r["reference"]), str(args.out / r["degraded"])) for r in rows]
    scored = []
    for row, record in zip(
        rows, iter_results("visqol", pairs, jobs=args.jobs, progress=not args.no_progress), strict=True
    ):
        if "error" in record:
            skipped.append(f"{row['degraded']}: {record['error']}")
            continue
        scored.append(
            {**row, "score": f"{record['moslqo']:.4f}", "score_source": SCORE_SOURCE, "scale_min": SCALE[0], "scale_max": SCALE[1]}
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(scored)
    write_text_atomic(args.out / "test.csv", buf.getvalue())
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(
        f"wrote {args.out / 'test.csv'}: {len(scored)} items from {clips} clips, scored by "
        f"ViSQOL v3 (not listeners), in {time.perf_counter() - start:.1f} s"
    )
    print(f"aqa prep listening: {len(scored)} used, {len(skipped)} skipped", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
