"""Render synthetic source audio: ``aqa prep render --kind music|speech|bright --out DIR --n N --seed S``.

Music comes from the music21 corpus through fluidsynth (44.1 kHz stereo), speech from espeak-ng
(22.05 kHz mono), bright synthetic music (sawtooth notes over hi-hat-like noise, 48 kHz mono, no external
tool: :func:`bright_music`, the material on which a tiny random-weight DeePAQ learns MP3's low-pass);
see :mod:`data_prep.render`. Clip ``k`` (``0 <= k < n``) is written as
``OUT/{kind}_{k:05d}_{name}.wav`` (16-bit) with ``.json`` metadata beside it (score or voice and text,
instrument, tempo, attribution); the set is a pure function of ``--seed``. ``--shard-id i --num-shards N``
renders the clips with ``k % N == i``; ``--jobs`` renders in parallel; a clip is written under a temporary
name and renamed, and a rerun keeps clips already rendered with the same settings. Each job writes
``render-{kind}-IIII-of-NNNN.json`` and, once all jobs are done, ``render-{kind}.json`` lists every clip
(and every failure). Example::

    aqa prep render --kind music --out data/render/music --n 8 --seed 0 --max-seconds 15 --jobs 2

Synthetic source material, reproducibly: music from the music21 corpus (fluidsynth) and speech (espeak-ng).

Both renderers are pure functions of ``(index, seed, options)``: the seed fixes which scores, instruments,
tempi, voices and sentences are used, so ``render_music(n=4, seed=0)`` always writes the same four pieces,
and a job ``--shard-id i --num-shards N`` renders exactly the indices ``k`` with ``k % N == i``.

- **Music**: a score is drawn (without replacement) from the music21 corpus of the chosen composers (Bach
  chorales by default), given one General MIDI instrument family and a tempo, cut to the measures that fit
  in ``max_seconds``, written as MIDI and rendered by ``fluidsynth -ni`` with a General MIDI SoundFont
  (``fluid-soundfont-gm``) at 44.1 kHz stereo. Rendering runs under a wall-clock timeout and a file-size
  limit (one corpus MIDI is known to render without end), and the result is trimmed to ``max_seconds``
  with a 50 ms fade-out.
- **Speech**: ``espeak-ng`` reads one or more sentences of :data:`SENTENCES` with a drawn English voice,
  voice variant, speed and pitch; 22.05 kHz mono, trimmed to ``max_seconds``. espeak-ng 1.52+ seeds the
  breath noise of some variants from the clock, so it is run with ``-D`` (fixed seed) where it has that option.

The corpus scores are public domain; espeak-ng output is synthetic. Each clip's metadata says what it is.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from data_prep.recipe import run_main
from data_prep.shards import safe_id, short_error

__all__ = [
    "Rendered",
    "SENTENCES",
    "VOICES",
    "VARIANTS",
    "INSTRUMENTS",
    "MUSIC_RATE",
    "SPEECH_RATE",
    "find_soundfont",
    "require_tool",
    "music_scores",
    "render_music",
    "render_speech",
]

MUSIC_RATE = 44100
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi", ".md")
SPEECH_RATE = 22050
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
INSTALL_HINT = (
    "install the system packages with `make system-deps` "
    "(apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm espeak-ng sox)"
)

# Built-in sentences for espeak-ng (written for this project; plain, phonetically varied English).
SENTENCES: tuple[str, ...] = (
    "The morning train left the station a few minutes early.",
    "Please put the blue folder on the second shelf by the window.",
    "A quiet river runs past the old mill at the edge of town.",
    "She measured the flour twice before adding it to the bowl.",
    "Our neighbours painted their fence a bright shade of yellow.",
    "The weather report promised rain, but the sky stayed clear all day.",
    "He kept the receipt in case the jacket did not fit.",
    "Seven small boats were tied along the wooden pier.",
    "The library closes at nine on weekdays and at five on Sundays.",
    "Turn left at the bakery and walk straight to the square.",
    "A gust of wind scattered the papers across the floor.",
    "The children counted the stars until they fell asleep.",
    "Fresh bread smells best when it has just come out of the oven.",
    "The meeting moved to Thursday because the room was booked.",
    "Thick fog rolled over the hills and hid the farmhouse.",
    "Can you hear the difference between these two recordings?",
    "The violin was tuned carefully before the concert began.",
    "Bring a warm coat, since the evenings are getting cold.",
    "The pilot announced that we would land in twenty minutes.",
    "Every jar on the kitchen shelf had a handwritten label.",
    "The garden gate squeaks whenever someone opens it.",
    "Numbers like forty two and nineteen are easy to mishear.",
    "Our team finished the puzzle just before the clock ran out.",
    "The museum shows paintings from the last three centuries.",
)
VOICES: tuple[str, ...] = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
VARIANTS: tuple[str, ...] = ("", "m2", "m3", "m4", "m5", "m6", "m7", "f2", "f3", "f4", "f5")

# General MIDI programs (0-based) by family: every part of a piece gets one program of the family.
INSTRUMENTS: dict[str, tuple[int, ...]] = {
    "piano": (0, 1, 4),
    "organ": (19, 16),
    "strings": (40, 41, 42, 48),
    "woodwinds": (68, 71, 73),
    "brass": (56, 57, 60),
    "guitar": (24, 25),
    "choir": (52, 53),
}


@dataclass
class Rendered:
    """One rendered clip: ``audio`` float32 ``(C, T)`` at ``sample_rate`` Hz plus its description."""

    name: str
    audio: np.ndarray
    sample_rate: int
    meta: dict[str, Any] = field(default_factory=dict)


def require_tool(name: str) -> str:
    """Path of a command-line tool, or FileNotFoundError with the install hint."""
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed; {INSTALL_HINT}")
    return found


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The General MIDI SoundFont to render with: ``path``, ``$AQA_SOUNDFONT`` or the Debian locations.

    Raises:
        FileNotFoundError: none found (with the install hint).
    """
    for cand in (path, os.environ.get("AQA_SOUNDFONT"), *SOUNDFONTS):
        if cand and Path(cand).is_file():
            return Path(cand).resolve()
    raise FileNotFoundError(f"no General MIDI SoundFont (.sf2) found; {INSTALL_HINT}")


