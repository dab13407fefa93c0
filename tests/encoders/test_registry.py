"""The encoder registry: one builder per published model, tiny twins as YAML only, every YAML builds and the full-size
ones name their hub checkpoint; encoders read no config files; unknown names list the choices. CPU, seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_encoders import (
    CONFIGS,
    TINY,
)

from aqa.encoders import ENCODERS, build_encoder
from aqa.encoders.mert import mert_config


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


def test_unknown_encoder_lists_choices() -> None:
    with pytest.raises(KeyError, match=r"unknown encoder 'nope'; choose from \[.*'mert_v1_95m', 'muq_large_msd'"):
        build_encoder({"name": "nope"})


def test_every_full_size_yaml_names_its_hub_checkpoint() -> None:
    from aqa.encoders.hf import WAV2VEC2_BASE, WAVLM_BASE_PLUS, WAVLM_LARGE
    from aqa.encoders.mert import MERT_V1_95M, MERT_V1_330M

    for variant in (MERT_V1_95M, MERT_V1_330M, WAVLM_BASE_PLUS, WAVLM_LARGE, WAV2VEC2_BASE):
        cfg = OmegaConf.load(CONFIGS / f"{variant.name}.yaml")
        assert cfg.checkpoint == variant.hub_id and cfg.adapter.target_modules == ["q_proj", "v_proj"]

