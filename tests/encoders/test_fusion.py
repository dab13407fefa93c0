"""MMMOS' fusion as the paper reads its encoders (Lin et al. 2025, §III-A/B): frozen members under trainable
layer weights, every member band-limited to 16 kHz audio, and frame-level output for BLSTM(t)."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from aqa.config import available, compose, resolve_encoder
from aqa.encoders import build_encoder
from aqa.encoders.base import prepare
from aqa.tasks import build_module

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "encoder"


def tiny_fusion(**overrides: object) -> torch.nn.Module:
    cfg = OmegaConf.load(CONFIGS / "fusion_tiny.yaml")
    for key, value in overrides.items():
        cfg[key] = value
    torch.manual_seed(0)
    return build_encoder(OmegaConf.to_container(resolve_encoder(cfg)))


def noise(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_frozen_members_keep_trainable_layer_weights_that_an_optimizer_step_moves():
    """freeze: true freezes the members, not the fusion's own softmax layer weights (MMMOS trains WavLM's
    layer weights over frozen encoders): after one step of the module's own optimizer the layer weights have
    moved and no member weight has."""
    cfg = compose("mmmos_tiny", ["encoder.freeze=true", "encoder.adapter=null"])
    module = build_module(cfg, with_teacher=False)
    members, weights = module.encoder.members, module.encoder.layer_weights
    assert not any(p.requires_grad for p in members.parameters())
    assert all(p.requires_grad for p in weights.parameters()) and len(list(weights.parameters())) == 3
    sr = module.encoder.sample_rate
    batch = {
        "wav": noise((4, sr)), "lengths": torch.tensor([sr, sr // 2, sr, sr]),
        "labels": {"visqol_moslqo": torch.tensor([1.0, 2.0, 4.0, 5.0])},
        "group": torch.arange(4), "is_reference": torch.zeros(4, dtype=torch.bool),
    }
    members_before = {n: p.detach().clone() for n, p in members.named_parameters()}
    weights_before = {n: p.detach().clone() for n, p in weights.named_parameters()}
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    assert {id(p) for p in weights.parameters()} <= {id(p) for g in optimizer.param_groups for p in g["params"]}
    loss, _ = module._shared_step(batch, "val")
    loss.backward()
    optimizer.step()
    for name, p in weights.named_parameters():
        assert not torch.equal(p, weights_before[name]), f"layer weights {name} did not train"
    for name, p in members.named_parameters():
        assert p.grad is None and torch.equal(p, members_before[name]), f"frozen member weight {name} changed"
    full = compose("mmmos").encoder  # the published setting: frozen members, WavLM's layers weighted
    assert full.freeze is True and list(full.layers) == ["weighted", "last", "last"]


def test_module_train_leaves_every_frozen_member_in_eval_mode():
    """MMMOS' frozen members give their features without dropout while the module trains (as the released code
    extracts them); the fusion's own layer weights and the heads follow ``train()``."""
    module = build_module(compose("mmmos_tiny", ["encoder.freeze=true", "encoder.adapter=null"]), with_teacher=False)
    module.train()
    assert len(module.encoder.members) == 3
    for member in module.encoder.members:
        assert member.frozen and not any(m.training for m in member.modules())
    assert module.training and module.encoder.training and module.heads.training


@pytest.mark.parametrize("experiment", [e for e in available("experiment") if e.startswith("mmmos")])
def test_every_mmmos_experiment_feeds_16_khz_audio(experiment):
    assert compose(experiment).encoder.sample_rate == 16000  # §III-A: all audio resampled to 16 kHz mono


@pytest.mark.parametrize("rate, band_limited", [(16000, True), (None, False)])
def test_16_khz_fusion_band_limits_muq(rate, band_limited):
    """With sample_rate 16000, MuQ (a 24 kHz model) hears the 16 kHz audio resampled: nothing above 8 kHz;
    with the fusion at MuQ's own rate white noise fills its whole band."""
    fusion = tiny_fusion(sample_rate=rate, adapter=None).eval()
    muq = fusion.members[fusion.names.index("muq_large_msd")]
    heard = []
    hook = muq.register_forward_pre_hook(lambda m, args: heard.append(args[0].detach()))
    with torch.no_grad():
        fusion(noise((1, fusion.sample_rate), seed=3))
    hook.remove()
    (x,) = heard
    assert fusion.sample_rate == (rate or 24000) and x.shape[-1] == muq.sample_rate  # one second at 24 kHz
    window = torch.hann_window(x.shape[-1], dtype=torch.float64)  # no leakage from the clip's edges
    power = torch.fft.rfft(x[0].double() * window).abs() ** 2
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / muq.sample_rate)
    above = float(power[freqs > 8100].sum() / power.sum())  # measured: 1.5e-14 at 16 kHz, 0.32 at 24 kHz
    assert above < 1e-10 if band_limited else above > 0.2


def test_frames_put_every_member_on_the_fastest_grid():
    """pool: false (BLSTM(t)): one (B, F, sum of dims) sequence on WavLM's 50 Hz grid, every member's slice of
    every valid frame of unit norm, zero padding frames, and the slower members interpolated between their own
    first and last frames."""
    fusion = tiny_fusion(pool=False, sample_rate=16000, adapter=None).eval()
    assert fusion.frame_rate == 50.0 and fusion.num_layers == 1 and fusion.output_dim == 224
    wav, lengths = noise((2, 16000), seed=5), torch.tensor([16000, 9000])
    with torch.no_grad():
        out = fusion(wav, lengths)
        wavlm = fusion.members[0](wav, lengths)
        muq = fusion.members[1](*prepare(wav[1:, :9000], 16000, 24000, None))  # the second clip alone
        muq_frames = fusion.layer_weights["1"](muq.layers)[0, : int(muq.lengths[0])]
    seq = out.layers[0]
    assert seq.shape == (2, int(wavlm.lengths.max()), 224) and out.lengths.tolist() == wavlm.lengths.tolist()
    for b, n_frames in enumerate(out.lengths.tolist()):
        for start, stop in ((0, 32), (32, 64), (64, 224)):
            torch.testing.assert_close(seq[b, :n_frames, start:stop].norm(dim=-1), torch.ones(n_frames))
        assert seq[b, n_frames:].abs().sum() == 0
    last = int(out.lengths[1]) - 1
    unit = torch.nn.functional.normalize(muq_frames, dim=-1)
    torch.testing.assert_close(seq[1, 0, 32:64], unit[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(seq[1, last, 32:64], unit[-1], atol=1e-4, rtol=0)
    with torch.no_grad():
        alone = fusion(wav[1:, :9000], torch.tensor([9000])).layers[0][0]
    torch.testing.assert_close(alone, seq[1, : alone.shape[0]], atol=1e-3, rtol=0)  # padding never leaks in
