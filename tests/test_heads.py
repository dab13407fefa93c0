import pytest
import torch

from aqa.heads import HEADS, build_head, masked_time_mean


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_shapes_and_gradient(name, rng):
    layers = [torch.randn(3, 7, 8, generator=rng, requires_grad=True) for _ in range(4)]
    head = build_head({"name": name}, num_layers=4, input_dim=8)
    out = head(layers, torch.tensor([7, 5, 2]))
    assert out.shape[0] == 3 and torch.isfinite(out).all()
    out.sum().backward()
    assert any(h.grad is not None and h.grad.abs().sum() > 0 for h in layers)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_padding_never_changes_a_clip(name, rng):
    head = build_head({"name": name}, num_layers=2, input_dim=4).eval()
    clip = [torch.randn(1, 5, 4, generator=rng) for _ in range(2)]
    padded = [torch.cat([c, torch.randn(1, 3, 4, generator=rng) * 100], dim=1) for c in clip]
    alone = head(clip, torch.tensor([5]))
    in_padding = head(padded, torch.tensor([5]))
    torch.testing.assert_close(alone, in_padding)


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
