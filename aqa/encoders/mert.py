"""MERT-v1 music encoders (m-a-p/MERT-v1-95M, m-a-p/MERT-v1-330M) on ``transformers``' HuBERT classes.

The published ``modeling_MERT.py`` defines ``MERTModel(HubertModel)``: the same HuBERT feature encoder,
feature projection (optional layer norm + Linear), positional conv embedding and transformer, plus two
options the v1 checkpoints leave off (``feature_extractor_cqt`` and ``deepnorm`` / ``attention_relax``, the
latter acting only inside the deepnorm layers). With those off its parameter names are exactly
``HubertModel``'s, so the checkpoints load into a plain ``HubertModel`` and no remote code runs. Loading,
masking and chunking are shared with WavLM / wav2vec 2.0 in :mod:`aqa.encoders.hf`.

- MERT-v1-95M: group-norm conv front end (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2 -> 320x, 75 frames/s
  at 24 kHz), 512 -> 768 projection, conv positional embedding (kernel 128, 16 groups), 12 post-norm
  transformer layers of 768 (12 heads, FFN 3072); 13 hidden states.
- MERT-v1-330M: the same front end, 24 pre-norm ("stable layer norm") layers of 1024 (16 heads, FFN 4096);
  25 hidden states x 1024, the last one after the final LayerNorm.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import HubertConfig, HubertModel

from aqa.encoders.hf import HFEncoder, HFVariant, load_hf_encoder

HUB_ID = "m-a-p/MERT-v1-95M"

# Published MERT-v1-95M architecture (config.json of m-a-p/MERT-v1-95M), in HubertConfig field names.
MERT_V1_95M_ARCH: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "activation_dropout": 0.1,
    "attention_dropout": 0.1,
    "feat_proj_layer_norm": True,
    "feat_proj_dropout": 0.1,
    "layer_norm_eps": 1e-5,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
}
# m-a-p/MERT-v1-330M config.json: group-norm front end, pre-norm transformer, no dropout.
MERT_V1_330M_ARCH: dict[str, Any] = {
    **MERT_V1_95M_ARCH,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "do_stable_layer_norm": True,
    "hidden_dropout": 0.0,
    "activation_dropout": 0.0,
    "attention_dropout": 0.0,
    "feat_proj_dropout": 0.0,
}


def _check_mert(published: Mapping[str, Any], where: Path) -> None:
    # Refuse the MERT options HubertModel lacks.
    if published.get("feature_extractor_cqt", False):
        raise ValueError(
            f"{where}: feature_extractor_cqt=true (CQT features concatenated before the projection, needs nnAudio) "
            "is not supported; MERT-v1-95M/330M have it off"
        )
    if published.get("deepnorm", False):
        raise ValueError(
            f"{where}: deepnorm=true (scaled residuals, and attention_relax={published.get('attention_relax')}) "
            "is not supported; MERT-v1-95M/330M have deepnorm=false"
        )


_MERT_COMMON: dict[str, Any] = {
    "config_cls": HubertConfig,
    "model_cls": HubertModel,
    "model_types": ("mert_model", "music_hubert", "hubert"),
    "sample_rate": 24000,
    "normalize": True,  # preprocessor_config.json: do_normalize true
    "wrapper_prefixes": ("hubert.", "mert_model.", "model."),
    "check": _check_mert,
}
MERT_V1_95M = HFVariant(name="mert_v1_95m", hub_id=HUB_ID, arch=MERT_V1_95M_ARCH, **_MERT_COMMON)
MERT_V1_330M = HFVariant(name="mert_v1_330m", hub_id="m-a-p/MERT-v1-330M", arch=MERT_V1_330M_ARCH, **_MERT_COMMON)

# The MERT encoder is the shared wav2vec 2.0-style encoder around a HubertModel.
MERTEncoder = HFEncoder


def mert_config(**arch: Any) -> HubertConfig:
    """A ``HubertConfig`` for a MERT-v1 backbone: the published 95M values overridden by ``arch``.

    ``layerdrop``, ``mask_time_prob`` and ``mask_feature_prob`` are forced to 0 so every forward returns
    ``num_hidden_layers + 1`` hidden states, also in training mode.
    """
    return MERT_V1_95M.config(**arch)


def load_mert(
    checkpoint: str | Path, cache_dir: str | Path | None = None, revision: str | None = None
) -> HFEncoder:
    """Load a MERT-v1 checkpoint (95M or 330M: the size comes from its config.json) in the published layout.

    See :func:`aqa.encoders.hf.load_hf_encoder` (a hub id not yet cached is downloaded at ``revision``);
    never runs ``modeling_MERT.py``.
    """
    return load_hf_encoder(checkpoint, MERT_V1_95M, cache_dir=cache_dir, revision=revision)


__all__ = [
    "HUB_ID",
    "MERTEncoder",
    "MERT_V1_330M",
    "MERT_V1_330M_ARCH",
    "MERT_V1_95M",
    "MERT_V1_95M_ARCH",
    "load_mert",
    "mert_config",
]
