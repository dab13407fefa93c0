"""Raw listening-test ratings -> the listening-test CSV: `aqa prep import --format long | lists | sebass`, with
ITU-R BS.1534-3 post-screening and per-stimulus t-based confidence intervals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import stats
from synth import broadband

from aqa.cli import main as aqa_main
from aqa.eval.listening import read_test
from data_prep.rated import main as import_main

SR = 16000


def wav(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, broadband(0.5, SR, channels=1, seed=seed)[0], SR)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


# --------------------------------------------------------------------------------------------- fixtures


def sebass_test(root: Path) -> Path:
    """SiSEC08-shaped: 3 targets x (2 algorithms + hidden reference 'orig' + anchor 'mix' exported without audio),
    4 listeners, audio in Signals/{Algorithm}/{Target}.wav; every listener rates 'orig' 95..100 (all kept)."""
    rng = np.random.default_rng(0)
    targets = ["male_inst_sim_1", "male_inst_sim_2", "female_inst_sim_1"]
    for i, t in enumerate(targets):
        for j, algo in enumerate(("Algo8", "Algo34", "orig")):
            wav(root / "Signals" / algo / f"{t}.wav", seed=10 * i + j)
    rows = []
    for lis in range(4):
        for t in targets:
            for algo, lo, hi in (("Algo8", 20, 60), ("Algo34", 40, 80), ("orig", 95, 100), ("mix", 5, 30)):
                rows.append(
                    ["SiSEC08", f"Listener_{lis}", "BAQ", "1", t, algo, int(rng.integers(lo, hi + 1))]
                )
    header = ["Testname", "Listener", "Type", "Source", "Target", "Algorithm", "Ratingscore"]
    return write_csv(root / "SiSEC08_parsed.csv", header, rows)


def lists_test(root: Path) -> tuple[Path, dict[str, list[float]]]:
    """The common MUSHRA export: one row per stimulus, `;`-separated, a JSON list of ratings and a parallel JSON
    list of listener ids (listeners differ per row; one row has 2 ratings, one has 6)."""
    rng = np.random.default_rng(1)
    rows, truth = [], {}
    for i, (trial, codec) in enumerate((t, c) for t in ("s1", "s2") for c in ("lpcnet", "opus6", "encodec")):
        name = f"{trial}_{codec}.wav"
        wav(root / "audio" / name, seed=i)
        n = (2, 6, 4, 5, 3, 4)[i]
        scores = [float(v) for v in rng.integers(0, 101, n)]
        ids = [f"p{k}" for k in rng.choice(8, n, replace=False)]
        rows.append([trial, codec, name, json.dumps(scores), json.dumps(ids)])
        truth[name] = scores
    path = write_csv(root / "mushra.csv", ["trial", "codec", "file", "ratings", "listener_ids"], rows, ";")
    return path, truth


def screening_test(root: Path) -> Path:
    """7 trials x conditions ref (hidden reference), anc70 (mid anchor), sysA; 6 listeners built so that L1 (2/7)
    and L2 (3/7) rate the reference below 90 in more than 15 % of their trials, L3 rates the mid anchor above 90
    in 2/7; L4 (reference 1/7 = 14.3 %), L5 (anchor 1/7) and L6 (3 trials, all fine) stay."""
    for t in range(7):
        wav(root / f"t{t}" / "sysA.wav", seed=t)
        wav(root / f"t{t}" / "ref.wav", seed=100 + t)
    bad_ref = {"L1": {0, 1}, "L2": {2, 3, 4}, "L4": {5}}
    bad_anchor = {"L3": {1, 6}, "L5": {3}}
    rows = []
    for k, lis in enumerate(["L1", "L2", "L3", "L4", "L5", "L6"]):
        for t in range(3 if lis == "L6" else 7):
            rows.append([lis, f"t{t}", "ref", 80 if t in bad_ref.get(lis, ()) else 100])
            rows.append([lis, f"t{t}", "anc70", 95 if t in bad_anchor.get(lis, ()) else 60])
            rows.append([lis, f"t{t}", "sysA", 30 + 5 * k + t])
    return write_csv(root / "long.csv", ["subject", "trial", "condition", "rating"], rows)


# ------------------------------------------------------------------------------------------------ tests


def test_sebass_shaped_long_file_imports_in_one_command(tmp_path: Path, capsys) -> None:
    src = sebass_test(tmp_path / "SiSEC08")
    out = tmp_path / "sisec08.csv"
    argv = ["--src", str(src), "--format", "sebass", "--audio", "Signals/{Algorithm}/{Target}.wav"]
    argv += ["--reference-condition", "orig"]
    rc = import_main([*argv, "--csv-out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = read_csv(out)
    # 3 targets x 2 algorithms; 'orig' (hidden reference) left out, 'mix' (no audio) screening only
    assert len(rows) == 6 and {r["system"] for r in rows} == {"Algo8", "Algo34"}
    for r in rows:
        target = Path(r["degraded"]).stem
        assert Path(r["degraded"]).is_file() and Path(r["degraded"]).parent.name == r["system"]
        assert r["reference"] == str((src.parent / "Signals" / "orig" / f"{target}.wav").resolve())
        assert r["listener_count"] == "4" and (r["scale_min"], r["scale_max"]) == ("0.0", "100.0")
        assert r["trial"] == f"SiSEC08/BAQ/1/{target}"
    report = json.loads((tmp_path / "sisec08_import.json").read_text())
    assert report["excluded_listeners"] == [] and report["screening_only_conditions"] == ["mix"]
    assert report["counts"] == {
        "ratings": 48,
        "listeners": 4,
        "excluded_listeners": 0,
        "stimuli": 12,
        "left_out": 3,
        "screening_only": 3,
        "written": 6,
    }
    assert len(read_csv(tmp_path / "sisec08_screening.csv")) == 4
    # the same command writes shards too (one sample per stimulus, its mean rating as mos)
    assert import_main([*argv, "--out", str(tmp_path / "shards"), "--split", "test", "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["totals"]["samples"] == 6 and list(manifest["splits"]) == ["test"]
    assert len(read_test(out)) == 6
    # and aqa eval --test runs on it: STOI of each separated file against its trial's hidden reference
    argv = ["eval", "--test", str(out), "--baselines", "stoi", "--out", str(tmp_path / "ev"), "--no-progress"]
    assert aqa_main([*argv, "--bootstrap", "20"]) == 0
    scored = [
        r for r in read_csv(tmp_path / "ev" / "summary.csv") if r["model"] == "stoi" and r["metric"] == "LCC"
    ]
    assert scored and scored[0]["n"] == "6"


def test_lists_file_with_listener_ids_imports_with_t_based_ci(tmp_path: Path, capsys) -> None:
    src, truth = lists_test(tmp_path)
    out = tmp_path / "test.csv"
    rc = import_main(
        ["--src", str(src), "--format", "lists", "--listeners", "listener_ids", "--system", "codec"]
        + ["--audio", "audio/{file}", "--csv-out", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    rows = read_csv(out)
    assert len(rows) == 6
    for r in rows:
        scores = np.array(truth[Path(r["degraded"]).name])
        n = scores.size
        assert int(r["listener_count"]) == n and r["system"] in ("lpcnet", "opus6", "encodec")
        assert float(r["score"]) == pytest.approx(scores.mean(), abs=1e-9)
        assert float(r["std"]) == pytest.approx(scores.std(ddof=1), rel=1e-9)
        # Student-t 95 % half-width, computed independently with scipy
        assert float(r["ci95"]) == pytest.approx(stats.t.ppf(0.975, n - 1) * stats.sem(scores), rel=1e-9)
    assert not (tmp_path / "test_screening.csv").exists()  # no hidden reference named: no screening


def test_bs1534_screening_excludes_exactly_the_three_rule_breakers(tmp_path: Path, capsys) -> None:
    src = screening_test(tmp_path)
    out = tmp_path / "screened.csv"
    rc = import_main(
        ["--src", str(src), "--format", "long", "--system", "condition", "--audio", "{trial}/{condition}.wav"]
        + ["--reference-condition", "ref", "--mid-anchor", "anc70", "--csv-out", str(out)]
    )
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    report = {r["listener"]: r for r in read_csv(tmp_path / "screened_screening.csv")}
    assert sorted(report) == ["L1", "L2", "L3", "L4", "L5", "L6"]
    assert {k for k, r in report.items() if r["excluded"] == "True"} == {"L1", "L2", "L3"}
    expect = {
        "L1": (2 / 7, 0),
        "L2": (3 / 7, 0),
        "L3": (0, 2 / 7),
        "L4": (1 / 7, 0),
        "L5": (0, 1 / 7),
        "L6": (0, 0),
    }
    for who, (ref_frac, anc_frac) in expect.items():
        assert float(report[who]["reference_fraction"]) == pytest.approx(ref_frac)
        assert float(report[who]["anchor_fraction"]) == pytest.approx(anc_frac)
    assert report["L6"]["reference_trials"] == "3" and report["L4"]["reference_trials"] == "7"
    assert "L1: reference 2/7 = 0.29" in printed.out and "EXCLUDED" in printed.out
    assert json.loads((tmp_path / "screened_import.json").read_text())["excluded_listeners"] == [
        "L1",
        "L2",
        "L3",
    ]
    rows = read_csv(out)  # sysA only (reference and mid anchor left out), from L4, L5, L6
    assert len(rows) == 7 and {r["system"] for r in rows} == {"sysA"}
    for r in rows:
        t = int(Path(r["degraded"]).parent.name[1:])
        kept = [30 + 5 * k + t for k in ((3, 4, 5) if t < 3 else (3, 4))]
        assert int(r["listener_count"]) == len(kept) and float(r["score"]) == pytest.approx(np.mean(kept))
        assert r["reference"].endswith(f"t{t}/ref.wav")
    # --screen none keeps all six listeners; --keep-reference keeps the hidden reference (the mid anchor has no
    # audio in this fixture: screening only)
    rc = import_main(
        ["--src", str(src), "--format", "long", "--system", "condition", "--audio", "{trial}/{condition}.wav"]
        + ["--reference-condition", "ref", "--screen", "none", "--keep-reference", "--csv-out", str(out)]
    )
    rows = read_csv(out)
    assert rc == 0 and len(rows) == 14 and {r["system"] for r in rows} == {"sysA", "ref"}
    assert max(int(r["listener_count"]) for r in rows) == 6


def test_no_stimuli_error_names_the_columns_sought_and_found(tmp_path: Path, capsys) -> None:
    src, _ = lists_test(tmp_path)
    assert (
        import_main(["--src", str(src), "--csv-out", str(tmp_path / "t.csv")]) == 2
    )  # a lists file read as csv
    err = capsys.readouterr().err
    assert "no rated stimuli found" in err and "score column" in err and "ratingscore" in err
    assert "found columns: trial, codec, file, ratings, listener_ids" in err and "--format lists" in err
    assert import_main(["--src", str(src), "--format", "long", "--csv-out", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert "looked for" in err and "score (score|mos|rating" in err and "listener (listener|" in err
    assert "found columns: trial, codec, file, ratings, listener_ids" in err


def test_read_test_accepts_the_import_aliases_and_a_semicolon_csv(tmp_path: Path) -> None:
    wav(tmp_path / "a.wav", 0)
    wav(tmp_path / "r.wav", 1)
    path = write_csv(
        tmp_path / "t.csv", ["File name", "MOS", "ref", "system"], [["a.wav", "3.5", "r.wav", "x"]], ";"
    )
    (row,) = read_test(path)
    assert row["degraded"] == str(tmp_path / "a.wav") and row["score"] == 3.5
    assert row["reference"] == str(tmp_path / "r.wav") and row["system"] == "x"
