"""Test setup: no network model downloads; tiny seeded inputs; paths to the shared real data."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real clean clips, conformance pairs); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (the ../shared folder beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """A small codec shard set (3 pieces plus a corrupt, a silent and a short file): (root, sources, manifest)."""
    import shutil

    from synth import build, write_pieces

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (`make install`)")
    root = tmp_path_factory.mktemp("codec")
    sources = write_pieces(root / "src")
    manifest = build(sources, root / "out", jobs=1)
    return root, sources, manifest
