"""Resampling (a sine reproduced, content above the new Nyquist removed, scipy's polyphase matched in band) and
``prepare`` (down-mix, padding zeroed, lengths scaled). CPU, seconds."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (44100, 24000), (16000, 24000), (48000, 16000)])
def test_resample_reproduces_a_sine(orig: int, new: int) -> None:
    from aqa.encoders import resample

    f0 = 1000.0
    x = torch.sin(2 * torch.pi * f0 * torch.arange(orig, dtype=torch.float64) / orig).float()
    y = resample(x[None], orig, new)[0]
    assert y.shape == (new,) and y.dtype == torch.float32
    want = torch.sin(2 * torch.pi * f0 * torch.arange(new, dtype=torch.float64) / new).float()
    middle = slice(new // 10, -new // 10)  # away from the zero-padded edges
    assert (y[middle] - want[middle]).abs().max() < 1e-4


def test_resample_removes_content_above_the_new_nyquist() -> None:
    from aqa.encoders import resample

    x = torch.sin(2 * torch.pi * 11000.0 * torch.arange(44100, dtype=torch.float64) / 44100)  # above 8 kHz
    y = resample(x, 44100, 16000)
    assert y.dtype == torch.float64 and y[1600:-1600].abs().max() < 1e-6


def test_resample_matches_scipy_polyphase_in_band() -> None:
    from scipy.signal import resample_poly

    from aqa.encoders import resample

    gen = torch.Generator().manual_seed(6)
    # band-limited noise (below 6 kHz) so both filters pass it
    spectrum = torch.fft.rfft(torch.randn(44100, generator=gen, dtype=torch.float64))
    spectrum[int(6000 * 44100 / 44100) :] = 0
    x = torch.fft.irfft(spectrum, n=44100)
    ours = resample(x, 44100, 16000)
    theirs = torch.from_numpy(resample_poly(x.numpy(), 160, 441))
    middle = slice(2000, -2000)
    assert (ours[middle] - theirs[middle]).abs().max() < 1e-3 * x.abs().max()


def test_prepare_downmixes_zeroes_padding_and_scales_lengths() -> None:
    from aqa.encoders import prepare, to_mono

    stereo = torch.stack([torch.ones(2, 100), -torch.ones(2, 100) * 3], dim=1)  # (B=2, C=2, T)
    mono = to_mono(stereo)
    assert mono.shape == (2, 100) and torch.allclose(mono, -torch.ones(2, 100))
    wav, lengths = prepare(stereo, 24000, 24000, torch.tensor([100, 40]))
    assert lengths.tolist() == [100, 40] and wav[1, 40:].abs().sum() == 0
    wav, lengths = prepare(stereo, 48000, 16000, torch.tensor([100, 40]))
    assert wav.shape == (2, 34) and lengths.tolist() == [34, 14]
    assert to_mono(torch.zeros(5)).shape == (1, 5)

