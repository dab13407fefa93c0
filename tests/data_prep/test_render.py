"""Synthetic source audio: music21 + fluidsynth music and espeak-ng speech, reproducible and capped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.render import find_soundfont, music_scores, render_speech
from data_prep.render import main as render_main

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (`make system-deps` installs it)"
)


def _have_music() -> str | None:
    if shutil.which("fluidsynth") is None:
        return "fluidsynth not installed (`make system-deps` installs fluidsynth fluid-soundfont-gm)"
    try:
        find_soundfont()
        import music21  # noqa: F401
    except (FileNotFoundError, ModuleNotFoundError) as err:
        return f"music rendering unavailable: {err}"
    return None


needs_music = pytest.mark.skipif(_have_music() is not None, reason=str(_have_music()))


@needs_espeak
def test_speech_is_reproducible_and_capped(tmp_path: Path) -> None:
    a, b = render_speech(3, seed=5, max_seconds=1.0), render_speech(3, seed=5, max_seconds=1.0)
    assert a.sample_rate == 22050 and a.audio.shape[0] == 1 and a.audio.shape[1] <= 22050
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.meta["text"] and a.meta["voice"] and np.abs(a.audio).max() > 0.01
    others = {render_speech(k, seed=5, max_seconds=1.0).meta["text"] for k in range(6)}
    assert len(others) > 1  # clips differ


@needs_espeak
def test_render_cli_speech_resumes_and_shards(tmp_path: Path) -> None:
    out = tmp_path / "speech"
    assert render_main(["--kind", "speech", "--out", str(out), "--n", "3", "--max-seconds", "0.8"]) == 0
    wavs = sorted(out.glob("speech_*.wav"))
    assert len(wavs) == 3 and all(sf.info(w).samplerate == 22050 and sf.info(w).duration <= 0.8 for w in wavs)
    merged = json.loads((out / "render-speech.json").read_text())
    assert [c["index"] for c in merged["clips"]] == [0, 1, 2] and not merged["failed"]
    before = {w.name: w.read_bytes() for w in wavs}
    assert render_main(["--kind", "speech", "--out", str(out), "--n", "3", "--max-seconds", "0.8"]) == 0
    assert all(c.get("resumed") for c in json.loads((out / "render-speech-0000-of-0001.json").read_text())["clips"])
    # two jobs build the same files as one
    split = tmp_path / "split"
    for i in range(2):
        assert render_main(["--kind", "speech", "--out", str(split), "--n", "3", "--max-seconds", "0.8",
                            "--shard-id", str(i), "--num-shards", "2"]) == 0
    assert {w.name: w.read_bytes() for w in split.glob("speech_*.wav")} == before
    assert len(json.loads((split / "render-speech.json").read_text())["clips"]) == 3


@needs_music
def test_music_render_is_capped_and_reproducible(tmp_path: Path) -> None:
    assert all(not p.endswith(".rntxt") for p in music_scores(("bach",)))
    out = tmp_path / "music"
    args = ["--kind", "music", "--out", str(out), "--n", "1", "--seed", "3", "--max-seconds", "1.5", "--timeout-s", "60"]
    assert render_main(args) == 0
    (wav,) = out.glob("music_*.wav")
    info = sf.info(wav)
    assert info.samplerate == 44100 and info.channels == 2 and info.duration <= 1.5
    meta = json.loads(wav.with_suffix(".json").read_text())
    assert meta["score"].startswith("bach/") and "public domain" in meta["attribution"]
    first = wav.read_bytes()
    shutil.rmtree(out)
    assert render_main(args) == 0
    assert next(out.glob("music_*.wav")).read_bytes() == first


def test_render_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    assert render_main(["--kind", "speech", "--out", str(tmp_path), "--n", "1", "--max-seconds", "0"]) == 2
    assert render_main(["--kind", "speech", "--out", str(tmp_path), "--n", "1", "--shard-id", "2",
                        "--num-shards", "2"]) == 2


def test_bright_music_is_reproducible_and_reaches_high_frequencies(tmp_path: Path) -> None:
    """`--kind bright` (make demo's training music) needs no tool, is a pure function of (seed, index) and keeps
    a large share of its energy above 4 kHz, where MP3's bit-rate-dependent low-pass cuts."""
    assert render_main(["--kind", "bright", "--out", str(tmp_path / "a"), "--n", "2", "--seed", "0"]) == 0
    assert render_main(["--kind", "bright", "--out", str(tmp_path / "b"), "--n", "2", "--seed", "0"]) == 0
    a = [sf.read(p) for p in sorted((tmp_path / "a").glob("bright_*.wav"))]
    b = [sf.read(p)[0] for p in sorted((tmp_path / "b").glob("bright_*.wav"))]
    assert len(a) == 2 and all(sr == 48000 and x.ndim == 1 and x.size == int(1.3 * sr) for x, sr in a)
    assert all(np.array_equal(x, y) for (x, _), y in zip(a, b, strict=True))
    assert not np.allclose(a[0][0], a[1][0])  # each index its own piece
    power = np.abs(np.fft.rfft(a[0][0])) ** 2
    high = power[np.fft.rfftfreq(a[0][0].size, 1 / 48000) > 4000].sum() / power.sum()
    assert high > 0.05, high  # bright_00000-2: 0.27, 0.21, 0.39; fluidsynth's Bach chorales: 0.00004-0.013
