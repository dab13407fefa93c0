"""The encoder contract and helpers that every encoder family shares.

An encoder is a plain ``nn.Module`` that maps a batch of waveforms to all of its hidden states:

- attributes ``sample_rate`` (Hz of the expected input), ``output_dim`` (D), ``num_layers`` (number of
  hidden states returned) and ``frame_rate`` (output frames per second);
- ``forward(wav, lengths) -> EncoderOutput`` with ``wav`` (B, T) float at ``sample_rate`` and ``lengths``
  (B,) long valid samples per clip, or None when every sample is valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn


class EncoderOutput(NamedTuple):
    """What every encoder returns.

    Attributes:
        layers: one (B, F, D) tensor per hidden state, the embedding output first
            (MERT-v1-95M: 13 tensors with D = 768).
        lengths: (B,) long, number of valid frames per clip; frames at and after it are padding.
    """

    layers: list[Tensor]
    lengths: Tensor


def frame_lengths(lengths_samples: Tensor, conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> Tensor:
    """Number of output frames of a stack of unpadded 1-D convolutions.

    Applies ``floor((L - kernel) / stride) + 1`` once per layer (the ``nn.Conv1d`` output length with no
    padding and no dilation), clamped at zero.

    Args:
        lengths_samples: (B,) integer input lengths in samples.
        conv_kernel: kernel size of each layer, e.g. (10, 3, 3, 3, 3, 2, 2) for wav2vec 2.0 / HuBERT / MERT.
        conv_stride: stride of each layer, e.g. (5, 2, 2, 2, 2, 2, 2).

    Returns:
        (B,) long number of frames.
    """
    if len(conv_kernel) != len(conv_stride):
        raise ValueError(
            f"conv_kernel {list(conv_kernel)} and conv_stride {list(conv_stride)} differ in length"
        )
    lengths = torch.as_tensor(lengths_samples).long()
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        lengths = (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp_min(0)
    return lengths


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients for every parameter of ``module`` (in place) and return it.

    The train/eval mode is left alone: dropout stays whatever the caller sets.
    """
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def apply_lora(model: nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str]) -> nn.Module:
    """Inject LoRA adapters into ``model`` in place with ``peft`` and return the same module.

    Every ``nn.Linear`` whose name ends with one of ``target_modules`` gets a low-rank update
    ``W x + (alpha / r) B A x`` (A: r x in, B: out x r, B initialised to zero so the output is unchanged at
    first). Afterwards only the ``lora_`` parameters of ``model`` require gradients. The module keeps its
    class and ``forward``; its ``state_dict`` gains ``...base_layer.weight`` / ``...lora_A.default.weight``
    style keys, so save and load between models built the same way.

    Args:
        model: the backbone to adapt (e.g. a ``transformers`` ``HubertModel``).
        r: rank of the update.
        alpha: scaling numerator; the update is multiplied by ``alpha / r``.
        dropout: dropout on the adapter input.
        target_modules: suffixes of module names to adapt, e.g. ``["q_proj", "v_proj"]``.
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=int(r),
        lora_alpha=int(alpha),
        lora_dropout=float(dropout),
        target_modules=[str(name) for name in target_modules],
        bias="none",
    )
    model = inject_adapter_in_model(config, model)
    # peft already marks only adapters as trainable; state it here so the contract does not hinge on that.
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


def apply_adapter(model: nn.Module, adapter: Mapping[str, Any] | None) -> nn.Module:
    """Apply the adapter a config names (``{name: lora, r, alpha, dropout, target_modules}``), or none for None."""
    if adapter is None:
        return model
    kwargs = {k: v for k, v in adapter.items() if k != "name"}
    name = adapter.get("name")
    if name == "lora":
        return apply_lora(model, **kwargs)
    raise KeyError(f"unknown adapter {name!r}; choose from ['lora'] or set adapter: null")


__all__ = ["EncoderOutput", "apply_adapter", "apply_lora", "frame_lengths", "freeze"]
