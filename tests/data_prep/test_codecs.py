"""data_prep.codecs: real ffmpeg codecs, their rates, alignment and errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from synth import broadband, xcorr_lag

from aqa.audio import run_ffmpeg
from data_prep.codecs import codec_sample_rate, encode_decode, estimate_lag

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (`make install`)")

def test_codec_sample_rates():
    assert codec_sample_rate("opus", 44100, 16) == 48000
    assert codec_sample_rate("mp3", 44100, 16) == 22050  # LAME would clamp 16 kbps to 32 kbps at 44.1 kHz
    assert codec_sample_rate("mp3", 44100, 128) == 44100
    assert codec_sample_rate("mp3", 48000, 16) == 24000
    assert codec_sample_rate("aac", 44100, 16) == 44100
    assert codec_sample_rate("aac", 20000, 64) == 22050
    with pytest.raises(ValueError, match="unknown codec"):
        codec_sample_rate("vorbis", 44100, 64)


def test_estimate_lag_on_shifted_signal():
    x = broadband(0.3, 16000, channels=1)
    y = np.zeros_like(x)
    y[:, 37:] = x[:, :-37]
    assert estimate_lag(x, y, 100) == 37
    assert estimate_lag(y, x, 100) == -37
    assert estimate_lag(np.zeros_like(x), y, 100) == 0


@needs_ffmpeg
@pytest.mark.parametrize("codec", ["opus", "mp3", "aac"])
def test_encode_decode_aligned_and_ordered_by_bitrate(codec):
    sr = 44100  # exercises the MP3 low-rate path (22.05 kHz) and Opus' 48 kHz
    x = broadband(1.0, sr, channels=2, seed=1)
    errors = {}
    for kbps in (16, 128):
        y = encode_decode(x, sr, codec, kbps)
        assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
        assert abs(xcorr_lag(x[0], y[0], max_lag=3000)) <= 1
        errors[kbps] = float(np.mean((y - x) ** 2))
    assert errors[128] < errors[16]
    assert encode_decode(x[0], sr, codec, 128).shape == x[0].shape  # 1-D in, 1-D out


@needs_ffmpeg
def test_codec_errors(monkeypatch, tmp_path):
    x = broadband(0.2, 16000, channels=1)
    with pytest.raises(ValueError, match="unknown codec"):
        encode_decode(x, 16000, "wma", 64)
    with pytest.raises(ValueError, match="channels"):
        encode_decode(np.zeros((3, 100), np.float32) + 0.1, 16000, "mp3", 64)
    with pytest.raises(RuntimeError, match="ffmpeg exited"):
        run_ffmpeg(["-i", str(tmp_path / "nope.wav"), str(tmp_path / "out.wav")])
    monkeypatch.setenv("AQA_FFMPEG", str(tmp_path / "no-ffmpeg-here"))
    with pytest.raises(FileNotFoundError, match="make install"):
        encode_decode(x, 16000, "mp3", 64)
