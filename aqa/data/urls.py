"""Where shard paths point: brace patterns and globs expanded, relative paths read from ``$AQA_DATA``, else the
checkout, else (aqa installed as a package) the current folder.

Kept apart from the DataModule so that checking a config (:func:`aqa.config.check_values`) does not import
Lightning.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from braceexpand import braceexpand

__all__ = ["DATA_ROOT_ENV", "DEMO_TARGETS", "REPO_ROOT", "build_hint", "data_root", "expand_shard_urls"]

# The Makefile target that builds each demo folder (tests/data/test_dataset.py checks them against the Makefile).
DEMO_TARGETS = {
    "data/codec_demo": "make data-demo",
    "data/deepaq_demo": "make data-deepaq-demo",
    "data/mos_demo": "make data/mos_demo/manifest.json",
    "data/jnd_demo": "make data/jnd_demo/manifest.json",
    "data/haaqi_demo": "make data/haaqi_demo/manifest.json",
}
_PREP_HINT = "`aqa prep NAME --out <dir>` (aqa prep -h lists the recipes: codec, jnd, haaqi, import, ...)"


def build_hint(patterns: Sequence[str]) -> str:
    """How to build the shards ``patterns`` point at: the Makefile target of a demo folder (in a checkout),
    and ``aqa prep``."""
    targets = [
        target for folder, target in DEMO_TARGETS.items()
        if any(str(p).replace("\\", "/").startswith(folder + "/") or f"/{folder}/" in str(p).replace("\\", "/")
               for p in patterns)
    ]
    if targets and REPO_ROOT is not None:
        return f"build them with `{targets[0]}` (`make data` builds every demo set), or your own with {_PREP_HINT}"
    return f"build them with {_PREP_HINT}"
_GLOB_CHARS = set("*?[")


def _checkout() -> Path | None:
    """The checkout this package runs from (the folder holding ``pyproject.toml``, the ``aqa`` package and
    ``configs/``), or None when aqa is installed as a package (a wheel in site-packages)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "configs").is_dir() else None


# Relative data paths in configs (`data/codec_demo/train-*.tar`) are read from $AQA_DATA when it is set, else
# from the checkout (None when installed), else from the current folder: one rule, `data_root`.
REPO_ROOT = _checkout()
DATA_ROOT_ENV = "AQA_DATA"


def data_root() -> tuple[Path, str]:
    """The folder relative shard paths resolve against, and how it was chosen (for messages).

    ``$AQA_DATA`` when set; else the checkout when aqa runs from one (editable installs included), never the
    current folder there; else (aqa installed from a wheel or ``pip install git+...``) the current folder,
    read when called.
    """
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser(), f"{DATA_ROOT_ENV}={env}"
    hint = f"set {DATA_ROOT_ENV} to read them from another folder"
    if REPO_ROOT is not None:
        return REPO_ROOT, f"the checkout {REPO_ROOT}; {hint}"
    cwd = Path.cwd()
    return cwd, f"the current folder {cwd} (aqa is installed, not run from a checkout); {hint}"


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or "://" in url


def expand_shard_urls(urls: str | Sequence[str], what: str = "shards") -> list[str]:
    """Expand brace patterns and (for local paths) globs into a sorted, de-duplicated shard list.

    ``pipe:`` commands and ``scheme://`` URLs are brace-expanded but not checked. Relative local paths
    resolve against :func:`data_root` (``$AQA_DATA``, else the checkout, else the current folder).

    Args:
        urls: one pattern or a list of patterns, e.g. ``"data/codec_demo/train-*.tar"`` or
            ``"data/x/train-{00000..00009}.tar"``.
        what: name used in the error message.

    Raises:
        FileNotFoundError: a local pattern matches no file (the message says how to build shards).
    """
    patterns = [urls] if isinstance(urls, str | Path) else list(urls)
    root, root_note = data_root()
    out: list[str] = []
    missing: list[str] = []
    relative = False
    for pattern in patterns:
        for url in braceexpand(str(pattern)):
            if _is_remote(url):
                out.append(url)
                continue
            if not Path(url).expanduser().is_absolute():
                relative = True
                url = str(root / url)
            else:
                url = str(Path(url).expanduser())
            if _GLOB_CHARS & set(url):
                hits = sorted(glob.glob(url))
                if hits:
                    out.extend(hits)
                else:
                    missing.append(url)
            elif Path(url).is_file():
                out.append(url)
            else:
                missing.append(url)
    if missing or not out:
        shown = ", ".join(repr(m) for m in (missing or [str(p) for p in patterns])[:3])
        where = f" (relative paths are read from {root_note})" if relative else ""
        raise FileNotFoundError(f"no {what} found for {shown}{where}; {build_hint([str(p) for p in patterns])}")
    return list(dict.fromkeys(out))
