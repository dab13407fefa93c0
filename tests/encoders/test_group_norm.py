"""The masked GroupNorm of the wav2vec 2.0-style feature encoders: equal to GroupNorm on the valid part, and needed
(plain GroupNorm over padded time changes a clip's features). CPU, seconds."""

from __future__ import annotations

import torch
from tiny_encoders import (
    build_tiny,
    seeded,
)


def test_masked_group_norm_equals_group_norm_on_the_valid_part() -> None:
    from aqa.encoders.hf import MaskedGroupNorm

    norm = MaskedGroupNorm(4, 4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.normal_()
    x = torch.randn(2, 4, 30)
    norm.valid = torch.tensor([30, 12])
    out = norm(x)
    norm.valid = None
    torch.testing.assert_close(out[0], norm(x[:1])[0])
    torch.testing.assert_close(out[1, :, :12], norm(x[1:, :, :12])[0])


def test_padding_changes_group_norm_models_without_the_masked_norm() -> None:
    # the fix is needed: plain GroupNorm over padded time changes the clip's features
    enc = build_tiny("wav2vec2_base_tiny", adapter=None).eval()
    sr = enc.sample_rate
    clip, batch = seeded((1, sr // 2), 7), torch.zeros(2, sr)
    batch[0, : sr // 2] = clip[0]
    with torch.no_grad():
        fixed = enc(batch, torch.tensor([sr // 2, sr])).layers[-1][0, :10]
        enc._masked_norm.forward = lambda x: torch.nn.GroupNorm.forward(enc._masked_norm, x)  # plain GroupNorm
        broken = enc(batch, torch.tensor([sr // 2, sr])).layers[-1][0, :10]
        alone = enc(clip).layers[-1][0, :10]
    torch.testing.assert_close(fixed, alone, atol=1e-4, rtol=0)
    assert (broken - alone).abs().max() > 1e-3

