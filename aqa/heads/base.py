"""The contract every head declares, stated once: what it outputs and which batch conditions it reads.

Losses declare the head output they need with the same :class:`Kind` (``aqa.losses.base.Loss.input_kind``);
:func:`aqa.tasks.multitask.check_head_loss` matches the two when a module is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import ClassVar

from torch import nn


class Kind(StrEnum):
    """What a head outputs, and what a loss takes as input.

    - ``EMBEDDING``: (B, D) embeddings, scored by distance to a reference.
    - ``SCORE``: (B,) clip scores (or a dict whose ``"score"`` is the clip score).
    - ``FRAMES``: a dict with ``"score"`` (B,), ``"frames"`` (B, F) and ``"frame_mask"`` (B, F); such a head
      also gives a clip score.
    """

    EMBEDDING = "embedding"
    SCORE = "score"
    FRAMES = "frames"


# what a head of each output kind can feed a loss: a frame-level head also gives its clip score
GIVES: Mapping[Kind, frozenset[Kind]] = {
    Kind.EMBEDDING: frozenset({Kind.EMBEDDING}),
    Kind.SCORE: frozenset({Kind.SCORE}),
    Kind.FRAMES: frozenset({Kind.FRAMES, Kind.SCORE}),
}


def declared_kind(cls: type, attr: str) -> None:
    """Check (and normalise to :class:`Kind`) the kind ``cls`` declares in its own body as ``attr``."""
    if attr in cls.__dict__:
        value = cls.__dict__[attr]
        try:
            setattr(cls, attr, Kind(value))
        except ValueError:
            raise TypeError(
                f"{cls.__name__}.{attr} = {value!r} is not one of {[k.value for k in Kind]}"
            ) from None


class Head(nn.Module):
    """Base class of every head in ``aqa.heads.HEADS``.

    Subclasses declare ``output`` (a :class:`Kind`) once, as a class attribute. ``condition_dims`` (batch
    condition key -> size, e.g. ``{"audiogram": 8}``) names the conditions the head reads; empty for most heads,
    set through ``__init__`` for those whose keys come from their config.

    A head is called as ``head(layers, lengths, **conditions)`` with ``conditions`` the keys of ``condition_dims``.
    """

    output: ClassVar[Kind]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        declared_kind(cls, "output")

    def __init__(self, condition_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.condition_dims: dict[str, int] = {str(k): int(n) for k, n in (condition_dims or {}).items()}

    @property
    def is_embedding(self) -> bool:
        """True when the head outputs embeddings (scored by distance to a reference), not scores."""
        return self.output is Kind.EMBEDDING

    @property
    def gives(self) -> frozenset[Kind]:
        """The loss inputs this head can feed (a frame-level head gives frame scores and its clip score)."""
        return GIVES[self.output]
