import pytest
import torch

from aqa.encoders.base import masked_time_mean
from aqa.heads import HEADS, Head, Kind, build_head, head_score


def conditions(head, batch: int, rng) -> dict:
    """Random inputs for the batch conditions a head reads (e.g. HAAQI-Net's audiogram, dB HL)."""
    return {k: torch.rand(batch, n, generator=rng) * 80 for k, n in head.condition_dims.items()}


def _build(name: str, num_layers: int, input_dim: int):
    small = {"feature_dim": 8, "hidden": 8, "attention_dim": 8, "attention_heads": 2}
    cfg = {"name": name, **(small if name == "haaqi_net" else {})}
    return build_head(cfg, num_layers=num_layers, input_dim=input_dim)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_declares_its_contract(name):
    """Every registered head is a Head declaring one output kind and the conditions it reads."""
    assert isinstance(HEADS[name], type) and issubclass(HEADS[name], Head)
    assert isinstance(HEADS[name].__dict__.get("output"), Kind)  # declared once, on the class itself
    head = _build(name, 2, 4)
    assert isinstance(head, Head) and head.output in Kind and head.output in head.gives
    assert head.is_embedding == (head.output is Kind.EMBEDDING)
    assert all(isinstance(k, str) and isinstance(n, int) and n > 0 for k, n in head.condition_dims.items())


def test_a_head_with_an_unknown_kind_is_refused():
    with pytest.raises(TypeError, match="output"):
        type("BadHead", (Head,), {"output": "waveform"})


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_shapes_and_gradient(name, rng):
    layers = [torch.randn(3, 7, 8, generator=rng, requires_grad=True) for _ in range(4)]
    head = _build(name, 4, 8)
    out = head(layers, torch.tensor([7, 5, 2]), **conditions(head, 3, rng))
    score = head_score(out)
    assert score.shape[0] == 3 and torch.isfinite(score).all()
    if head.output is Kind.FRAMES:
        assert out["frames"].shape == (3, 7) and out["frame_mask"].sum().item() == 14
    score.sum().backward()
    assert any(h.grad is not None and h.grad.abs().sum() > 0 for h in layers)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_padding_never_changes_a_clip(name, rng):
    head = _build(name, 2, 4).eval()
    cond = conditions(head, 1, rng)
    clip = [torch.randn(1, 5, 4, generator=rng) for _ in range(2)]
    padded = [torch.cat([c, torch.randn(1, 3, 4, generator=rng) * 100], dim=1) for c in clip]
    alone = head_score(head(clip, torch.tensor([5]), **cond))
    in_padding = head_score(head(padded, torch.tensor([5]), **cond))
    torch.testing.assert_close(alone, in_padding)


def test_haaqi_net_listens_to_the_audiogram_and_stays_in_range(rng):
    head = _build("haaqi_net", 3, 6).eval()
    layers = [torch.randn(2, 9, 6, generator=rng) for _ in range(3)]
    normal = head(layers, torch.tensor([9, 4]), audiogram=torch.zeros(2, 8))
    impaired = head(layers, torch.tensor([9, 4]), audiogram=torch.full((2, 8), 70.0))
    assert not torch.allclose(normal["score"], impaired["score"])
    assert ((normal["frames"] >= 0) & (normal["frames"] <= 1)).all()
    # clip score = mean of the valid frames only
    torch.testing.assert_close(normal["score"][1], normal["frames"][1, :4].mean())
    with pytest.raises(ValueError, match="audiogram"):
        head(layers, torch.tensor([9, 4]))
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        head(layers, torch.tensor([9, 4]), audiogram=torch.zeros(2, 6))


def test_haaqi_net_defaults_are_the_published_sizes():
    # dyahayumgw/HAAQI-Net src/config.yaml + src/HAAQI_Net.py: 12 BEATs layers, Linear 768 -> 256, + raw audiogram
    # (264 in), BLSTM 100 x 2, Linear 200 -> 256 + ReLU, 16-head attention on 256
    head = build_head({"name": "haaqi_net"}, num_layers=13, input_dim=768)
    assert head.layer_sum.num_layers == 12 and head.reduce.out_features == 256
    assert head.blstm.input_size == 264 and head.blstm.hidden_size == 100 and head.blstm.num_layers == 1
    assert head.dense.in_features == 200 and head.dense.out_features == 256
    assert head.attention.embed_dim == 256 and head.attention.num_heads == 16
    assert isinstance(head.audiogram, torch.nn.Identity) and head.audiogram_scale == 1.0


@pytest.mark.parametrize("hidden", [256, None])
def test_mlp_head_starts_at_its_bias(hidden, rng):
    cfg = {"name": "mlp", "bias_init": 5.5, "dropout": 0.0, "hidden": hidden}
    head = build_head(cfg, num_layers=1, input_dim=4).eval()
    assert sum(isinstance(m, torch.nn.Linear) for m in head.mlp) == (2 if hidden else 1)
    torch.nn.init.zeros_(head.mlp[-1].weight)
    out = head([torch.randn(3, 5, 4, generator=rng)], torch.tensor([5, 3, 1]))
    torch.testing.assert_close(out, torch.full((3,), 5.5))


def test_rnc_embedding_is_deepaq_size():
    head = build_head({"name": "rnc_embedding", "dim": 256}, num_layers=13, input_dim=768)
    assert head.proj.in_features == 9984 and head.proj.out_features == 256


def test_masked_time_mean_matches_slicing(rng):
    x = torch.randn(2, 6, 3, generator=rng)
    out = masked_time_mean(x, torch.tensor([6, 2]))
    torch.testing.assert_close(out[1], x[1, :2].mean(0))
    torch.testing.assert_close(out[0], x[0].mean(0))


def test_unknown_head_lists_choices():
    with pytest.raises(KeyError, match="rnc_embedding"):
        build_head({"name": "nope"}, num_layers=1, input_dim=1)


def test_weighted_sum_pool_head() -> None:
    from aqa.heads import build_head

    head = build_head({"name": "weighted_sum_pool", "layer_norm": True}, num_layers=3, input_dim=4)
    out = head([torch.randn(2, 6, 4) for _ in range(3)], torch.tensor([6, 3]))
    assert out.shape == (2,)

