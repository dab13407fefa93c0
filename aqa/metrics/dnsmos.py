"""DNSMOS P.835 + P.808 (Reddy et al. 2022) on speechmos's shipped ONNX models, with sessions built once per process
and the 9.01 s windows of many clips run as one batch.

``speechmos.dnsmos.run`` (0.0.1.1) scores one clip at a time: a window, its mel features and two ONNX runs per
loop turn, with onnxruntime's default session options. This module keeps its procedure and its numbers (the
tests hold it to 1e-4 of ``speechmos.dnsmos.run`` on real clips) and changes only how the work is batched:

- a clip shorter than 9.01 s is doubled until it is at least that long (speechmos's ``np.append`` loop); a
  longer one is cut into 9.01 s windows every 1 s, ``int(floor(T / 16000) - 9.01) + 1`` of them, with
  speechmos's float window bounds (a window cut short by rounding is skipped, as there);
- the primary model (``sig_bak_ovr.onnx``: raw 144160 samples -> SIG, BAK, OVRL before the polynomial fit) and the
  P.808 model (``model_v8.onnx``: 120-band log-mel of the window minus its last 160 samples) get every window of
  every clip in one ``run`` per :data:`BATCH` windows; the mel spectrograms of a batch come from one librosa call;
- per window the polynomial fit of speechmos maps the raw outputs; a clip's values are its windows' means.

Speed (``tests/benchmarks/bench_dnsmos.py``): the same as speechmos's loop, ~0.5-0.7 s per window on the 2
shared cores. speechmos already kept its sessions per process, and batching windows gains nothing measurable: the
cost is the primary model's CNN (3x3 convolutions of 128/64/64/32 channels over the full 900 x 161 spectrogram,
~19 GMAC = ~38 GFLOP per window), which onnxruntime's kernels run at ~55-75 GFLOP/s on these cores (a torch port
measured 2-3x slower). Every clip shorter than 9.01 s is tiled to one full window, so a 2.5 s clip costs a 9 s
window: ~4x real time at best, and 10x would need ~150 GFLOP/s, near these two AVX2 cores' peak. Only a different
computation (not tiling short clips, int8 weights) would be faster, and it would no longer be DNSMOS's numbers.

Threads: ``intra_op_num_threads`` from ``OMP_NUM_THREADS`` when set (the metric runner gives each worker its share
of the cores, so ``--jobs 2`` runs one thread per worker; speechmos's sessions took every core in each worker),
else onnxruntime's default (the physical cores); one inter-op thread, sequential execution.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aqa.metrics import require

__all__ = ["RATE", "WINDOW_S", "BATCH", "windows", "mel_features", "score_batch", "sessions", "model_files"]

RATE = 16000
WINDOW_S = 9.01  # speechmos INPUT_LENGTH
BATCH = 8  # windows per onnxruntime call (~37 MB of activations per window in the primary model's first layers)
# speechmos.dnsmos.DNSMOS.get_polyfit_val: raw model output -> MOS, (sig, bak, ovr)
POLY = {
    False: ((-0.08397278, 1.22083953, 0.0052439), (-0.13166888, 1.60915514, -0.39604546),
            (-0.06766283, 1.11546468, 0.04602535)),
    True: ((-0.01019296, 0.02751166, 1.19576786, -0.24348726), (-0.04976499, 0.44276479, -0.1644611, 0.96883132),
           (-0.00533021, 0.005101, 1.18058466, -0.11236046)),
}
_SESSIONS: dict[tuple[bool, int], tuple[Any, Any]] = {}


def model_files(personalized: bool = False) -> tuple[Path, Path]:
    """The (primary, P.808) ONNX files that speechmos ships: ``dnsmos_models/sig_bak_ovr.onnx`` (or the personalised
    ``pdnsmos_models/sig_bak_ovr.onnx``) and ``dnsmos_models/model_v8.onnx``."""
    lib = require("speechmos.dnsmos", "speechmos", "dnsmos")
    root = Path(lib.__file__).resolve().parent
    primary = root / ("pdnsmos_models" if personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
    return primary, root / "dnsmos_models" / "model_v8.onnx"


def _threads() -> int:
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def sessions(personalized: bool = False) -> tuple[Any, Any]:
    """The (primary, P.808) onnxruntime sessions, built on first use and kept for the process (per thread count)."""
    key = (personalized, _threads())
    if key not in _SESSIONS:
        ort = require("onnxruntime", "onnxruntime", "dnsmos")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = key[1]  # 0: onnxruntime's default, the physical cores
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        _SESSIONS[key] = tuple(  # type: ignore[assignment]
            ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in model_files(personalized)
        )
    return _SESSIONS[key]


def windows(audio: np.ndarray) -> np.ndarray:
    """speechmos's windows of one clip: (W, 144160) float32 (W >= 1).

    Args:
        audio: (T,) mono float at 16 kHz, T > 0.
    """
    fs = RATE
    length = int(WINDOW_S * fs)
    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    if a.size == 0:
        raise ValueError("dnsmos: empty audio")
    while len(a) < length:
        a = np.append(a, a)
    hops = int(np.floor(len(a) / fs) - WINDOW_S) + 1
    out = [a[int(i * fs) : int((i + WINDOW_S) * fs)] for i in range(hops)]
    out = [w for w in out if len(w) >= length]
    return np.stack(out).astype(np.float32)


def mel_features(batch: np.ndarray) -> np.ndarray:
    """P.808 input of each window: ``(power_to_db(mel, ref=max) + 40) / 40`` of the window without its last 160
    samples (n_fft 321, hop 160, 120 bands), transposed: (W, 900, 120) float32.

    Args:
        batch: (W, 144160) windows.
    """
    librosa = require("librosa", "librosa", "dnsmos")
    mel = librosa.feature.melspectrogram(y=batch[:, :-160], sr=RATE, n_fft=321, hop_length=160, n_mels=120)
    db = np.stack([(librosa.power_to_db(m, ref=np.max) + 40) / 40 for m in mel])
    return np.ascontiguousarray(db.transpose(0, 2, 1)).astype(np.float32)


def score_batch(clips: Sequence[np.ndarray], personalized: bool = False, batch: int = BATCH) -> list[dict[str, float]]:
    """DNSMOS of many clips, their windows batched through the two models.

    Args:
        clips: (T_i,) mono float32 at 16 kHz within +/-1 (the caller clips and resamples).
        personalized: the personalised-DNSMOS primary model.
        batch: windows per onnxruntime call.

    Returns:
        Per clip ``{"ovrl_mos", "sig_mos", "bak_mos", "p808_mos"}``, as ``speechmos.dnsmos.run`` returns them.
    """
    primary, p808 = sessions(personalized)
    per_clip = [windows(c) for c in clips]
    owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(per_clip)])
    every = np.concatenate(per_clip)
    raw = np.empty((len(every), 3), np.float64)
    p808_mos = np.empty(len(every), np.float64)
    for start in range(0, len(every), max(1, int(batch))):
        part = every[start : start + max(1, int(batch))]
        raw[start : start + len(part)] = primary.run(None, {"input_1": part})[0]
        p808_mos[start : start + len(part)] = p808.run(None, {"input_1": mel_features(part)})[0][:, 0]
    sig, bak, ovr = (np.polyval(POLY[personalized][k], raw[:, k]) for k in range(3))
    out = []
    for i in range(len(clips)):
        sel = owner == i
        out.append({"ovrl_mos": float(np.mean(ovr[sel])), "sig_mos": float(np.mean(sig[sel])),
                    "bak_mos": float(np.mean(bak[sel])), "p808_mos": float(np.mean(p808_mos[sel]))})
    return out
