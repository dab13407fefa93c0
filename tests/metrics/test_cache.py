"""Stored metric results (aqa.metrics.cache): `aqa eval --test` and `aqa metric` compute each (metric, options,
versions, file contents) once; a changed file, option or version misses; --no-cache computes again; errors are
not stored; a corrupt entry is recomputed. A counting metric registered for the test counts the computations."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aqa.cli import main
from aqa.eval import listening
from aqa.metrics import METRICS, MetricError
from aqa.metrics import cache as metric_cache
from aqa.metrics.runner import run

SR = 16000


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Register metric ``counted`` (RMS of deg - ref, times ``gain``); the list grows by one per computation."""
    calls: list[int] = []

    def counting(ref, deg, sr, *, gain: float = 1.0):
        calls.append(1)
        n = min(ref.shape[-1], deg.shape[-1])
        return {"value": gain * float(np.sqrt(np.mean((deg[..., :n] - ref[..., :n]) ** 2)))}

    monkeypatch.setitem(METRICS, "counted", counting)
    monkeypatch.setitem(listening.BASELINE_KEYS, "counted", "value")
    return calls


@pytest.fixture
def test_csv(tmp_path) -> Path:
    """6 noisy 0.5 s clips of 2 references; scores fall with the noise level."""
    rng = np.random.default_rng(0)
    lines = ["degraded,score,reference"]
    for k in range(2):
        ref = rng.uniform(-0.5, 0.5, SR // 2).astype(np.float32)
        sf.write(tmp_path / f"ref{k}.wav", ref, SR)
        for j, level in enumerate((0.01, 0.05, 0.2)):
            sf.write(tmp_path / f"deg{k}{j}.wav", ref + level * rng.standard_normal(ref.size).astype(np.float32), SR)
            lines.append(f"deg{k}{j}.wav,{5 - 1.5 * j + 0.1 * k},ref{k}.wav")
    path = tmp_path / "test.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _eval(test: Path, out: Path, *extra: str) -> list[str]:
    args = ["eval", "--test", str(test), "--baselines", "counted", "--out", str(out), "--bootstrap", "20"]
    assert main([*args, "--no-progress", *extra]) == 0
    with (out / "predictions.csv").open(newline="") as f:
        return [r["counted"] for r in csv.DictReader(f)]


def test_a_second_eval_of_the_same_test_computes_nothing_new(counted, test_csv, tmp_path, metric_cache):
    first = _eval(test_csv, tmp_path / "a")
    assert len(counted) == 6 and len(list(metric_cache.rglob("*.json"))) == 6
    second = _eval(test_csv, tmp_path / "b")
    assert len(counted) == 6 and second == first  # every value read back, none computed
    # a rewritten degraded file misses (its content hash changed); the others still hit
    x, _ = sf.read(tmp_path / "deg01.wav")
    sf.write(tmp_path / "deg01.wav", x * 0.5, SR)
    third = _eval(test_csv, tmp_path / "c")
    assert len(counted) == 7 and third[1] != first[1] and third[:1] + third[2:] == first[:1] + first[2:]
    _eval(test_csv, tmp_path / "d", "--no-cache")
    assert len(counted) == 13


def test_a_changed_option_or_package_version_misses(counted, test_csv, tmp_path, monkeypatch):
    pairs = [(str(tmp_path / "ref0.wav"), str(tmp_path / f"deg0{j}.wav")) for j in range(3)]
    folder = tmp_path / "store"
    base = run("counted", pairs, cache=folder)
    assert run("counted", pairs, cache=folder) == base and len(counted) == 3
    doubled = run("counted", pairs, opts={"counted": {"gain": 2.0}}, cache=folder)
    assert len(counted) == 6 and doubled[0]["value"] == pytest.approx(2 * base[0]["value"])
    monkeypatch.setattr(metric_cache, "_version", lambda dist: "999.0")  # e.g. an upgraded aqa or metric package
    assert run("counted", pairs, cache=folder) == base and len(counted) == 9
    assert run("counted", pairs, cache=False) == base and len(counted) == 12


def test_errors_are_not_stored_and_a_corrupt_entry_is_recomputed(counted, test_csv, tmp_path, monkeypatch):
    pair = [(str(tmp_path / "ref0.wav"), str(tmp_path / "deg00.wav"))]
    folder = tmp_path / "store"
    failures: list[int] = []

    def failing(ref, deg, sr):
        failures.append(1)
        raise MetricError("cannot score this")

    monkeypatch.setitem(METRICS, "failing", failing)
    for _ in range(2):
        assert run("failing", pair, cache=folder)[0]["error"] == "cannot score this"
    assert len(failures) == 2 and not list(folder.rglob("*.json"))
    good = run("counted", pair, cache=folder)
    (entry,) = folder.rglob("*.json")
    for garbage in ("{not json", json.dumps({"key": {"metric": "other"}, "result": {"value": 0.0}})):
        entry.write_text(garbage)
        assert run("counted", pair, cache=folder) == good
    assert len(counted) == 3 and json.loads(entry.read_text())["result"]["value"] == good[0]["value"]


def test_aqa_metric_uses_the_cache_folder_and_no_cache(counted, test_csv, tmp_path, capsys, metric_cache):
    args = ["metric", "counted", "--ref", str(tmp_path / "ref1.wav"), "--deg", str(tmp_path / "deg12.wav")]
    assert main([*args, "--no-progress"]) == 0 and main([*args, "--no-progress"]) == 0
    assert len(counted) == 1 and len(list(metric_cache.rglob("*.json"))) == 1  # $AQA_METRIC_CACHE by default
    assert main([*args, "--no-cache"]) == 0 and len(counted) == 2
    assert main([*args, "--cache", str(tmp_path / "mine")]) == 0 and len(counted) == 3
    assert len(list((tmp_path / "mine").rglob("*.json"))) == 1
    values = [json.loads(line)["value"] for line in capsys.readouterr().out.splitlines()]
    assert len(values) == 4 and len(set(values)) == 1


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("AQA_METRIC_CACHE")
    monkeypatch.delenv("AQA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert metric_cache.default_dir() == tmp_path / "xdg" / "aqa" / "metrics"
    monkeypatch.setenv("AQA_CACHE", str(tmp_path / "aqa"))
    assert metric_cache.default_dir() == tmp_path / "aqa" / "metrics"
    monkeypatch.setenv("AQA_METRIC_CACHE", str(tmp_path / "m"))
    assert metric_cache.default_dir() == tmp_path / "m"


def test_stored_pairs_start_no_worker_processes(counted, test_csv, tmp_path, monkeypatch):
    from aqa.metrics import runner

    pairs = [(str(tmp_path / "ref1.wav"), str(tmp_path / f"deg1{j}.wav")) for j in range(3)]
    first = run("counted", pairs, cache=tmp_path / "store")

    def no_pool(workers):
        raise AssertionError("a worker pool was started for pairs whose results are stored")

    monkeypatch.setattr(runner, "_pool", no_pool)
    assert run("counted", pairs, jobs=2, cache=tmp_path / "store") == first and len(counted) == 3
