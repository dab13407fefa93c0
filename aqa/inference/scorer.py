"""The Python API for scoring: ``aqa.load(path).score(audio, sr=...)``.

:func:`aqa.inference.loading.load` takes a training run folder (``config.yaml`` + ``checkpoints/``), an exported
model folder (``aqa export``: ``model.safetensors`` + ``config.yaml``; read without unpickling anything) or an
ensemble folder (``ensemble.yaml``: the mean of its members' scores, z-scored first when it says so) and returns
a :class:`Scorer`::

    import aqa
    scorer = aqa.load("models/mmmos")
    scorer.score(wave, sr=44100)                  # {"quality": 3.41}
    scorer.score(["a.wav", "b.mp3"])              # {"quality": array([3.4, 2.9])}
    scorer.score(degraded, sr=48000, reference=clean)   # embedding (full-reference) models
    for record in scorer.score_files(["folder/"], batch_size=16):   # the records of `aqa score`
        ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from aqa.audio import channels_first, resample_np, to_mono_np
from aqa.inference.device import PRECISIONS
from aqa.inference.engine import _load, check_requirements, embed_clips, score_clips, stream_files

Audio = str | Path | np.ndarray | Tensor


def standardise(scores: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(scores - mean) / std``, an ensemble member's z-scores; a ``std`` of 0 leaves the scores as they are."""
    return (
        (np.asarray(scores, dtype=np.float64) - mean) / std
        if std > 0
        else np.asarray(scores, dtype=np.float64)
    )


@dataclass
class Member:
    """One model of a scorer: the module, its config and (ensembles) its per-task score stats."""

    module: nn.Module
    config: DictConfig
    stats: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        return int(self.module.encoder.sample_rate)


