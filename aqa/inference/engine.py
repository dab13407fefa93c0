"""Score audio with a trained model, batched: ``aqa score MODEL INPUT... [--reference REF | --pairs CSV | --ref-dir DIR]``.

Score heads (``mlp``, ``haaqi_net``, ...) predict each file's quality directly. Embedding heads (DeePAQ, JSQA)
score a file by minus its embedding distance to a reference: the clean original (full-reference) or any other
recording used as an anchor (DeePAQ's mismatched-reference mode).

How files become scores:

- inputs are decoded (``jobs`` threads, ahead of the model), down-mixed and resampled to the encoder's rate; each
  reference is decoded once and embedded once, however many files name it;
- with ``window_s``, a file longer than one window is cut into windows of ``window_s`` seconds every ``hop_s``
  (the last one ends at the file's end); each window gets a record and the whole file one more, the mean of its
  windows' scores; a window is compared with the reference's samples at the same times
  (:func:`reference_segment`), a file that is not windowed with the whole reference;
- clips (files or windows) run in padded batches of ``batch_size`` with their lengths, so the encoders and heads
  mask the padding: a clip's score does not depend on its batch neighbours (to float rounding, ~1e-6);
- one record per file (and window), in input order, never a traceback for one bad file: an undecodable file gets
  ``{"file", "error"}``. A clip that is silent or shorter than :data:`aqa.audio.MIN_SECONDS` (the length
  ``aqa metric`` refuses) is still scored, with a ``note`` saying the score is unreliable.

Pure pieces (:func:`window_bounds`, :func:`pad_batch`, :func:`collect_inputs`, :func:`match_references`) are used
by :mod:`aqa.inference.scorer` (the Python API) and :mod:`aqa.eval.runs` (the command).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from aqa.audio import AUDIO_SUFFIXES, AudioError, audio_note, load_audio, resample_np, to_mono_np
from aqa.heads import as_float32, head_score
from aqa.inference.device import autocast, resolve_device, resolve_precision

LIST_SUFFIXES = (".lst", ".list", ".scp")  # a list file: one audio path per line (.txt stays audio input)
Item = tuple[Path, Path | None]  # (file to score, its reference or None)


class UsageError(ValueError):
    """Arguments that do not fit the model or each other. ``str(err)`` names the Python API's arguments
    (``reference=``, ``audiogram=``, ``window_s``); ``cli_message`` says the same with the command line's flags
    (``--reference``, ``--audiogram``, ``--window-s``), which ``aqa``'s one-line errors print."""

    def __init__(self, message: str, cli_message: str) -> None:
        super().__init__(message)
        self.cli_message = cli_message


# ----------------------------------------------------------------------------------------------------------
# Inputs