@functools.cache
def _espeak_deterministic_flag(binary: str) -> tuple[str, ...]:
    # espeak-ng >= 1.52 seeds its noise generator (breath noise of voice variants such as f2, f3, f5, and
    # the klatt voices) with time(NULL) at start-up, so the same command differs from one second to the
    # next in nearly every sample; its `-D` restores a fixed seed. 1.51 and older have no `-D` (given it,
    # they exit 0 without writing anything) but are deterministic anyway: they call rand() unseeded.
    try:
        proc = subprocess.run([binary, "--help"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    return ("-D",) if re.search(r"^-D\s", text, re.MULTILINE) else ()


def _rng(seed: int, index: int, what: str) -> random.Random:
    # independent, platform-stable stream per (seed, clip, purpose)
    return random.Random(int(hashlib.sha1(f"{seed}:{index}:{what}".encode()).hexdigest()[:16], 16))


def music_scores(composers: tuple[str, ...] = ("bach",)) -> list[str]:
    """Sorted corpus paths (relative to the music21 corpus) of the composers' scores.

    Raises:
        ModuleNotFoundError: music21 is not installed.
    """
    from music21 import corpus  # music21 takes seconds to import: only the music renderer reads it

    base = Path(corpus.__file__).resolve().parent
    paths: set[str] = set()
    for c in composers:
        for p in corpus.getComposer(c):
            pp = Path(p).resolve()
            if pp.suffix.lower() not in SCORE_SUFFIXES:  # e.g. roman-numeral analyses (.rntxt) are not music
                continue
            paths.add(str(pp.relative_to(base)) if pp.is_relative_to(base) else str(pp))
    if not paths:
        raise ValueError(f"the music21 corpus has no scores for {list(composers)}")
    return sorted(paths)


def _score_order(scores: list[str], seed: int) -> list[str]:
    # a fixed permutation of the corpus per seed; clip k tries scores from position k onwards
    order = list(scores)
    random.Random(f"render-music:{seed}").shuffle(order)
    return order


def _fade_trim(x: np.ndarray, sr: int, max_seconds: float, fade_s: float = 0.05) -> np.ndarray:
    n = min(x.shape[-1], int(round(max_seconds * sr)))
    y = np.array(x[..., :n], dtype=np.float32)
    k = min(n, int(fade_s * sr))
    if k > 1 and x.shape[-1] > n:
        y[..., n - k :] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
    return y


def _run_capped(cmd: list[str], out: Path, max_bytes: int, timeout_s: float) -> tuple[int, str, bool]:
    # Run cmd, killing it when `out` grows beyond max_bytes (a MIDI that renders without end) or after
    # timeout_s. RLIMIT_FSIZE cannot be used: fluidsynth dies of SIGXFSZ at start-up under any limit.
    # Returns (exit code, stderr tail, capped).
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start, capped = time.monotonic(), False
    try:
        while proc.poll() is None:
            if out.is_file() and out.stat().st_size > max_bytes:
                capped = True
                break
            if time.monotonic() - start > timeout_s:
                raise subprocess.TimeoutExpired(cmd, timeout_s)
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode(errors="replace")[-300:], capped


def _prepare_score(rel_path: str, rng: random.Random, max_seconds: float) -> tuple[Any, dict[str, Any]]:
    from music21 import corpus, instrument, tempo  # (see music_scores)

    score = corpus.parse(rel_path)
    parts = list(getattr(score, "parts", []))
    if not parts:
        raise ValueError("score has no parts")
    family = rng.choice(sorted(INSTRUMENTS))
    program = rng.choice(INSTRUMENTS[family])
    bpm = rng.choice((60, 72, 80, 92, 100, 112, 120))
    # keep the measures that start within twice max_seconds at the nominal tempo: fluidsynth's playback of
    # music21's MIDI runs slower than nominal for some scores, and the audio is trimmed afterwards anyway
    limit_q = 2.0 * max_seconds * bpm / 60.0
    measures = list(parts[0].getElementsByClass("Measure"))
    if measures:
        numbers = [m.number for m in measures if m.offset < limit_q]
        if numbers:
            score = score.measures(numbers[0], numbers[-1] + 1 if len(numbers) < len(measures) else numbers[-1])
            parts = list(score.parts)
    for p in parts:
        for old in list(p.recurse().getElementsByClass(["Instrument", "MetronomeMark"])):
            old.activeSite.remove(old)
        inst = instrument.Instrument()
        inst.midiProgram = program
        p.insert(0, inst)
    for p in parts:  # inside the first measure, where music21's MIDI writer looks for the tempo
        first = p.getElementsByClass("Measure").first()
        (first if first is not None else p).insert(0, tempo.MetronomeMark(number=bpm))
    return score, {"instrument_family": family, "midi_program": program, "nominal_bpm": bpm, "parts": len(parts)}


def render_music(
    index: int,
    *,
    seed: int = 0,
    max_seconds: float = 20.0,
    composers: tuple[str, ...] = ("bach",),
    soundfont: str | os.PathLike | None = None,
    timeout_s: float = 60.0,
    max_attempts: int = 5,
) -> Rendered:
    """Render clip ``index`` of the music set of ``seed``: a corpus score through fluidsynth.

    Clip ``k`` takes the ``k``-th score of a seed-fixed permutation of the corpus; a score that fails to
    parse or render is replaced by the next one in the permutation (up to ``max_attempts``), and the
    attempts are recorded in ``meta["failed"]``.

    Args:
        index: clip number (>= 0).
        seed: fixes the score order, instrument, tempo.
        max_seconds: clip length cap in seconds (the score is cut first, the audio trimmed after).
        composers: music21 corpus composers to draw from.
        soundfont: General MIDI ``.sf2`` (default: :func:`find_soundfont`).
        timeout_s: wall-clock limit of one fluidsynth run.
        max_attempts: scores tried before giving up.

    Returns:
        A :class:`Rendered` clip, float32 ``(2, T)`` at 44.1 kHz with ``T <= max_seconds * 44100``.

    Raises:
        FileNotFoundError: fluidsynth or a SoundFont is missing. RuntimeError: every attempt failed.
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    binary = require_tool("fluidsynth")
    sf2 = find_soundfont(soundfont)
    order = _score_order(music_scores(tuple(composers)), seed)
    failed: list[dict[str, str]] = []
    for attempt in range(max_attempts):
        rel = order[(index + attempt * 7919) % len(order)]  # a prime stride keeps retries distinct
        rng = _rng(seed, index, f"music:{attempt}")
        try:
            score, info = _prepare_score(rel, rng, max_seconds)
            with tempfile.TemporaryDirectory(prefix="aqa_render_") as tmp:
                mid, out = Path(tmp) / "score.mid", Path(tmp) / "out.wav"
                score.write("midi", fp=str(mid))
                # 16-bit stereo: twice the capped length plus 30 s (fermatas, release tails); beyond that
                # fluidsynth is stopped and the clip is read (and trimmed) from what it wrote
                max_bytes = int((2 * max_seconds + 30.0) * MUSIC_RATE * 4) + 65536
                cmd = [binary, "-ni", "-q", "-g", "0.6", "-F", str(out), "-r", str(MUSIC_RATE), str(sf2), str(mid)]
                code, err, capped = _run_capped(cmd, out, max_bytes, timeout_s)
                if not out.is_file() or out.stat().st_size < 1024 or (code != 0 and not capped):
                    raise RuntimeError(f"fluidsynth wrote no audio (exit {code}): {err}")
                info["stopped_at_size_cap"] = capped
                x, sr = sf.read(out, dtype="float32", always_2d=True, frames=int(max_seconds * MUSIC_RATE) + 1)
            x = _fade_trim(x.T, sr, max_seconds)
            if not np.any(np.abs(x) > 1e-4):
                raise RuntimeError("rendered audio is silent")
        except subprocess.TimeoutExpired:
            failed.append({"score": rel, "reason": f"fluidsynth timed out after {timeout_s:g} s"})
            continue
        except Exception as exc:  # a score music21 or fluidsynth cannot handle: try the next one
            failed.append({"score": rel, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
            continue
        stem = safe_id(Path(rel).name.rsplit(".", 1)[0], 40)
        meta = {
            "kind": "music",
            "score": rel,
            "composer": Path(rel).parts[0],
            **info,
            "soundfont": sf2.name,
            "seed": seed,
            "index": index,
            "duration_s": round(x.shape[-1] / sr, 6),
            "attribution": f"music21 corpus score {rel} (public domain), rendered with fluidsynth and {sf2.name}",
            **({"failed": failed} if failed else {}),
        }
        return Rendered(f"music_{index:05d}_{stem}", x, sr, meta)
    raise RuntimeError(f"music clip {index}: every attempt failed: {failed}")


def bright_music(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A bright music-like clip, (T,) float32: four decaying sawtooth notes (harmonics up to Nyquist, pitches
    drawn from two octaves above 110 Hz) over high-passed noise bursts every 60-120 ms (a hi-hat). Its energy
    reaches Nyquist (-4 to -7 dB of it above 4 kHz; fluidsynth's Bach chorales: -19 to -44 dB), so MP3's
    bit-rate-dependent low-pass is visible whatever the notes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    notes = np.zeros_like(t)
    edges = np.linspace(0, t.size, 5).astype(int)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        tt = t[a:b] - t[a]
        saw = sum(np.sin(2 * np.pi * k * f0 * tt) / k for k in range(1, int(sr / 2 / f0)))
        notes[a:b] += saw * np.exp(-tt * rng.uniform(1, 4))
    hats = np.zeros_like(t)
    for start in np.arange(0, t.size, int(sr * rng.uniform(0.06, 0.12))):
        n = min(int(0.05 * sr), t.size - start)
        hats[start:start + n] += rng.standard_normal(n) * np.exp(-np.arange(n) / (0.01 * sr))
    x = 0.15 * notes / np.abs(notes).max() + 0.08 * rng.uniform(0.7, 1.3) * np.diff(hats, prepend=0.0)
    return x.astype(np.float32)


def render_bright(index: int, *, seed: int = 0, max_seconds: float = 1.3, sr: int = 48000) -> Rendered:
    """Clip ``index`` of the bright synthetic music set of ``seed``: :func:`bright_music` of ``max_seconds``
    at 48 kHz mono, numpy seed ``seed * 1_000_003 + index`` (no external tool)."""
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    x = bright_music(max_seconds, sr, seed=seed * 1_000_003 + index)[None]
    meta = {"kind": "bright", "seed": seed, "index": index, "duration_s": round(x.shape[-1] / sr, 6),
            "attribution": "synthetic: sawtooth notes over hi-hat-like noise bursts (aqa data_prep.render)"}
    return Rendered(f"bright_{index:05d}", x, sr, meta)


def render_speech(
    index: int,
    *,
    seed: int = 0,
    max_seconds: float = 8.0,
    sentences: tuple[str, ...] = SENTENCES,
    voices: tuple[str, ...] = VOICES,
    timeout_s: float = 30.0,
) -> Rendered:
    """Render clip ``index`` of the speech set of ``seed`` with espeak-ng.

    Draws a voice, a variant (male/female timbre), a speed (130-190 words/min), a pitch (30-70) and one to
    three consecutive sentences; the clip is trimmed to ``max_seconds``.

    Returns:
        A :class:`Rendered` clip, float32 ``(1, T)`` at 22.05 kHz.

    Raises:
        FileNotFoundError: espeak-ng is missing. RuntimeError: espeak-ng failed or wrote silence.
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    binary = require_tool("espeak-ng")
    rng = _rng(seed, index, "speech")
    voice = rng.choice(voices)
    variant = rng.choice(VARIANTS)
    speed = rng.randrange(130, 191, 5)
    pitch = rng.randrange(30, 71, 5)
    first = rng.randrange(len(sentences))
    count = rng.choice((1, 2, 3))
    text = " ".join(sentences[(first + k) % len(sentences)] for k in range(count))
    with tempfile.TemporaryDirectory(prefix="aqa_speech_") as tmp:
        out = Path(tmp) / "out.wav"
        name = f"{voice}+{variant}" if variant else voice
        proc = subprocess.run(
            [binary, *_espeak_deterministic_flag(binary), "-v", name, "-s", str(speed), "-p", str(pitch),
             "-w", str(out), "--", text],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"espeak-ng failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')[-300:]}")
        x, sr = sf.read(out, dtype="float32", always_2d=True)
    x = _fade_trim(x.T, sr, max_seconds)
    if not np.any(np.abs(x) > 1e-4):
        raise RuntimeError(f"espeak-ng wrote silence for voice {name!r}")
    meta = {
        "kind": "speech",
        "voice": voice,
        "variant": variant or None,
        "speed_wpm": speed,
        "pitch": pitch,
        "text": text,
        "seed": seed,
        "index": index,
        "duration_s": round(x.shape[-1] / sr, 6),
        "attribution": "synthetic speech from espeak-ng; sentences written for the aqa project",
    }
    return Rendered(f"speech_{index:05d}_{voice.replace('-', '')}{variant}", x, sr, meta)


# --------------------------------------------------------------------------------------------------------
# Command line: `aqa prep`


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
        if kind == "bright":
            clip = render_bright(index, seed=settings["seed"], max_seconds=settings["max_seconds"])
        elif kind == "music":
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
    p.add_argument("--kind", required=True, choices=["music", "speech", "bright"])
    p.add_argument("--out", required=True, type=Path, help="output folder for the wav/json files")
    p.add_argument("--n", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="fixes scores/voices/sentences (default 0)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="clip length cap (default music 20, speech 8, bright 1.3)")
    p.add_argument("--composers", default="bach", help="music21 corpus composers, comma-separated (default bach)")
    p.add_argument("--soundfont", default=None, help="General MIDI .sf2 (default: fluid-soundfont-gm)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-clip fluidsynth/espeak-ng timeout (s)")
    p.add_argument("--shard-id", type=int, default=0, help="this job's index in 0..N-1 (default 0)")
    p.add_argument("--num-shards", type=int, default=1, help="number of jobs N splitting the clips (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="parallel renders in this job (same output for any value)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Render; returns 0 when every clip was rendered, 1 when some failed, 2 on bad input or missing tools."""
    return run_main("aqa prep render", build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    if args.max_seconds is None:
        args.max_seconds = {"music": 20.0, "speech": 8.0, "bright": 1.3}[args.kind]
    args.composers = tuple(c.strip() for c in args.composers.split(",") if c.strip())
    if args.n < 0 or args.max_seconds <= 0 or args.jobs < 1:
        raise ValueError("need --n >= 0, --max-seconds > 0 and --jobs >= 1")
    if args.num_shards < 1 or not 0 <= args.shard_id < args.num_shards:
        raise ValueError(f"need 0 <= --shard-id < --num-shards, got {args.shard_id} of {args.num_shards}")
    if args.kind == "music":
        require_tool("fluidsynth")
        soundfont = str(find_soundfont(args.soundfont))
        import music21  # noqa: F401  (fail early with a clear message)
    elif args.kind == "speech":
        require_tool("espeak-ng")
        soundfont = None
    else:
        soundfont = None
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
