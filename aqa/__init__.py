"""aqa: perceptual audio quality assessment. ``aqa.load(path)`` returns a scorer (:mod:`aqa.inference.scorer`).

Importing ``aqa`` is light: torch and the model code (:mod:`aqa.model`) load on the first :func:`load`; scoring
never imports Lightning (only training does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load(path: str | Path, which: str = "best", device: str = "auto", precision: str = "auto") -> Any:
    """A :class:`aqa.inference.scorer.Scorer` for a run folder, an exported model folder or an ensemble folder.

    ``which``: a run's checkpoint (best | last); ``device``: auto | cpu | cuda; ``precision``: auto | fp32 |
    bf16. See :func:`aqa.inference.loading.load`.
    """
    from aqa.inference.loading import load as _load

    return _load(path, which, device, precision)


__all__ = ["load"]
