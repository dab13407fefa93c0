"""MMMOS' BLSTM(h) and BLSTM(t) aggregations (Lin et al. 2025, §III-B) against the paper's wording, computed
here from the LSTM equations or by running each clip alone; their experiments build and take a training step."""

import pytest
import torch

from aqa.config import compose
from aqa.heads import build_head, build_trunk
from aqa.tasks import build_module


def lstm_one_step(lstm: torch.nn.LSTM, x: torch.Tensor, suffix: str = "") -> torch.Tensor:
    """Hidden state of one LSTM direction after one step from a zero state: h = o * tanh(i * g) (the forget gate
    meets a zero cell). x: (B, D). Gate order i, f, g, o as torch documents it."""
    w, b = getattr(lstm, f"weight_ih_l0{suffix}"), getattr(lstm, f"bias_ih_l0{suffix}") + getattr(lstm, f"bias_hh_l0{suffix}")
    i, _, g, o = (x @ w.T + b).chunk(4, dim=-1)
    return torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))


def test_blstm_h_projects_the_final_hidden_state_of_the_pooled_vector(rng):
    """Time-mean over valid frames, the pooled vector into the BLSTM (one step), both directions' final hidden
    states concatenated and projected to the score."""
    head = build_head({"name": "blstm_h", "hidden": 5}, num_layers=1, input_dim=6).eval()
    x = torch.randn(3, 4, 6, generator=rng)
    lengths = torch.tensor([4, 2, 1])
    pooled = torch.stack([x[b, : int(n)].mean(0) for b, n in enumerate(lengths)])
    hidden = torch.cat([lstm_one_step(head.blstm, pooled), lstm_one_step(head.blstm, pooled, "_reverse")], dim=-1)
    (proj,) = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]  # "project": one linear layer
    torch.testing.assert_close(head([x], lengths), proj(hidden).squeeze(-1), atol=1e-6, rtol=1e-5)


def test_blstm_h_steps_read_the_pooled_vector_as_a_sequence_over_features(rng):
    head = build_head({"name": "blstm_h", "hidden": 4, "steps": 3}, num_layers=1, input_dim=6).eval()
    assert head.blstm.input_size == 2  # 6 features as 3 steps of 2
    out = head([torch.randn(2, 1, 6, generator=rng)], torch.tensor([1, 1]))
    assert out.shape == (2,) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="divide the feature size 6"):
        build_head({"name": "blstm_h", "steps": 4}, num_layers=1, input_dim=6)


def test_blstm_t_mean_pools_the_blstm_outputs_of_each_clip_alone(rng):
    """The frame sequence into the BLSTM, its outputs averaged over the clip's own frames, then the MLP: a clip
    in a padded batch scores as it does alone."""
    head = build_head({"name": "blstm_t", "hidden": 3, "mlp_hidden": 4}, num_layers=2, input_dim=5).eval()
    layers = [torch.randn(3, 7, 5, generator=rng) for _ in range(2)]
    lengths = torch.tensor([7, 3, 5])
    x = head.layer_sum(layers)
    alone = torch.stack([head.blstm(x[b : b + 1, : int(n)])[0].mean(1)[0] for b, n in enumerate(lengths)])
    torch.testing.assert_close(head(layers, lengths), head.mlp(alone).squeeze(-1), atol=1e-6, rtol=1e-5)
    assert sum(isinstance(m, torch.nn.Linear) for m in head.mlp) == 2  # "map to per-axis scores via MLP"


@pytest.mark.parametrize("name", ["blstm_h", "blstm_t"])
def test_blstm_heads_defaults_and_start_at_their_bias(name, rng):
    head = build_head({"name": name, "bias_init": 5.5}, num_layers=1, input_dim=8).eval()
    assert head.blstm.num_layers == 1 and head.blstm.bidirectional and head.blstm.hidden_size == 256  # single-layer BLSTM
    assert [type(m) for m in head.mlp if isinstance(m, torch.nn.Linear)] == [torch.nn.Linear]  # one linear layer
    torch.nn.init.zeros_(head.mlp[-1].weight)
    out = head([torch.randn(2, 3, 8, generator=rng)], torch.tensor([3, 2]))
    torch.testing.assert_close(out, torch.full((2,), 5.5))


