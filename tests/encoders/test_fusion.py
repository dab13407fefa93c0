"""MMMOS' fusion as the paper reads its encoders (Lin et al. 2025, §III-A/B): frozen members under trainable
layer weights, every member band-limited to 16 kHz audio, and frame-level output for BLSTM(t)."""

import pytest
import torch
from omegaconf import OmegaConf
from tiny_encoders import CONFIGS, TINY_ARCH, build_tiny, seeded

from aqa.config import available, compose
from aqa.encoders import build_encoder
from aqa.encoders.base import prepare
from aqa.tasks import build_module


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
        "wav": seeded((4, sr)), "lengths": torch.tensor([sr, sr // 2, sr, sr]),
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
    fusion = build_tiny("fusion_tiny", sample_rate=rate, adapter=None).eval()
    muq = fusion.members[fusion.names.index("muq_large_msd")]
    heard = []
    hook = muq.register_forward_pre_hook(lambda m, args: heard.append(args[0].detach()))
    with torch.no_grad():
        fusion(seeded((1, fusion.sample_rate), seed=3))
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
    fusion = build_tiny("fusion_tiny", pool=False, sample_rate=16000, adapter=None).eval()
    assert fusion.frame_rate == 50.0 and fusion.num_layers == 1 and fusion.output_dim == 224
    wav, lengths = seeded((2, 16000), seed=5), torch.tensor([16000, 9000])
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


def test_fusion_takes_complete_member_configs() -> None:
    with pytest.raises(ValueError, match="complete encoder config.*aqa.config"):
        build_encoder({"name": "fusion", "encoders": ["mert_v1_95m_tiny"]})
    members = [{"name": "mert_v1_95m", "checkpoint": None, "arch": TINY_ARCH, "adapter": None}]
    fusion = build_encoder({"name": "fusion", "encoders": members, "freeze": True})
    assert fusion.names == ["mert_v1_95m"] and fusion.sample_rate == 24000
    assert not any(p.requires_grad for p in fusion.members.parameters())  # its own layer weights stay trainable


def test_fusion_concatenates_unit_vectors_of_any_subset() -> None:
    fusion = build_tiny("fusion_tiny", adapter=None).eval()
    assert fusion.names == ["wavlm_base_plus", "muq_large_msd", "m2d_vit_base"]  # MMMOS' members (tiny twins)
    assert fusion.dims == [32, 32, 160]  # M2D: 32 dims x 5 frequency patches per frame
    assert fusion.sample_rate == 24000 and fusion.num_layers == 1 and fusion.output_dim == 224
    wav, lengths = seeded((2, 24000), 12), torch.tensor([24000, 12000])
    with torch.no_grad():
        out = fusion(wav, lengths)
    assert out.layers[0].shape == (2, 1, 224) and out.lengths.tolist() == [1, 1]
    vec = out.layers[0][:, 0]
    for start, stop in ((0, 32), (32, 64), (64, 224)):
        torch.testing.assert_close(vec[:, start:stop].norm(dim=-1), torch.ones(2))
    # the MuQ slice equals MuQ run alone (24 kHz like the fusion input: no resampling in between)
    muq = fusion.members[1]
    with torch.no_grad():
        alone = fusion.layer_weights["1"]([h.mean(1, keepdim=True) for h in muq(wav[:1]).layers])[:, 0]
    torch.testing.assert_close(vec[0, 32:64], torch.nn.functional.normalize(alone[0], dim=-1), atol=1e-5, rtol=0)
    for subset in (["wavlm_base_plus_tiny"], ["mert_v1_330m_tiny", "wav2vec2_base_tiny", "wavlm_large_tiny"]):
        one = build_tiny("fusion_tiny", encoders=subset, layers="mean", sample_rate=44100)
        stereo = seeded((1, 2, 22050), 13)
        assert one(stereo).layers[0].shape == (1, 1, 32 * len(subset))


def test_fusion_layer_reduction_per_member_as_mmmos() -> None:
    fusion = build_tiny("fusion_tiny", adapter=None, layers=["weighted", "last", "last"]).eval()
    assert list(fusion.layer_weights) == ["0"]  # only WavLM's layers are weighted
    wav = seeded((1, 24000), 14)
    with torch.no_grad():
        vec = fusion(wav).layers[0][0, 0]
        muq_last = fusion.members[1](wav).layers[-1].mean(1)[0]
    torch.testing.assert_close(vec[32:64], torch.nn.functional.normalize(muq_last, dim=-1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="one entry per member"):
        build_tiny("fusion_tiny", layers=["weighted", "last"])
    assert OmegaConf.load(CONFIGS / "fusion.yaml").layers == ["weighted", "last", "last"]


def test_fusion_freeze_and_adapter_apply_to_every_member() -> None:
    frozen = build_tiny("fusion_tiny", freeze=True, adapter=None)
    assert not any(p.requires_grad for p in frozen.members.parameters())
    assert all(p.requires_grad for p in frozen.layer_weights.parameters())  # the fusion's own, trainable (MMMOS)
    lora = build_tiny("fusion_tiny", adapter={"r": 2, "alpha": 4})
    names = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert any(n.startswith("members.0.") and "lora_A" in n for n in names)
    assert any(n.startswith("members.1.") and "lora_A" in n for n in names)
    assert lora.members[0].model.encoder.layers[0].attention.q_proj.r["default"] == 2
    assert lora.members[1].model.conformer.layers[0].self_attn.linear_q.r["default"] == 2
    with pytest.raises(ValueError, match="layers="):
        build_tiny("fusion_tiny", layers="max")
    with pytest.raises(ValueError, match="list of encoder"):
        build_tiny("fusion_tiny", encoders="mert_v1_95m_tiny")

