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
      non-anchors set to NaN, which every score loss leaves out;
    - ``difference_only``: True when the loss depends on differences between the batch's predictions only
      (MMMOS' Con and DCQ): the output bias gets no gradient, so the scores' absolute level is wherever it
      started. Such a loss needs its task's labels z-scored (``tasks.X.normalize: zscore``), which puts that
      start at the training labels' mean; :func:`aqa.config.check_values` refuses it otherwise;
    - ``loose_level``: True when only part of the loss pins the level (UTMOS: its clipped MSE counts only
      errors beyond ``tau``, in label units); unnormalised, such a task is warned about, not refused.

    A loss is called as ``loss(head_output, target, **({"group": group} if uses_group else {}))``.
    """

    input_kind: ClassVar[Kind]
    uses_group: ClassVar[bool] = False
    takes_anchors: ClassVar[bool] = False
    difference_only: ClassVar[bool] = False
    loose_level: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        declared_kind(cls, "input_kind")
        for flag in ("uses_group", "difference_only", "loose_level"):
            if not isinstance(getattr(cls, flag), bool):
                raise TypeError(f"{cls.__name__}.{flag} must be a bool, got {getattr(cls, flag)!r}")
