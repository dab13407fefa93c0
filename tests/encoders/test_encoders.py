"""Encoder contract, shared helpers, LoRA, checkpoint loading (published layouts), fusion and registry tests.

The contract tests are parametrized over every ``configs/encoder/*_tiny.yaml`` (the full-size builder with a
small ``arch``), so a newly registered encoder gets forward/backward, padding, input-adapter, short-input, LoRA/frozen and one-step
training checks automatically. CPU, seconds.
"""

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

from aqa.config import resolve_encoder  # noqa: E402
from aqa.encoders import ENCODERS, EncoderOutput, apply_lora, build_encoder, frame_lengths, freeze  # noqa: E402
from aqa.encoders.hf import normalize_waveform, resolve_checkpoint  # noqa: E402
from aqa.encoders.mert import MERTEncoder, load_mert, mert_config  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "encoder"
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
            "name": "mert_v1_95m",
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

    gen = torch.Generator().manual_seed(2)
    wav = torch.randn(2, 800, generator=gen) * torch.tensor([[0.3], [2.0]]) + 0.1
    lengths = torch.tensor([800, 500])
    mask = torch.arange(800)[None, :] < lengths[:, None]
    ours = normalize_waveform(wav.masked_fill(~mask, 0.0), lengths, mask)
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


def test_yaml_configs_build() -> None:
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert set(ENCODERS) <= set(names), "every registered encoder has a YAML of the same name"
    tiny_cfg = OmegaConf.load(CONFIGS / "mert_v1_95m_tiny.yaml")
    enc = build_encoder(tiny_cfg)
    assert enc.num_layers == 3 and enc.frame_rate == 75.0
    assert all("lora_" in n for n, p in enc.named_parameters() if p.requires_grad)
    tiny_cfg.adapter = None
    assert all(p.requires_grad for p in build_encoder(tiny_cfg).parameters())
    full_cfg = OmegaConf.load(CONFIGS / "mert_v1_95m.yaml")
    assert set(full_cfg) == {"name", "checkpoint", "revision", "freeze", "adapter", "max_chunk_s", "compile"}
    assert mert_config().num_hidden_layers == 12


def test_registry_is_one_builder_per_published_model_and_tiny_twins_are_yaml() -> None:
    full = sorted(p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.endswith("_tiny"))
    assert sorted(ENCODERS) == full
    assert TINY and all(name.removesuffix("_tiny") in ENCODERS for name in TINY)
    for name in TINY:
        cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
        assert cfg.name == name.removesuffix("_tiny") and cfg.checkpoint is None, name
        assert cfg.name == "fusion" or cfg.arch, f"{name}: a tiny twin is the full-size builder with a smaller arch"
    for path in CONFIGS.glob("*.yaml"):
        assert OmegaConf.load(path).compile is False, path.name


@pytest.mark.parametrize("name", sorted(set(ENCODERS) - {"fusion"}))
def test_arch_is_refused_with_a_checkpoint(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"`arch` \['depth'\] shapes random weights only"):
        build_encoder({"name": name, "checkpoint": str(tmp_path / "weights"), "arch": {"depth": 1}})


def test_encoders_read_no_config_files() -> None:
    import ast

    for path in sorted((Path(__file__).resolve().parents[2] / "aqa" / "encoders").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in modules if m and m.startswith("aqa.config")}, path.name
        assert "OmegaConf.load" not in path.read_text(encoding="utf-8"), path.name


def test_fusion_takes_complete_member_configs() -> None:
    with pytest.raises(ValueError, match="complete encoder config.*aqa.config"):
        build_encoder({"name": "fusion", "encoders": ["mert_v1_95m_tiny"]})
    members = [{"name": "mert_v1_95m", "checkpoint": None, "arch": TINY_ARCH, "adapter": None}]
    fusion = build_encoder({"name": "fusion", "encoders": members, "freeze": True})
    assert fusion.names == ["mert_v1_95m"] and fusion.sample_rate == 24000
    assert not any(p.requires_grad for p in fusion.members.parameters())  # its own layer weights stay trainable


