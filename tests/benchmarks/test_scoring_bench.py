"""Smoke test of the scoring benchmark (tests/benchmarks/bench_scoring.py): tiny model, two 1 s synthetic clips.

Checks the table's plumbing, not speed: rows for the end-to-end scorer and the bare forward with figures that
follow from the measured wall time, an ``unavailable`` row for a reference metric that cannot run, and a
one-line refusal of a bad option.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def scoring():
    spec = importlib.util.spec_from_file_location("scoring_bench", HERE / "bench_scoring.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["scoring_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_tiny_table(scoring, tmp_path, monkeypatch, capsys):
    from aqa import metrics

    def broken(ref, deg, sr, **opts):
        raise metrics.MissingDependency("dnsmos needs the optional package 'speechmos' (test)")

    monkeypatch.setitem(metrics.METRICS, "dnsmos", broken)
    out = tmp_path / "bench" / "scoring.md"
    argv = [
        "--device",
        "cpu",
        "--sizes",
        "tiny",
        "--systems",
        "haaqi_net",
        "--metrics",
        "dnsmos",
        "--clips",
        "2",
    ]
    argv += ["--seconds", "1", "--repeats", "1", "--synthetic", "--out", str(out), "--no-progress"]
    assert scoring.main(argv) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert text.strip() in printed
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    paths = [r["path"] for r in rows]
    assert paths[0].startswith("end-to-end (aqa.inference.") and paths[1] == "bare forward", paths
    for r in rows[:2]:
        assert r["files"] == 2 and r["audio_s"] == pytest.approx(2.0) and r["wall_s"] > 0
        assert r["files_s"] == pytest.approx(2 / r["wall_s"]) and r["rtf"] == pytest.approx(2.0 / r["wall_s"])
        assert f"| {r['files_s']:.3g} | {r['rtf']:.3g} |" in text
    assert rows[2]["unavailable"].startswith("dnsmos needs the optional package")
    assert "unavailable: dnsmos needs the optional package 'speechmos' (test)" in text
    assert "synthetic" in text and "random weights" in text


def test_bad_option(scoring, tmp_path, capsys):
    assert scoring.main(["--systems", "nope", "--out", str(tmp_path / "s.md")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "scoring bench: --systems: unknown ['nope']; choose from ['deepaq_lora', 'haaqi_net', 'haaqi_net_student']"
    ]
    assert not (tmp_path / "s.md").exists()