@pytest.mark.parametrize("name", ["blstm_h", "blstm_t"])
def test_a_trunk_with_an_mlp_head_scores_as_the_blstm_head_with_the_same_weights(name, rng):
    """trunk (layer weights + BLSTM) -> mlp head (time-mean of the trunk's frames, one linear layer) is the
    blstm_h / blstm_t head split in two: with the head's weights copied in, every clip scores the same."""
    head = build_head({"name": name, "hidden": 3}, num_layers=2, input_dim=6).eval()
    trunk = build_trunk({"name": name, "hidden": 3, "shared": True}, num_layers=2, input_dim=6).eval()
    top = build_head({"name": "mlp", "hidden": None, "dropout": 0.0}, num_layers=trunk.num_layers,
                     input_dim=trunk.output_dim).eval()
    trunk.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("mlp.")})
    top.mlp.load_state_dict(head.mlp.state_dict())
    layers, lengths = [torch.randn(3, 5, 6, generator=rng) for _ in range(2)], torch.tensor([5, 2, 4])
    torch.testing.assert_close(top(*trunk(layers, lengths)), head(layers, lengths), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("experiment, trunk, pool, shared",
                         [("mmmos_blstm_h", "blstm_h", True, True), ("mmmos_blstm_t", "blstm_t", False, True),
                          ("mmmos_blstm_h", "blstm_h", True, False)])
def test_blstm_experiments_share_one_blstm_and_train_a_step_on_the_tiny_fusion(experiment, trunk, pool, shared, rng,
                                                                                 tmp_path):
    """The experiment with its encoder swapped for the tiny twin: one BLSTM (the trunk) under the four axes'
    own linear layers, as the paper's §III-B ("the resulting embedding is passed to four independent MLPs");
    trunk.shared=false: one BLSTM per axis. One optimizer step moves the BLSTM and every axis's layer, also under
    bf16 autocast (trainer=gpu runs bf16-mixed); the checkpoint holds each BLSTM once and loads back."""
    cfg = compose(experiment, ["encoder=fusion_tiny", f"trunk.shared={str(shared).lower()}"])
    assert cfg.encoder.pool is pool and cfg.encoder.sample_rate == 16000 and cfg.trunk.name == trunk
    module = build_module(cfg, with_teacher=False)
    axes = {"pq", "pc", "ce", "cu"}
    assert set(module.heads) == axes and all(type(h).__name__ == "MLPHead" for h in module.heads.values())
    assert set(module.trunks) == ({"shared"} if shared else axes)
    assert all(type(t).__name__.startswith("BLSTM") for t in module.trunks.values())
    sr = module.encoder.sample_rate
    batch = {
        "wav": torch.randn(4, sr, generator=rng) * 0.1,
        "lengths": torch.tensor([sr, sr // 2, sr, 3 * sr // 4]),
        "labels": {k: 1 + 9 * torch.rand(4, generator=rng) for k in ("pq", "pc", "ce", "cu")},
        "group": torch.arange(4),
        "is_reference": torch.zeros(4, dtype=torch.bool),
    }
    trained = {**{f"heads.{n}": p for n, p in module.heads.named_parameters()},
               **{f"trunks.{n}": p for n, p in module.trunks.named_parameters()}}
    before = {n: p.detach().clone() for n, p in trained.items()}
    optimizer = module.configure_optimizers()
    loss, _ = module._shared_step(batch, "val")
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    moved = {n for n, p in trained.items() if not torch.equal(p, before[n])}
    for key in module.trunks:
        assert {f"trunks.{key}.blstm.weight_ih_l0", f"trunks.{key}.blstm.weight_ih_l0_reverse"} <= moved
    assert {f"heads.{task}.mlp.1.weight" for task in axes} <= moved
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16, _ = module._shared_step(batch, "val")
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16)
    state = module.state_dict()
    assert sum(k.endswith("blstm.weight_ih_l0") for k in state) == len(module.trunks) == (1 if shared else 4)
    torch.save(state, tmp_path / "w.pt")
    again = build_module(cfg, with_teacher=False)
    again.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    module.eval(), again.eval()
    with torch.no_grad():
        ours, theirs = module(batch["wav"], batch["lengths"]), again(batch["wav"], batch["lengths"])
    for task in axes:
        torch.testing.assert_close(ours[task], theirs[task])
