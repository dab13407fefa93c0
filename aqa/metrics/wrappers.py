"""Thin wrappers over kept metric libraries: PESQ, STOI/ESTOI, HAAQI, DNSMOS, CDPAM.

Every function has the registry signature ``fn(ref, deg, sr, **opts) -> dict``: ``ref``/``deg`` are float
audio ``(C, T)`` or ``(T,)`` at rate ``sr`` (Hz, full scale +/-1). Each down-mixes to mono and resamples
to the rate its metric is defined at (:mod:`aqa.audio`), and returns its value under the usual name
plus ``notes`` on what it changed. Libraries are imported on first use; a missing one raises
:class:`~aqa.metrics.MissingDependency` naming the ``metrics`` extra. Models (DNSMOS ONNX sessions, the
CDPAM network) are loaded once per process.
"""

from __future__ import annotations

import pickle
import types
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from aqa.audio import resample_np, to_mono_np
from aqa.metrics import MetricError, match_lengths, require

__all__ = ["pesq", "stoi", "estoi", "haaqi", "dnsmos", "dnsmos_batch", "cdpam", "AUDIOGRAM_FREQUENCIES"]

# Audiogram frequencies (Hz) of the ``audiogram`` argument of :func:`haaqi`.
AUDIOGRAM_FREQUENCIES = (250, 500, 1000, 2000, 3000, 4000, 6000, 8000)
HAAQI_RATE = 24000
DNSMOS_RATE = 16000
CDPAM_RATE = 22050

_MODELS: dict[str, Any] = {}


def _mono(x: np.ndarray, sr: int, rate: int, dtype: type = np.float64) -> np.ndarray:
    return resample_np(to_mono_np(np.asarray(x, dtype=dtype)), sr, rate)


def _resample_note(sr: int, rate: int, metric: str) -> list[str]:
    return [f"resampled {sr} -> {rate} Hz for {metric}"] if sr != rate else []


def pesq(ref: np.ndarray, deg: np.ndarray, sr: int, *, mode: Literal["wb", "nb"] = "wb") -> dict[str, Any]:
    """PESQ (ITU-T P.862) MOS-LQO: wide band (P.862.2, 16 kHz) or narrow band (P.862.1, 8 kHz).

    PESQ aligns the two signals itself, so lengths may differ.

    Args:
        ref: reference ``(C, T)`` or ``(T,)``. deg: degraded, same rate. sr: rate in Hz.
        mode: "wb" (resampled to 16 kHz) or "nb" (resampled to 8 kHz).

    Returns:
        ``{"pesq": float (about 1.0-4.64 wb, 1.0-4.55 nb)}``.
    """
    if mode not in ("wb", "nb"):
        raise MetricError(f"pesq mode must be 'wb' or 'nb', got {mode!r}")
    lib = require("pesq", "pesq", "pesq")
    rate = 16000 if mode == "wb" else 8000
    r, d = _mono(ref, sr, rate), _mono(deg, sr, rate)
    try:
        score = lib.pesq(rate, r, d, mode)
    except lib.PesqError as err:  # no utterances found, buffer too short, ...
        raise MetricError(f"pesq {mode}: {err.__class__.__name__}: {err}") from err
    return {"pesq": float(score), "notes": _resample_note(sr, rate, f"pesq {mode}")}


def _stoi(ref: np.ndarray, deg: np.ndarray, sr: int, extended: bool) -> float:
    lib = require("pystoi", "pystoi", "estoi" if extended else "stoi")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = lib.stoi(ref, deg, sr, extended=extended)
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            raise MetricError(
                f"{'estoi' if extended else 'stoi'}: too little non-silent audio (needs > 384 ms after "
                "dropping frames 40 dB below the loudest)"
            )
    return float(score)


def stoi(ref: np.ndarray, deg: np.ndarray, sr: int) -> dict[str, Any]:
    """STOI (Taal et al. 2011) via pystoi: mono, trimmed to the shorter signal; pystoi resamples to 10 kHz.

    Returns:
        ``{"stoi": float (0..1)}``.
    """
    r, d, notes = match_lengths(
        to_mono_np(np.asarray(ref, np.float64)), to_mono_np(np.asarray(deg, np.float64)), sr
    )
    return {"stoi": _stoi(r, d, sr, extended=False), "notes": notes}


def estoi(ref: np.ndarray, deg: np.ndarray, sr: int) -> dict[str, Any]:
    """Extended STOI (Jensen & Taal 2016) via pystoi; same input handling as :func:`stoi`.

    Returns:
        ``{"estoi": float}``.
    """
    r, d, notes = match_lengths(
        to_mono_np(np.asarray(ref, np.float64)), to_mono_np(np.asarray(deg, np.float64)), sr
    )
    return {"estoi": _stoi(r, d, sr, extended=True), "notes": notes}


