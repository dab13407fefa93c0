import itertools
import math

import pytest
import torch

from aqa.losses import LOSSES, build_loss, rank_n_contrast


def rnc_brute_force(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    """Rank-N-Contrast written straight from the paper's definition, with Python loops."""
    n = z.shape[0]
    y = y.reshape(n, -1)
    sim = lambda a, b: -math.dist(z[a].tolist(), z[b].tolist()) / t  # noqa: E731
    d = lambda a, b: float((y[a] - y[b]).abs().sum())  # noqa: E731
    total = 0.0
    for i, j in itertools.permutations(range(n), 2):
        denom = sum(math.exp(sim(i, k)) for k in range(n) if k != i and d(i, k) >= d(i, j))
        total += -math.log(math.exp(sim(i, j)) / denom)
    return total / (n * (n - 1))


@pytest.mark.parametrize("n,dim,label_dim,ties", [(2, 3, 1, False), (5, 4, 1, True), (8, 16, 1, False), (7, 5, 2, True)])
def test_rnc_matches_brute_force(n, dim, label_dim, ties, rng):
    z = torch.randn(n, dim, generator=rng, dtype=torch.float64)
    y = torch.randint(0, 3, (n, label_dim), generator=rng).double() if ties else torch.randn(n, label_dim, generator=rng)
    y = y.squeeze(-1) if label_dim == 1 else y
    got = float(rank_n_contrast(z, y, temperature=2.0))
    assert got == pytest.approx(rnc_brute_force(z, y, 2.0), abs=1e-5)


def test_rnc_float32_matches_brute_force(rng):
    z = torch.randn(12, 8, generator=rng)
    y = torch.randint(0, 8, (12,), generator=rng).float()
    assert float(rank_n_contrast(z, y, 2.0)) == pytest.approx(rnc_brute_force(z.double(), y, 2.0), abs=1e-5)


def test_rnc_prefers_embeddings_ordered_like_labels():
    y = torch.arange(6.0)
    ordered = y[:, None] * torch.tensor([[1.0, 0.0]])
    shuffled = y[torch.tensor([3, 0, 5, 1, 4, 2])][:, None] * torch.tensor([[1.0, 0.0]])
    assert rank_n_contrast(ordered * 5, y) < rank_n_contrast(shuffled * 5, y)


def test_rnc_gradient_finite_with_duplicate_features():
    z = torch.zeros(4, 3, requires_grad=True)
    loss = rank_n_contrast(z * 1.0, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_rnc_rejects_infinite_labels():
    with pytest.raises(ValueError, match="finite"):
        rank_n_contrast(torch.randn(3, 2), torch.tensor([1.0, 2.0, float("inf")]))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_builds_and_backprops(name, rng):
    loss_fn = build_loss({"name": name})
    pred = torch.randn(6, 4 if name == "rnc" else 1, generator=rng, requires_grad=True)
    target = torch.randn(6, generator=rng)
    out = loss_fn(pred if name == "rnc" else pred.squeeze(-1), target)
    out.backward()
    assert out.ndim == 0 and torch.isfinite(out) and pred.grad is not None


def test_unknown_loss_lists_choices():
    with pytest.raises(KeyError, match="rnc"):
        build_loss({"name": "nope"})
