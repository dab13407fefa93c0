"""Encoder contract, LoRA, MERT checkpoint loading (published layout) and registry tests. CPU, seconds."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

from aqa.encoders import ENCODERS, EncoderOutput, apply_lora, build_encoder, frame_lengths, freeze  # noqa: E402
from aqa.encoders.mert import MERTEncoder, load_mert, mert_config  # noqa: E402
from aqa.encoders.mert import _resolve_checkpoint as resolve_checkpoint  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "encoder"
SR = 24000
TINY_ARCH = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [32] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
LORA = {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def tiny(adapter: dict | None = None, freeze_backbone: bool = False) -> MERTEncoder:
    torch.manual_seed(0)
    return build_encoder(
        {
            "name": "mert_v1_95m_tiny",
            "checkpoint": None,
            "arch": TINY_ARCH,
            "freeze": freeze_backbone,
            "adapter": adapter,
        }
    )


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    wav = 0.1 * torch.randn(2, SR, generator=gen)  # 1 s at 24 kHz
    return wav, torch.tensor([SR, SR // 2])


# ---------------------------------------------------------------------------------------------- contract


def test_frame_lengths_formula() -> None:
    kernel, stride = [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]
    got = frame_lengths(torch.tensor([0, 399, 400, 720, 24000, 240000]), kernel, stride)
    assert got.tolist() == [0, 0, 1, 2, 74, 749]
    # against real convolutions
    convs = nn.Sequential(*[nn.Conv1d(1, 1, k, s) for k, s in zip(kernel, stride, strict=True)])
    for n in (400, 1234, 24000):
        assert (
            convs(torch.zeros(1, 1, n)).shape[-1] == frame_lengths(torch.tensor([n]), kernel, stride).item()
        )


def test_tiny_forward_shapes_lengths_and_backward(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    enc = tiny()
    wav, lengths = batch
    assert (enc.sample_rate, enc.output_dim, enc.num_layers, enc.frame_rate) == (SR, 32, 3, 75.0)
    enc.train()  # layerdrop / SpecAugment are off: the number of hidden states is fixed in training too
    out = enc(wav, lengths)
    assert isinstance(out, EncoderOutput) and len(out.layers) == enc.num_layers
    frames = out.layers[0].shape[1]
    for layer in out.layers:
        assert layer.shape == (2, frames, enc.output_dim)
    assert out.lengths.dtype == torch.long
    assert out.lengths.tolist() == [frames, frames // 2] == [74, 37]  # ~75 frames per second
    assert abs(out.lengths[0].item() - enc.frame_rate * SR / enc.sample_rate) <= 1
    sum(layer.pow(2).mean() for layer in out.layers).backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert enc(wav).lengths.tolist() == [frames, frames]


def test_hidden_states_are_embedding_output_then_layers(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    enc = tiny().eval()
    enc.normalize = False  # compare against the raw backbone
    wav, _ = batch
    with torch.no_grad():
        out = enc(wav)
        m = enc.model
        feats = m.feature_projection(m.feature_extractor(wav).transpose(1, 2))
        first = m.encoder.layer_norm(feats + m.encoder.pos_conv_embed(feats))
    torch.testing.assert_close(out.layers[0], first)
    torch.testing.assert_close(out.layers[-1], m(wav).last_hidden_state)


def test_padding_is_zeroed_and_normalisation_uses_valid_samples(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    enc = tiny().eval()
    wav, lengths = batch
    garbage = wav.clone()
    garbage[1, SR // 2 :] = 5.0  # padding content must not matter
    with torch.no_grad():
        enc.normalize = False
        for a, b in zip(enc(wav, lengths).layers, enc(garbage, lengths).layers, strict=True):
            torch.testing.assert_close(a, b)
        enc.normalize = True
        scaled = wav.clone()
        scaled[1, : SR // 2] = 3.0 * scaled[1, : SR // 2] + 0.5  # affine change of the valid part only
        scaled[1, SR // 2 :] = -7.0
        for a, b in zip(enc(wav, lengths).layers, enc(scaled, lengths).layers, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_normalisation_matches_wav2vec2_feature_extractor() -> None:
    from transformers import Wav2Vec2FeatureExtractor

    from aqa.encoders.mert import _normalize

    gen = torch.Generator().manual_seed(2)
    wav = torch.randn(2, 800, generator=gen) * torch.tensor([[0.3], [2.0]]) + 0.1
    lengths = torch.tensor([800, 500])
    mask = torch.arange(800)[None, :] < lengths[:, None]
    ours = _normalize(wav.masked_fill(~mask, 0.0), lengths, mask)
    theirs = Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(
        [w.numpy() for w in wav], attention_mask=mask.long().numpy(), padding_value=0.0
    )
    for row, ref in zip(ours, theirs, strict=True):
        torch.testing.assert_close(row, torch.from_numpy(ref).float(), atol=1e-5, rtol=1e-5)


def test_rejects_bad_lengths(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    enc = tiny()
    wav, _ = batch
    with pytest.raises(ValueError, match="lengths"):
        enc(wav, torch.tensor([SR + 1, SR]))
    with pytest.raises(ValueError, match="400 samples"):
        enc(wav, torch.tensor([SR, 100]))


# ------------------------------------------------------------------------------------------------ LoRA


def test_lora_only_adapters_train_and_get_gradients(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    enc = tiny(adapter=LORA)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * 2 * 2  # A and B for q_proj and v_proj in 2 layers
    wav, lengths = batch
    # B starts at zero: the adapted model equals the base model until trained
    with torch.no_grad():
        for lora_b in (p for n, p in enc.named_parameters() if "lora_B" in n):
            lora_b.normal_()
    out = enc(wav, lengths)
    sum(layer.pow(2).mean() for layer in out.layers).backward()
    for name, param in enc.named_parameters():
        if "lora_" in name:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_lora_state_dict_round_trip(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    a, b = tiny(adapter=LORA).eval(), tiny(adapter=LORA).eval()
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01 * torch.randn_like(p))
    b.load_state_dict(a.state_dict(), strict=True)
    wav, lengths = batch
    with torch.no_grad():
        for x, y in zip(a(wav, lengths).layers, b(wav, lengths).layers, strict=True):
            torch.testing.assert_close(x, y)


def test_freeze_flag() -> None:
    assert not any(p.requires_grad for p in tiny(freeze_backbone=True).parameters())
    both = tiny(adapter=LORA, freeze_backbone=True)
    assert {("lora_" in n) for n, p in both.named_parameters() if p.requires_grad} == {True}
    assert freeze(nn.Linear(2, 2)).weight.requires_grad is False


# --------------------------------------------------------------------------------- published checkpoint


def published_config(arch: dict, **overrides: object) -> dict:
    # config.json as m-a-p/MERT-v1-95M publishes it (MERTConfig field names), shrunk to `arch`.
    cfg = {
        "_name_or_path": "m-a-p/MERT-v1-95M",
        "architectures": ["MERTModel"],
        "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
        "model_type": "mert_model",
        "sample_rate": SR,
        "activation_dropout": 0.1,
        "apply_spec_augment": True,
        "attention_dropout": 0.1,
        "attention_relax": -1.0,
        "bos_token_id": 1,
        "classifier_proj_size": 256,
        "conv_bias": False,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "ctc_loss_reduction": "sum",
        "ctc_zero_infinity": False,
        "deepnorm": False,
        "do_stable_layer_norm": False,
        "eos_token_id": 2,
        "feat_extract_activation": "gelu",
        "feat_extract_dropout": 0.0,
        "feat_extract_norm": "group",
        "feat_proj_dropout": 0.1,
        "feat_proj_layer_norm": True,
        "feature_extractor_cqt": False,
        "feature_extractor_cqt_bins": 336,
        "final_dropout": 0.1,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout": 0.1,
        "hidden_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-05,
        "layerdrop": 0.1,
        "mask_feature_length": 10,
        "mask_feature_min_masks": 0,
        "mask_feature_prob": 0.0,
        "mask_time_length": 10,
        "mask_time_min_masks": 2,
        "mask_time_prob": 0.05,
        "pad_token_id": 0,
        "torch_dtype": "float32",
        "transformers_version": "4.24.0",
        "use_weighted_layer_sum": False,
        "vocab_size": 32,
        **arch,
    }
    cfg.update(overrides)
    return cfg


def published_state(
    enc: MERTEncoder, prefix: str = "", old_weight_norm: bool = True
) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in enc.model.state_dict().items():
        if old_weight_norm:
            key = key.replace("parametrizations.weight.original0", "weight_g")
            key = key.replace("parametrizations.weight.original1", "weight_v")
        state[prefix + key] = value.clone().contiguous()
    # the published model saves SpecAugment's mask vector; it is unused here
    state[prefix + "masked_spec_embed"] = torch.rand(enc.output_dim)
    return state


def write_checkpoint(
    directory: Path, state: dict, fmt: str, config: dict | None = None, normalize: bool | None = True
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config or published_config(TINY_ARCH)))
    preprocessor = {
        "do_normalize": normalize,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0,
        "return_attention_mask": True,
        "sampling_rate": SR,
    }
    if normalize is not None:  # None: no preprocessor_config.json
        (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    if fmt == "safetensors":
        save_file(state, str(directory / "model.safetensors"))
    else:
        torch.save(state, directory / "pytorch_model.bin")
    return directory


@pytest.mark.parametrize(
    ("fmt", "prefix", "old_names"),
    [("safetensors", "", True), ("bin", "", True), ("safetensors", "hubert.", False)],
    ids=["safetensors-published", "bin-published", "safetensors-prefixed-new-names"],
)
def test_load_published_layout_round_trip(
    tmp_path: Path, batch: tuple[torch.Tensor, torch.Tensor], fmt: str, prefix: str, old_names: bool
) -> None:
    original = tiny().eval()
    with torch.no_grad():  # make the weight-norm gain non-trivial so a g/v swap would show
        for p in original.parameters():
            p.add_(0.05 * torch.randn_like(p))
    write_checkpoint(tmp_path / "ckpt", published_state(original, prefix, old_names), fmt)
    loaded = load_mert(tmp_path / "ckpt").eval()
    assert (loaded.sample_rate, loaded.normalize, loaded.num_layers) == (SR, True, 3)
    assert loaded.model.config.layerdrop == 0 and loaded.model.config.mask_time_prob == 0
    wav, lengths = batch
    with torch.no_grad():
        expected, got = original(wav, lengths), loaded(wav, lengths)
    assert got.lengths.tolist() == expected.lengths.tolist()
    for a, b in zip(expected.layers, got.layers, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("do_normalize", "expected"), [(False, False), (True, True), (None, True)])
def test_load_through_builder_reads_do_normalize_and_applies_lora(
    tmp_path: Path, do_normalize: bool | None, expected: bool
) -> None:
    write_checkpoint(tmp_path / "ckpt", published_state(tiny()), "bin", normalize=do_normalize)
    enc = build_encoder(
        {"name": "mert_v1_95m", "checkpoint": str(tmp_path / "ckpt"), "freeze": False, "adapter": LORA}
    )
    assert enc.normalize is expected and enc.num_layers == 3
    assert all("lora_" in n for n, p in enc.named_parameters() if p.requires_grad)


def test_hub_id_resolves_from_local_cache_only(tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--m-a-p--MERT-v1-95M" / "snapshots" / ("a" * 40)
    write_checkpoint(snapshot, published_state(tiny()), "bin")
    (tmp_path / "hub" / "models--m-a-p--MERT-v1-95M" / "refs").mkdir()
    (tmp_path / "hub" / "models--m-a-p--MERT-v1-95M" / "refs" / "main").write_text("a" * 40)
    assert resolve_checkpoint("m-a-p/MERT-v1-95M", cache_dir=tmp_path / "hub") == snapshot
    assert load_mert("m-a-p/MERT-v1-95M", cache_dir=tmp_path / "hub").num_layers == 3
    with pytest.raises(FileNotFoundError, match="no cached snapshot"):
        resolve_checkpoint("m-a-p/MERT-v1-330M", cache_dir=tmp_path / "hub")


@pytest.mark.parametrize("change", ["extra", "missing"])
def test_key_mismatch_names_the_key(tmp_path: Path, change: str) -> None:
    state = published_state(tiny())
    if change == "extra":
        state["encoder.layers.0.attention.extra_proj.weight"] = torch.zeros(2)
        key = "encoder.layers.0.attention.extra_proj.weight"
    else:
        key = "encoder.layers.1.feed_forward.output_dense.bias"
        del state[key]
    write_checkpoint(tmp_path / "ckpt", state, "safetensors")
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as err:
        load_mert(tmp_path / "ckpt")
    assert ("unexpected keys [enc" if change == "extra" else "missing keys [enc") in str(err.value)


def test_missing_checkpoint_fails_fast_with_instructions(tmp_path: Path) -> None:
    where = tmp_path / "nowhere" / "MERT-v1-95M"
    with pytest.raises(FileNotFoundError) as err:
        build_encoder({"name": "mert_v1_95m", "checkpoint": str(where), "freeze": False, "adapter": None})
    message = str(err.value)
    assert str(where) in message and "encoder.checkpoint=" in message and "pytorch_model.bin" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_mert(empty)
    (empty / "config.json").write_text(json.dumps(published_config(TINY_ARCH)))
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin"):
        load_mert(empty)


def test_uncached_hub_id_fails_with_instructions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="m-a-p/MERT-v1-95M.*encoder.checkpoint="):
        load_mert("m-a-p/MERT-v1-95M", cache_dir=tmp_path / "empty-cache")


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"feature_extractor_cqt": True}, "feature_extractor_cqt"),
        ({"deepnorm": True}, "deepnorm"),
        ({"model_type": "wav2vec2"}, "model_type"),
    ],
)
def test_unsupported_mert_variants_are_refused(tmp_path: Path, override: dict, match: str) -> None:
    write_checkpoint(
        tmp_path / "ckpt", published_state(tiny()), "bin", config=published_config(TINY_ARCH, **override)
    )
    with pytest.raises(ValueError, match=match):
        load_mert(tmp_path / "ckpt")


# ----------------------------------------------------------------------------------- full size, registry


def test_full_size_parameter_count_and_lora_share() -> None:
    enc = build_encoder({"name": "mert_v1_95m", "checkpoint": None, "freeze": False, "adapter": None})
    assert (enc.num_layers, enc.output_dim, enc.frame_rate, enc.sample_rate) == (13, 768, 75.0, SR)
    backbone = sum(p.numel() for p in enc.parameters())
    assert 94e6 <= backbone <= 95e6  # published ~94.4M
    apply_lora(enc.model, r=8, alpha=16, dropout=0.05, target_modules=["q_proj", "v_proj"])
    head = nn.Linear(13 * 768, 256)
    total = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in head.parameters())
    trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad) + sum(
        p.numel() for p in head.parameters()
    )
    assert trainable == 12 * 2 * 8 * (768 + 768) + 13 * 768 * 256 + 256
    assert abs(100 * trainable / total - 2.93) <= 0.01


def test_yaml_configs_build() -> None:
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert names == sorted(ENCODERS)
    tiny_cfg = OmegaConf.load(CONFIGS / "mert_v1_95m_tiny.yaml")
    enc = build_encoder(tiny_cfg)
    assert enc.num_layers == 3 and enc.frame_rate == 75.0
    assert all("lora_" in n for n, p in enc.named_parameters() if p.requires_grad)
    tiny_cfg.adapter = None
    assert all(p.requires_grad for p in build_encoder(tiny_cfg).parameters())
    full_cfg = OmegaConf.load(CONFIGS / "mert_v1_95m.yaml")
    assert set(full_cfg) == {"name", "checkpoint", "freeze", "adapter"}
    assert mert_config().num_hidden_layers == 12


def test_unknown_encoder_lists_choices() -> None:
    with pytest.raises(
        KeyError, match=r"unknown encoder 'nope'; choose from \['mert_v1_95m', 'mert_v1_95m_tiny'\]"
    ):
        build_encoder({"name": "nope"})
