"""Fixtures of the encoder tests (helpers: ``tests/tiny_encoders.py``)."""

import pytest
import torch


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 1 s clips at 24 kHz (the tiny MERT's rate), the second half as long: (wav (2, 24000), lengths (2,))."""
    gen = torch.Generator().manual_seed(1)
    wav = 0.1 * torch.randn(2, 24000, generator=gen)  # 1 s at 24 kHz
    return wav, torch.tensor([24000, 24000 // 2])
