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


def test_rnc_takes_infinite_labels_without_nan():
    """An infinite label (DeePAQ's clean audio: bit rate infinity) is a label like any other: two of them are at
    distance 0, and neither the loss nor its gradient turns NaN."""
    z = torch.randn(4, 2, requires_grad=True)
    loss = rank_n_contrast(z, torch.tensor([1.0, 2.0, float("inf"), float("inf")]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_rnc_leaves_nan_labelled_samples_out(rng):
    """A NaN label (a clip the corpus did not rate) takes no part: neither as anchor, nor as positive, nor as a
    candidate in any denominator. The loss equals the loss over the labelled samples alone, and the unlabelled
    embeddings get no gradient."""
    z = torch.randn(7, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.5, float("nan"), 2.0, 1.0, float("nan"), 3.0, 0.0], dtype=torch.float64)
    keep = torch.isfinite(y)
    got = rank_n_contrast(z, y, temperature=2.0)
    assert float(got.detach()) == pytest.approx(rnc_brute_force(z[keep].detach(), y[keep], 2.0), abs=1e-9)
    got.backward()
    assert z.grad[~keep].abs().max() == 0 and z.grad[keep].abs().max() > 0


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
    """NaN labels (an unrated axis, a clean reference's SNR) never make a loss or its gradient NaN, and a batch
    with none labelled costs nothing."""
    loss_fn = build_loss({"name": name})
    pred, target, extra, leaf = loss_inputs(loss_fn, 6, rng)
    target[::2] = float("nan")
    out = loss_fn(pred, target, **extra)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(leaf.grad).all()
    pred, target, extra, _ = loss_inputs(loss_fn, 6, rng)
    assert float(loss_fn(pred, torch.full_like(target, float("nan")), **extra).detach()) == 0.0


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


def utmos22_reference(pred: list[float], target: list[float], lo: float, hi: float) -> tuple[float, float]:
    """The UTMOS22 loss (Saeki et al., Interspeech 2022, §2.1: clipped MSE plus a contrastive loss) written from
    its definitions with Python loops: ``(clipped MSE, contrastive term)`` on ratings of a ``lo..hi`` scale.

    - Scores are mapped from ``lo..hi`` onto -1..1 first (UTMOS22 trains on MOS 1..5 as ``(s - 3) / 2``: its
      released config, sarulab-speech/UTMOS22 ``strong/configs/dataset/default.yaml`` ``NormalizeScore``).
    - Clipped MSE with threshold tau = 0.25 (on that -1..1 scale): ``mean_i 1[|q_i - s_i| > tau] (q_i - s_i)^2``.
    - Contrastive loss with margin alpha = 0.1: ``d_ij = max(0, |(s_i - s_j) - (q_i - q_j)| - alpha)`` over all
      pairs of the batch, averaged over the B x B pairs (i = j adds 0) and halved, as the released
      ``ContrastiveLoss`` does; the loss is ``1.0 x clipped + 0.5 x contrastive`` (``configs/train/default.yaml``,
      MMMOS §III-C2: "0.5 times contrastive loss").
    """
    tau, alpha = 0.25, 0.1
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    s = [(v - mid) / half for v in target]
    q = [(v - mid) / half for v in pred]
    n = len(s)
    clipped = sum((q[i] - s[i]) ** 2 for i in range(n) if abs(q[i] - s[i]) > tau) / n
    con = 0.0
    for i in range(n):
        for j in range(n):
            con += max(0.0, abs((s[i] - s[j]) - (q[i] - q[j])) - alpha)
    return clipped, con / (n * n) / 2


@pytest.mark.parametrize("lo,hi", [(1.0, 5.0), (1.0, 10.0)])  # UTMOS22's MOS scale, MMMOS' rating scale
def test_utmos_loss_against_the_utmos22_definition(lo, hi, rng):
    """How aqa's ``utmos`` relates to UTMOS22 as its paper and released config define it.

    Departures, stated by the factors below: aqa (as MMMOS' released ``ClippedMSEContrastiveLoss``) works on the
    labels' own scale, not on -1..1, so UTMOS22's thresholds are ``tau = 0.25 h`` and ``margin = 0.1 h`` with
    ``h = (hi - lo) / 2`` half the scale (0.5 and 0.2 on MOS 1..5; 1.125 and 0.45 on 1..10), and the loss is
    ``h^2`` times larger; and aqa averages the contrastive term over the B (B - 1) pairs i != j without halving
    it, so UTMOS22's weight 0.5 becomes ``w_con = 0.5 h (B - 1) / (2 B)``.
    """
    from aqa.losses import pairwise_margin, utmos_loss

    n, h = 9, (hi - lo) / 2
    t = lo + (hi - lo) * torch.rand(n, generator=rng, dtype=torch.float64)
    p = t + 0.3 * h * torch.randn(n, generator=rng, dtype=torch.float64)
    clipped, con = utmos22_reference(p.tolist(), t.tolist(), lo, hi)
    errors = ((p - t) / h).abs()
    assert 0 < int((errors > 0.25).sum()) < n  # some errors are clipped away, some count: the threshold matters
    assert clipped > 0 and con > 0
    tau, margin = 0.25 * h, 0.1 * h
    assert float(utmos_loss(p, t, tau=tau, margin=margin, w_con=0.0)) / h**2 == pytest.approx(clipped, rel=1e-12)
    assert float(pairwise_margin(p, t, margin)) * (n - 1) / (2 * n * h) == pytest.approx(con, rel=1e-12)
    w_con = 0.5 * h * (n - 1) / (2 * n)
    got = float(utmos_loss(p, t, tau=tau, margin=margin, w_con=w_con)) / h**2
    assert got == pytest.approx(clipped + 0.5 * con, rel=1e-12)


def dcq_reference(pred: list[float], target: list[float]) -> tuple[float, float, float]:
    """The Dual-Criterion Quality loss (Yuan & Wang, ACM MM 2024) as MMMOS §III-C3 describes it, with Python
    loops: ``(MSE, deviation term, ranking term)``.

    Over all sample pairs (i, j) of the batch (the B x B pairs, i = j adds 0), with ``dp = p_j - p_i`` and
    ``dt = t_j - t_i``:
    - the deviation term ("penalizes mismatches between predicted and ground-truth score differences", the DCQ
      paper's quantitative discrepancy constraint): ``mean (dp - dt)^2``;
    - the ranking term ("penalizes any inversion of the true ordering", its qualitative alignment constraint):
      ``mean -dp sign(dt)``, which grows with every inverted pair and falls with every pair in the right order.
    The DCQ paper adds both (its relative perception constraint) to the plain MSE of the scores.
    """
    n = len(pred)
    mse = sum((a - b) ** 2 for a, b in zip(pred, target, strict=True)) / n
    dev = rank = 0.0
    for i in range(n):
        for j in range(n):
            dp, dt = pred[j] - pred[i], target[j] - target[i]
            dev += (dp - dt) ** 2
            rank += -dp * (0.0 if dt == 0 else math.copysign(1.0, dt))
    return mse, dev / (n * n), rank / (n * n)


def test_dcq_loss_against_its_definition(rng):
    """aqa's ``dcq`` is the deviation plus the ranking term. Departure: like MMMOS' released
    ``DualCriterionQualityLoss`` it leaves out the DCQ paper's MSE term, so only differences between scores are
    trained: adding a constant to every prediction costs nothing (a head keeps its initial offset)."""
    from aqa.losses import dcq_loss

    t = torch.tensor([3.0, 7.5, 1.0, 7.5, 9.0, 4.2, 5.5], dtype=torch.float64)  # a tie: its pair has no order
    p = t + 2 * torch.randn(7, generator=rng, dtype=torch.float64)
    mse, dev, rank = dcq_reference(p.tolist(), t.tolist())
    assert float(dcq_loss(p, t)) == pytest.approx(dev + rank, abs=1e-12)
    assert float(dcq_loss(p + 2.0, t)) == pytest.approx(dev + rank, abs=1e-12)  # the DCQ paper's loss would grow
    assert dcq_reference((p + 2.0).tolist(), t.tolist())[0] > mse
    flipped = dcq_reference((-t).tolist(), t.tolist())  # every pair inverted: the ranking term is a penalty
    assert flipped[2] > 0 > dcq_reference(t.tolist(), t.tolist())[2]


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


def test_within_group_order_accuracy_is_one_in_order_half_at_random_zero_reversed(rng):
    from aqa.losses.contrastive import within_group_order_accuracy, within_group_pairs

    group = torch.arange(50).repeat_interleave(8)  # 50 groups of 8 clips
    labels = torch.randn(400, generator=rng, dtype=torch.float64)
    scores = 3.0 * labels + 7.0  # any increasing map of the labels
    assert within_group_order_accuracy(scores, labels, group) == pytest.approx(1.0)
    assert within_group_order_accuracy(-scores, labels, group) == pytest.approx(0.0)
    noise = torch.randn(400, generator=rng, dtype=torch.float64)
    assert within_group_order_accuracy(noise, labels, group) == pytest.approx(0.5, abs=0.05)
    # only pairs inside a group count: a shift per group (a different scale across groups) changes nothing
    assert within_group_order_accuracy(scores + 100.0 * group, labels, group) == pytest.approx(1.0)
    # one group: labels 1, 3, 2 and a NaN reference (left out): 3 pairs; two in order and one tied in score
    s, y, g = torch.tensor([1.0, 3.0, 3.0, 0.0]), torch.tensor([1.0, 3.0, 2.0, float("nan")]), torch.zeros(4)
    concordant, pairs = within_group_pairs(s, y, g)
    assert (float(concordant), float(pairs)) == (2.5, 3.0)
    assert float(within_group_pairs(torch.tensor([1.0, 2.0, 3.0, 0.0]), y, g)[0]) == 2.0  # one pair reversed
    assert float(within_group_pairs(s, y, g, min_gap=1.5)[1]) == 1.0  # only labels 1 and 3 are more than 1.5 apart
    assert torch.isnan(torch.tensor(within_group_order_accuracy(s, y, torch.arange(4))))  # no pair in one group
