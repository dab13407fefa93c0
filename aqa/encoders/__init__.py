"""Encoder registry: a plain dict of one builder per published model, keyed by its ``configs/encoder/`` YAML.

Every encoder is built as ``ENCODERS[name](**cfg_without_name)`` and follows the contract in
:mod:`aqa.encoders.base`: ``forward(wav (B, T), lengths (B,) | None) -> EncoderOutput(layers, lengths)``
with attributes ``sample_rate``, ``output_dim``, ``num_layers`` and ``frame_rate``.

Each builder loads the published ``checkpoint``, or with ``checkpoint: null`` builds random weights of the
published architecture overridden by an optional ``arch`` mapping. Other variants are only YAML files: the
tiny random-weight twins for tests (``configs/encoder/NAME_tiny.yaml``) name the full-size builder
(``name: NAME``) with ``checkpoint: null`` and a small ``arch``; ``aqa.config.available("encoder")`` lists
them all. Adding a family is one module, one YAML per variant and one line here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from aqa.encoders.base import (
    AdaptedEncoder,
    EncoderOutput,
    LayerWeightedSum,
    adapt_input,
    apply_adapter,
    apply_lora,
    chunked_forward,
    frame_lengths,
    freeze,
    prepare,
    resample,
    to_mono,
)
from aqa.encoders.beats import build_beats_iter3_plus_as2m
from aqa.encoders.fusion import FusionEncoder, build_fusion
from aqa.encoders.hf import (
    WAV2VEC2_BASE,
    WAVLM_BASE_PLUS,
    WAVLM_LARGE,
    HFEncoder,
    build_hf_encoder,
    load_hf_encoder,
    resolve_checkpoint,
)
from aqa.encoders.m2d import build_m2d_vit_base
from aqa.encoders.mert import MERT_V1_95M, MERT_V1_330M, MERTEncoder, load_mert
from aqa.encoders.muq import build_muq_large_msd
from aqa.hub import Report, resolve_file

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "mert_v1_95m": functools.partial(build_hf_encoder, MERT_V1_95M),
    "mert_v1_330m": functools.partial(build_hf_encoder, MERT_V1_330M),
    "wavlm_base_plus": functools.partial(build_hf_encoder, WAVLM_BASE_PLUS),
    "wavlm_large": functools.partial(build_hf_encoder, WAVLM_LARGE),
    "wav2vec2_base": functools.partial(build_hf_encoder, WAV2VEC2_BASE),
    "beats_iter3_plus_as2m": build_beats_iter3_plus_as2m,
    "m2d_vit_base": build_m2d_vit_base,
    "muq_large_msd": build_muq_large_msd,
    "fusion": lambda **kwargs: build_fusion(build_encoder, **kwargs),  # members built through this registry
}


# Where each family's published weights come from, without building the model (what `aqa download` runs; the
# builders resolve their checkpoint the same way): Hugging Face repos at the YAML's `revision`, release URLs
# checked against the YAML's `sha256` (aqa.hub).
WEIGHTS: dict[str, Callable[..., Path]] = {
    "mert_v1_95m": functools.partial(resolve_checkpoint, variant=MERT_V1_95M),
    "mert_v1_330m": functools.partial(resolve_checkpoint, variant=MERT_V1_330M),
    "wavlm_base_plus": functools.partial(resolve_checkpoint, variant=WAVLM_BASE_PLUS),
    "wavlm_large": functools.partial(resolve_checkpoint, variant=WAVLM_LARGE),
    "wav2vec2_base": functools.partial(resolve_checkpoint, variant=WAV2VEC2_BASE),
    "beats_iter3_plus_as2m": functools.partial(resolve_file, hint="aqa download beats_iter3_plus_as2m"),
    "m2d_vit_base": functools.partial(resolve_file, hint="aqa download m2d_vit_base"),
    "muq_large_msd": functools.partial(resolve_checkpoint, name="muq_large_msd", optional=()),
}


def fetch_weights(cfg: Mapping[str, Any], report: Report | None = None) -> list[Path]:
    """The published weights an encoder config names, downloaded when they are not cached (a fusion: each
    member's); random-weight configs (``checkpoint: null``) need none. A local checkpoint is reported as
    ``local`` and must exist.

    Args:
        cfg: a complete encoder config (a fusion's members resolved, as :func:`aqa.config.compose` leaves them).
        report: called with (status, source, path) per file: ``fetched``, ``cached`` or ``local``.

    Returns:
        The local checkpoint paths (directories for Hugging Face snapshots, files otherwise).

    Raises:
        aqa.hub.WeightsUnavailable: not cached and offline or unreachable, or failing its sha256 check.
        FileNotFoundError: a local checkpoint that does not exist.
    """
    name = cfg["name"]
    if name == "fusion":
        return [path for member in cfg.get("encoders") or [] for path in fetch_weights(member, report)]
    checkpoint = cfg.get("checkpoint")
    if checkpoint is None:
        return []
    if name not in WEIGHTS:
        raise KeyError(f"unknown encoder {name!r}; choose from {sorted(WEIGHTS)}")
    local = Path(str(checkpoint)).expanduser()
    if local.exists():
        if report is not None:
            report("local", str(checkpoint), local)
        return [local]
    pinned = {key: cfg[key] for key in ("revision", "sha256") if cfg.get(key) is not None}
    path = WEIGHTS[name](checkpoint=str(checkpoint), report=report, **pinned)
    if not path.exists():
        raise FileNotFoundError(f"{name}: checkpoint {checkpoint} does not exist (a local path: nothing to download)")
    return [path]


def build_encoder(cfg: Mapping[str, Any]) -> nn.Module:
    """Build an encoder from its config: ``name`` picks the builder, the other keys are its kwargs.

    ``compile: true`` compiles the encoder's forward with ``torch.compile`` (in place, ``dynamic`` shapes:
    clip lengths vary), so parameter names and checkpoints stay as without it.
    """
    name = cfg["name"]
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}")
    encoder = ENCODERS[name](**{k: v for k, v in cfg.items() if k not in ("name", "compile")})
    if cfg.get("compile"):
        encoder.compile(dynamic=True)
    return encoder


__all__ = [
    "AdaptedEncoder",
    "ENCODERS",
    "EncoderOutput",
    "FusionEncoder",
    "HFEncoder",
    "LayerWeightedSum",
    "MERTEncoder",
    "adapt_input",
    "apply_adapter",
    "apply_lora",
    "build_encoder",
    "chunked_forward",
    "fetch_weights",
    "frame_lengths",
    "freeze",
    "load_hf_encoder",
    "load_mert",
    "prepare",
    "resample",
    "to_mono",
]
