"""aqa.heads.scores: distances of embeddings to their references, in float32 whatever the dtype."""

import pytest
import torch

from aqa.heads import reference_distances


def test_reference_distances():
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 2.0]])
    group = torch.tensor([0, 0, 1, 1])
    is_ref = torch.tensor([True, False, False, True])
    torch.testing.assert_close(reference_distances(emb, group, is_ref), torch.tensor([0.0, 5.0, 1.0, 0.0]))


def test_mismatched_reference_distances_use_another_groups_reference():
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0], [10.0, 1.0], [20.0, 0.0], [21.0, 0.0]])
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    is_ref = torch.tensor([True, False, True, False, True, False])
    got = reference_distances(emb, group, is_ref, mismatched=True)
    # group 0 -> reference of group 1, group 1 -> group 2, group 2 -> group 0 (cyclic)
    want = torch.tensor([10.0, (49 + 16) ** 0.5, 10.0, (100 + 1) ** 0.5, 20.0, 21.0])
    torch.testing.assert_close(got, want)
    lone = reference_distances(emb[:2], group[:2], is_ref[:2], mismatched=True)
    assert torch.isnan(lone).all()  # one referenced group: no other reference to use


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_reference_distances_are_float32_whatever_the_embedding_dtype(dtype, rng):
    # Under CUDA autocast embeddings come out in bf16 while `norm` runs in float32: the distances must be
    # written into a float32 buffer (the first GPU run crashed on exactly that mixed-dtype index_put).
    emb = torch.randn(6, 16, generator=rng).to(dtype)
    group, is_ref = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([True, False, False, True, False, False])
    got = reference_distances(emb, group, is_ref)
    assert got.dtype == torch.float32
    want = reference_distances(emb.float(), group, is_ref)  # the same rounded values, in float32
    torch.testing.assert_close(got, want)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert reference_distances(emb, group, is_ref, mismatched=True).dtype == torch.float32
