"""Checkpoint loading in the published layouts of the transformers families (MERT, WavLM, wav2vec 2.0): random
tiny weights saved as published and loaded strictly; hub ids from the local cache only; key, model-type and
missing-weights errors that say what and how. CPU, seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_encoders import (
    LORA,
    TINY_ARCH,
    build_tiny,
    perturb,
    seeded,
    tiny,
    write_checkpoint,
)
from torch import nn

from aqa.encoders import build_encoder
from aqa.encoders.hf import resolve_checkpoint
from aqa.encoders.mert import MERTEncoder, load_mert

SR = 24000


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


def write_mert_checkpoint(
    directory: Path, state: dict, fmt: str, config: dict | None = None, normalize: bool | None = True
) -> Path:
    preprocessor = {
        "do_normalize": normalize,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0,
        "return_attention_mask": True,
        "sampling_rate": SR,
    }
    return write_checkpoint(  # normalize None: no preprocessor_config.json
        directory, config or published_config(TINY_ARCH), state, fmt, preprocessor if normalize is not None else None
    )


@pytest.mark.parametrize(
    ("fmt", "prefix", "old_names"),
    [("safetensors", "", True), ("bin", "", True), ("safetensors", "hubert.", False)],
    ids=["safetensors-published", "bin-published", "safetensors-prefixed-new-names"],
)
def test_load_published_layout_round_trip(
    tmp_path: Path, batch: tuple[torch.Tensor, torch.Tensor], fmt: str, prefix: str, old_names: bool
) -> None:
    original = tiny().eval()
    perturb(original)  # make the weight-norm gain non-trivial so a g/v swap would show
    write_mert_checkpoint(tmp_path / "ckpt", published_state(original, prefix, old_names), fmt)
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
    write_mert_checkpoint(tmp_path / "ckpt", published_state(tiny()), "bin", normalize=do_normalize)
    enc = build_encoder(
        {"name": "mert_v1_95m", "checkpoint": str(tmp_path / "ckpt"), "freeze": False, "adapter": LORA}
    )
    assert enc.normalize is expected and enc.num_layers == 3
    assert all("lora_" in n for n, p in enc.named_parameters() if p.requires_grad)


def test_hub_id_resolves_from_local_cache_only(tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--m-a-p--MERT-v1-95M" / "snapshots" / ("a" * 40)
    write_mert_checkpoint(snapshot, published_state(tiny()), "bin")
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
    write_mert_checkpoint(tmp_path / "ckpt", state, "safetensors")
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
    write_mert_checkpoint(
        tmp_path / "ckpt", published_state(tiny()), "bin", config=published_config(TINY_ARCH, **override)
    )
    with pytest.raises(ValueError, match=match):
        load_mert(tmp_path / "ckpt")


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
    preprocessor = {"do_normalize": normalize, "feature_size": 1, "return_attention_mask": True,
                    "sampling_rate": enc.sample_rate, "padding_value": 0.0}
    write_checkpoint(directory, config, state, fmt, preprocessor)
    return state


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
@pytest.mark.parametrize("family", sorted(HF_FAMILIES))
def test_hf_family_checkpoint_round_trip(tmp_path: Path, family: str, fmt: str) -> None:
    original = build_tiny(HF_FAMILIES[family][0], adapter=None).eval()
    perturb(original)
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