class Scorer:
    """Scores audio with one model or an ensemble (made by :func:`aqa.inference.loading.load`).

    Attributes:
        tasks: the task names scores are returned for.
        sample_rate: the first member's encoder rate (Hz): the rate audio is resampled to for a single model;
            in an ensemble each member resamples to its own encoder's rate (``members[i].sample_rate``).
        calibrations: task -> score-to-label mapping (``aqa calibrate``), adding ``TASK_calibrated``.
        zscore: ensembles: each member's scores are standardised with its ``stats`` before averaging.
        device, precision: where and how the members run (``fp32`` | ``bf16``), already resolved
            (:mod:`aqa.inference.device`; :func:`aqa.inference.loading.load` resolves ``auto``) and passed down.
    """

    def __init__(
        self,
        members: Sequence[Member],
        tasks: Sequence[str] | None = None,
        calibrations: Mapping[str, Any] | None = None,
        zscore: bool = False,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ) -> None:
        if precision not in PRECISIONS[1:]:
            raise ValueError(f"a Scorer's precision is fp32 or bf16 (aqa.load resolves auto), got {precision!r}")
        self.members = list(members)
        self.device = torch.device(device)
        self.precision = precision
        for m in self.members:
            m.module.eval().to(self.device)
        self.tasks = list(tasks) if tasks is not None else list(self.members[0].module.heads)
        self.calibrations = dict(calibrations or {})
        self.zscore = bool(zscore)
        self.sample_rate = self.members[0].sample_rate
        if self.zscore:
            for i, m in enumerate(self.members):
                lacking = [t for t in self.tasks if t not in m.stats]
                if lacking:
                    raise ValueError(f"ensemble member {i}: zscore needs stats for {lacking}")

    @property
    def module(self) -> nn.Module:
        """The model (single-model scorers)."""
        return self.members[0].module

    # -- combining members -------------------------------------------------------------------------------

    def _combine(self, per_member: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        # task -> mean over members of each (z-scored) score; a task a member lacks is left out
        out = {}
        for task in self.tasks:
            values = []
            for m, scores in zip(self.members, per_member, strict=True):
                if task not in scores:
                    break
                v = np.asarray(scores[task], dtype=np.float64)
                if self.zscore:
                    v = standardise(v, float(m.stats[task]["mean"]), float(m.stats[task]["std"]))
                values.append(v)
            else:
                out[task] = np.mean(values, axis=0)
        return out

    def _calibrated(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        # adds TASK_calibrated of the same shape as TASK's value: a scalar stays a scalar (0-d), (N,) stays (N,)
        out = dict(scores)
        for task, v in scores.items():
            if task in self.calibrations:
                v = np.asarray(v, dtype=np.float64)
                mapped = self.calibrations[task](np.atleast_1d(v))
                out[f"{task}_calibrated"] = np.asarray(mapped, dtype=np.float64).reshape(v.shape)
        return out

    # -- audio in ----------------------------------------------------------------------------------------

    @staticmethod
    def _clip(audio: Audio, sr: int | None, target: int) -> Tensor:
        if isinstance(audio, str | Path):
            return _load(audio, target)[0]
        x = (
            audio.detach().cpu().float().numpy()
            if isinstance(audio, Tensor)
            else np.asarray(audio, dtype=np.float32)
        )
        if sr is None:
            raise ValueError("sr= (the sample rate in Hz) is required for arrays and tensors")
        x = channels_first(x)  # (T,), (C, T) or soundfile's (T, C)
        return torch.from_numpy(resample_np(to_mono_np(x), int(sr), target).astype(np.float32).copy())

    def _clips(
        self, audio: Audio | Sequence[Audio], sr: int | None, target: int
    ) -> tuple[list[Tensor], bool]:
        batched = isinstance(audio, list | tuple)
        items = list(audio) if batched else [audio]  # type: ignore[arg-type]
        # an item given several times (the same path or object, e.g. ``reference=[clean] * N``) is decoded once
        # and shares its tensor, which score_clips then embeds once
        keys = [str(Path(a).resolve()) if isinstance(a, str | Path) else id(a) for a in items]
        decoded: dict[Any, Tensor] = {}
        for key, a in zip(keys, items, strict=True):
            if key not in decoded:
                decoded[key] = self._clip(a, sr, target)
        return [decoded[k] for k in keys], batched

    # -- the API -----------------------------------------------------------------------------------------

    def score(
        self,
        audio: Audio | Sequence[Audio],
        sr: int | None = None,
        reference: Audio | Sequence[Audio] | None = None,
        audiogram: Sequence[float] | None = None,
        batch_size: int = 8,
    ) -> dict[str, Any]:
        """Score one clip or a batch.

        Args:
            audio: a path, or a waveform (T,), (C, T) or soundfile's (T, C) (``x, sr = soundfile.read(f)``), numpy
                or torch, with at most 8 channels (averaged; see :func:`aqa.audio.channels_first`); a list of them is a
                batch (any lengths: padded and masked, so each clip scores as it would alone).
            sr: sample rate in Hz of array/tensor inputs (paths carry their own).
            reference: the reference(s) of embedding models, same forms: one for all or one per clip.
            audiogram: hearing thresholds (dB HL at 250, 500, 1k, 2k, 3k, 4k, 6k, 8k Hz) for models conditioned
                on them.
            batch_size: clips per forward.

        Returns:
            task -> score (a float for one clip, a (N,) float64 array for a list); higher is better; embedding
            tasks give minus the embedding distance to the reference. With a calibration also
            ``TASK_calibrated`` on the label's scale.
        """
        conditions = {"audiogram": list(audiogram)} if audiogram is not None else None
        per_member = []
        batched = False
        inputs: dict[int, tuple] = {}  # encoder rate -> (clips, refs): members at one rate decode the audio once
        for m in self.members:
            check_requirements(m.module, conditions, reference is not None)
            if m.sample_rate not in inputs:
                clips, batched = self._clips(audio, sr, m.sample_rate)
                refs: Tensor | list[Tensor | None] | None = None
                if reference is not None:
                    ref_clips, ref_batched = self._clips(reference, sr, m.sample_rate)
                    refs = ref_clips if ref_batched else ref_clips[0]
                inputs[m.sample_rate] = clips, refs
            clips, refs = inputs[m.sample_rate]
            got = score_clips(m.module, clips, refs, conditions, self.device, self.precision, batch_size)
            per_member.append({t: v.double().numpy() for t, v in got.items()})
        scores = self._calibrated(self._combine(per_member))
        return (
            {t: v for t, v in scores.items()}
            if batched
            else {t: float(np.asarray(v).reshape(-1)[0]) for t, v in scores.items()}
        )

    def embed(
        self,
        audio: Audio | Sequence[Audio],
        sr: int | None = None,
        audiogram: Sequence[float] | None = None,
        batch_size: int = 8,
    ) -> dict[str, np.ndarray]:
        """The embeddings of an embedding model (DeePAQ, JSQA): task -> (D,) for one clip, (N, D) for a list.

        Inputs as for :meth:`score`. Raises ``ValueError`` for ensembles and for models without embedding tasks.
        """
        if len(self.members) != 1:
            raise ValueError(
                "embed() needs a single model, not an ensemble (members embed in different spaces)"
            )
        module = self.module
        tasks = [t for t, h in module.heads.items() if h.is_embedding]
        if not tasks:
            raise ValueError(f"this model has no embedding task (its tasks {list(module.heads)} give scores)")
        conditions = {"audiogram": list(audiogram)} if audiogram is not None else None
        clips, batched = self._clips(audio, sr, self.sample_rate)
        outs = embed_clips(module, clips, conditions, self.device, self.precision, batch_size)
        stacked = {t: np.stack([o[t].numpy() for o in outs]) for t in tasks}
        return stacked if batched else {t: v[0] for t, v in stacked.items()}

    def score_files(
        self,
        paths: Sequence[str | Path | tuple[str | Path, str | Path | None]],
        reference: str | Path | None = None,
        audiogram: Sequence[float] | None = None,
        *,
        batch_size: int = 8,
        jobs: int = 1,
        window_s: float | None = None,
        hop_s: float | None = None,
        progress: bool | str = False,
    ) -> Iterator[dict[str, Any]]:
        """The records of ``aqa score``, in input order (see :func:`aqa.inference.engine.score_files` for the options
        and the record layout; this calls :func:`~aqa.inference.engine.stream_files` on the scorer's device). ``paths`` are files or ``(file, reference)`` pairs;
        ``reference``: the reference of every file without its own. ``progress``: a tqdm bar on stderr, named by a
        string (e.g. the model's name).

        Usage errors (a missing reference or audiogram, bad window settings, an undecodable shared reference) are
        raised by this call, before any record is asked for. Ensembles combine each file's records across the
        members: a file any member failed on gives one error record; a file the members windowed differently
        (their encoders' rates differ) gives its whole-file record only.
        """
        conditions = {"audiogram": list(audiogram)} if audiogram is not None else None
        opts = dict(batch_size=batch_size, jobs=jobs, window_s=window_s, hop_s=hop_s)
        paths = list(paths)  # read once per member
        if len(self.members) == 1 and not self.zscore:
            return stream_files(
                self.module,
                paths,
                reference,
                conditions,
                self.calibrations,
                self.device,
                self.precision,
                progress=progress,
                **opts,
            )
        streams = [
            stream_files(
                m.module,
                paths,
                reference,
                conditions,
                None,
                self.device,
                self.precision,
                progress=progress if i == 0 else False,
                **opts,
            )
            for i, m in enumerate(self.members)
        ]  # each checked now (score_files validates eagerly), run lazily below
        return self._combine_streams(streams)

    def _combine_streams(self, streams: Sequence[Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        # per file: each member's window records up to its whole-file record (the one without start_s)
        task_keys = {t for m in self.members for t in m.module.heads}
        while True:
            per_member = [_next_file(s) for s in streams]
            if all(f is None for f in per_member):
                return
            if any(f is None for f in per_member):
                raise RuntimeError("internal error: ensemble members gave records for different files")
            files: list[tuple[list[dict[str, Any]], dict[str, Any]]] = per_member  # type: ignore[assignment]
            wholes = [whole for _, whole in files]
            failed = [w for w in wholes if "error" in w]
            if failed:
                yield failed[0]
                continue
            notes = list(dict.fromkeys(w["note"] for w in wholes if w.get("note")))
            counts = {len(windows) for windows, _ in files}
            if len(counts) == 1:
                for group in zip(*(windows for windows, _ in files), strict=True):
                    yield self._merged(group, task_keys, [])
            else:
                notes.append("the members windowed this file differently: whole-file scores only")
            merged = self._merged(wholes, task_keys, notes)
            if len(counts) != 1:
                merged.pop("windows", None)
            yield merged

    def _merged(
        self, records: Sequence[Mapping[str, Any]], task_keys: set[str], notes: list[str]
    ) -> dict[str, Any]:
        # the first member's layout (file, reference, times) with the members' combined (calibrated) scores
        record = {
            k: v
            for k, v in records[0].items()
            if k not in task_keys and not k.endswith("_calibrated") and k != "note"
        }
        combined = self._calibrated(self._combine(records))
        record.update({t: float(v) for t, v in combined.items()})
        if notes:
            record["note"] = "; ".join(notes)
        return record


def _next_file(stream: Iterator[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    # one file's records from a score_files stream: (its window records, its whole-file record); None at the end
    windows = []
    for record in stream:
        if "start_s" not in record:
            return windows, record
        windows.append(record)
    if windows:
        raise RuntimeError("internal error: a stream ended inside a file's window records")
    return None
