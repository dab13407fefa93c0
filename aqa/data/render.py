"""Synthetic source material, reproducibly: music from the music21 corpus (fluidsynth) and speech (espeak-ng).

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

import functools
import hashlib
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from aqa.data.shards import safe_id

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
    from music21 import corpus

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
    from music21 import corpus, instrument, tempo

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