def _audiogram(levels: Any) -> np.ndarray:
    if levels is None:
        return np.zeros(len(AUDIOGRAM_FREQUENCIES))
    if isinstance(levels, str):
        levels = [v for v in levels.replace(";", ",").split(",") if v.strip()]
    arr = np.asarray(levels, dtype=np.float64).ravel()
    if arr.shape != (len(AUDIOGRAM_FREQUENCIES),):
        raise MetricError(
            f"haaqi audiogram needs {len(AUDIOGRAM_FREQUENCIES)} hearing levels (dB HL) at "
            f"{', '.join(map(str, AUDIOGRAM_FREQUENCIES))} Hz, got {arr.size}"
        )
    if not np.all(np.isfinite(arr)) or arr.min() < -20 or arr.max() > 120:
        raise MetricError(f"haaqi audiogram levels must lie in -20..120 dB HL, got {arr.tolist()}")
    return arr


def haaqi(
    ref: np.ndarray,
    deg: np.ndarray,
    sr: int,
    *,
    audiogram: Annotated[Any, _audiogram] = None,  # checked by aqa.metrics.check_options before any pair
    level_db: float = 65.0,
    channels: Literal["mix", "mean"] = "mix",
) -> dict[str, Any]:
    """HAAQI v1 (Kates & Arehart 2016) music quality via pyclarity, for a given hearing loss.

    The pair is resampled to 24 kHz (the ear model's rate) and trimmed to the shorter signal. The reference
    is presented at ``level_db`` dB SPL (its RMS; the degraded signal gets the same gain, so level
    differences between them still count), as in the Cadenza challenge baselines. The reference is not
    NAL-R equalised beforehand (HAAQI applies NAL-R for the audiogram itself, ``equalisation=1``).

    Args:
        ref: reference ``(C, T)`` or ``(T,)``. deg: degraded, same rate. sr: rate in Hz.
        audiogram: 8 hearing levels in dB HL at 250, 500, 1k, 2k, 3k, 4k, 6k, 8k Hz (list, array or a
            comma-separated string); None is normal hearing (all 0 dB HL).
        level_db: presentation level of the reference in dB SPL (default 65).
        channels: "mix" scores the down-mix; "mean" scores each channel (ear) and averages.

    Returns:
        ``{"haaqi": float (0..1)}`` (+ ``haaqi_left``/``haaqi_right``... per channel with ``channels="mean"``).
    """
    levels = _audiogram(audiogram)
    if channels not in ("mix", "mean"):
        raise MetricError(f"haaqi channels must be 'mix' or 'mean', got {channels!r}")
    require("clarity", "pyclarity", "haaqi")
    # optional extra (pyclarity, heavy): imported only when HAAQI is asked for
    from clarity.evaluator.haaqi import compute_haaqi
    from clarity.utils.audiogram import Audiogram

    gram = Audiogram(levels=levels, frequencies=np.asarray(AUDIOGRAM_FREQUENCIES, dtype=np.float64))
    r2 = np.atleast_2d(np.asarray(ref, np.float64))
    d2 = np.atleast_2d(np.asarray(deg, np.float64))
    if channels == "mix" or r2.shape[0] == 1:
        r2, d2 = to_mono_np(r2, keepdims=True), to_mono_np(d2, keepdims=True)
    r2, d2 = resample_np(r2, sr, HAAQI_RATE), resample_np(d2, sr, HAAQI_RATE)
    r2, d2, notes = match_lengths(r2, d2, HAAQI_RATE)
    notes = [*_resample_note(sr, HAAQI_RATE, "haaqi"), *notes]
    if audiogram is None:  # said, never silently assumed
        notes.append("haaqi: no audiogram given, normal hearing (0 dB HL at every frequency) assumed")
    scores = []
    for r, d in zip(r2, d2, strict=True):
        rms = float(np.sqrt(np.mean(r**2)))
        if rms <= 0:
            raise MetricError("haaqi: a reference channel is silent")
        level1 = float(level_db) - 20.0 * np.log10(rms)
        scores.append(float(compute_haaqi(d, r, HAAQI_RATE, HAAQI_RATE, gram, equalisation=1, level1=level1)))
    out: dict[str, Any] = {"haaqi": float(np.mean(scores)), "notes": notes}
    if len(scores) > 1:
        names = ["left", "right"] if len(scores) == 2 else [str(i) for i in range(len(scores))]
        out.update({f"haaqi_{n}": s for n, s in zip(names, scores, strict=True)})
    return out


def dnsmos(ref: np.ndarray | None, deg: np.ndarray, sr: int, *, personalized: bool = False) -> dict[str, Any]:
    """DNSMOS P.835 + P.808 (Reddy et al. 2022) on speechmos's models: no-reference, mono, 16 kHz; ``ref`` is ignored.

    Clips shorter than 9.01 s are repeated to that length (as speechmos and Microsoft's DNSMOS script do);
    longer ones are scored in 9.01 s windows with 1 s hop and averaged. Computed by :mod:`aqa.metrics.dnsmos`
    (speechmos's procedure and models, sessions kept per process, windows batched; equal to
    ``speechmos.dnsmos.run`` within 1e-4); :func:`dnsmos_batch` scores many clips in one call.

    Args:
        ref: ignored (may be None). deg: audio ``(C, T)`` or ``(T,)``. sr: rate in Hz.
        personalized: use the personalised-DNSMOS model (interfering talkers count as noise).

    Returns:
        ``{"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}`` (MOS 1..5).
    """
    return dnsmos_batch([deg], sr, personalized=personalized)[0]


