"""MuQ encoder: mel front end against a numpy reference, Conformer layers against transformers, padding-aware
BatchNorm, the published checkpoint layout (random tiny weights written as OpenMuQ/MuQ-large-msd-iter
publishes them), strict keys, missing-weights messages, full-size parameter count. The registry-wide contract
checks (forward/backward, padded batch, 0.1 s input, LoRA, frozen, DeePAQ step) run in test_contract.py. CPU,
seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from tiny_encoders import seeded, write_checkpoint

from aqa.encoders import build_encoder
from aqa.encoders.muq import (
    HUB_ID,
    MUQ_LARGE_MSD_CONFIG,
    MuQEncoder,
    build_muq_large_msd,
    load_muq,
    masked_batch_norm,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "encoder"
SR = 24000
TINY = OmegaConf.to_container(OmegaConf.load(CONFIGS / "muq_large_msd_tiny.yaml"))["arch"]
STAT = {"melspec_2048_cnt": 123, "melspec_2048_mean": 5.0, "melspec_2048_std": 20.0}


def tiny(**arch: object) -> MuQEncoder:
    torch.manual_seed(0)
    enc = build_muq_large_msd(arch={**TINY, **arch}, adapter=None)
    with torch.no_grad():  # make every weight and BatchNorm statistic matter
        for p in enc.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for name, b in enc.model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.1)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    return enc.eval()


# ------------------------------------------------------------------------------------------- mel front end


def numpy_log_mel(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    # MuQ's MelSTFT for one clip, written from the definitions: centred frames (reflect), periodic Hann 2048,
    # hop 240, |rfft|^2, 128 HTK triangles over 0..12 kHz (peak 1), 10 log10(max(., 1e-10)), last frame dropped.
    n_fft, hop, n_mels = 2048, 240, 128
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    count = 1 + (len(padded) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(count)])
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (frames, 1025)
    freqs = np.linspace(0, SR / 2, n_fft // 2 + 1)
    hz = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + (SR / 2) / 700), n_mels + 2) / 2595) - 1)
    filters = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = hz[m], hz[m + 1], hz[m + 2]
        filters[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    db = 10 * np.log10(np.maximum(power @ filters.T, 1e-10)).T  # (128, frames)
    return (db[:, :-1] - mean) / std


def test_mel_front_end_matches_a_numpy_reference_per_clip() -> None:
    enc = tiny(stat=STAT)
    lengths = [SR, 9001]  # the short clip reflects at its own end inside the padded batch
    wav = seeded((2, SR), 1)
    wav[1, lengths[1] :] = 0.3  # padding content must not matter
    mel = enc.front_end(wav, torch.tensor(lengths)).double()
    assert mel.shape == (2, 128, SR // 240)
    for i, n in enumerate(lengths):
        ref = numpy_log_mel(wav[i, :n].numpy(), 5.0, 20.0)
        assert ref.shape == (128, n // 240)
        np.testing.assert_allclose(mel[i, :, : n // 240].numpy(), ref, atol=2e-4, rtol=0)
        assert mel[i, :, n // 240 :].abs().sum() == 0


# ------------------------------------------------------------------------------------------------ backbone


def test_conformer_layers_equal_transformers_on_unpadded_input() -> None:
    from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

    enc = tiny()
    reference = Wav2Vec2ConformerEncoder(enc.model.conformer.config).eval()
    missing, unexpected = reference.load_state_dict(enc.model.conformer.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("pos_conv_embed.") for k in missing)  # never applied
    wav = seeded((2, SR // 2), 2)
    with torch.no_grad():
        out = enc(wav)
        x, _ = enc.model.conv(enc.front_end(wav, torch.tensor([SR // 2] * 2)), torch.tensor([50, 50]))
        theirs = reference(x.clone()).last_hidden_state
    assert len(out.layers) == 3 and out.lengths.tolist() == [13, 13]
    torch.testing.assert_close(out.layers[0], x)  # first hidden state: the Conformer input
    torch.testing.assert_close(out.layers[-1], theirs, atol=1e-5, rtol=1e-5)


def test_subsampling_equals_the_plain_conv_stack_on_unpadded_input() -> None:
    enc = tiny()
    mel = seeded((1, 128, 37), 3) * 10
    with torch.no_grad():
        ours, frames = enc.model.conv(mel, torch.tensor([37]))
        x = mel[:, None]
        for b in enc.model.conv.conv:  # MuQ's Res2dModule without any masking
            h = b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(x)))))
            x = torch.relu(h + b.bn3(b.conv3(x)))
        batch, channels, bands, steps = x.shape
        plain = enc.model.conv.linear(x.reshape(batch, channels * bands, steps).transpose(1, 2))
    assert frames.tolist() == [10] == [ours.shape[1]]  # ceil(ceil(37 / 2) / 2)
    torch.testing.assert_close(ours, plain)


def test_train_mode_batch_norm_uses_valid_positions_and_frozen_uses_running_stats() -> None:
    bn = torch.nn.BatchNorm1d(3).train()
    x = torch.randn(2, 3, 10)
    valid = torch.arange(10)[None, :] < torch.tensor([[10], [4]])
    out = masked_batch_norm(bn, x, valid)
    reference = torch.nn.BatchNorm1d(3).train()
    joined = torch.cat([x[0], x[1, :, :4]], dim=-1)[None]  # the valid positions only
    want = reference(joined)[0]
    torch.testing.assert_close(out[0], want[:, :10])
    torch.testing.assert_close(out[1, :, :4], want[:, 10:])
    torch.testing.assert_close(bn.running_var, reference.running_var)
    torch.testing.assert_close(bn.running_mean, reference.running_mean)
    bn.requires_grad_(False)  # frozen (or LoRA): running statistics, untouched, each clip independent
    before = bn.running_mean.clone()
    torch.testing.assert_close(masked_batch_norm(bn, x[1:], None), bn.eval()(x[1:]))
    assert torch.equal(bn.running_mean, before)


def test_short_input_limit_and_frame_lengths() -> None:
    enc = tiny()
    with torch.no_grad():
        out = enc(seeded((1, 2400), 4))  # 0.1 s: 10 mel frames -> 3 frames at 25 Hz
    assert out.lengths.tolist() == [3] and enc.frame_lengths(torch.tensor([2400, 24000, 1025])).tolist() == [3, 25, 1]
    with pytest.raises(ValueError, match="at least 1025 samples"):
        enc(seeded((1, 1024), 4))


# ------------------------------------------------------------------------------------ published checkpoint


def published_config(enc: MuQEncoder, codebook_size: int = 64, rvq: bool = False) -> dict:
    # config.json as PyTorchModelHubMixin writes MuQConfig (flat fields), w2v2_config with its unused extras.
    cfg = enc.cfg
    w2v2 = {
        **cfg["w2v2_config"],
        "architectures": ["Wav2Vec2ConformerForCTC"],
        "model_type": "wav2vec2-conformer",
        "conv_dim": [512] * 7,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "do_stable_layer_norm": True,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "vocab_size": 32,
        "transformers_version": "4.19.0.dev0",
    }
    return {
        "label_rate": 25, "num_codebooks": 1, "codebook_dim": 16, "codebook_size": codebook_size,
        "features": ["melspec_2048"], "hop_length": 240, "n_mels": 128, "conv_dim": cfg["conv_dim"],
        "encoder_dim": cfg["encoder_dim"], "encoder_depth": cfg["encoder_depth"], "mask_hop": 0.4,
        "mask_prob": 0.6, "is_flash": False, "stat": dict(cfg["stat"]), "w2v2_config": w2v2,
        "use_rvq_target": rvq, "use_vq_target": False, "use_encodec_target": False, "rvq_ckpt_path": None,
        "recon_loss_ratio": None, "resume_checkpoint": None, "rvq_n_codebooks": 8, "rvq_multi_layer_num": 1,
    }  # fmt: skip


def published_state(enc: MuQEncoder, codebook_size: int = 64, rvq: bool = False) -> dict[str, torch.Tensor]:
    # MuQ.state_dict(): everything under "model.", with the pre-training parts the encoder drops.
    dim = enc.output_dim
    state = {f"model.{k}": v.clone().contiguous() for k, v in enc.model.state_dict().items()}
    kernel, groups = 128, 16
    state.update(
        {
            "model.conformer.pos_conv_embed.conv.bias": torch.randn(dim),
            "model.conformer.pos_conv_embed.conv.parametrizations.weight.original0": torch.rand(1, 1, kernel),
            "model.conformer.pos_conv_embed.conv.parametrizations.weight.original1": torch.randn(dim, dim // groups, kernel),
            "model.linear.weight": torch.randn(codebook_size, dim),
            "model.linear.bias": torch.randn(codebook_size),
            "model.cls_token": torch.randn(dim),
        }
    )
    if rvq:  # Mel-RVQ targets: a residual VQ over 4 stacked mel frames (its parameters are not the encoder's)
        for i in range(2):
            state[f"model.rvq.quantizers.{i}.in_proj.weight_v"] = torch.randn(16, 512, 1)
            state[f"model.rvq.quantizers.{i}.in_proj.weight_g"] = torch.rand(16, 1, 1)
            state[f"model.rvq.quantizers.{i}.codebook.weight"] = torch.randn(1024, 16)
    else:  # random-projection targets
        state["model.quantizer_melspec_2048.random_projection"] = torch.randn(512, 16)
        state["model.quantizer_melspec_2048.codebook"] = torch.randn(codebook_size, 16)
    return state


def write_muq_checkpoint(directory: Path, enc: MuQEncoder, fmt: str = "safetensors", rvq: bool = False) -> Path:
    return write_checkpoint(directory, published_config(enc, rvq=rvq), published_state(enc, rvq=rvq), fmt)


@pytest.mark.parametrize(("fmt", "rvq"), [("safetensors", False), ("bin", True)], ids=["safetensors", "bin-rvq"])
def test_published_layout_round_trip(tmp_path: Path, fmt: str, rvq: bool) -> None:
    original = tiny(stat=STAT)
    write_muq_checkpoint(tmp_path / "MuQ-large-msd-iter", original, fmt, rvq)
    loaded = build_encoder(
        {"name": "muq_large_msd", "checkpoint": str(tmp_path / "MuQ-large-msd-iter"), "adapter": None}
    ).eval()
    assert (loaded.num_layers, loaded.output_dim, loaded.frame_rate) == (3, 32, 25.0)
    assert float(loaded.front_end.mean) == 5.0 and float(loaded.front_end.std) == 20.0  # stat from config.json
    wav, lengths = seeded((2, SR), 5), torch.tensor([SR, 15000])
    with torch.no_grad():
        expected, got = original(wav, lengths), loaded(wav, lengths)
    assert got.lengths.tolist() == expected.lengths.tolist() == [25, 16]
    for a, b in zip(expected.layers, got.layers, strict=True):
        torch.testing.assert_close(b, a, atol=0, rtol=0)


def test_hub_id_resolves_from_the_local_cache_and_rotary_buffer_is_optional(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--OpenMuQ--MuQ-large-msd-iter"
    snapshot = write_muq_checkpoint(repo / "snapshots" / ("b" * 40), tiny())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    state = load_file(str(snapshot / "model.safetensors"))
    del state["model.conformer.embed_positions.inv_freq"]  # deterministic: recomputed when absent
    save_file(state, str(snapshot / "model.safetensors"))
    assert load_muq(HUB_ID, cache_dir=tmp_path / "hub").num_layers == 3


@pytest.mark.parametrize("change", ["extra", "missing", "shape"])
def test_strict_keys_name_the_bad_key(tmp_path: Path, change: str) -> None:
    directory = write_muq_checkpoint(tmp_path / "ckpt", tiny())
    state = load_file(str(directory / "model.safetensors"))
    if change == "extra":
        key, match = "model.conformer.layers.0.self_attn.extra.weight", r"unexpected keys \[conformer\.layers\.0\.self_attn\.extra"
        state[key] = torch.zeros(2)
    elif change == "missing":
        key, match = "model.conv.conv.1.bn3.running_var", r"missing keys \[conv\.conv\.1\.bn3\.running_var\]"
        del state[key]
    else:
        key, match = "model.conv.linear.weight", r"wrong shapes.*conv\.linear\.weight: checkpoint \(32, 16\)"
        state[key] = torch.zeros(32, 16)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match=match):
        load_muq(directory)


def test_unsupported_configs_are_refused(tmp_path: Path) -> None:
    directory = write_muq_checkpoint(tmp_path / "ckpt", tiny())
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "features": ["melspec_2048", "cqt"]}))
    with pytest.raises(ValueError, match="features"):
        load_muq(directory)
    (directory / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ValueError, match="not a MuQ config.json"):
        load_muq(directory)


def test_missing_weights_say_which_file_and_how_to_get_it(tmp_path: Path) -> None:
    where = tmp_path / "nowhere" / "MuQ-large-msd-iter"
    with pytest.raises(FileNotFoundError) as err:
        build_encoder({"name": "muq_large_msd", "checkpoint": str(where)})
    message = str(err.value)
    assert str(where) in message and "encoder.checkpoint=" in message and "model.safetensors" in message
    assert f"hf download {HUB_ID} config.json model.safetensors" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_muq(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has no model.safetensors or pytorch_model.bin"):
        load_muq(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no cached snapshot"):
        load_muq(HUB_ID, cache_dir=tmp_path / "empty-cache")


# -------------------------------------------------------------------------------------------- full size

# Published size: the MuQ README says "~300M". Measured on the published class (muq 0.1.0 from PyPI, MuQ(config)
# with the MuQ-large-msd-iter config, random weights): 328,932,480 parameters, of which the encoder keeps
# 316,343,296 (Conformer 290,109,440, Conv2dSubsampling 26,233,856) and drops the never-applied positional conv
# (8,389,760), the 1024 -> 4096 token head (4,198,400) and cls_token (1,024); see aqa/encoders/muq.py.
PUBLISHED_PARAMS = 328_932_480
PUBLISHED_DROPPED = 8_389_760 + 4_198_400 + 1_024


def test_full_size_architecture_and_parameter_count() -> None:
    with torch.device("meta"):
        enc = build_encoder({"name": "muq_large_msd", "checkpoint": None, "adapter": None})
    count = sum(p.numel() for p in enc.parameters())
    assert count == 316_343_296 == PUBLISHED_PARAMS - PUBLISHED_DROPPED
    assert (enc.num_layers, enc.output_dim, enc.sample_rate, enc.frame_rate) == (13, 1024, 24000, 25.0)
    conformer = enc.model.conformer.config
    assert (conformer.num_attention_heads, conformer.intermediate_size, conformer.position_embeddings_type) == (
        16, 4096, "rotary"
    )  # fmt: skip
    cfg = OmegaConf.load(CONFIGS / "muq_large_msd.yaml")
    assert cfg.checkpoint == HUB_ID and list(cfg.adapter.target_modules) == ["linear_q", "linear_v"]
    assert MUQ_LARGE_MSD_CONFIG["stat"]["melspec_2048_std"] == pytest.approx(18.4179, abs=1e-4)
