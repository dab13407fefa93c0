"""aqa.audio: decoding, down-mixing, resampling (numpy entries), checks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from synth import broadband

from aqa.audio import check_audio, load_audio, resample_np, run_ffmpeg, to_mono_np

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (`make install`)")

def test_resample_length_and_round_trip():
    t = np.arange(8000) / 16000
    x = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    assert resample_np(x, 16000, 16000) is x
    up = resample_np(x, 16000, 44100)
    assert up.shape == (2, int(np.ceil(x.shape[1] * 44100 / 16000))) and up.dtype == np.float32
    back = resample_np(up, 44100, 16000)[:, : x.shape[1]]
    core = slice(400, -400)  # filter edges aside
    assert np.max(np.abs(back[:, core] - x[:, core])) < 5e-3  # passband ripple
    with pytest.raises(ValueError):
        resample_np(x, 0, 16000)


def test_to_mono_and_checks():
    x = np.stack([np.ones(5), 3 * np.ones(5)]).astype(np.float32)
    assert np.allclose(to_mono_np(x), 2.0) and to_mono_np(x).shape == (5,)
    assert to_mono_np(x, keepdims=True).shape == (1, 5)
    row = x[0]
    assert to_mono_np(row) is row
    with pytest.raises(ValueError, match="empty"):
        check_audio(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="NaN"):
        check_audio(np.array([0.0, np.nan]))


def test_load_audio_paths_bytes_and_errors(tmp_path):
    x = broadband(0.25, 16000, channels=2)
    sf.write(tmp_path / "a.flac", x.T, 16000)
    y, sr = load_audio(tmp_path / "a.flac")
    assert sr == 16000 and y.shape == x.shape and y.dtype == np.float32
    assert np.max(np.abs(y - x)) < 1e-3
    y2, _ = load_audio((tmp_path / "a.flac").read_bytes())
    assert np.array_equal(y, y2)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    with pytest.raises(ValueError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")


@needs_ffmpeg
def test_load_audio_falls_back_to_ffmpeg(tmp_path):
    sf.write(tmp_path / "a.wav", broadband(0.5, 16000, channels=1).T, 16000)
    run_ffmpeg(["-i", str(tmp_path / "a.wav"), "-c:a", "aac", "-b:a", "64k", str(tmp_path / "a.m4a")])
    y, sr = load_audio(tmp_path / "a.m4a")  # libsndfile cannot read MP4
    assert sr == 16000 and y.shape[0] == 1 and y.shape[1] >= 8000
    (tmp_path / "junk.mp3").write_bytes(b"\x00not audio" * 10)
    with pytest.raises(RuntimeError, match="cannot decode"):
        load_audio(tmp_path / "junk.mp3")