def collect_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Audio files named by ``items``: files as given, folders searched recursively (sorted), list files
    (``.lst``/``.list``/``.scp``: one path per line, ``#`` comments, relative to the list's folder).

    Raises:
        FileNotFoundError: an item does not exist, or nothing was found.
    """
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
        elif p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line)
                    paths.append(q if q.is_absolute() else p.resolve().parent / q)
        elif p.exists():
            paths.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    if not paths:
        raise FileNotFoundError(f"no audio files in {[str(i) for i in items]}")
    return paths


def match_references(paths: Sequence[Path], ref_dir: str | Path) -> list[Item]:
    """Pair each file with the file of the same name in ``ref_dir`` (searched recursively), or None when there is
    none (its record then says so). Same stem with another audio suffix also matches (``a.mp3`` -> ``a.wav``).

    Raises:
        FileNotFoundError: ``ref_dir`` is not a folder.
    """
    ref_dir = Path(ref_dir)
    if not ref_dir.is_dir():
        raise FileNotFoundError(f"--ref-dir {ref_dir}: not a folder")
    by_name: dict[str, Path] = {}
    by_stem: dict[str, Path] = {}
    for q in sorted(ref_dir.rglob("*")):
        if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES:
            by_name.setdefault(q.name, q)
            by_stem.setdefault(q.stem, q)
    return [(p, by_name.get(p.name) or by_stem.get(p.stem)) for p in paths]


def window_bounds(
    n: int, sample_rate: int, window_s: float | None, hop_s: float | None = None
) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` a clip of ``n`` samples is scored on.

    One range ``(0, n)`` without ``window_s`` or when the clip is no longer than one window; else windows of
    ``window_s`` seconds starting every ``hop_s`` (default ``window_s``), the last one ending at the clip's end
    (so every window has the same length and the tail is covered).

    Raises:
        ValueError: ``window_s`` or ``hop_s`` is not positive or shorter than one sample (whatever ``n`` is).
    """
    if window_s is None:
        return [(0, n)]
    got = f"got {window_s} and {hop_s}"
    if window_s <= 0 or (hop_s is not None and hop_s <= 0):
        raise UsageError(f"window_s and hop_s must be > 0, {got}", f"--window-s and --hop-s must be > 0, {got}")
    win = round(window_s * sample_rate)
    hop = round((hop_s or window_s) * sample_rate)
    if win < 1 or hop < 1:  # checked before the early return, so a short first clip cannot hide it
        why = f"must be at least one sample (1/{sample_rate} s), {got}"
        raise UsageError(f"window_s and hop_s {why}", f"--window-s and --hop-s {why}")
    if n <= win:
        return [(0, n)]
    starts = list(range(0, n - win, hop))
    if not starts or starts[-1] + win < n:
        starts.append(n - win)
    return [(s, s + win) for s in starts]


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length (stable) and cut into batches of ``batch_size`` (at least 1):
    clips of similar lengths share a batch, so padding is least."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    size = max(1, int(batch_size))
    return [order[start : start + size] for start in range(0, len(order), size)]


def pad_batch(clips: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Right-pad mono clips (T_i,) with zeros to ``(B, max T_i)``; returns ``(wav, lengths (B,) long)``."""
    lengths = torch.tensor([c.shape[-1] for c in clips], dtype=torch.long)
    wav = torch.zeros(len(clips), int(lengths.max()), dtype=torch.float32)
    for i, c in enumerate(clips):
        wav[i, : c.shape[-1]] = c
    return wav, lengths


def load_for(path: str | Path, sample_rate: int) -> Tensor:
    """Decode ``path`` to a mono float32 tensor (T,) at ``sample_rate`` Hz (any input rate/channels)."""
    return _load(path, sample_rate)[0]


def _load(path: str | Path, sample_rate: int) -> tuple[Tensor, str | None]:
    # load_for plus audio_note's remark on the decoded file (too short, silent) or None
    x, sr = load_audio(path)
    return torch.from_numpy(resample_np(to_mono_np(x), sr, sample_rate).copy()).float(), audio_note(x, sr)


def _one_line(err: BaseException) -> str:
    if isinstance(err, AudioError):  # already one line naming the file and the reason
        return str(err)
    if isinstance(err, FileNotFoundError):
        return " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:300]


@dataclass
class Decoded:
    """A decoded input: ``wave`` (T,) mono float32 at the model's rate and ``note``, or ``error`` (one line)."""

    wave: Tensor | None = None
    note: str | None = None
    error: str | None = None


def decode(path: str | Path, sample_rate: int) -> Decoded:
    """:func:`load_for` that never raises: errors become ``Decoded(error=...)``."""
    try:
        wave, note = _load(path, sample_rate)
        return Decoded(wave, note)
    except Exception as err:  # one bad file is reported in its record, never stops the others
        return Decoded(error=_one_line(err))


# ----------------------------------------------------------------------------------------------------------
# The model on padded batches


def _conditions(
    conditions: Mapping[str, Sequence[float]] | None, batch: int, device: torch.device
) -> dict[str, Tensor]:
    return {
        k: torch.tensor([list(map(float, v))], device=device).expand(batch, -1)
        for k, v in (conditions or {}).items()
    }


@torch.no_grad()
def forward_clips(
    module: nn.Module,
    clips: Sequence[Tensor],
    conditions: Mapping[str, Sequence[float]] | None,
    device: torch.device,
    precision: str,
) -> list[dict[str, Tensor]]:
    """One padded forward of ``clips`` (mono (T_i,) at ``module.encoder.sample_rate``) through ``module``.

    Returns, per clip, task -> float32 CPU tensor: the clip score () for score heads, the embedding (D,) for
    embedding heads. ``module`` must already be on ``device`` in eval mode.
    """
    wav, lengths = pad_batch(clips)
    with autocast(device, precision):
        out = module(wav.to(device), lengths.to(device), _conditions(conditions, len(clips), device))
    per_task = {}
    for task, o in out.items():
        o = as_float32(o)
        value = o if module.heads[task].is_embedding else head_score(o)
        per_task[task] = value.reshape(len(clips), -1).cpu()
    # score heads: the first value per clip (the clip score); embedding heads: the whole vector
    return [
        {task: v[i] if module.heads[task].is_embedding else v[i, 0] for task, v in per_task.items()}
        for i in range(len(clips))
    ]


def _forward_safe(
    module: nn.Module, clips: Sequence[Tensor], conditions: Any, device: torch.device, precision: str
) -> list[dict[str, Tensor] | str]:
    # forward_clips, falling back to one clip at a time when the batch fails, so an error (a clip too short
    # for the encoder) lands on its own clip: per clip its outputs or a one-line error
    try:
        return forward_clips(module, clips, conditions, device, precision)
    except Exception as err:
        if len(clips) == 1:
            return [_one_line(err)]
    return [_forward_safe(module, [c], conditions, device, precision)[0] for c in clips]


def distance_score(embedding: Tensor, reference: Tensor) -> float:
    """Minus the L2 distance (float32) between two embeddings (D,): 0 for identical audio, lower is further."""
    return -float(torch.linalg.vector_norm(embedding.float() - reference.float()))


@torch.no_grad()
def score_clips(
    module: nn.Module,
    clips: Sequence[Tensor],
    reference: Tensor | Sequence[Tensor | None] | None = None,
    conditions: Mapping[str, Sequence[float]] | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    batch_size: int = 8,
) -> dict[str, Tensor]:
    """Scores of ``clips`` for every task of ``module``, in padded batches of ``batch_size``.

    Args:
        module: a trained :class:`~aqa.model.QualityModel` (``module(wav, lengths, conditions) -> {task: output}``).
        clips: mono waveforms (T_i,) at ``module.encoder.sample_rate``, any lengths.
        reference: mono waveform (T,) for embedding tasks (distance-based scores), one per clip (a sequence,
            None entries allowed), or None: embedding tasks are then left out (or NaN for clips without one).
        conditions: values the heads are conditioned on, e.g. ``{"audiogram": [8 values, dB HL]}``.
        device: ``cpu``, ``cuda``, ``auto`` or a ``torch.device``; the module is moved there.
        precision: ``fp32``, ``bf16`` (autocast) or ``auto`` (bf16 on CUDA).
        batch_size: clips per forward.

    Returns:
        task -> (N,) float32 scores on the CPU (higher = better); embedding tasks: minus the L2 distance
        (taken in float32) to the reference's embedding.
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    module.eval().to(device)
    refs = list(reference) if isinstance(reference, Sequence) else [reference] * len(clips)
    if len(refs) != len(clips):
        raise ValueError(f"{len(refs)} references for {len(clips)} clips")
    outs = embed_clips(module, clips, conditions, device, precision, batch_size, all_tasks=True)
    unique = {id(r): r for r in refs if r is not None}
    ref_outs = dict(
        zip(
            unique,
            embed_clips(
                module, list(unique.values()), conditions, device, precision, batch_size, all_tasks=True
            ),
            strict=True,
        )
    )
    scores: dict[str, list[float]] = {}
    for out, ref in zip(outs, refs, strict=True):
        for task, value in out.items():
            if not module.heads[task].is_embedding:
                scores.setdefault(task, []).append(float(value))
            elif unique:
                scores.setdefault(task, []).append(
                    distance_score(value, ref_outs[id(ref)][task]) if ref is not None else float("nan")
                )
    return {task: torch.tensor(v, dtype=torch.float32) for task, v in scores.items()}


@torch.no_grad()
def embed_clips(
    module: nn.Module,
    clips: Sequence[Tensor],
    conditions: Mapping[str, Sequence[float]] | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    batch_size: int = 8,
    all_tasks: bool = False,
) -> list[dict[str, Tensor]]:
    """Per clip, task -> embedding (D,) float32 for the embedding tasks of ``module`` (with ``all_tasks`` also the
    score tasks' scores ()), in padded batches of ``batch_size`` sorted by length. Raises the first error."""
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    module.eval().to(device)
    out: list[dict[str, Tensor]] = [{} for _ in clips]
    for chunk in length_batches([c.shape[-1] for c in clips], batch_size):
        for i, o in zip(
            chunk,
            forward_clips(module, [clips[i] for i in chunk], conditions, device, precision),
            strict=True,
        ):
            out[i] = {t: v for t, v in o.items() if all_tasks or module.heads[t].is_embedding}
    return out


# ----------------------------------------------------------------------------------------------------------
# Files: decoded ahead, batched, one record per file (and window) in input order


@dataclass
class _File:
    index: int
    path: Path
    reference: Path | None
    decoded: Decoded | None = None
    bounds: list[tuple[int, int]] = field(default_factory=list)
    keys: list[tuple] = field(default_factory=list)  # per window: its segment key
    ref_keys: list[tuple | None] = field(
        default_factory=list
    )  # per window: the reference segment it is compared with
    ref_note: str | None = None
    ref_error: str | None = None


def check_requirements(
    module: nn.Module, conditions: Mapping[str, Sequence[float]] | None, any_reference: bool
) -> None:
    """Raise :class:`UsageError` (one line naming the argument, or the flag in ``cli_message``) when the model needs
    a condition the call lacks, a condition has the wrong size, or every task is an embedding task and no reference
    was given."""
    heads = module.heads
    dims = {k: n for h in heads.values() for k, n in h.condition_dims.items()}
    given = conditions or {}
    missing = sorted(set(dims) - set(given))
    if missing:
        why = f"this model is conditioned on {missing}: pass"
        raise UsageError(
            f"{why} {', '.join(f'{k}=[V1, V2, ...]' for k in missing)}",
            f"{why} {' '.join(f'--{k} V1,V2,...' for k in missing)}",
        )
    for key, dim in dims.items():
        if len(given[key]) != dim:
            why = f"needs {dim} values, got {len(given[key])}"
            raise UsageError(f"{key}= {why}", f"--{key} {why}")
    if not any_reference and all(h.is_embedding for h in heads.values()):
        why = "this model scores by embedding distance to a reference: pass"
        anchor = "(the clean original, or any recording as a mismatched reference)"
        raise UsageError(
            f"{why} reference= (one, or one per clip; score_files also takes (file, reference) pairs) {anchor}",
            f"{why} --reference CLEAN.wav, --pairs or --ref-dir {anchor}",
        )


def score_files(
    module: nn.Module,
    paths: Iterable[str | Path | tuple[str | Path, str | Path | None]],
    reference: str | Path | None = None,
    conditions: Mapping[str, Sequence[float]] | None = None,
    calibrations: Mapping[str, Callable[[Sequence[float]], Any]] | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    **opts: Any,
) -> Iterator[dict[str, Any]]:
    """Score files in padded batches: an iterator of one record per file (and per window), in input order.

    Args:
        module: a trained :class:`~aqa.model.QualityModel`.
        paths: files, or ``(file, reference)`` pairs (reference None: ``reference`` below, if any).
        reference: the reference of every file without its own (embedding tasks).
        conditions: e.g. ``{"audiogram": [8 values, dB HL]}``, the same for every file.
        calibrations: task -> :class:`~aqa.inference.calibration.Calibration`; adds ``TASK_calibrated``.
        device, precision: as for :func:`score_clips`; resolved here, then :func:`stream_files` runs.
        opts: keyword options of :func:`stream_files`:
        batch_size: clips (files or windows) per forward.
        jobs: decoding threads, running ahead of the model (0: decode in this thread).
        window_s, hop_s: score files longer than ``window_s`` seconds per window (see :func:`window_bounds`).
        progress: a tqdm bar (files) on stderr; a string names the bar (e.g. the model's name).

    Records: ``{"file", ["reference"], TASK: score, ..., "TASK_calibrated"?, "note"?}`` or ``{"file", "error"}``;
    windowed files give ``{"file", "start_s", "end_s", TASK...}`` per window, then the whole-file record with
    ``"windows": n`` and each task's mean over the windows. ``note`` says when the file (or its reference) is
    silent or too short for a reliable score.

    Raises (when called, before any file is scored or any record is asked for: this is a plain function that
    checks, then returns the generator) ``ValueError`` when the model needs something the call lacks (see
    :func:`check_requirements`) or the window settings are invalid (see :func:`window_bounds`), and
    :class:`~aqa.audio.AudioError` (one line) when the shared ``reference`` cannot be decoded (embedding models
    only: a model without embedding tasks never decodes it).
    """
    dev = resolve_device(device)
    return stream_files(module, paths, reference, conditions, calibrations, dev, resolve_precision(precision, dev), **opts)


def stream_files(
    module: nn.Module,
    paths: Iterable[str | Path | tuple[str | Path, str | Path | None]],
    reference: str | Path | None,
    conditions: Mapping[str, Sequence[float]] | None,
    calibrations: Mapping[str, Callable[[Sequence[float]], Any]] | None,
    device: torch.device,
    precision: str,
    *,
    batch_size: int = 8,
    jobs: int = 1,
    window_s: float | None = None,
    hop_s: float | None = None,
    progress: bool | str = False,
) -> Iterator[dict[str, Any]]:
    """:func:`score_files` on a ``device`` and ``precision`` (``fp32`` | ``bf16``) already resolved
    (:mod:`aqa.inference.device`), as the :class:`~aqa.inference.scorer.Scorer` holds them. Checks, then returns
    the generator, as :func:`score_files` does."""
    items: list[Item] = []
    for p in paths:
        deg, ref = p if isinstance(p, tuple) else (p, None)
        ref = ref if ref is not None else reference
        items.append((Path(deg), Path(ref) if ref is not None else None))
    check_requirements(module, conditions, any(r is not None for _, r in items))
    sr = module.encoder.sample_rate
    window_s = None if window_s is None else float(window_s)
    window_bounds(1, sr, window_s, hop_s)  # checks the window settings before anything runs
    shared: Decoded | None = None
    if reference is not None and module_has_embedding(module):  # shared by every file: a usage error
        try:
            shared = Decoded(*_load(reference, sr))
        except AudioError as err:
            raise AudioError(f"reference {err.name}", err.reason) from None
        except FileNotFoundError as err:
            raise AudioError(f"reference {reference}", _one_line(err)) from None
    module.eval().to(device)
    engine = _Engine(
        module, items, conditions, calibrations or {}, device, precision, batch_size, jobs, window_s, hop_s, progress
    )
    if reference is not None:
        engine.shared = Path(reference)
        if shared is not None:
            engine.refs[engine.shared] = _done(shared)
    return engine.run()


def reference_segment(start: int, end: int, n_ref: int) -> tuple[int, int]:
    """The reference samples ``[start, end)`` a file window ``[start, end)`` is compared with: the same times,
    moved back to fit when the reference ends earlier (``[min(start, n_ref - (end - start)), ...)``, clipped to
    ``[0, n_ref)``), so a window and its reference segment have the same length whenever the reference is long
    enough."""
    length = end - start
    rs = max(0, min(start, n_ref - length))
    return rs, min(rs + length, n_ref)


def module_has_embedding(module: nn.Module) -> bool:
    """True when some task of ``module`` scores by embedding distance (needs a reference)."""
    return any(h.is_embedding for h in module.heads.values())


def _done(value: Any) -> Future:
    out: Future = Future()
    out.set_result(value)
    return out


class _Engine:
    """The streaming loop behind :func:`score_files`: decode ahead, queue segments, run full batches sorted by
    length, emit finished files in order. Reference segments are keyed by (path, window) and run once."""

    def __init__(
        self,
        module: nn.Module,
        items: list[Item],
        conditions: Any,
        calibrations: Mapping[str, Any],
        device: torch.device,
        precision: str,
        batch_size: int,
        jobs: int,
        window_s: float | None,
        hop_s: float | None,
        progress: bool | str,
    ) -> None:
        self.module, self.items, self.conditions, self.calibrations = module, items, conditions, calibrations
        self.device, self.precision = device, precision
        self.batch_size, self.jobs, self.window_s, self.hop_s = (
            max(1, int(batch_size)),
            int(jobs),
            window_s,
            hop_s,
        )
        self.progress = progress
        self.sr = module.encoder.sample_rate
        self.embedding = {t for t, h in module.heads.items() if h.is_embedding}
        self.outputs: dict[tuple, dict[str, Tensor] | str] = {}  # segment key -> outputs or error
        self.pending: dict[tuple, Tensor] = {}  # segment key -> clip, waiting for a batch
        self.ref_users = {}  # reference path -> files not yet emitted that use it
        for _, ref in items:
            if ref is not None:
                self.ref_users[ref] = self.ref_users.get(ref, 0) + 1
        self.refs: dict[Path, Future] = {}  # decoded once each; dropped when its last user is emitted
        self.shared: Path | None = None  # the reference of every file (not repeated in the records)

    def _submit(self, pool: ThreadPoolExecutor | None, path: Path) -> Future:
        return pool.submit(decode, path, self.sr) if pool is not None else _done(decode(path, self.sr))

    def run(self) -> Iterator[dict[str, Any]]:
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="aqa-decode") if self.jobs > 0 else None
        ahead = max(2 * self.jobs, 2 * self.batch_size)
        bar = tqdm(
            total=len(self.items),
            unit="file",
            desc=self.progress if isinstance(self.progress, str) else None,
            file=sys.stderr,
            disable=not self.progress or len(self.items) < 2,
        )
        waiting: deque[_File] = deque()  # decoded files whose records are not out yet, in input order
        submitted: deque[tuple[_File, Future, Future | None]] = deque()
        try:
            nxt = 0
            while nxt < len(self.items) or submitted or waiting:
                while nxt < len(self.items) and len(submitted) < ahead:
                    path, ref = self.items[nxt]
                    f = _File(nxt, path, ref)
                    ref_future = None
                    if ref is not None and self.embedding:
                        ref_future = self.refs.get(ref)
                        if ref_future is None:
                            ref_future = self.refs[ref] = self._submit(pool, ref)
                    submitted.append((f, self._submit(pool, path), ref_future))
                    nxt += 1
                if submitted:
                    f, fut, ref_future = submitted.popleft()
                    self._plan(f, fut.result(), ref_future.result() if ref_future is not None else None)
                    waiting.append(f)
                full = len(self.pending) >= 4 * self.batch_size
                if full or not submitted:
                    self._flush()
                while waiting and self._ready(waiting[0]):
                    f = waiting.popleft()
                    yield from self._records(f)
                    self._release(f)
                    bar.update(1)
                if waiting and not submitted and nxt >= len(self.items) and not self._ready(waiting[0]):
                    raise RuntimeError(f"internal error: {waiting[0].path} never got its outputs")
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _plan(self, f: _File, decoded: Decoded, ref: Decoded | None) -> None:
        # the file's windows (and its reference's) become segments to run, unless already run or queued
        f.decoded = decoded
        if decoded.error is not None:
            return
        assert decoded.wave is not None
        f.bounds = window_bounds(decoded.wave.shape[-1], self.sr, self.window_s, self.hop_s)
        f.keys = [("file", f.index, w) for w in range(len(f.bounds))]
        for key, (s, e) in zip(f.keys, f.bounds, strict=True):
            self.pending[key] = decoded.wave[s:e]
        f.ref_keys = [None] * len(f.bounds)
        if not self.embedding or f.reference is None:
            return
        if ref is None or ref.error is not None:
            f.ref_error = f"reference {ref.error if ref is not None else 'missing'}"
            return
        f.ref_note = ref.note
        assert ref.wave is not None
        n_ref = ref.wave.shape[-1]
        windowed = len(f.bounds) > 1
        for w, (s, e) in enumerate(f.bounds):
            rs, re = reference_segment(s, e, n_ref) if windowed else (0, n_ref)
            key = ("ref", str(f.reference), rs, re)
            f.ref_keys[w] = key
            if key not in self.outputs and key not in self.pending:
                self.pending[key] = ref.wave[rs:re]

    def _flush(self) -> None:
        keys = list(self.pending)
        for batch in length_batches([self.pending[k].shape[-1] for k in keys], self.batch_size):
            chunk = [keys[i] for i in batch]
            got = _forward_safe(
                self.module, [self.pending[k] for k in chunk], self.conditions, self.device, self.precision
            )
            self.outputs.update(zip(chunk, got, strict=True))
        self.pending.clear()

    def _ready(self, f: _File) -> bool:
        return all(k in self.outputs for k in f.keys) and all(
            k is None or k in self.outputs for k in f.ref_keys
        )

    def _release(self, f: _File) -> None:
        for k in f.keys:
            self.outputs.pop(k, None)
        if f.reference is not None and f.reference in self.ref_users:
            self.ref_users[f.reference] -= 1
            if (
                self.ref_users[f.reference] == 0
            ):  # its last user is out: drop the decoded audio and its outputs
                self.refs.pop(f.reference, None)
                for k in [k for k in self.outputs if k[0] == "ref" and k[1] == str(f.reference)]:
                    del self.outputs[k]

    def _scores(self, f: _File, w: int) -> dict[str, float] | str:
        out = self.outputs[f.keys[w]]
        if isinstance(out, str):
            return out
        ref_key = f.ref_keys[w]
        ref_out = self.outputs.get(ref_key) if ref_key is not None else None
        if isinstance(ref_out, str):
            return f"reference {f.reference}: {ref_out}"
        scores = {}
        for task, value in out.items():
            if task not in self.embedding:
                scores[task] = float(value)
            elif ref_out is not None:
                scores[task] = distance_score(value, ref_out[task])
        return scores

    def _with_calibration(self, record: dict[str, Any], scores: Mapping[str, float]) -> dict[str, Any]:
        for task, value in scores.items():
            record[task] = value
            if task in self.calibrations:
                record[f"{task}_calibrated"] = float(self.calibrations[task]([value])[0])
        return record

    def _records(self, f: _File) -> Iterator[dict[str, Any]]:
        base: dict[str, Any] = {"file": str(f.path)}
        if f.reference is not None and f.reference != self.shared:
            base["reference"] = str(f.reference)
        assert f.decoded is not None
        if f.decoded.error is not None:
            yield {**base, "error": f.decoded.error}
            return
        if f.ref_error is not None and not (set(self.module.heads) - self.embedding):
            yield {**base, "error": f.ref_error}  # nothing this model can score without the reference
            return
        if f.reference is None and self.embedding and not (set(self.module.heads) - self.embedding):
            yield {**base, "error": "no reference for this file (an embedding model needs one)"}
            return
        per_window = [self._scores(f, w) for w in range(len(f.bounds))]
        failed = [s for s in per_window if isinstance(s, str)]
        if failed:
            yield {**base, "error": failed[0]}
            return
        no_ref = "no reference: embedding tasks left out" if f.reference is None and self.embedding else None
        notes = [
            n for n in (f.decoded.note, f.ref_note and f"reference {f.ref_note}", f.ref_error, no_ref) if n
        ]
        windowed = len(f.bounds) > 1
        if windowed:
            for (s, e), scores in zip(f.bounds, per_window, strict=True):
                assert isinstance(scores, dict)
                yield self._with_calibration(
                    {**base, "start_s": round(s / self.sr, 3), "end_s": round(e / self.sr, 3)}, scores
                )
        tasks = per_window[0].keys()  # type: ignore[union-attr]
        whole = {t: sum(s[t] for s in per_window) / len(per_window) for t in tasks}  # type: ignore[index]
        record = self._with_calibration(dict(base), whole)
        if windowed:
            record["windows"] = len(f.bounds)
        if notes:
            record["note"] = "; ".join(notes)
        yield record
