import itertools
import math

import pytest
import torch

from aqa.heads import Kind
from aqa.losses import (
    LOSSES,
    Loss,
    build_loss,
    ccc_loss,
    frame_utterance_mse,
    jnd_contrastive,
    masked_mse,
    rank_n_contrast,
)


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


def loss_inputs(loss_fn, n: int, rng) -> tuple[object, torch.Tensor, dict, torch.Tensor]:
    """(prediction, target, extra kwargs, leaf tensor) of the kind a loss declares in ``input_kind``."""
    target = torch.randn(n, generator=rng)
    extra = {"group": torch.arange(n) // 3} if loss_fn.uses_group else {}
    if loss_fn.input_kind is Kind.EMBEDDING:
        leaf = torch.randn(n, 4, generator=rng, requires_grad=True)
        return leaf, target * 3, extra, leaf
    leaf = torch.randn(n, 5, generator=rng, requires_grad=True)
    if loss_fn.input_kind is Kind.FRAMES:
        frames = torch.sigmoid(leaf)
        mask = torch.arange(5)[None, :] < torch.tensor([5, 4, 3, 2, 1, 5])[:n, None]
        return {"score": frames.mean(1), "frames": frames, "frame_mask": mask}, target, extra, leaf
    return leaf.mean(1), target, extra, leaf


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_declares_its_contract(name):
    """Every registered loss is a Loss declaring the head output it takes and whether it reads groups."""
    assert isinstance(LOSSES[name], type) and issubclass(LOSSES[name], Loss)
    loss_fn = build_loss({"name": name})
    assert isinstance(loss_fn, Loss) and isinstance(loss_fn.input_kind, Kind)
    assert isinstance(loss_fn.uses_group, bool)


def test_a_loss_with_an_unknown_kind_is_refused():
    with pytest.raises(TypeError, match="input_kind"):
        type("BadLoss", (Loss,), {"input_kind": "waveform"})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_builds_and_backprops(name, rng):
    loss_fn = build_loss({"name": name})
    assert loss_fn.input_kind in ("embedding", "score", "frames")
    pred, target, extra, leaf = loss_inputs(loss_fn, 6, rng)
    out = loss_fn(pred, target, **extra)
    out.backward()
    assert out.ndim == 0 and torch.isfinite(out) and leaf.grad is not None and leaf.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_survives_missing_labels(name, rng):
    """NaN labels (an unrated axis, a clean reference's SNR) never make a loss NaN."""
    loss_fn = build_loss({"name": name})
    pred, target, extra, _ = loss_inputs(loss_fn, 6, rng)
    target[::2] = float("nan") if name != "rnc" else target[::2]
    assert torch.isfinite(loss_fn(pred, target, **extra))


def test_masked_regression_ignores_nan_targets():
    pred = torch.tensor([1.0, 2.0, 3.0])
    assert float(masked_mse(pred, torch.tensor([2.0, float("nan"), 1.0]))) == pytest.approx((1 + 4) / 2)
    assert float(masked_mse(pred, torch.full((3,), float("nan")))) == 0.0


def test_ccc_matches_its_definition(rng):
    p, t = torch.randn(50, generator=rng, dtype=torch.float64), torch.randn(50, generator=rng, dtype=torch.float64)
    pm, tm = p.mean(), t.mean()
    ccc = 2 * ((p - pm) * (t - tm)).mean() / (((p - pm) ** 2).mean() + ((t - tm) ** 2).mean() + (pm - tm) ** 2)
    assert float(ccc_loss(p, t)) == pytest.approx(1 - float(ccc), abs=1e-7)  # eps 1e-8 in the denominator
    assert float(ccc_loss(t, t)) == pytest.approx(0.0, abs=1e-7)
    assert float(ccc_loss(t + 1, t)) > 0.2  # an offset is penalised, unlike Pearson correlation


def test_frame_utterance_counts_only_valid_frames():
    frames = torch.tensor([[0.5, 0.5, 9.0], [1.0, 1.0, 1.0]])
    pred = {"score": torch.tensor([0.5, 1.0]), "frames": frames, "frame_mask": torch.tensor([[1, 1, 0], [1, 1, 1]]).bool()}
    # clip 0: utterance error 0.25, frame error 0.25 on its two valid frames; clip 1 exact
    got = frame_utterance_mse(pred, torch.tensor([1.0, 1.0]), frame_weight=2.0)
    assert float(got) == pytest.approx(0.25 / 2 + 2.0 * (0.25 * 2) / 5)


def jnd_brute_force(z, snr, group, jnd, t, negatives):
    """The JND supervised-contrastive loss written from its definition with Python loops."""
    n = len(snr)
    s = lambda a, b: -math.dist(z[a].tolist(), z[b].tolist()) / t  # noqa: E731
    snr = [math.inf if math.isnan(v) else v for v in snr.tolist()]
    losses = []
    for i in range(n):
        cands = [a for a in range(n) if a != i and (negatives == "batch" or group[a] == group[i])]
        pos = [p for p in cands if group[p] == group[i] and abs(snr[p] - snr[i]) < jnd]
        if not pos:
            continue
        den = sum(math.exp(s(i, a)) for a in cands)
        losses.append(-sum(math.log(math.exp(s(i, p)) / den) for p in pos) / len(pos))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("negatives", ["group", "batch"])
def test_jnd_contrastive_matches_brute_force(negatives, rng):
    z = torch.randn(10, 3, generator=rng, dtype=torch.float64)
    snr = torch.tensor([float("nan"), 0, 2.5, 5, 10, float("nan"), 0, 1, 7.5, 20], dtype=torch.float64)
    group = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    got = float(jnd_contrastive(z, snr, group, jnd_db=3.0, temperature=0.7, negatives=negatives))
    assert got == pytest.approx(jnd_brute_force(z, snr, group, 3.0, 0.7, negatives), abs=1e-9)


def test_jnd_contrastive_prefers_embeddings_ordered_by_snr():
    snr = torch.tensor([float("nan"), 0.0, 2.0, 10.0, 12.0, 30.0])
    group = torch.zeros(6, dtype=torch.long)
    ordered = torch.nan_to_num(snr, nan=40.0)[:, None] / 5
    scrambled = ordered[[0, 1, 5, 4, 2, 3]]  # the JND-close pairs (0, 2 dB) and (10, 12 dB) now lie far apart
    assert jnd_contrastive(ordered, snr, group) < jnd_contrastive(scrambled, snr, group) - 0.1
    alone = torch.tensor([float("nan"), 0.0, 10.0])  # no pair within one JND: nothing to learn
    assert float(jnd_contrastive(torch.randn(3, 2), alone, torch.zeros(3, dtype=torch.long))) == 0.0


def test_unknown_loss_lists_choices():
    with pytest.raises(KeyError, match="rnc"):
        build_loss({"name": "nope"})


def _pairs(p, t):
    return [(i, j) for i in range(len(p)) for j in range(len(p)) if i != j]


def test_mmmos_losses_match_their_definitions(rng):
    from aqa.losses import dcq_loss, pairwise_margin, utmos_loss

    p = torch.randn(7, generator=rng, dtype=torch.float64) + 3
    t = torch.randn(7, generator=rng, dtype=torch.float64) + 3
    pl, tl = p.tolist(), t.tolist()
    pairs = _pairs(pl, tl)
    con = sum(max(abs((tl[i] - tl[j]) - (pl[i] - pl[j])) - 0.1, 0.0) for i, j in pairs) / len(pairs)
    assert float(pairwise_margin(p, t, 0.1)) == pytest.approx(con, abs=1e-12)
    clipped = sum((a - b) ** 2 for a, b in zip(pl, tl, strict=True) if abs(a - b) > 0.5) / 7
    assert float(utmos_loss(p, t, tau=0.5, margin=0.1, w_con=0.5)) == pytest.approx(clipped + 0.5 * con, abs=1e-12)
    n2 = 7 * 7  # DCQ averages over the full B x B matrices (the diagonal contributes 0)
    qdc = sum(((pl[j] - pl[i]) - (tl[j] - tl[i])) ** 2 for i, j in pairs) / n2
    qac = -sum((pl[j] - pl[i]) * math.copysign(1.0, tl[j] - tl[i]) for i, j in pairs if tl[j] != tl[i]) / n2
    assert float(dcq_loss(p, t)) == pytest.approx(qdc + qac, abs=1e-12)


def test_mmmos_losses_reward_the_right_order():
    from aqa.losses import dcq_loss, pairwise_margin, utmos_loss

    t = torch.tensor([1.0, 2.0, 3.0, 4.0])
    for fn in (dcq_loss, pairwise_margin, utmos_loss):
        assert fn(t.clone(), t) < fn(t.flip(0), t), fn.__name__
    assert float(utmos_loss(t + 0.4, t)) == pytest.approx(0.0)  # errors within tau and pair margins: free


def test_loss_options_are_checked_when_built():
    assert build_loss({"name": "utmos", "tau": 0.25}).options == {"tau": 0.25}
    with pytest.raises(TypeError, match="taux"):
        build_loss({"name": "utmos", "taux": 0.25})
