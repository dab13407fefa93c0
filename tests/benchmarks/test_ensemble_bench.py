"""Smoke test of the ensemble benchmark (tests/benchmarks/bench_ensemble.py): tiny fusion, two 1 s clips."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_tiny_ensemble_table(capsys):
    spec = importlib.util.spec_from_file_location("ensemble_bench", HERE / "bench_ensemble.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["ensemble_bench"] = bench
    spec.loader.exec_module(bench)
    assert bench.main(["--tiny", "--members", "2", "--clips", "3", "--seconds", "1", "--batch", "2"]) == 0
    rows = {line.split("|")[1].strip(): line.split("|")[2:5] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| separate") or line.startswith("| shared")}
    # 2 batches x 3 fusion members: each member's copy runs them (12), the shared copies once (6)
    assert int(rows["separate"][1]) == 12 and int(rows["shared"][1]) == 6
    assert float(rows["shared"][0]) < float(rows["separate"][0])  # weights held once
