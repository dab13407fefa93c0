"""Full-size architectures: published parameter counts, layer counts and rates, and DeePAQ's LoRA share, built on
the meta device (shapes only: no memory, no init; well under a second each)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aqa.encoders import apply_lora, build_encoder

SR = 24000


def test_full_size_parameter_count_and_lora_share() -> None:
    with torch.device("meta"):  # shapes only: no memory, no init time
        enc = build_encoder({"name": "mert_v1_95m", "checkpoint": None, "freeze": False, "adapter": None})
    assert (enc.num_layers, enc.output_dim, enc.frame_rate, enc.sample_rate) == (13, 768, 75.0, SR)
    backbone = sum(p.numel() for p in enc.parameters())
    assert 94e6 <= backbone <= 95e6  # published ~94.4M
    with torch.device("meta"):
        apply_lora(enc.model, r=8, alpha=16, dropout=0.05, target_modules=["q_proj", "v_proj"])
        head = nn.Linear(13 * 768, 256)
    total = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in head.parameters())
    trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad) + sum(
        p.numel() for p in head.parameters()
    )
    assert trainable == 12 * 2 * 8 * (768 + 768) + 13 * 768 * 256 + 256
    assert abs(100 * trainable / total - 2.93) <= 0.01


# Published sizes: the weights files' tensors (MERT-v1-95M 378 MB and MERT-v1-330M 1.26 GB of float32, i.e.
# 94.5M and 315M parameters: "330M" is the model's name, not its size), the WavLM paper / HF model counts,
# and wav2vec 2.0 Base's 95.0M, which includes the pre-training quantizer heads the encoder drops.
PUBLISHED_PARAMS = {
    "mert_v1_95m": 94.4e6,
    "mert_v1_330m": 315.4e6,
    "wavlm_base_plus": 94.4e6,
    "wavlm_large": 315.5e6,
    "wav2vec2_base": 95.0e6,
}


PUBLISHED_SHAPES = {  # num_layers, output_dim, sample_rate, frame_rate
    "mert_v1_95m": (13, 768, 24000, 75.0),
    "mert_v1_330m": (25, 1024, 24000, 75.0),
    "wavlm_base_plus": (13, 768, 16000, 50.0),
    "wavlm_large": (25, 1024, 16000, 50.0),
    "wav2vec2_base": (13, 768, 16000, 50.0),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_full_size_encoders_have_the_published_size(name: str) -> None:
    with torch.device("meta"):
        enc = build_encoder({"name": name, "checkpoint": None, "adapter": None})
    count = sum(p.numel() for p in enc.parameters())
    assert abs(count / PUBLISHED_PARAMS[name] - 1) < 0.01, f"{name}: {count / 1e6:.2f}M"
    assert (enc.num_layers, enc.output_dim, enc.sample_rate, enc.frame_rate) == PUBLISHED_SHAPES[name]

