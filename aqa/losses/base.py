"""The contract every loss declares, stated once: which head output it takes and whether it reads groups.

The kinds are the heads' own (:class:`aqa.heads.base.Kind`), so that there is one definition of each.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from aqa.heads.base import Kind, declared_kind


class Loss(nn.Module):
    """Base class of every loss in ``aqa.losses.LOSSES``.

    Subclasses declare, as class attributes:

    - ``input_kind``: the head output the loss is called with: ``Kind.EMBEDDING`` (B, D), ``Kind.SCORE``
      (B,) (a frame-level head gives its clip score) or ``Kind.FRAMES`` (a frame-level head's dict);
    - ``uses_group``: True when the loss is also called with ``group=batch["group"]`` (which clips belong
      together, e.g. the mixtures of one utterance); False by default;
    - ``takes_anchors``: True when the loss is also called with ``anchors=`` (B,) bool, the samples it is
      summed over while the others still take part (Rank-N-Contrast); a loss without it gets the targets of
      non-anchors set to NaN, which every score loss leaves out.

    A loss is called as ``loss(head_output, target, **({"group": group} if uses_group else {}))``.
    """

    input_kind: ClassVar[Kind]
    uses_group: ClassVar[bool] = False
    takes_anchors: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        declared_kind(cls, "input_kind")
        if not isinstance(cls.uses_group, bool):
            raise TypeError(f"{cls.__name__}.uses_group must be a bool, got {cls.uses_group!r}")
