"""Real lossy codecs (Opus, MP3, AAC) through the ffmpeg CLI, time-aligned to their input.

``encode_decode`` is the one entry point: it writes the input to a temporary float WAV, encodes it
with ffmpeg at the requested bit rate, decodes it back, returns it at the input rate and aligns it
sample-exactly with the input (codec delay/padding removed, length trimmed/padded to the input's).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import correlate

from aqa.audio import _read_soundfile, check_audio, resample_np, run_ffmpeg, to_mono_np

__all__ = ["CODECS", "encode_decode", "encode_decode_many", "codec_sample_rate", "estimate_lag", "align_to"]

CODECS: tuple[str, ...] = ("opus", "mp3", "aac")

# MP3 sample rate -> allowed CBR bit rates (kbps): MPEG-1, MPEG-2 and MPEG-2.5 layer III.
# ffmpeg/LAME silently clamp out-of-range bit rates (16 kbps at 44.1 kHz becomes 32 kbps).
_MP3_RATES: dict[int, tuple[int, int]] = {
    48000: (32, 320),
    44100: (32, 320),
    32000: (32, 320),
    24000: (8, 160),
    22050: (8, 160),
    16000: (8, 160),
    12000: (8, 64),
    11025: (8, 64),
    8000: (8, 64),
}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_OPUS_KBPS = (6, 510)

# codec -> (ffmpeg encoder, container suffix)
_ENCODERS: dict[str, tuple[str, str]] = {
    "opus": ("libopus", ".opus"),
    "mp3": ("libmp3lame", ".mp3"),
    "aac": ("aac", ".m4a"),
}


def codec_sample_rate(codec: str, sr: int, bitrate_kbps: float) -> int:
    """Sample rate (Hz) at which ``codec`` encodes a signal given at ``sr`` Hz and ``bitrate_kbps``.

    Opus always runs at 48 kHz. MP3 uses the highest rate that LAME accepts for the bit rate,
    preferring ``sr`` itself or an integer fraction of it (44.1 kHz at 16 kbps -> 22.05 kHz).
    AAC keeps ``sr`` when it is a standard AAC rate, else the next standard rate above it.

    Raises:
        ValueError: unknown codec, or a bit rate the codec cannot produce.
    """
    b = float(bitrate_kbps)
    if codec == "opus":
        if not _OPUS_KBPS[0] <= b <= _OPUS_KBPS[1]:
            raise ValueError(f"opus supports {_OPUS_KBPS[0]}-{_OPUS_KBPS[1]} kbps, got {bitrate_kbps}")
        return 48000
    if codec == "mp3":
        valid = [r for r, (lo, hi) in _MP3_RATES.items() if lo <= b <= hi]
        if not valid:
            raise ValueError(f"mp3 supports 8-320 kbps, got {bitrate_kbps}")
        family = [r for r in valid if r <= sr and sr % r == 0]
        below = [r for r in valid if r <= sr]
        return max(family or below or [min(valid)])
    if codec == "aac":
        if b <= 0:
            raise ValueError(f"aac bit rate must be positive, got {bitrate_kbps}")
        if sr in _AAC_RATES:
            return sr
        above = [r for r in _AAC_RATES if r >= sr]
        return min(above) if above else max(_AAC_RATES)
    raise ValueError(f"unknown codec {codec!r}; choose from {list(CODECS)}")


def estimate_lag(ref: np.ndarray, y: np.ndarray, max_lag: int, window: int | None = 1 << 17) -> int:
    """Delay of ``y`` relative to ``ref`` in samples, by FFT cross-correlation.

    A positive lag ``L`` means ``y[n + L] ~ ref[n]`` (``y`` is late). Only ``|L| <= max_lag`` is searched.
    Returns 0 when either signal is silent.

    Args:
        ref: reference ``(T,)`` or ``(C, T)`` (down-mixed to mono).
        y: degraded signal ``(T',)`` or ``(C, T')``.
        max_lag: largest absolute lag searched, in samples.
        window: correlate only the first ``window`` samples (a codec delay is constant); ``None`` = all.
    """
    r = to_mono_np(ref).astype(np.float64)
    d = to_mono_np(y).astype(np.float64)
    if window is not None and r.size > window:
        r, d = r[:window], d[: window + max(max_lag, 0)]
    if not np.any(r) or not np.any(d) or max_lag < 0:
        return 0
    xc = correlate(d, r, mode="full", method="fft")  # index k <-> lag k - (len(r) - 1)
    zero = len(r) - 1
    lo, hi = max(0, zero - max_lag), min(len(xc), zero + max_lag + 1)
    return int(np.argmax(xc[lo:hi]) + lo - zero)


def align_to(ref: np.ndarray, y: np.ndarray, max_lag: int) -> np.ndarray:
    """Shift ``y`` so it lines up with ``ref`` and trim/zero-pad it to ``ref``'s length.

    Args:
        ref: reference ``(C, T)``.
        y: signal ``(C, T')`` to align.
        max_lag: largest absolute lag searched, in samples.

    Returns:
        ``(C, T)`` float32.
    """
    lag = estimate_lag(ref, y, max_lag)
    t = ref.shape[-1]
    out = np.zeros((y.shape[0], t), dtype=np.float32)
    src_start, dst_start = (lag, 0) if lag >= 0 else (0, -lag)
    n = max(0, min(y.shape[-1] - src_start, t - dst_start))
    out[:, dst_start : dst_start + n] = y[:, src_start : src_start + n]
    return out


def encode_decode(
    x: np.ndarray,
    sr: int,
    codec: str,
    bitrate_kbps: float,
    *,
    max_lag_s: float = 0.05,
    timeout_s: float = 120.0,
) -> np.ndarray:
    """Pass audio through a real codec (ffmpeg) and return the decoded, time-aligned result.

    The input is resampled (scipy, zero-phase) to the rate the codec needs
    (:func:`codec_sample_rate`), encoded at ``bitrate_kbps`` (MP3: LAME CBR; Opus: libopus VBR;
    AAC: ffmpeg's native encoder), decoded, resampled back to ``sr`` and aligned to ``x``
    by cross-correlation within ``max_lag_s``.

    Args:
        x: audio ``(C, T)`` (``C`` in {1, 2}) or ``(T,)``, float, full scale +/-1, at ``sr`` Hz.
        sr: sample rate in Hz.
        codec: ``"opus"``, ``"mp3"`` or ``"aac"``.
        bitrate_kbps: target bit rate in kbit/s.
        max_lag_s: largest codec delay compensated, in seconds.
        timeout_s: per-ffmpeg-call timeout in seconds.

    Returns:
        float32 array with the same shape as ``x`` (sample rate ``sr``).

    Raises:
        ValueError: unknown codec / unsupported bit rate / more than 2 channels / empty or non-finite input.
        FileNotFoundError: ffmpeg is not installed (hint: ``make install``).
        RuntimeError: ffmpeg failed (message holds its stderr tail).
    """
    return encode_decode_many(x, sr, codec, [bitrate_kbps], max_lag_s=max_lag_s, timeout_s=timeout_s)[0]


def encode_decode_many(
    x: np.ndarray,
    sr: int,
    codec: str,
    bitrates_kbps: Sequence[float],
    *,
    max_lag_s: float = 0.05,
    timeout_s: float = 120.0,
) -> list[np.ndarray]:
    """:func:`encode_decode` at several bit rates with two ffmpeg processes in total.

    ffmpeg's start-up (~0.1 s here) dominates short excerpts, so all bit rates are encoded by one
    ffmpeg call (one output per bit rate) and decoded by another. Results equal per-bit-rate calls.

    Args:
        x: audio ``(C, T)`` (``C`` in {1, 2}) or ``(T,)`` at ``sr`` Hz.
        sr: sample rate in Hz.
        codec: ``"opus"``, ``"mp3"`` or ``"aac"``.
        bitrates_kbps: bit rates in kbit/s.
        max_lag_s: largest codec delay compensated, in seconds.
        timeout_s: timeout per ffmpeg call and bit rate, in seconds.

    Returns:
        One float32 array shaped like ``x`` per bit rate, in the given order.
    """
    if codec not in _ENCODERS:
        raise ValueError(f"unknown codec {codec!r}; choose from {list(CODECS)}")
    if len(bitrates_kbps) == 0:
        return []
    squeeze = x.ndim == 1
    x2 = np.asarray(x[None] if squeeze else x, dtype=np.float32)
    check_audio(x2, "codec input")
    if x2.ndim != 2 or x2.shape[0] > 2:
        raise ValueError(
            f"codecs take (C, T) audio with 1 or 2 channels, got shape {tuple(x2.shape)}; down-mix first"
        )
    sr = int(sr)
    rates = [codec_sample_rate(codec, sr, b) for b in bitrates_kbps]
    encoder, suffix = _ENCODERS[codec]
    limit = timeout_s * len(rates)
    outputs: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix="aqa_codec_") as tmp:
        d = Path(tmp)
        inputs = sorted(set(rates))
        enc_args: list[str] = []
        for i, r in enumerate(inputs):
            sf.write(d / f"in{i}.wav", resample_np(x2, sr, r).T, r, subtype="FLOAT")
            enc_args += ["-i", str(d / f"in{i}.wav")]
        dec_args: list[str] = []
        for k, (b, r) in enumerate(zip(bitrates_kbps, rates, strict=True)):
            coded = d / f"coded{k}{suffix}"
            enc_args += [
                "-map",
                f"{inputs.index(r)}:a",
                "-threads",
                "1",
                "-c:a",
                encoder,
                "-b:a",
                f"{b:g}k",
                "-ar",
                str(r),
                str(coded),
            ]
            dec_args += ["-threads", "1", "-i", str(coded)]
        for k, r in enumerate(rates):
            dec_args += ["-map", f"{k}:a", "-c:a", "pcm_f32le", "-ar", str(r), str(d / f"out{k}.wav")]
        what = f"{codec} at {', '.join(f'{b:g}' for b in bitrates_kbps)} kbps"
        run_ffmpeg(enc_args, timeout_s=limit, what=f"encode {what}")
        run_ffmpeg(dec_args, timeout_s=limit, what=f"decode {what}")
        for k, r in enumerate(rates):
            y, _ = _read_soundfile(d / f"out{k}.wav")
            if y.shape[0] != x2.shape[0]:  # a decoder could up/down-mix; keep the input layout
                y = np.repeat(to_mono_np(y, keepdims=True), x2.shape[0], axis=0)
            y = align_to(x2, resample_np(y, r, sr), max_lag=int(round(max_lag_s * sr)))
            outputs.append(y[0] if squeeze else y)
    return outputs