def dnsmos_batch(clips: list[np.ndarray], sr: int, *, personalized: bool = False) -> list[dict[str, Any]]:
    """:func:`dnsmos` of many clips at rate ``sr``, their 9.01 s windows run through the models in batches.

    Returns:
        Per clip ``{"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "notes"}``.
    """
    require("onnxruntime", "onnxruntime", "dnsmos")
    require("librosa", "librosa", "dnsmos")
    from aqa.metrics.dnsmos import score_batch  # own module; imports onnxruntime only when a session is built

    mono, notes = [], []
    for deg in clips:
        d = _mono(deg, sr, DNSMOS_RATE, np.float32)
        note = _resample_note(sr, DNSMOS_RATE, "dnsmos")
        if np.max(np.abs(d)) > 1.0:
            d = np.clip(d, -1.0, 1.0)
            note.append("samples beyond full scale clipped to +/-1 for dnsmos")
        mono.append(d)
        notes.append(note)
    return [
        {"dnsmos_ovrl": r["ovrl_mos"], "dnsmos_sig": r["sig_mos"], "dnsmos_bak": r["bak_mos"],
         "dnsmos_p808": r["p808_mos"], "notes": n}
        for r, n in zip(score_batch(mono, personalized), notes, strict=True)
    ]


class _TensorUnpickler(pickle.Unpickler):
    """A pickle reader that rebuilds tensors and ordered dicts and refuses every other global, so no code in the
    file can run. For legacy checkpoints that ``torch.load(weights_only=True)`` cannot parse (CDPAM's is a
    protocol-2 pickle whose opcodes torch's weights-only reader lacks)."""

    ALLOWED = frozenset({("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only tensors and dicts are read")
        return super().find_class(module, name)


# what torch.load needs of a pickle module: an Unpickler class and load()
_TENSOR_PICKLE = types.SimpleNamespace(
    Unpickler=_TensorUnpickler, load=lambda f, **kw: _TensorUnpickler(f, **kw).load(), __name__="pickle"
)


def load_tensor_pickle(path: str | Path) -> Any:
    """``torch.load`` of a legacy checkpoint holding only tensors, dicts and numbers, on the CPU, through
    :class:`_TensorUnpickler`: any other object in the file raises ``pickle.UnpicklingError``."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TENSOR_PICKLE)


def _cdpam_model() -> Any:
    if "cdpam" not in _MODELS:
        pkg = require("cdpam", "cdpam", "cdpam")
        from cdpam.models import FINnet  # optional extra: imported only when CDPAM is asked for

        # The checkpoint ships inside the installed package as a legacy pickle that torch's weights-only reader
        # cannot parse; it is read by load_tensor_pickle, which rebuilds tensors and dicts and nothing else.
        weights = Path(pkg.__file__).resolve().parent / "CDPAM_trained" / "scratchJNDdefault_best_model.pth"
        if not weights.is_file():
            raise MetricError(f"cdpam: bundled weights missing at {weights}; reinstall the package")
        # Hyper-parameters of cdpam.CDPAM.__init__ (0.0.6), which builds the same network.
        model = FINnet(
            dev=torch.device("cpu"),
            encoder_layers=16,
            encoder_filters=64,
            ndim=[16, 6],
            classif_dp=0.05,
            classif_BN=0,
            classif_act="no",
            input_size=512,
        )
        state = load_tensor_pickle(weights)["state"]
        model.load_state_dict(state)
        _MODELS["cdpam"] = model.eval()
    return _MODELS["cdpam"]


def cdpam(ref: np.ndarray, deg: np.ndarray, sr: int) -> dict[str, Any]:
    """CDPAM (Manocha et al. 2021) learned perceptual distance: mono, 22.05 kHz, trimmed to the shorter.

    Samples are scaled to the 16-bit integer range and rounded, as ``cdpam.load_audio`` does.

    Returns:
        ``{"cdpam": float}`` (0 for identical signals; larger is more different).
    """
    model = _cdpam_model()
    r, d = _mono(ref, sr, CDPAM_RATE, np.float32), _mono(deg, sr, CDPAM_RATE, np.float32)
    r, d, notes = match_lengths(r, d, CDPAM_RATE)
    if r.shape[-1] < CDPAM_RATE // 4:
        raise MetricError(f"cdpam needs at least 0.25 s of audio, got {r.shape[-1] / CDPAM_RATE:.3f} s")
    with torch.inference_mode():
        a = torch.from_numpy(np.round(r * 32768.0)).float()[None, None]
        b = torch.from_numpy(np.round(d * 32768.0)).float()[None, None]
        _, za, _ = model.base_encoder.forward(a)
        _, zb, _ = model.base_encoder.forward(b)
        dist = model.model_dist.forward(F.normalize(za, dim=1), F.normalize(zb, dim=1))
    return {"cdpam": float(dist.reshape(-1)[0]), "notes": [*_resample_note(sr, CDPAM_RATE, "cdpam"), *notes]}
