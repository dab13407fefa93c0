"""Ensembles of trained runs (MMMOS averages the predictions of its best runs): per clip, the mean of the
members' scores for every task they share; the composite score (the mean of the tasks, MMMOS §V-A) and the
selection of members by their rank on one or two validation sets (MMMOS §V-D).

An ensemble folder (``aqa ensemble ... --out DIR``) holds ``ensemble.yaml``, read and written by
:mod:`aqa.inference.loading` with the other model folders; :func:`member_stats` gives the stats it keeps. Members
that hold equal encoders share one copy (:func:`share_encoders`).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aqa.correlation import spearman
from aqa.inference.scorer import standardise
from aqa.model import COMPOSITE  # the mean of the tasks' scores (and labels) per clip

__all__ = [
    "COMPOSITE",
    "ensemble_records",
    "held_bytes",
    "member_stats",
    "share_encoders",
    "select_runs",
    "standardise",
    "task_srcc",
    "with_composite",
]

_PER_TASK = ("score", "label", "member_scores", "calibrated")  # record fields that belong to one task


def ensemble_records(
    members: Sequence[Mapping[str, list[dict]]],
    zscore: bool = False,
    stats: Sequence[Mapping[str, Mapping[str, float]]] | None = None,
) -> dict[str, list[dict]]:
    """Average the members' per-clip scores.

    Args:
        members: one ``collect_scores`` result per run (task -> records with ``key``, ``score``, ``label``),
            computed on the same clips.
        zscore: standardise each member's scores per task first (for members on different scales, e.g.
            embedding distances of different encoders); off for regression heads on one rating scale.
        stats: with ``zscore``, per member ``{task: {"mean", "std"}}`` to standardise with (an ensemble
            folder's saved stats, :func:`member_stats`); None: each member's own scores' mean and std here.
            A std of 0 leaves the scores as they are.

    Returns:
        task -> records of the clips every member scored, with ``score`` the members' mean (and
        ``member_scores``); tasks not shared by every member are left out.

    Raises:
        ValueError: fewer than two members, or no clip scored by every member for a shared task.
    """
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two runs, got {len(members)}")
    if stats is not None and len(stats) != len(members):
        raise ValueError(f"{len(stats)} members' stats for {len(members)} members")
    tasks = set(members[0]).intersection(*members[1:])
    out: dict[str, list[dict]] = {}
    for task in sorted(tasks):
        by_key = []
        for i, m in enumerate(members):
            rows = m[task]
            scores = np.array([r["score"] for r in rows], dtype=np.float64)
            if zscore and stats is not None:
                scores = standardise(scores, float(stats[i][task]["mean"]), float(stats[i][task]["std"]))
            elif zscore and scores.size > 1:
                scores = standardise(scores, scores.mean(), scores.std())
            by_key.append({r["key"]: (r, s) for r, s in zip(rows, scores, strict=True)})
        keys = [k for k in by_key[0] if all(k in b for b in by_key[1:])]
        if not keys:
            raise ValueError(f"task {task!r}: no clip was scored by every run (do they use the same data?)")
        out[task] = [
            {
                **by_key[0][k][0],
                "score": float(np.mean([b[k][1] for b in by_key])),
                "member_scores": [float(b[k][1]) for b in by_key],
            }
            for k in keys
        ]
    return out


def with_composite(records: Mapping[str, list[dict]]) -> dict[str, list[dict]]:
    """``records`` plus ``COMPOSITE``: for every clip scored in each task, the mean of its task scores against
    the mean of its labels (MMMOS §V-A averages its four axes into one composite score). Unchanged for fewer
    than two tasks or when no clip is scored in every task.

    Args:
        records: task -> records with ``key``, ``score``, ``label`` (``collect_scores``, ``ensemble_records``).
    """
    tasks = [t for t in records if t != COMPOSITE]
    if len(tasks) < 2:
        return dict(records)
    by_key = [{r["key"]: r for r in records[t]} for t in tasks]
    keys = [k for k in by_key[0] if all(k in b for b in by_key[1:])]
    if not keys:
        return dict(records)
    rows = [
        {
            **{f: v for f, v in by_key[0][k].items() if f not in _PER_TASK},
            "score": float(np.mean([b[k]["score"] for b in by_key])),
            "label": float(np.mean([b[k]["label"] for b in by_key])),
        }
        for k in keys
    ]
    return {**{t: records[t] for t in tasks}, COMPOSITE: rows}


def task_srcc(records: Mapping[str, list[dict]], task: str = COMPOSITE) -> float:
    """Spearman correlation of score and label of ``task`` in ``records`` (NaN for fewer than two clips or a
    constant score). ``COMPOSITE`` of single-task records is that task.

    Raises:
        KeyError: no such task.
    """
    if task == COMPOSITE and task not in records and len(records) == 1:
        task = next(iter(records))
    if task not in records:
        raise KeyError(f"no task {task!r} to rank runs by; the runs have {sorted(records)}")
    rows = records[task]
    return spearman(torch.tensor([r["score"] for r in rows]), torch.tensor([r["label"] for r in rows]))


def select_runs(metrics: Sequence[Sequence[float]], k: int) -> list[int]:
    """MMMOS' ensemble selection (§V-D): the runs among the ``k`` best on every selection set.

    One set gives its top ``k``; two give the intersection of their top ``k`` (the paper's submitted system:
    the top 12 on the development set and the top 12 on the PAM development set, 8 runs in common).

    Args:
        metrics: one sequence per selection set, one value per run (higher is better, e.g. SRCC); NaN ranks
            last; ties keep the runs' order.
        k: how many runs each set keeps.

    Returns:
        Indices of the selected runs, best on the first set first.
    """
    if k < 1:
        raise ValueError(f"select k must be >= 1, got {k}")
    if not metrics:
        raise ValueError("select_runs needs at least one selection set")
    tops = []
    for values in metrics:
        order = sorted(range(len(values)), key=lambda i: math.inf if math.isnan(values[i]) else -values[i])
        tops.append(order[:k])  # sorted() is stable: ties keep the runs' order
    return [i for i in tops[0] if all(i in top for top in tops[1:])]


# ---------------------------------------------------------------------------------------------------------
# The stats ensemble.yaml keeps per member (aqa.inference.loading.write_ensemble)


def member_stats(records: Mapping[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per task, the mean and (population) standard deviation of one member's scores, as ``zscore`` uses them.

    Args:
        records: task -> records with ``score`` (one ``collect_scores`` result).
    """
    out = {}
    for task, rows in records.items():
        scores = np.array([r["score"] for r in rows], dtype=np.float64)
        out[task] = {
            "mean": float(scores.mean()) if scores.size else 0.0,
            "std": float(scores.std()) if scores.size else 0.0,
        }
    return out


