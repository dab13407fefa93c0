"""Audio input/output helpers: decode, down-mix, resample and FLAC-encode numpy audio.

Conventions used throughout :mod:`aqa.data`: audio is ``float32`` shaped ``(C, T)``
(channels, samples) with full scale at +/-1.0, and sample rates are in Hz.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

__all__ = [
    "ffmpeg_binary",
    "check_audio",
    "load_audio",
    "to_mono",
    "resample",
    "encode_flac",
    "decode_flac",
]

FFMPEG_INSTALL_HINT = (
    "ffmpeg is required to decode/encode compressed audio but was not found on PATH; "
    "install it with `make install` (runs `apt-get install -y --no-install-recommends ffmpeg`) "
    "or point the AQA_FFMPEG environment variable at an ffmpeg binary"
)


def ffmpeg_binary() -> str:
    """Return the path of the ffmpeg executable (``$AQA_FFMPEG`` or ``ffmpeg`` on PATH).

    Raises:
        FileNotFoundError: when ffmpeg cannot be found, with an install hint.
    """
    candidate = os.environ.get("AQA_FFMPEG") or "ffmpeg"
    found = shutil.which(candidate)
    if found is None:
        raise FileNotFoundError(f"{FFMPEG_INSTALL_HINT} (looked for {candidate!r})")
    return found


def run_ffmpeg(args: list[str], *, timeout_s: float = 120.0, what: str = "ffmpeg") -> None:
    """Run ``ffmpeg -nostdin -hide_banner -v error -y <args>``; raise with stderr's tail on failure.

    Args:
        args: ffmpeg arguments after the global options.
        timeout_s: wall-clock limit in seconds.
        what: short description used in error messages.

    Raises:
        FileNotFoundError: ffmpeg is not installed.
        RuntimeError: ffmpeg exited non-zero or timed out (message holds the stderr tail).
    """
    cmd = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"").decode("utf-8", "replace")[-1500:]
        raise RuntimeError(
            f"{what}: ffmpeg timed out after {timeout_s:.0f} s\n{' '.join(cmd)}\n{tail}"
        ) from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-1500:]
        raise RuntimeError(f"{what}: ffmpeg exited with code {proc.returncode}\n{' '.join(cmd)}\n{tail}")


def check_audio(x: np.ndarray, name: str = "audio") -> np.ndarray:
    """Validate audio and return it unchanged.

    Args:
        x: audio, shape ``(C, T)`` or ``(T,)``.
        name: used in the error message.

    Raises:
        ValueError: when ``x`` has no samples or holds NaN/inf values.
    """
    if x.size == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _read_soundfile(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    handle = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
    data, sr = sf.read(handle, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(sr)


def _read_ffmpeg(source: str | Path | bytes, timeout_s: float) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory(prefix="aqa_decode_") as tmp:
        if isinstance(source, bytes | bytearray | memoryview):
            src = Path(tmp) / "input.bin"
            src.write_bytes(bytes(source))
        else:
            src = Path(source)
        out = Path(tmp) / "decoded.wav"
        run_ffmpeg(
            ["-i", str(src), "-vn", "-c:a", "pcm_f32le", str(out)], timeout_s=timeout_s, what=f"decode {src}"
        )
        return _read_soundfile(out)


def load_audio(source: str | os.PathLike | bytes, *, timeout_s: float = 120.0) -> tuple[np.ndarray, int]:
    """Decode an audio file (path or encoded bytes) to float32.

    Uses soundfile (WAV/FLAC/OGG/MP3/...) and falls back to the ffmpeg CLI for anything
    libsndfile cannot read (e.g. .m4a/AAC, .opus on old libsndfile builds).

    Args:
        source: file path or the file's bytes.
        timeout_s: ffmpeg timeout in seconds (fallback path only).

    Returns:
        ``(audio, sample_rate)``: audio ``float32`` of shape ``(C, T)`` and the rate in Hz.

    Raises:
        FileNotFoundError: the path does not exist (or ffmpeg is needed but not installed).
        ValueError: the decoded audio is empty or non-finite.
        RuntimeError: neither soundfile nor ffmpeg could decode the input.
    """
    if not isinstance(source, bytes | bytearray | memoryview):
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"audio file not found: {source}")
    name = "<bytes>" if not isinstance(source, Path) else str(source)
    try:
        x, sr = _read_soundfile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_error:
        try:
            x, sr = _read_ffmpeg(source, timeout_s)
        except RuntimeError as ff_error:
            raise RuntimeError(f"cannot decode {name}: soundfile said {sf_error}; {ff_error}") from ff_error
    check_audio(x, name)
    return x, sr


def to_mono(x: np.ndarray, *, keepdims: bool = False) -> np.ndarray:
    """Down-mix to mono by averaging the channels.

    Args:
        x: audio ``(C, T)``; a 1-D ``(T,)`` array is returned as is (or as ``(1, T)`` with ``keepdims``).
        keepdims: return ``(1, T)`` instead of ``(T,)``.

    Returns:
        ``(T,)`` (or ``(1, T)``) in the input dtype.
    """
    if x.ndim == 1:
        return x[None] if keepdims else x
    if x.ndim != 2:
        raise ValueError(f"expected audio shaped (C, T) or (T,), got {tuple(x.shape)}")
    mono = x.mean(axis=0, keepdims=keepdims) if x.shape[0] > 1 else (x if keepdims else x[0])
    return mono.astype(x.dtype, copy=False)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis (zero-phase: no delay).

    Uses ``scipy.signal.resample_poly`` with ``up/down = sr_out/sr_in`` reduced by their gcd.
    The output has ``ceil(T * sr_out / sr_in)`` samples.

    Args:
        x: audio ``(..., T)``.
        sr_in: input rate in Hz.
        sr_out: output rate in Hz.

    Returns:
        Resampled audio ``(..., T')`` in the input's float dtype (``x`` itself when the rates match).
    """
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return x
    if x.shape[-1] == 0:
        return x
    g = gcd(sr_in, sr_out)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    y = resample_poly(x, sr_out // g, sr_in // g, axis=-1)
    return y.astype(dtype, copy=False)


def encode_flac(x: np.ndarray, sr: int) -> bytes:
    """Encode audio to 16-bit FLAC bytes (values outside +/-1 are clipped).

    Args:
        x: audio ``(C, T)`` or ``(T,)``, float, full scale +/-1.
        sr: sample rate in Hz.
    """
    x2 = x[None] if x.ndim == 1 else x
    pcm = np.clip(x2, -1.0, 1.0 - 1.0 / 32768).T
    buf = io.BytesIO()
    sf.write(buf, pcm, int(sr), format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """Decode FLAC (or any soundfile-readable) bytes to ``(float32 (C, T), sample_rate)``."""
    return _read_soundfile(data)
