"""Test setup: no network model downloads; tiny seeded inputs; paths to the shared real data."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import atexit  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


# Stored metric results (aqa.metrics.cache) never come from or go to the user's ~/.cache/aqa: a folder of this
# session's (removed at exit; session fixtures and spawned workers inherit it), one subfolder per test below.
METRIC_CACHE_ROOT = Path(tempfile.mkdtemp(prefix="aqa-test-metric-cache-"))
os.environ["AQA_METRIC_CACHE"] = str(METRIC_CACHE_ROOT / "session")
atexit.register(shutil.rmtree, METRIC_CACHE_ROOT, True)


@pytest.fixture(autouse=True)
def metric_cache(request, monkeypatch) -> Path:
    """This test's own metric-result folder (nothing is created until a result is stored): no test reads a
    result another one (e.g. one faking a metric) stored."""
    folder = METRIC_CACHE_ROOT / hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    monkeypatch.setenv("AQA_METRIC_CACHE", str(folder))
    return folder


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
