"""Reference quality metrics behind one interface: ``METRICS[name](ref, deg, sr, **opts) -> dict``.

Each entry is a plain function on arrays: ``ref`` and ``deg`` are float audio shaped ``(C, T)`` or ``(T,)``
at the same rate ``sr`` (Hz, full scale +/-1), and the result maps the metric's usual value names to
numbers (``moslqo``/``nsim`` for ViSQOL, ``pesq``, ``stoi``, ``estoi``, ``haaqi``, ``dnsmos_*``, ``cdpam``,
``di``/``odg`` for PEAQ, ``mos`` for the 2f-model). A result may also hold ``notes``: a list of one-line
remarks on what was done to the input (trimmed, resampled, down-mixed). :func:`compute` loads two files,
validates and reconciles them, and calls the entry; :mod:`aqa.metrics.runner` does it for many pairs in
parallel worker processes.

Input policy (the same for every metric, applied by :func:`prepare_pair`):

- NaN/inf samples, empty or undecodable files: :class:`MetricError`.
- Silent reference (peak below -120 dBFS) for a full-reference metric: :class:`MetricError` (every
  full-reference score is undefined or meaningless against silence); silent degraded likewise, because
  the level-normalising metrics (ViSQOL, PESQ, STOI) divide by its level.
- Different sample rates: the lower-rate file is resampled up to the higher rate (an 8 kHz degraded file
  against a 48 kHz reference keeps its missing bandwidth, which the metric should see), with a note.
  Each metric then resamples the pair to its own rate.
- Different channel counts: when one side is mono the other is down-mixed to mono, with a note; two
  different multi-channel layouts are an error.
- Different lengths: metrics that align the signals themselves (ViSQOL, PESQ) get them as they are (ViSQOL's
  conformance set scores a 5 s patch against the full 12 s file); the others trim both to the shorter one
  and say so in a note (:func:`match_lengths`), after removing a constant delay found by cross-correlation
  (codec delay would otherwise ruin frame-by-frame metrics). For those, a difference of more than half
  the longer signal is an error: that is no longer a degraded copy of the same excerpt.

Heavy metric packages live in the ``metrics`` extra; a missing one raises :class:`MissingDependency`
naming it. ``peaq`` and ``2f_model`` come from :mod:`aqa.metrics.peaq`, written here.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.signal import correlate, correlation_lags

from aqa.audio import (
    SILENCE_PEAK,
    AudioError,
    check_audio,
    load_audio,
    probe_duration,
    resample_np,
    to_mono_np,
)

__all__ = [
    "METRICS",
    "NO_REFERENCE",
    "MetricError",
    "MissingDependency",
    "compute",
    "compute_arrays",
    "prepare_pair",
    "match_lengths",
    "parse_names",
    "accepted_options",
    "check_options",
    "read",
]

EXTRA_HINT = "pip install -e '.[metrics]'"
MAX_LENGTH_MISMATCH = 0.5  # fraction of the longer signal
# Reference metrics score clips: longer files are refused before decoding (STOI on a 2 h file took 20 GB).
MAX_DURATION_S = 600.0


class MetricError(ValueError):
    """The input cannot be scored by the metric; the message is one line and says why."""


class MissingDependency(MetricError, ImportError):
    """An optional metric package is not installed; the message names the extra to install."""


def require(module: str, package: str, metric: str) -> Any:
    """Import ``module`` or raise :class:`MissingDependency` naming ``package`` and the ``metrics`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependency(
            f"{metric} needs the optional package {package!r} ({err.__class__.__name__}: {err}); "
            f"install the metrics extra: {EXTRA_HINT}"
        ) from err


class _Lazy:
    # A registry entry that imports its implementation on first call, so `aqa metric` and
    # `import aqa.metrics` stay light and a missing optional module fails only the metric that needs it.
    # `trim` cuts both signals to the shorter one first, for metrics that need equal lengths.
    def __init__(
        self, module: str, func: str, fixed: dict[str, Any] | None = None, trim: bool = False
    ) -> None:
        self.module, self.func, self.fixed, self.trim = module, func, fixed or {}, trim

    def resolve(self) -> Callable[..., dict[str, Any]]:
        return getattr(importlib.import_module(self.module), self.func)

    def __call__(self, ref: np.ndarray | None, deg: np.ndarray, sr: int, **opts: Any) -> dict[str, Any]:
        fn = self.resolve()
        notes: list[str] = []
        if self.trim and ref is not None:
            ref, deg, notes = match_lengths(ref, deg, sr)
        out = dict(fn(ref, deg, sr, **{**self.fixed, **opts}))
        if notes:
            out["notes"] = [*notes, *out.get("notes", [])]
        return out

    def __repr__(self) -> str:
        return f"<metric {self.module}.{self.func}{' ' + str(self.fixed) if self.fixed else ''}>"


# name -> callable(ref (C, T) | (T,), deg, sr, **opts) -> {value name: number, "notes": [...]}
METRICS: dict[str, Callable[..., dict[str, Any]]] = {
    "visqol": _Lazy("aqa.metrics.visqol", "visqol"),
    "visqol_speech": _Lazy("aqa.metrics.visqol", "visqol", {"mode": "speech"}),
    "pesq": _Lazy("aqa.metrics.wrappers", "pesq"),
    "stoi": _Lazy("aqa.metrics.wrappers", "stoi"),
    "estoi": _Lazy("aqa.metrics.wrappers", "estoi"),
    "haaqi": _Lazy("aqa.metrics.wrappers", "haaqi"),
    "dnsmos": _Lazy("aqa.metrics.wrappers", "dnsmos"),
    "cdpam": _Lazy("aqa.metrics.wrappers", "cdpam"),
    "peaq": _Lazy("aqa.metrics.peaq", "peaq", trim=True),
    "2f_model": _Lazy("aqa.metrics.peaq", "two_f_model", trim=True),
}

# Metrics that score the degraded signal alone (``ref`` may be None).
NO_REFERENCE: frozenset[str] = frozenset({"dnsmos"})


def parse_names(names: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split a comma list of metric names and check each is registered.

    Raises:
        KeyError: for an unknown name, listing the known ones.
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    out = [n.strip() for n in items if n.strip()]
    if not out:
        raise KeyError(f"no metric named; choose from {sorted(METRICS)}")
    for n in out:
        if n not in METRICS:
            close = difflib.get_close_matches(n.lower(), METRICS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"unknown metric {n!r}{hint}; choose from {sorted(METRICS)}")
    return list(dict.fromkeys(out))


def accepted_options(name: str) -> set[str] | None:
    """The keyword options metric ``name`` accepts; None when it takes any (``**opts``) or is unavailable."""
    entry = METRICS[name]
    try:
        fn = entry.resolve() if isinstance(entry, _Lazy) else entry
    except (MetricError, ImportError):
        return None
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    fixed = entry.fixed if isinstance(entry, _Lazy) else {}
    named = {p.name for p in params[3:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return named - set(fixed)


def _option_problem(hint: Any, value: Any) -> str | None:
    # why `value` does not fit the annotation `hint` (None when it does, or when the hint says nothing checkable)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:  # Annotated[T, check, ...]: T, then each check (raises on a bad value)
        problem = _option_problem(args[0], value)
        for check in args[1:] if problem is None else ():
            try:
                check(value)
            except (MetricError, ValueError, TypeError) as err:
                return str(err)
        return problem
    if origin is Literal:
        return None if value in args else f"expected one of {', '.join(map(repr, args))}"
    if origin in (typing.Union, types.UnionType):
        problems = [_option_problem(a, value) for a in args]
        return None if None in problems else " or ".join(p for p in problems if p)
    if hint is type(None):
        return None if value is None else "expected none"
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
    if hint not in kinds:
        return None  # Any, or a type the metric checks itself
    ok = isinstance(value, kinds[hint]) and (hint is bool or not isinstance(value, bool))
    return None if ok else f"expected {hint.__name__}"


def check_options(name: str, opts: Mapping[str, Any]) -> None:
    """Check keyword options for metric ``name`` before any pair is scored: each value against its parameter's
    annotation (``bool``, ``int``, ``float``, ``str``, ``X | None``, a ``Literal``'s choices, and the checks an
    ``Annotated`` hint carries). Keys it does not take are left to
    :func:`accepted_options`; a metric whose module cannot be imported is not checked (it fails when run).

    Raises:
        ValueError: one line naming the metric, the option, its value and what it takes.
    """
    if not opts:
        return
    entry = METRICS[name]
    try:
        fn = entry.resolve() if isinstance(entry, _Lazy) else entry
        hints = typing.get_type_hints(fn, include_extras=True)
    except (MetricError, ImportError, NameError, TypeError):
        return
    for key, value in opts.items():
        problem = _option_problem(hints.get(key, Any), value)
        if problem:
            raise ValueError(f"{name} option {key}={value!r}: {problem}")


def _peak(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise MetricError(f"{name} must be shaped (C, T) or (T,), got {tuple(x.shape)}")
    if x.shape[0] > x.shape[1]:
        raise MetricError(f"{name} has more channels than samples {tuple(x.shape)}: pass (C, T), not (T, C)")
    if not np.issubdtype(x.dtype, np.floating):
        raise MetricError(f"{name} must be float audio (full scale +/-1), got dtype {x.dtype}")
    try:
        check_audio(x, name)
    except ValueError as err:
        raise MetricError(str(err)) from err
    return x


def prepare_pair(
    ref: np.ndarray | None,
    sr_ref: int,
    deg: np.ndarray,
    sr_deg: int,
    *,
    need_reference: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, int, list[str]]:
    """Validate a pair and bring it to one rate and one channel layout (see the module's input policy).

    Args:
        ref: reference audio ``(C, T)`` or ``(T,)``, float, full scale +/-1 (None for no-reference metrics).
        sr_ref: its rate in Hz.
        deg: degraded audio ``(C', T')`` or ``(T',)``.
        sr_deg: its rate in Hz.
        need_reference: False for no-reference metrics (the reference is then not required nor checked).

    Returns:
        ``(ref (C, T) | None, deg (C, T'), sr, notes)``.

    Raises:
        MetricError: the pair cannot be scored; the message says why.
    """
    notes: list[str] = []
    deg = _as_2d(deg, "degraded")
    if not need_reference:
        return None, deg, int(sr_deg), notes
    if ref is None:
        raise MetricError("this metric needs a reference signal")
    ref = _as_2d(ref, "reference")
    if _peak(ref) < SILENCE_PEAK:
        raise MetricError("reference is silent (peak below -120 dBFS): a full-reference score is undefined")
    if _peak(deg) < SILENCE_PEAK:
        raise MetricError("degraded is silent (peak below -120 dBFS): the metric cannot normalise its level")
    sr_ref, sr_deg = int(sr_ref), int(sr_deg)
    if sr_ref != sr_deg:
        if sr_deg < sr_ref:
            deg = resample_np(deg, sr_deg, sr_ref)
            notes.append(f"degraded resampled {sr_deg} -> {sr_ref} Hz to match the reference")
        else:
            ref = resample_np(ref, sr_ref, sr_deg)
            notes.append(f"reference resampled {sr_ref} -> {sr_deg} Hz to match the degraded")
    sr = max(sr_ref, sr_deg)
    if ref.shape[0] != deg.shape[0]:
        if min(ref.shape[0], deg.shape[0]) != 1:
            raise MetricError(
                f"channel layouts differ: reference has {ref.shape[0]}, degraded {deg.shape[0]} channels"
            )
        notes.append(
            f"reference has {ref.shape[0]} channel(s), degraded {deg.shape[0]}: both down-mixed to mono"
        )
        ref, deg = to_mono_np(ref, keepdims=True), to_mono_np(deg, keepdims=True)
    return ref, deg, sr, notes


def _lag(ref: np.ndarray, deg: np.ndarray, max_lag: int) -> int:
    # Delay of `deg` against `ref` in samples (positive: deg lags), from the peak of their FFT
    # cross-correlation within +/- max_lag. Channels are averaged first.
    r = ref.mean(axis=0) if ref.ndim == 2 else ref
    d = deg.mean(axis=0) if deg.ndim == 2 else deg
    corr = correlate(d.astype(np.float64), r.astype(np.float64), mode="full", method="fft")
    lags = correlation_lags(d.shape[-1], r.shape[-1], mode="full")
    keep = np.abs(lags) <= max_lag
    return int(lags[keep][np.argmax(corr[keep])])


def match_lengths(
    ref: np.ndarray, deg: np.ndarray, sr: int, *, align: bool = True, max_lag_s: float = 0.5
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Time-align the pair (global cross-correlation) and trim both to the shorter one (last axis).

    Codecs delay their output (AAC by ~2048 samples, MP3 by ~1100) and pad its end; metrics that compare
    the signals frame by frame (STOI, CDPAM, PEAQ) need that delay removed, or a transparent codec
    scores as badly distorted. The lag is searched within +/- ``max_lag_s`` and only applied when the
    lengths differ or ``align`` finds a non-zero lag; each change is reported in the notes.

    Args:
        ref: reference ``(C, T)`` or ``(T,)``. deg: degraded ``(C, T')`` or ``(T',)``. sr: rate in Hz.
        align: estimate and remove the delay first.
        max_lag_s: largest delay searched, in seconds.

    Returns:
        ``(ref, deg, notes)`` with equal lengths.

    Raises:
        MetricError: when they differ by more than half the longer one (not two versions of one excerpt).
    """
    n_ref, n_deg = ref.shape[-1], deg.shape[-1]
    if abs(n_ref - n_deg) > MAX_LENGTH_MISMATCH * max(n_ref, n_deg):
        raise MetricError(
            f"lengths differ too much to trim: reference {n_ref / sr:.3f} s, degraded {n_deg / sr:.3f} s"
        )
    notes: list[str] = []
    if align and min(n_ref, n_deg) > 1:
        lag = _lag(ref, deg, max(1, int(max_lag_s * sr)))
        if lag > 0:
            deg = deg[..., lag:]
        elif lag < 0:
            ref = ref[..., -lag:]
        if lag:
            notes.append(
                f"degraded {'delayed' if lag > 0 else 'advanced'} by {abs(lag) / sr * 1000:.1f} ms: aligned"
            )
    n_ref, n_deg = ref.shape[-1], deg.shape[-1]
    if n_ref == n_deg:
        return ref, deg, notes
    n = min(n_ref, n_deg)
    which = "reference" if n_ref > n_deg else "degraded"
    notes.append(f"{which} trimmed by {abs(n_ref - n_deg) / sr:.3f} s to the shorter signal ({n / sr:.3f} s)")
    return ref[..., :n], deg[..., :n], notes


def _clean(values: dict[str, Any], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "notes":
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            raise MetricError(f"{name} returned a non-finite {key} ({value})")
        out[key] = value
    notes = list(values.get("notes", []))
    if notes:
        out["notes"] = notes
    return out


def compute_arrays(
    name: str,
    ref: np.ndarray | None,
    sr_ref: int,
    deg: np.ndarray,
    sr_deg: int,
    **opts: Any,
) -> dict[str, Any]:
    """Validate, reconcile and score one pair of arrays with metric ``name`` (see :func:`prepare_pair`).

    Returns:
        The metric's values, plus ``notes`` when the input was changed.

    Raises:
        KeyError: unknown metric.
        MetricError: the pair cannot be scored (message says why); MissingDependency for a missing extra.
    """
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
    ref2, deg2, sr, notes = prepare_pair(ref, sr_ref, deg, sr_deg, need_reference=name not in NO_REFERENCE)
    values = dict(METRICS[name](ref2, deg2, sr, **opts))
    values["notes"] = [*notes, *values.get("notes", [])]
    return _clean(values, name)


def read(path: str | Path, what: str = "audio") -> tuple[np.ndarray, int]:
    """Load an audio file as ``(float32 (C, T), rate)``; any failure is a one-line :class:`MetricError`.

    Args:
        path: the file.
        what: "reference" or "degraded", used in the message.
    """
    if not Path(path).is_file():
        raise MetricError(f"{what} file not found: {path}")
    duration = probe_duration(path) or 0.0  # None: not a soundfile format, checked after decoding below
    if duration > MAX_DURATION_S:
        raise MetricError(f"{what} {path} is {duration:.0f} s long; reference metrics take clips up to {MAX_DURATION_S:.0f} s")
    try:
        x, sr = load_audio(path)
    except AudioError as err:  # already one line naming the file and the reason
        raise MetricError(f"cannot read {what} {err.name}: {err.reason}") from err
    except (RuntimeError, ValueError, OSError) as err:  # soundfile/ffmpeg failures, NaN samples, no ffmpeg
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise MetricError(f"cannot read {what} {path}: {first[:300]}") from err
    if x.shape[-1] > MAX_DURATION_S * sr:
        raise MetricError(f"{what} {path} is {x.shape[-1] / sr:.0f} s long; reference metrics take clips up to {MAX_DURATION_S:.0f} s")
    return x, sr


def compute(name: str, ref_path: str | Path | None, deg_path: str | Path, **opts: Any) -> dict[str, Any]:
    """Load two audio files and score them with metric ``name``.

    Args:
        name: a key of :data:`METRICS`.
        ref_path: reference file (may be None for no-reference metrics such as ``dnsmos``).
        deg_path: degraded file.
        **opts: metric options, e.g. ``mode="speech"`` for ViSQOL or ``audiogram=[...]`` for HAAQI.

    Returns:
        The metric's values (e.g. ``{"moslqo": 4.3, "nsim": 0.91}``) plus ``notes`` when the input was
        changed (trimmed, resampled, down-mixed).

    Raises:
        KeyError: unknown metric.
        MetricError: the files cannot be read or scored; the message is one line and says why.
    """
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
    deg, sr_deg = read(deg_path, "degraded")
    if name in NO_REFERENCE or ref_path is None:
        ref, sr_ref = None, sr_deg
    else:
        ref, sr_ref = read(ref_path, "reference")
    return compute_arrays(name, ref, sr_ref, deg, sr_deg, **opts)