def test_unknown_encoder_lists_choices() -> None:
    with pytest.raises(KeyError, match=r"unknown encoder 'nope'; choose from \[.*'mert_v1_95m', 'muq_large_msd'"):
        build_encoder({"name": "nope"})



# ============================================================================================================
# Every tiny encoder YAML: the contract, padding, input adaptation, short input, LoRA / frozen


TINY = sorted(p.stem for p in CONFIGS.glob("*_tiny.yaml"))


def build_tiny(name: str, **overrides: object) -> nn.Module:
    """A tiny encoder from its YAML (configs/encoder/NAME.yaml) with top-level keys overridden; a fusion's
    members resolved to their complete configs as ``aqa.config.compose`` does."""
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    for key, value in overrides.items():
        cfg[key] = value
    torch.manual_seed(0)
    return build_encoder(OmegaConf.to_container(resolve_encoder(cfg)))


def seeded(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def pooled(out: EncoderOutput, index: int) -> list[torch.Tensor]:
    from aqa.encoders.base import masked_time_mean

    return [masked_time_mean(h, out.lengths)[index] for h in out.layers]


@pytest.mark.parametrize("name", TINY)
def test_tiny_contract_forward_backward(name: str) -> None:
    enc = build_tiny(name, adapter=None).train()
    for attr in ("sample_rate", "output_dim", "num_layers", "frame_rate"):
        assert hasattr(enc, attr), attr
    sr = int(enc.sample_rate)
    wav, lengths = seeded((2, sr)), torch.tensor([sr, sr // 2])
    out = enc(wav, lengths)
    assert isinstance(out, EncoderOutput) and len(out.layers) == enc.num_layers
    frames = out.layers[0].shape[1]
    assert all(h.shape == (2, frames, enc.output_dim) for h in out.layers)
    assert out.lengths.dtype == torch.long and out.lengths.shape == (2,)
    assert 1 <= out.lengths[1] <= out.lengths[0] <= frames
    if enc.frame_rate > 0:  # frame-level encoders: ~frame_rate frames per second
        assert abs(int(out.lengths[0]) - enc.frame_rate) <= 0.1 * enc.frame_rate + 2
    sum(h.pow(2).mean() for h in out.layers).backward()
    trainable = [(n, p) for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for _, p in trainable)


@pytest.mark.parametrize("name", TINY)
def test_clip_alone_equals_clip_in_padded_batch(name: str) -> None:
    enc = build_tiny(name, adapter=None).eval()
    sr = int(enc.sample_rate)
    clip = seeded((1, int(0.6 * sr)), seed=1)
    batch = seeded((3, sr), seed=2)
    batch[1] = 0.0
    batch[1, : clip.shape[1]] = clip[0]
    lengths = torch.tensor([sr, clip.shape[1], int(0.8 * sr)])
    with torch.no_grad():
        alone, inside = enc(clip), enc(batch, lengths)
    assert int(alone.lengths[0]) == int(inside.lengths[1])
    for a, b in zip(pooled(alone, 0), pooled(inside, 1), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", TINY)
def test_44k1_stereo_through_the_input_adapter(name: str) -> None:
    from aqa.encoders import adapt_input, prepare

    enc = build_tiny(name, adapter=None).eval()
    adapted = adapt_input(enc, 44100)
    assert adapted.sample_rate == 44100 and adapted.num_layers == enc.num_layers
    stereo = seeded((2, 2, 22050), seed=3)  # 2 clips x 2 channels x 0.5 s
    lengths = torch.tensor([22050, 15000])
    with torch.no_grad():
        out = adapted(stereo, lengths)
        wav, n = prepare(stereo, 44100, enc.sample_rate, lengths)
        direct = enc(wav, n)
    assert wav.shape == (2, -(-22050 * enc.sample_rate // 44100)) and n.tolist()[1] == -(-15000 * enc.sample_rate // 44100)
    for a, b in zip(out.layers, direct.layers, strict=True):
        torch.testing.assert_close(a, b)
    assert all(torch.isfinite(h).all() for h in out.layers)


@pytest.mark.parametrize("name", TINY)
def test_0_1_s_input_works_or_names_the_minimum(name: str) -> None:
    enc = build_tiny(name, adapter=None).eval()
    wav = seeded((1, int(0.1 * enc.sample_rate)))
    try:
        with torch.no_grad():
            out = enc(wav)
    except ValueError as err:
        assert "at least" in str(err), f"unclear message for short input: {err}"
        return
    assert int(out.lengths[0]) >= 1 and all(torch.isfinite(h).all() for h in out.layers)


@pytest.mark.parametrize("name", TINY)
def test_lora_adapts_and_frozen_trains_nothing(name: str) -> None:
    yaml_adapter = OmegaConf.load(CONFIGS / f"{name}.yaml").get("adapter")
    assert yaml_adapter is not None, f"{name}.yaml should declare its LoRA adapter (target_modules per family)"
    enc = build_tiny(name)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "layer_weights" in n for n in trainable), trainable
    sr = int(enc.sample_rate)
    wav = seeded((2, sr // 2), seed=4)
    base = build_tiny(name, adapter=None).eval()
    with torch.no_grad():
        reference = base(wav).layers[-1]
        for p in (p for n, p in enc.named_parameters() if "lora_B" in n):
            p.normal_()  # B starts at zero; a non-zero update must reach the output (adapters really run)
        adapted = enc.eval()(wav).layers[-1]
    assert (adapted - reference).abs().max() > 1e-4, "LoRA weights do not change the output"
    out = enc.train()(wav, torch.tensor([sr // 2, sr // 3]))
    sum(h.pow(2).mean() for h in out.layers).backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if "lora_" in n)

    frozen = build_tiny(name, freeze=True, adapter=None)
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if "layer_weights" not in n)
    assert len(frozen(wav).layers) == frozen.num_layers


def last_layer_twice(enc: nn.Module, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last hidden state of two forward passes under different random seeds (dropout draws differ)."""
    with torch.no_grad():
        torch.manual_seed(1)
        first = enc(wav).layers[-1]
        torch.manual_seed(2)
        return first, enc(wav).layers[-1]


@pytest.mark.parametrize("name", TINY)
def test_frozen_encoder_stays_in_eval_mode_after_train(name: str) -> None:
    """A frozen encoder (a fusion: each frozen member) stays in eval mode whatever ``train()`` says, so its features
    carry no dropout noise; with LoRA over the frozen backbone the mode follows ``train()`` (adapter dropout runs)."""
    def with_dropout(enc: nn.Module) -> nn.Module:  # tiny YAMLs may set dropout 0: give every nn.Dropout p 0.3
        for m in enc.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.3
        return enc

    frozen = with_dropout(build_tiny(name, freeze=True, adapter=None)).train()
    pinned = [m for m in frozen.modules() if getattr(m, "frozen", False)]
    assert pinned, f"{name}: nothing marked frozen"
    assert all(not sub.training for m in pinned for sub in m.modules())
    if any(isinstance(m, nn.Dropout) for m in frozen.modules()):  # M2D's ViT has none
        probe = with_dropout(build_tiny(name, adapter=None))
        wav = seeded((2, int(probe.sample_rate) // 2), seed=6)
        first, second = last_layer_twice(probe.train(), wav)
        assert not torch.equal(first, second), f"{name}: no dropout in train mode, so this test could not fail"
        first, second = last_layer_twice(frozen, wav)
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    frozen.eval().train()  # eval() and train() again: still pinned
    assert all(not sub.training for m in pinned for sub in m.modules())

    adapted = build_tiny(name, freeze=True).train()  # the YAML's LoRA over the frozen backbone
    assert all(sub.training for sub in adapted.modules())


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("mode", ["lora", "frozen"])
def test_deepaq_tiny_trains_one_step_with_each_encoder(name: str, mode: str) -> None:
    from aqa.config import compose
    from aqa.tasks import build_module

    overrides = [f"encoder={name}"] + (["encoder.freeze=true", "encoder.adapter=null"] if mode == "frozen" else [])
    torch.manual_seed(0)
    module = build_module(compose("deepaq_lora_tiny", overrides)).train()
    sr = int(module.encoder.sample_rate)
    wav = seeded((4, sr // 2), seed=5)
    lengths = torch.tensor([sr // 2, sr // 2, sr // 3, sr // 4])
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    trainable = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    encoder_trainable = [n for n in trainable if n.startswith("encoder.")]
    if mode == "frozen":
        assert all(n.startswith("encoder.layer_weights.") for n in encoder_trainable)  # a fusion's own layer weights
    else:
        assert encoder_trainable and all("lora_" in n or "layer_weights" in n for n in encoder_trainable)
    out = module(wav, lengths)["quality"]
    loss = module.losses["quality"](out, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = [n for n, p in module.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    assert any(n.startswith("heads.") for n in changed)
    if mode == "lora":
        assert any("lora_" in n for n in changed), "LoRA parameters did not train"


# ============================================================================================================
# Shared helpers: resampling, chunking, masked GroupNorm, LayerWeightedSum


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


@pytest.mark.parametrize("name", ["wavlm_base_plus_tiny", "mert_v1_95m_tiny"])
def test_chunked_inference_keeps_the_frame_grid(name: str) -> None:
    from aqa.encoders.base import chunked_forward

    enc = build_tiny(name, adapter=None).eval()
    sr, hop = enc.sample_rate, enc.downsample_rate
    wav = seeded((2, 3 * sr), 8)
    lengths = torch.tensor([3 * sr, 2 * sr + 777])
    with torch.no_grad():
        whole = enc(wav, lengths)
        enc.max_chunk_s = 1.0
        assert enc.max_chunk_samples == (sr // hop) * hop
        chunked = enc(wav, lengths)
        # the definition: chunk k reads [k * chunk, (k + 1) * chunk + overlap) and keeps all its frames
        chunk, overlap = enc.max_chunk_samples, enc.receptive_field - hop
        piece = wav[:1, chunk : 2 * chunk + overlap]
        second = enc._encode(piece, None)
    assert chunked.lengths.tolist() == whole.lengths.tolist()  # same frame count as one pass
    first_frames = int(frame_lengths(torch.tensor([chunk + overlap]), enc.conv_kernel, enc.conv_stride))
    assert first_frames == chunk // hop
    torch.testing.assert_close(chunked.layers[-1][0, first_frames : 2 * first_frames], second.layers[-1][0])
    # alone vs padded batch also holds with chunking
    with torch.no_grad():
        alone = enc(wav[1:, : 2 * sr + 777])
    for a, b in zip(pooled(alone, 0), pooled(chunked, 1), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
    with torch.no_grad():
        enc.max_chunk_s = 10.0  # longer than the input: a single pass
        same = enc(wav, lengths)
    torch.testing.assert_close(same.layers[-1], whole.layers[-1])
    with pytest.raises(ValueError, match="at least 400 samples"):
        enc(wav[:, :100])
    # a chunk tail shorter than the receptive field gives no frame, as in one pass
    tail = chunked_forward(enc._encode, wav[:1, : chunk + overlap + 100], None, chunk, overlap, enc.min_samples)
    assert tail.lengths.tolist() == frame_lengths(torch.tensor([chunk + overlap + 100]), enc.conv_kernel, enc.conv_stride).tolist()


def test_layer_weighted_sum() -> None:
    from aqa.encoders import LayerWeightedSum

    layers = [torch.randn(2, 5, 4) * (i + 1) for i in range(3)]
    plain = LayerWeightedSum(3, 4)
    torch.testing.assert_close(plain(layers), torch.stack(layers).mean(0))  # equal weights at start
    with torch.no_grad():
        plain.weights.copy_(torch.tensor([0.0, 0.0, 50.0]))
    torch.testing.assert_close(plain(layers), layers[2], atol=1e-5, rtol=0)
    normed = LayerWeightedSum(3, 4, layer_norm=True)
    out = normed(layers)
    want = torch.stack([torch.nn.functional.layer_norm(h, (4,)) for h in layers]).mean(0)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    out.sum().backward()
    assert normed.weights.grad is not None and normed.norms[0].weight.grad is not None
    with pytest.raises(ValueError, match="expects 3 layers"):
        plain(layers[:2])


def test_weighted_sum_pool_head() -> None:
    from aqa.heads import build_head

    head = build_head({"name": "weighted_sum_pool", "layer_norm": True}, num_layers=3, input_dim=4)
    out = head([torch.randn(2, 6, 4) for _ in range(3)], torch.tensor([6, 3]))
    assert out.shape == (2,)


# ============================================================================================================
# Transformers-specific behaviour


def test_wavlm_attention_through_modules_matches_transformers() -> None:
    from aqa.encoders.hf import WAVLM_BASE_PLUS, HFEncoder

    arch = {**TINY_ARCH, "hidden_dropout": 0.0, "attention_dropout": 0.0, "feat_proj_dropout": 0.0}
    torch.manual_seed(0)
    enc = HFEncoder(WAVLM_BASE_PLUS.model_cls, WAVLM_BASE_PLUS.config(**arch), 16000, False).eval()
    torch.manual_seed(0)
    original = WAVLM_BASE_PLUS.model_cls(WAVLM_BASE_PLUS.config(**arch)).eval()
    original.load_state_dict(enc.model.state_dict())
    wav = seeded((2, 16000), 9)
    mask = (torch.arange(16000)[None] < torch.tensor([[16000], [9000]])).long()
    with torch.no_grad():
        ours = enc.model(wav * mask, attention_mask=mask).last_hidden_state
        theirs = original(wav * mask, attention_mask=mask).last_hidden_state
    valid = frame_lengths(torch.tensor(9000), enc.conv_kernel, enc.conv_stride)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1, :valid], theirs[1, :valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["mert_v1_330m_tiny", "wavlm_large_tiny"])
def test_pre_norm_models_return_the_final_layer_norm_output_last(name: str) -> None:
    enc = build_tiny(name, adapter=None).eval()
    assert enc.stable_layer_norm
    wav = seeded((1, enc.sample_rate // 2), 10)
    with torch.no_grad():
        out = enc(wav)
        raw = enc.model(normalize_waveform(wav, torch.tensor([wav.shape[1]]), None) if enc.normalize else wav,
                        output_hidden_states=True)
    torch.testing.assert_close(out.layers[-1], raw.last_hidden_state)
    torch.testing.assert_close(out.layers[-1], enc.model.encoder.layer_norm(raw.hidden_states[-1]))
    assert len(out.layers) == enc.num_layers == 3


# ============================================================================================================
# Published checkpoint layouts of each transformers family (random weights, saved as published, loaded strictly)


HF_FAMILIES = {
    # name: (builder of the tiny twin, prefix on backbone keys, extra pre-training head keys, normalize)
    "mert_v1_330m": ("mert_v1_330m_tiny", "", {"masked_spec_embed": (32,)}, True),
    "wavlm_base_plus": ("wavlm_base_plus_tiny", "", {"masked_spec_embed": (32,)}, False),
    "wavlm_large": ("wavlm_large_tiny", "", {"masked_spec_embed": (32,)}, True),
    "wav2vec2_base": (
        "wav2vec2_base_tiny",
        "wav2vec2.",
        {
            "wav2vec2.masked_spec_embed": (32,),
            "quantizer.codevectors": (1, 640, 128),
            "quantizer.weight_proj.weight": (640, 32),
            "quantizer.weight_proj.bias": (640,),
            "project_hid.weight": (256, 32),
            "project_hid.bias": (256,),
            "project_q.weight": (256, 128),
            "project_q.bias": (256,),
        },
        True,
    ),
}


def write_hf_checkpoint(directory: Path, enc: nn.Module, family: str, fmt: str) -> dict[str, torch.Tensor]:
    _, prefix, heads, normalize = HF_FAMILIES[family]
    config = enc.model.config.to_dict()
    # as published: training-time stochastic depth / SpecAugment on (the loader must turn them off)
    config.update({"layerdrop": 0.05, "mask_time_prob": 0.05, "architectures": [type(enc.model).__name__]})
    if family.startswith("mert"):
        config.update({"model_type": "mert_model", "deepnorm": False, "attention_relax": 32.0, "feature_extractor_cqt": False})
    state = {}
    for key, value in enc.model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        state[prefix + key] = value.clone().contiguous()
    for key, shape in heads.items():
        state[key] = torch.randn(shape)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": normalize, "feature_size": 1, "return_attention_mask": True,
                    "sampling_rate": enc.sample_rate, "padding_value": 0.0})
    )
    if fmt == "safetensors":
        save_file(state, str(directory / "model.safetensors"))
    else:
        torch.save(state, directory / "pytorch_model.bin")
    return state


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
@pytest.mark.parametrize("family", sorted(HF_FAMILIES))
def test_hf_family_checkpoint_round_trip(tmp_path: Path, family: str, fmt: str) -> None:
    original = build_tiny(HF_FAMILIES[family][0], adapter=None).eval()
    with torch.no_grad():
        for p in original.parameters():
            p.add_(0.05 * torch.randn_like(p))
    write_hf_checkpoint(tmp_path / "ckpt", original, family, fmt)
    loaded = build_encoder({"name": family, "checkpoint": str(tmp_path / "ckpt"), "freeze": True, "adapter": None})
    assert loaded.model.config.layerdrop == 0 and loaded.model.config.mask_time_prob == 0
    assert (loaded.sample_rate, loaded.normalize, loaded.num_layers) == (
        original.sample_rate, HF_FAMILIES[family][3], original.num_layers
    )
    wav, lengths = seeded((2, original.sample_rate), 11), torch.tensor([original.sample_rate, 9000])
    with torch.no_grad():
        original.normalize = loaded.normalize
        for a, b in zip(original(wav, lengths).layers, loaded.eval()(wav, lengths).layers, strict=True):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", sorted(HF_FAMILIES))
def test_hf_family_strict_keys_name_the_bad_key(tmp_path: Path, family: str) -> None:
    from safetensors.torch import load_file

    original = build_tiny(HF_FAMILIES[family][0], adapter=None)
    write_hf_checkpoint(tmp_path / "ckpt", original, family, "safetensors")
    state = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    prefix = HF_FAMILIES[family][1]
    bad = prefix + "encoder.layers.0.attention.extra_proj.weight"
    state[bad] = torch.zeros(2)
    save_file(state, str(tmp_path / "ckpt" / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected keys .*extra_proj"):
        build_encoder({"name": family, "checkpoint": str(tmp_path / "ckpt")})
    del state[bad]
    del state[prefix + "encoder.layers.1.feed_forward.output_dense.bias"]
    save_file(state, str(tmp_path / "ckpt" / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \[encoder\.layers\.1\.feed_forward\.output_dense\.bias\]"):
        build_encoder({"name": family, "checkpoint": str(tmp_path / "ckpt")})


@pytest.mark.parametrize("family", sorted(HF_FAMILIES))
def test_hf_family_missing_weights_say_what_and_how(tmp_path: Path, family: str) -> None:
    from aqa.encoders.hf import HFVariant  # noqa: F401  (the variant's hub id appears in the message)

    where = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        build_encoder({"name": family, "checkpoint": str(where)})
    message = str(err.value)
    assert str(where) in message and "encoder.checkpoint=" in message and "pytorch_model.bin" in message
    assert family in message and "hf download" in message


def test_wrong_model_type_is_refused(tmp_path: Path) -> None:
    original = build_tiny("wavlm_base_plus_tiny", adapter=None)
    write_hf_checkpoint(tmp_path / "ckpt", original, "wavlm_base_plus", "bin")
    with pytest.raises(ValueError, match="model_type 'wavlm' is not a wav2vec2_base model"):
        build_encoder({"name": "wav2vec2_base", "checkpoint": str(tmp_path / "ckpt")})


# ============================================================================================================
# Full size: published parameter counts (built on the meta device: shapes only, well under a second each)

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


def test_every_full_size_yaml_names_its_hub_checkpoint() -> None:
    from aqa.encoders.hf import WAV2VEC2_BASE, WAVLM_BASE_PLUS, WAVLM_LARGE
    from aqa.encoders.mert import MERT_V1_95M, MERT_V1_330M

    for variant in (MERT_V1_95M, MERT_V1_330M, WAVLM_BASE_PLUS, WAVLM_LARGE, WAV2VEC2_BASE):
        cfg = OmegaConf.load(CONFIGS / f"{variant.name}.yaml")
        assert cfg.checkpoint == variant.hub_id and cfg.adapter.target_modules == ["q_proj", "v_proj"]


# ============================================================================================================
# Fusion


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
