"""CONTRIBUTING.md cannot drift: every repository path, test and registry entry it names exists, and the tables its
checklists say a new head, loss or metric must join agree with their registries. Seconds (imports only)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "CONTRIBUTING.md"
FILE_SUFFIXES = (".py", ".yaml", ".md", ".toml", ".txt")
# registry name as the guide writes it (`HEADS["mean_pool"]`) -> the module holding that dict
REGISTRIES = {
    "ENCODERS": "aqa.encoders",
    "WEIGHTS": "aqa.encoders",
    "HEADS": "aqa.heads",
    "LOSSES": "aqa.losses",
    "METRICS": "aqa.metrics",
    "PACKAGES": "aqa.metrics.cache",
    "BASELINE_KEYS": "aqa.eval.listening",
    "BASELINE_SCALES": "aqa.eval.scales",
    "RECIPES": "data_prep",
}
CITED = re.compile(r"^([A-Z_]+)\[\"(\w+)\"\]$")


def inline_code(text: str) -> list[str]:
    """The `inline code` spans of a Markdown text, fenced blocks left out."""
    return re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def is_path(span: str) -> bool:
    """A span that names a repository path: no spaces and no URL, with a '/' or a file suffix."""
    return " " not in span and "://" not in span and ("/" in span or span.endswith(FILE_SUFFIXES))


def missing(text: str, root: Path = REPO) -> list[str]:
    """The paths and tests named in ``text`` that do not exist under ``root``.

    ``path::test_name`` must be a file defining ``def test_name(``; a template (``aqa/heads/<family>.py``) needs
    its folder; a glob (``configs/encoder/*_tiny.yaml``) needs a match; any other path must exist.
    """
    out = []
    for span in filter(is_path, inline_code(text)):
        path, _, test = span.partition("::")
        if "<" in path:
            ok = (root / path[: path.rfind("/", 0, path.index("<")) + 1]).is_dir()
        elif "*" in path:
            ok = any(root.glob(path))
        else:
            ok = (root / path).exists()
        if ok and test:
            ok = (root / path).is_file() and f"def {test}(" in (root / path).read_text(encoding="utf-8")
        if not ok:
            out.append(span)
    return out


def test_the_path_check_fails_on_a_planted_missing_file_and_test():
    planted = "`aqa/heads/nope.py`, `tests/test_config.py::test_nope`, `aqa/nope/<x>.py`, `configs/nope/*.yaml`"
    assert missing(planted) == ["aqa/heads/nope.py", "tests/test_config.py::test_nope", "aqa/nope/<x>.py",
                                "configs/nope/*.yaml"]
    assert missing("`aqa/heads/pooling.py`, `tests/test_config.py::test_every_experiment_composes`, `make test`") == []


def test_every_path_and_test_the_guide_names_exists():
    text = GUIDE.read_text(encoding="utf-8")
    assert len([s for s in inline_code(text) if is_path(s)]) > 50  # the extractor reads the guide at all
    assert not missing(text), f"CONTRIBUTING.md names paths or tests that do not exist: {missing(text)}"


def test_every_worked_example_is_registered():
    text = GUIDE.read_text(encoding="utf-8")
    cited = [m.groups() for m in map(CITED.match, inline_code(text)) if m]
    assert {"ENCODERS", "HEADS", "LOSSES", "RECIPES", "METRICS"} <= {registry for registry, _ in cited}
    for registry, name in cited:
        assert registry in REGISTRIES, f"CONTRIBUTING.md cites {registry}: add its module to REGISTRIES here"
        table = getattr(importlib.import_module(REGISTRIES[registry]), registry)
        assert name in table, f"CONTRIBUTING.md's worked example {registry}[{name!r}] is not registered"
    for number in range(1, 7):  # the six checklists
        assert re.search(rf"^## {number}\. ", text, flags=re.M), f"checklist {number} is missing"


def test_every_head_and_loss_has_its_yaml():
    from aqa.heads import HEADS, TRUNKS
    from aqa.losses import LOSSES

    heads = {p.stem for p in (REPO / "configs" / "head").glob("*.yaml")}
    assert set(HEADS) <= heads <= set(HEADS) | set(TRUNKS), "a head is HEADS[name] + configs/head/name.yaml"
    assert set(LOSSES) == {p.stem for p in (REPO / "configs" / "loss").glob("*.yaml")}


@pytest.mark.parametrize("table", ["PACKAGES", "BASELINE_KEYS", "BASELINE_SCALES"])
def test_metric_tables_agree(table):
    """A reference metric is registered in METRICS and has a cache key, a principal value and a scale."""
    from aqa.metrics import METRICS

    entries = getattr(importlib.import_module(REGISTRIES[table]), table)
    assert set(entries) == set(METRICS), f"{table} and METRICS differ: {sorted(set(entries) ^ set(METRICS))}"
