"""Shared encoder test material: seeded inputs, perturbed weights, tiny encoders built from their YAMLs, and
checkpoint folders written as their publishers lay them out (``config.json``, weights, a preprocessor file)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from torch import nn

from aqa.config import resolve_encoder
from aqa.encoders import EncoderOutput, build_encoder
from aqa.encoders.mert import MERTEncoder

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "encoder"
TINY = sorted(p.stem for p in CONFIGS.glob("*_tiny.yaml"))  # every tiny twin: the registry-wide contract
# the tiny random MERT (24 kHz) of the detailed contract and checkpoint-layout tests
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


def seeded(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Quiet noise, ``0.1 * N(0, 1)`` of ``shape`` from its own generator (the global RNG untouched)."""
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def perturb(module: nn.Module, scale: float = 0.05) -> None:
    """Add ``scale * N(0, 1)`` (global RNG) to every parameter in place: random init leaves gains at 1 and biases
    at 0, so without it a swapped or dropped weight would go unnoticed in a round trip."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def tiny(adapter: dict | None = None, freeze_backbone: bool = False) -> MERTEncoder:
    """The tiny random MERT (``TINY_ARCH``, seed 0) with ``adapter`` and the backbone frozen or not."""
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


def build_tiny(name: str, **overrides: object) -> nn.Module:
    """A tiny encoder from its YAML (configs/encoder/NAME.yaml) with top-level keys overridden; a fusion's
    members resolved to their complete configs as ``aqa.config.compose`` does."""
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    for key, value in overrides.items():
        cfg[key] = value
    torch.manual_seed(0)
    return build_encoder(OmegaConf.to_container(resolve_encoder(cfg)))


def pooled(out: EncoderOutput, index: int) -> list[torch.Tensor]:
    """Clip ``index``'s time-mean over its valid frames, one (D,) vector per layer."""
    from aqa.encoders.base import masked_time_mean

    return [masked_time_mean(h, out.lengths)[index] for h in out.layers]


def write_checkpoint(
    directory: Path, config: dict, state: dict[str, torch.Tensor], fmt: str = "safetensors",
    preprocessor: dict | None = None,
) -> Path:
    """A Hugging Face style checkpoint folder: ``config.json``, ``preprocessor_config.json`` when given, and the
    weights as ``model.safetensors`` (``fmt`` safetensors) or ``pytorch_model.bin`` (otherwise)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    if preprocessor is not None:
        (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    if fmt == "safetensors":
        save_file(state, str(directory / "model.safetensors"))
    else:
        torch.save(state, directory / "pytorch_model.bin")
    return directory
