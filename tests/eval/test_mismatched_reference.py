"""DeePAQ's mismatched-reference mode takes its anchor from another piece (recording), never from a neighbouring
excerpt of the same one: validation, `aqa eval --reference mismatched` and listening tests share one rule."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from torch import nn

from aqa.audio import encode_flac
from aqa.data.dataset import GroupedBatchDataset
from aqa.eval.report import collect_scores, summarise
from aqa.heads import reference_anchors, reference_distances

SR = 8000
N = 2000  # 0.25 s clips
# piece -> (sine Hz, amplitude, excerpts); one piece per shard as `aqa prep codec` writes them. The pieces differ
# in level, so the distance to another piece's clean excerpt is dominated by content, not by the degradation.
PIECES = {"a": (440.0, 0.3, 6), "b": (660.0, 0.5, 5), "c": (990.0, 0.7, 4)}
QUALITIES = (1, 2, 3, 4)  # label: higher = better = less added noise
CONTENT_GAP = 10.0  # L2 distance between any two pieces' clips is above this; within a piece it is below 2


def _write_shards(root: Path) -> list[str]:
    """Shards whose neighbouring excerpts of one piece are nearly identical (the same tone, 1e-3 noise apart)."""
    rng = np.random.default_rng(0)
    t = np.arange(N) / SR
    urls = []
    for piece, (hz, amp, excerpts) in PIECES.items():
        url = str(root / f"val-{piece}.tar")
        with wds.TarWriter(url) as sink:
            for e in range(excerpts):
                clean = amp * np.sin(2 * np.pi * hz * t) + 1e-3 * rng.standard_normal(N)
                group = f"{piece}-{e:04d}"
                versions = [(None, clean)] + [
                    (q, clean + 0.01 * (5 - q) * rng.standard_normal(N)) for q in QUALITIES
                ]
                for q, x in versions:
                    meta = {"piece": piece, "group": group, "quality": q, "is_reference": q is None}
                    sink.write({"__key__": f"{group}-{q or 'clean'}", "flac": encode_flac(x.astype(np.float32), SR),
                                "json": json.dumps(meta).encode()})
        urls.append(url)
    return urls


class _Waveform(nn.Module):
    """A stand-in DeePAQ: the embedding of a clip is its waveform (so distance = signal difference)."""

    def __init__(self) -> None:
        super().__init__()
        head = nn.Identity()
        head.is_embedding = True
        self.heads = nn.ModuleDict({"quality": head})

    def forward(self, wav, lengths, conditions=None):
        return {"quality": wav}


def _records(urls: list[str], mismatched: bool) -> list[dict]:
    batches = GroupedBatchDataset(urls, sample_rate=SR, label_keys=["quality"], groups_per_batch=3, crop_s=None,
                                  train=False)
    return collect_scores(_Waveform(), batches, {"quality": "quality"}, mismatched, device="cpu",
                          precision="fp32")["quality"]


def test_the_mismatched_reference_is_never_a_neighbouring_excerpt_of_the_same_piece(tmp_path):
    urls = _write_shards(tmp_path)
    matched, mismatched = _records(urls, False), _records(urls, True)
    assert len(matched) == len(QUALITIES) * sum(n for _, _, n in PIECES.values())
    # every clip is scored against another piece's clean excerpt: far away, whatever its own degradation
    assert min(-r["score"] for r in mismatched) > CONTENT_GAP
    # the evaluation batches mix the pieces, so most clips get a mismatched score
    assert len(mismatched) >= 0.6 * len(matched)
    srcc = summarise({"m": matched})["m"]["all"]["srcc"], summarise({"m": mismatched})["m"]["all"]["srcc"]
    # a neighbouring excerpt of the same piece is nearly as good as the clip's own reference; another piece's is not:
    # its distance says more about the two pieces than about the degradation. Measured: matched 0.97, mismatched
    # 0.23; the former rule (the next group of the batch, batches of consecutive excerpts) gave 0.74 and distances
    # down to 0.44, and with these interleaved batches still 0.46 (the last batch holds two excerpts of piece a).
    assert srcc[0] > 0.95 and abs(srcc[1]) < 0.5, srcc


def test_reference_anchors_take_the_next_referenced_group_of_another_piece():
    pieces, has_ref = ["a", "a", "b", "a", "c"], [True, True, True, False, True]
    assert reference_anchors(pieces, has_ref) == [0, 1, 2, None, 4]
    assert reference_anchors(pieces, has_ref, mismatched=True) == [2, 2, 4, 4, 0]
    assert reference_anchors(["a", "a"], [True, True], mismatched=True) == [None, None]


def test_a_batch_of_one_piece_has_no_mismatched_score_and_says_so_once(caplog):
    import aqa.heads.scores as scores

    scores._noted.clear()
    emb = torch.arange(8, dtype=torch.float32).reshape(4, 2)
    group, is_ref = torch.tensor([0, 0, 1, 1]), torch.tensor([True, False, True, False])
    with caplog.at_level(logging.WARNING, logger="aqa.heads.scores"):
        for _ in range(3):
            got = reference_distances(emb, group, is_ref, mismatched=True, piece=torch.tensor([5, 5, 5, 5]))
            assert torch.isnan(got).all()
    assert sum("mismatched reference" in r.message for r in caplog.records) == 1
    other = reference_distances(emb, group, is_ref, mismatched=True, piece=torch.tensor([5, 5, 6, 6]))
    torch.testing.assert_close(other, torch.tensor([32.0, 8.0, 32.0, 72.0]).sqrt())  # each group -> the other's


@pytest.mark.parametrize("groups_per_batch", [1, 3])
def test_evaluation_batches_interleave_the_shards_pieces(tmp_path, groups_per_batch):
    urls = _write_shards(tmp_path)
    batches = list(GroupedBatchDataset(urls, sample_rate=SR, label_keys=["quality"], crop_s=None, train=False,
                                       groups_per_batch=groups_per_batch))
    order = [m["group"] for b in batches for m in b["meta"] if m["is_reference"]]
    if groups_per_batch == 3:
        assert order == [f"{p}-{e:04d}" for e in range(4) for p in "abc"] + ["a-0004", "b-0004", "a-0005"]
    assert sorted(order) == sorted(f"{p}-{e:04d}" for p, (_, _, n) in PIECES.items() for e in range(n))
    for b in batches:  # piece ids: one per recording, numbered in the batch
        names = [m["piece"] for m in b["meta"]]
        assert b["piece"].tolist() == [sorted(set(names), key=names.index).index(n) for n in names]
