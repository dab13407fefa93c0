"""DeePAQ as the paper defines it: one embedding, one loss of two RnC terms (ViSQOL on every sample, bit rate on
coded anchors with clean = infinity) and 2.93 % of its parameters trainable."""

from __future__ import annotations

import math

import pytest
import torch

from aqa.config import compose
from aqa.tasks import build_module


# meta: shapes only (no memory, no init: 1.2 s, the default suite); cpu (slow, `make test-full`): the full-size
# MERT initialised as training builds it (3.3 s on the shared 2 cores), the same share
@pytest.mark.parametrize("device", ["meta", pytest.param("cpu", marks=pytest.mark.slow)])
def test_deepaq_lora_is_one_embedding_with_the_papers_trainable_share(device):
    cfg = compose("deepaq_lora", ["encoder.checkpoint=null"])  # the full-size architecture, random weights
    with torch.device(device):
        module = build_module(cfg, with_teacher=False)
    assert list(module.heads) == ["quality"] and module.heads["quality"].is_embedding
    assert list(module.terms["quality"]) == [None, "bitrate"]  # the ViSQOL term and the bit-rate term
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    assert 100 * trainable / total == pytest.approx(2.93, abs=0.01)  # the paper: 2.93 %


def _rnc_anchor_loss(z: list[list[float]], y: list[float], i: int, t: float = 2.0) -> float:
    """L_i of Rank-N-Contrast written from its definition, with |inf - inf| = 0 (two clean clips)."""

    def d(a: float, b: float) -> float:
        return 0.0 if a == b else abs(a - b)

    def s(a: int, b: int) -> float:
        return -math.dist(z[a], z[b]) / t

    n = len(z)
    total = 0.0
    for j in range(n):
        if j == i:
            continue
        denominator = sum(math.exp(s(i, k)) for k in range(n) if k != i and d(y[i], y[k]) >= d(y[i], y[j]))
        total += -math.log(math.exp(s(i, j)) / denominator)
    return total / (n - 1)


def test_deepaq_loss_is_the_papers_sum_of_two_rnc_terms():
    module = build_module(compose("deepaq_lora", ["encoder=mert_v1_95m_tiny"]), with_teacher=False)
    g = torch.Generator().manual_seed(0)
    n = 10  # two excerpts: a clean reference and 4 coded versions each
    z = torch.randn(n, 6, generator=g, dtype=torch.float64)
    is_ref = torch.tensor([i % 5 == 0 for i in range(n)])
    visqol = 1 + 4 * torch.rand(n, generator=g, dtype=torch.float64)
    bitrate = torch.tensor([float("nan"), 16, 32, 64, 128] * 2, dtype=torch.float64)  # clean: null in the shards
    batch = {"labels": {"visqol_moslqo": visqol, "bitrate_kbps": bitrate}, "is_reference": is_ref,
             "group": torch.arange(n) // 5}
    got = sum(term.weight * term(z, batch) for term in module.terms["quality"].values())

    zl, b = z.tolist(), [math.inf if r else float(v) for r, v in zip(is_ref.tolist(), bitrate.tolist(), strict=True)]
    want = (sum(_rnc_anchor_loss(zl, visqol.tolist(), i) for i in range(n))
            + sum(_rnc_anchor_loss(zl, b, i) for i in range(n) if not is_ref[i])) / n
    assert float(got) == pytest.approx(want, rel=1e-9)
