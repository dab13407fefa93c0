"""A corpus of hostile audio files and shard members, generated on the fly (nothing is stored in the repo).

Each entry says whether a careful reader must *accept* it (odd but valid audio) or *reject* it with a
one-line reason. The 2 h file is a sparse file: its WAV header announces 2 h of 8 kHz 8-bit mono, the data
is a hole (no disk blocks; it reads as 57.6 M samples at -1.0, i.e. DC), so it costs nothing on disk.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

LONG_S = 2 * 3600
LONG_RATE = 8000


def tone(seconds: float, sr: int, channels: int = 1, f0: float = 440.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone plus a little noise, float32 (T, C) as soundfile wants it."""
    rng = np.random.default_rng(seed)
    t = np.arange(max(1, int(round(seconds * sr)))) / sr
    x = sum(np.sin(2 * np.pi * min(f0 * k, sr / 2.5) * t) / k for k in range(1, 6)) * 0.2
    x = x + 0.01 * rng.standard_normal(t.size)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def _wav_bytes(x: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _flac_bytes(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1, 1), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def write_long_sparse_wav(path: Path, seconds: int = LONG_S, sr: int = LONG_RATE) -> Path:
    """A WAV header for ``seconds`` of 8-bit mono at ``sr`` Hz followed by a hole (sparse, ~0 bytes on disk)."""
    n = seconds * sr
    header = b"RIFF" + struct.pack("<I", 36 + n) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr, 1, 8)
    header += b"data" + struct.pack("<I", n)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n)
    return path


# name -> (bytes or None for the long file, "accept" | "reject")
def corpus_files() -> dict[str, tuple[bytes | None, str]]:
    """The hostile single files. ``accept``: valid audio every entry point must handle; ``reject``: must be
    reported with a one-line reason."""
    good = _wav_bytes(tone(1.0, 16000), 16000)
    nan = tone(1.0, 16000)
    nan[100:200] = np.nan
    inf = tone(1.0, 16000)
    inf[50] = np.inf
    return {
        "truncated_header.wav": (good[:20], "reject"),
        "zero_bytes.wav": (b"", "reject"),
        "random_bytes.wav": (np.random.default_rng(1).bytes(4096), "reject"),
        "nan_samples.wav": (_wav_bytes(nan, 16000, "FLOAT"), "reject"),
        "inf_samples.wav": (_wav_bytes(inf, 16000, "FLOAT"), "reject"),
        "all_zero.wav": (_wav_bytes(np.zeros((16000, 1), np.float32), 16000), "accept"),
        "one_sample.wav": (_wav_bytes(np.full((1, 1), 0.5, np.float32), 16000), "accept"),
        "rate_1hz.wav": (_wav_bytes(tone(8.0, 1), 1), "accept"),
        "rate_384khz.wav": (_wav_bytes(tone(0.5, 384000), 384000), "accept"),
        "eight_channels.wav": (_wav_bytes(tone(1.0, 16000, channels=8), 16000), "accept"),
        "long_2h.wav": (None, "accept"),
    }


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write :func:`corpus_files` plus a good reference/degraded pair and a short degraded file."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, (data, _) in corpus_files().items():
        path = folder / name
        if data is None:
            write_long_sparse_wav(path)
        else:
            path.write_bytes(data)
        paths[name] = path
    sf.write(folder / "good_ref.wav", tone(2.0, 16000, seed=1), 16000)
    deg = tone(2.0, 16000, seed=1) + 0.05 * np.random.default_rng(2).standard_normal((32000, 1)).astype(np.float32)
    sf.write(folder / "good_deg.wav", deg, 16000)
    sf.write(folder / "short_deg.wav", deg[:4000], 16000)  # 0.25 s against a 2 s reference
    for name in ("good_ref.wav", "good_deg.wav", "short_deg.wav"):
        paths[name] = folder / name
    return paths


def hostile_members(sr: int = 24000) -> dict[str, tuple[bytes, str]]:
    """Audio payloads for shard members (stored under the ``.flac`` key as shards do)."""
    files = corpus_files()
    out = {name: (data, kind) for name, (data, kind) in files.items() if data is not None}
    out["all_zero.wav"] = (_flac_bytes(np.zeros((sr, 1), np.float32), sr), "accept")
    out["one_sample.wav"] = (_flac_bytes(np.full((1, 1), 0.5, np.float32), sr), "reject")  # under min_s
    out["eight_channels.wav"] = (_flac_bytes(tone(1.0, sr, channels=8), sr), "accept")
    # a group's versions must share the reference's rate: these two are refused at group level
    out["rate_384khz.wav"] = (_flac_bytes(tone(0.5, 384000), 384000), "reject")
    out["rate_1hz.wav"] = (out["rate_1hz.wav"][0], "reject")
    return out


def write_hostile_shard(path: Path, sr: int = 24000) -> dict[str, str]:
    """A WebDataset shard of groups (reference + one coded version), one group per hostile payload, between
    good groups. Returns group name -> "accept" | "reject" (the good groups are ``good0``, ``good1``)."""
    import webdataset as wds

    kinds: dict[str, str] = {}
    with wds.TarWriter(str(path)) as sink:

        def group(name: str, ref: bytes, deg: bytes) -> None:
            for i, (payload, is_ref) in enumerate(((ref, True), (deg, False))):
                meta = {"group": name, "is_reference": is_ref, "bitrate_rank": 4 if is_ref else 1,
                        "bitrate_kbps": None if is_ref else 64}
                sink.write({"__key__": f"{name}-{i}", "json": json.dumps(meta).encode(), "flac": payload})

        good = _flac_bytes(tone(1.0, sr), sr)
        group("good0", good, _flac_bytes(tone(1.0, sr, seed=3) * 0.5, sr))
        kinds["good0"] = "accept"
        for name, (payload, kind) in hostile_members(sr).items():
            group(name.removesuffix(".wav"), good, payload)
            kinds[name.removesuffix(".wav")] = kind
        group("mismatched_lengths", good, _flac_bytes(tone(0.3, sr), sr))
        kinds["mismatched_lengths"] = "accept"
        group("good1", good, _flac_bytes(tone(1.0, sr, seed=4) * 0.5, sr))
        kinds["good1"] = "accept"
    return kinds