# --------------------------------------------------------------------------------------------------------
# Members that hold the same encoder weights share them (MMMOS' runs all freeze the same WavLM, MuQ and M2D)


class ForwardMemo:
    """Replaces a shared encoder's ``forward``: an input batch seen lately (by content, so each member's own copy
    of the batch matches) returns the output computed then instead of running again. Ensemble members score the
    same batches one after another (each member a few batches ahead), so the memo keeps the latest ``entries``
    outputs, within ``max_bytes`` of tensors; a miss only costs the recomputation.

    Attributes:
        runs: how many calls ran the encoder (the others were answered from the memo).
    """

    def __init__(self, forward: Callable[..., Any], entries: int = 8, max_bytes: int = 2**30) -> None:
        self.forward, self.entries, self.max_bytes, self.runs = forward, int(entries), int(max_bytes), 0
        self._memo: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()

    def __call__(self, wav: Tensor, lengths: Tensor | None = None) -> Any:
        key = (
            tuple(wav.shape), str(wav.dtype), str(wav.device), torch.is_grad_enabled(),
            None if lengths is None else tuple(lengths.tolist()),
            hashlib.blake2b(wav.detach().float().cpu().contiguous().numpy().tobytes(), digest_size=16).digest(),
        )
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key][0]
        out = self.forward(wav, lengths)
        self.runs += 1
        size = _tensor_bytes(out)
        if size <= self.max_bytes:
            self._memo[key] = (out, size)
            while len(self._memo) > self.entries or sum(n for _, n in self._memo.values()) > self.max_bytes:
                self._memo.popitem(last=False)
        return out


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def held_bytes(modules: Sequence[nn.Module]) -> int:
    """Bytes of parameter and buffer storage ``modules`` hold, a storage shared between them counted once."""
    storages = {}
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
    )


def share_encoders(module: nn.Module, pool: list[nn.Module]) -> int:
    """Point ``module``'s encoder, or each member of a fusion encoder (``encoder.members``), at an equal module
    in ``pool`` (same class and identical weights) and add the ones without a match to ``pool``. A shared
    module's forward is wrapped in a :class:`ForwardMemo`, so members that score the same batch run it once.
    Use on modules that only score: they share one instance from then on.

    Returns:
        How many of ``module``'s encoders were replaced by one from ``pool`` (their copies are freed).
    """
    encoder = module.encoder
    slots: list[tuple[nn.Module, str | int]] = [(module, "encoder")]
    if isinstance(getattr(encoder, "members", None), nn.ModuleList):
        slots += [(encoder.members, i) for i in range(len(encoder.members))]
    replaced = 0
    for owner, slot in slots:
        current = owner[slot] if isinstance(slot, int) else getattr(owner, slot)
        match = next((m for m in pool if m is current or _same_weights(m, current)), None)
        if match is None:
            pool.append(current)
            continue
        if match is not current:
            if not isinstance(match.forward, ForwardMemo):
                match.forward = ForwardMemo(match.forward)
            if isinstance(slot, int):
                owner[slot] = match
            else:
                setattr(owner, slot, match)
            replaced += 1
        if slot == "encoder":
            break  # the whole encoder is shared, fusion members included
    return replaced
