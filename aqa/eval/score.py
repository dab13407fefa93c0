"""Score your own audio files with a trained run: ``aqa score RUN_DIR FILE... [--reference REF]``.

Score heads (``mlp``, ``haaqi_net``, ...) predict each file's quality directly. Embedding heads (DeePAQ,
JSQA) score a file by minus its embedding distance to a reference: the clean original (full-reference) or any
other recording used as an anchor (DeePAQ's mismatched-reference mode). Files are decoded, down-mixed and
resampled to the encoder's rate; one record per file, never a traceback for one bad file. A clip that is
silent or shorter than :data:`aqa.audio.MIN_SECONDS` (the length ``aqa metric`` refuses) is still scored, with
a ``note`` in its record saying the score is unreliable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aqa.audio import AudioError, audio_note, load_audio, resample_np, to_mono_np
from aqa.eval.inference import autocast, resolve_device, resolve_precision
from aqa.heads import as_float32, head_score


def load_for(path: str | Path, sample_rate: int) -> Tensor:
    """Decode ``path`` to a mono float32 tensor (T,) at ``sample_rate`` Hz (any input rate/channels)."""
    return _load(path, sample_rate)[0]


def _load(path: str | Path, sample_rate: int) -> tuple[Tensor, str | None]:
    # load_for plus audio_note's remark on the decoded file (too short, silent) or None
    x, sr = load_audio(path)
    return torch.from_numpy(resample_np(to_mono_np(x), sr, sample_rate).copy()).float(), audio_note(x, sr)


@torch.no_grad()
def score_clips(
    module: nn.Module,
    clips: Sequence[Tensor],
    reference: Tensor | None = None,
    conditions: Mapping[str, Sequence[float]] | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> dict[str, Tensor]:
    """Scores of ``clips`` for every task of ``module``.

    Args:
        module: a trained ``MultiTaskModule`` (``module(wav, lengths, conditions) -> {task: output}``).
        clips: mono waveforms (T_i,) at ``module.encoder.sample_rate``; scored one at a time, so any length
            works and padding never enters.
        reference: mono waveform (T,) for embedding tasks (distance-based scores); None skips those tasks.
        conditions: values the heads are conditioned on, e.g. ``{"audiogram": [8 values, dB HL]}``.
        device: ``cpu``, ``cuda``, ``auto`` or a ``torch.device``; the module is moved there.
        precision: ``fp32``, ``bf16`` (autocast) or ``auto`` (bf16 on CUDA).

    Returns:
        task -> (N,) float32 scores on the CPU (higher = better); embedding tasks: minus the L2 distance
        (taken in float32) to the reference's embedding.
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    module.eval().to(device)
    cond = {k: torch.tensor([list(map(float, v))], device=device) for k, v in (conditions or {}).items()}

    def run(wav: Tensor) -> dict[str, Any]:
        with autocast(device, precision):
            out = module(wav[None, :].to(device), torch.tensor([wav.shape[-1]], device=device), cond)
        return {task: as_float32(o) for task, o in out.items()}

    ref_out = run(reference) if reference is not None else None
    scores: dict[str, list[Tensor]] = {}
    for clip in clips:
        for task, out in run(clip).items():
            if module.heads[task].is_embedding:
                if ref_out is None:
                    continue
                value = -torch.linalg.vector_norm(out - ref_out[task], dim=-1)
            else:
                value = head_score(out)
            scores.setdefault(task, []).append(value.reshape(-1)[:1].cpu())
    return {task: torch.cat(v) for task, v in scores.items()}


def score_files(
    module: nn.Module,
    paths: Iterable[str | Path],
    reference: str | Path | None = None,
    conditions: Mapping[str, Sequence[float]] | None = None,
    calibrations: Mapping[str, Callable[[Sequence[float]], Any]] | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> Iterator[dict[str, Any]]:
    """One record per file: ``{"file", task: score, ..., "note"?}`` or ``{"file", "error": one line}``; ``note``
    says when the file (or the reference) is silent or too short for a reliable score. With ``calibrations`` (task -> :class:`~aqa.eval.calibration.Calibration`) also ``TASK_calibrated``, the score
    on the label's scale. ``device`` and ``precision`` as for :func:`score_clips`.

    Raises (before any file is scored) ``ValueError`` when the run needs something the call lacks: a
    reference for a run whose every task is an embedding task, or a condition (audiogram) a head reads, and
    :class:`~aqa.audio.AudioError` (one line) when the reference cannot be decoded.
    """
    heads = module.heads
    dims = {k: n for h in heads.values() for k, n in h.condition_dims.items()}
    given = conditions or {}
    missing = sorted(set(dims) - set(given))
    if missing:
        flags = " ".join(f"--{k} V1,V2,..." for k in missing)
        raise ValueError(f"this model is conditioned on {missing}: pass {flags}")
    for key, dim in dims.items():
        if len(given[key]) != dim:
            raise ValueError(f"--{key} needs {dim} values, got {len(given[key])}")
    if reference is None and all(h.is_embedding for h in heads.values()):
        raise ValueError(
            "this model scores by embedding distance to a reference: pass --reference CLEAN.wav "
            "(the clean original, or any recording as a mismatched reference)"
        )
    sr = module.encoder.sample_rate
    ref, ref_note = None, None
    if reference is not None:
        try:
            ref, ref_note = _load(reference, sr)
        except AudioError as err:
            raise AudioError(f"reference {err.name}", err.reason) from None
    for path in paths:
        record: dict[str, Any] = {"file": str(path)}
        try:
            clip, note = _load(path, sr)
            for task, v in score_clips(module, [clip], ref, conditions, device, precision).items():
                record[task] = float(v[0])
                if calibrations and task in calibrations:
                    record[f"{task}_calibrated"] = float(calibrations[task]([record[task]])[0])
            notes = [n for n in (note, ref_note and f"reference {ref_note}") if n]
            if notes:
                record["note"] = "; ".join(notes)
        except AudioError as err:  # already one line naming the file and the reason
            record["error"] = str(err)
        except Exception as err:  # one bad file is reported in its record, never stops the others
            record["error"] = f"{type(err).__name__}: {' '.join(str(err).split())}"[:400]
        yield record
