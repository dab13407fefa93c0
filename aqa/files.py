"""Writing files so that a crash never leaves half of one: write a unique temporary file beside the target, then
rename it over the target (atomic on one file system). Concurrent writers of one file never share a temporary.
Also :func:`numbered`, unique names for files, keys and columns."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file in ``path``'s folder, then rename it to ``path``.

    The folder is created; the temporary file is removed when ``write`` raises. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_atomic`). Returns ``path``."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def numbered(names: Iterable[str], taken: Iterable[str] = ()) -> list[str]:
    """``names`` made unique: a name already used (earlier in ``names`` or in ``taken``) gets ``_2``, ``_3``, ...
    (the first free one), so that each can be a file name, a group key or a column."""
    used = set(taken)
    out = []
    for base in names:
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        out.append(name)
    return out
