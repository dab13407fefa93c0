"""`aqa eval --test`: listening-test CSVs, reference metrics and runs scored against subjective scores, the
summary table, and `aqa calibrate --test`."""

import csv
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from scipy import stats as sp
from synth import broadband, make_run, two_member_ensemble

from aqa.cli import main
from aqa.eval.listening import SUMMARY_COLUMNS, summarise_test

SR = 16000


def noisy_set(
    folder: Path, refs: int = 3, snrs: tuple[int, ...] = (0, 10, 20, 30)
) -> list[tuple[str, str, str]]:
    """refs clean 1 s clips and a noisy copy at each SNR: (degraded, reference, system) relative to folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for k in range(refs):
        ref = broadband(1.0, SR, channels=1, seed=k)[0]
        sf.write(folder / f"ref{k}.wav", ref, SR)
        for snr in snrs:
            noise = rng.standard_normal(ref.size) * np.sqrt(np.mean(ref**2)) * 10 ** (-snr / 20)
            sf.write(folder / f"deg{k}_{snr}.wav", (ref + noise).astype(np.float32), SR)
            rows.append((f"deg{k}_{snr}.wav", f"ref{k}.wav", f"snr{snr}"))
    return rows


def write_test(path: Path, rows: list[tuple[str, str, str]], score=lambda i, r: 1 + i % 4) -> Path:
    lines = ["degraded,score,reference,system"] + [
        f"{d},{score(i, (d, r, s))},{r},{s}" for i, (d, r, s) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("aqa eval: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tiny_test(tmp_path) -> Path:
    """12 noisy 1 s clips with references; 'subjective' scores rise with the SNR (1 + SNR/10, a little jitter)."""
    rows = noisy_set(tmp_path / "audio")
    jitter = np.random.default_rng(1).normal(0, 0.2, len(rows))
    return write_test(
        tmp_path / "audio" / "test.csv", rows, lambda i, r: f"{1 + int(r[2][3:]) / 10 + jitter[i]:.3f}"
    )


@pytest.mark.parametrize(
    "content, needles",
    [
        (None, ["not found"]),
        ("", ["empty file", "degraded,score"]),
        ("degraded,quality\nx.wav,3\n", ["missing column(s) score", "found degraded, quality", "mos|rating"]),
        ("degraded,score,reference\n", ["no rows after the header"]),
        ("degraded,score\ndeg0_0.wav,abc\n", ["row 2: score 'abc' is not a number"]),
        ("degraded,score\n,3\n", ["row 2: empty 'degraded' cell"]),
        (
            "degraded,score\nnope.wav,3\ndeg0_0.wav,2\n",
            ["1 audio file(s) not found", "row 2: degraded", "nope.wav"],
        ),
    ],
)
def test_bad_test_csv_is_one_line(tmp_path, capsys, content, needles):
    noisy_set(tmp_path, refs=1, snrs=(0,))
    path = tmp_path / "t.csv"
    if content is not None:
        path.write_text(content)
    assert main(["eval", "--test", str(path), "--baselines", "pesq", "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, str(path), *needles)
    assert not (tmp_path / "o" / "summary.csv").exists()


def test_semicolon_test_csv_is_read_and_an_unknown_baseline_gets_a_did_you_mean(tiny_test, tmp_path, capsys):
    semicolon = tiny_test.with_name("semicolon.csv")  # a European spreadsheet's export
    semicolon.write_text(tiny_test.read_text().replace(",", ";"))
    out = tmp_path / "o"
    assert main(["eval", "--test", str(semicolon), "--baselines", "pesk", "--out", str(out)]) == 2
    one_line_error(capsys, "unknown metric 'pesk' (did you mean 'pesq'?)")
    args = ["--baselines", "stoi", "--out", str(out), "--bootstrap", "20", "--no-cache", "--no-progress"]
    assert main(["eval", "--test", str(semicolon), *args]) == 0
    rows = read_csv(out / "predictions.csv")
    assert len(rows) == 12 and all(0 < float(r["stoi"]) < 1 for r in rows)


def test_bad_eval_arguments_are_one_line(tiny_test, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["eval", "--test", str(tiny_test), "--baselines", "pesq"]) == 2
    one_line_error(capsys, "--test needs --out")
    assert main(["eval", "--test", str(tiny_test), "--baselines", "pesq", "--by", "codec", "--out", out]) == 2
    one_line_error(capsys, "--by codec", "no such column")
    assert main(["eval", "--test", str(tiny_test), "--baselines", "nope", "--out", out]) == 2
    one_line_error(capsys, "unknown metric 'nope'")
    assert main(["eval", "--test", str(tiny_test), "--out", out]) == 2
    one_line_error(capsys, "nothing to evaluate")
    assert main(["eval"]) == 2  # the old form needs its run folder
    one_line_error(capsys, "give one RUN_DIR")
    assert main(["eval", str(tmp_path), "--baselines", "pesq"]) == 2
    one_line_error(capsys, "--test", "--baselines")


def test_baselines_alone_write_every_output(tiny_test, tmp_path, capsys, caplog, monkeypatch):
    logged = {}
    fake = SimpleNamespace(
        run=SimpleNamespace(log=logged.update), Table=lambda columns, data: (columns, data)
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)  # a W&B run is active: the table goes there too
    with tiny_test.open("a") as f:  # a row without a reference: a full-reference metric leaves it empty
        f.write("deg0_0.wav,1.5,,snr0\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--test",
                str(tiny_test),
                "--baselines",
                "pesq",
                "--by",
                "system",
                "--out",
                str(out),
                "--bootstrap",
                "200",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "Traceback" not in capsys.readouterr().err
    assert "pesq: 1 row(s) have no reference" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == [
        "predictions.csv",
        "scatter_pesq.png",
        "summary.csv",
        "summary.md",
    ]
    preds = read_csv(out / "predictions.csv")
    assert len(preds) == 13 and list(preds[0])[:4] == ["degraded", "score", "reference", "system"]
    assert preds[-1]["pesq"] == "" and all(p["pesq"] for p in preds[:-1])
    with (out / "summary.csv").open(newline="") as f:
        assert next(csv.reader(f)) == list(SUMMARY_COLUMNS)
    summary = read_csv(out / "summary.csv")
    # 1 model x (all + 4 systems) x 2 levels x 5 metrics: no raw MSE, the test names no scale (test_scales_*)
    assert len(summary) == 5 * 2 * 5 and "MSE" not in {r["metric"] for r in summary}
    row = {(r["subset"], r["level"], r["metric"]): r for r in summary}
    x = np.array([float(p["pesq"]) for p in preds[:-1]])
    y = np.array([float(p["score"]) for p in preds[:-1]])
    lcc = row[("all", "utterance", "LCC")]
    assert float(lcc["value"]) == pytest.approx(sp.pearsonr(x, y).statistic, abs=1e-5) and lcc["n"] == "12"
    assert float(lcc["ci_low"]) <= float(lcc["value"]) <= float(lcc["ci_high"])
    assert float(row[("all", "utterance", "KTAU")]["value"]) == pytest.approx(
        sp.kendalltau(x, y).statistic, abs=1e-5
    )
    assert row[("all", "system", "SRCC")]["n"] == "4" and row[("system=snr0", "utterance", "MSE_mapped")]["n"] == "3"
    assert "| pesq | all | 12 |" in (out / "summary.md").read_text()
    columns, data = logged["listening_test/summary"]
    assert columns == list(SUMMARY_COLUMNS) and len(data) == len(summary)


def test_summary_system_level_by_hand():
    # systems A: preds 1, 3 / scores 2, 4; B: 5 / 1; C: 2, 2, 8 / 3, 3, 3; one unscored item in B
    rows = [{"score": s, "system": y} for s, y in zip([2, 4, 1, 1, 3, 3, 3], "AABBCCC", strict=True)]
    pred = [1, 3, 5, float("nan"), 2, 2, 8]
    got = {
        (r["subset"], r["level"], r["metric"]): r
        for r in summarise_test(rows, {"m": pred}, by="system", n_boot=50)
    }
    # system means (2, 3), (5, 1), (4, 3): deviations p -5/3, 4/3, 1/3 and t 2/3, -4/3, 2/3 -> r = -sqrt(4/7)
    assert (
        got[("all", "system", "LCC")]["value"] == pytest.approx(-math.sqrt(4 / 7))
        and got[("all", "system", "LCC")]["n"] == 3
    )
    assert got[("all", "system", "MSE")]["value"] == pytest.approx((1 + 16 + 1) / 3)
    # items: squared errors 1, 1, 16, 1, 1, 25 (the NaN one left out)
    assert (
        got[("all", "utterance", "MSE")]["value"] == pytest.approx(45 / 6)
        and got[("all", "utterance", "MSE")]["n"] == 6
    )
    assert got[("system=C", "utterance", "MSE")]["value"] == pytest.approx((1 + 1 + 25) / 3)
    assert math.isnan(got[("system=A", "utterance", "LCC")]["value"])  # 2 items: no correlation
    assert {k[0] for k in got} == {"all", "system=A", "system=B", "system=C"}


def test_runs_are_scored_in_their_own_mode(tmp_path, capsys, caplog):
    score_run, embed_run = make_run(tmp_path, "mmmos_tiny"), make_run(tmp_path, "deepaq_lora_tiny")
    rows = noisy_set(tmp_path / "audio", refs=2, snrs=(0, 20))
    rows.append(("ref0.wav", "ref0.wav", "clean"))  # the reference itself: distance 0
    rows.append(("deg1_0.wav", "", "snr0"))  # no reference: the embedding run cannot score it
    test = write_test(tmp_path / "audio" / "t.csv", rows)
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                str(score_run),
                str(embed_run),
                "--test",
                str(test),
                "--out",
                str(out),
                "--bootstrap",
                "20",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    preds = read_csv(out / "predictions.csv")
    assert all(p["mmmos_tiny"] for p in preds)  # no-reference head: every row
    assert [p["deepaq_lora_tiny"] == "" for p in preds] == [False] * 5 + [True]
    assert abs(float(preds[4]["deepaq_lora_tiny"])) < 1e-4 and float(preds[0]["deepaq_lora_tiny"]) < -1e-4
    assert "1 row(s) have no reference" in caplog.text
    assert {p.name for p in out.glob("scatter_*.png")} == {
        "scatter_mmmos_tiny.png",
        "scatter_deepaq_lora_tiny.png",
    }
    assert "Traceback" not in capsys.readouterr().err
    # mismatched mode: one reference for every row, so the row without one is scored too, except the rows of
    # ref1's own piece (a mismatched anchor never comes from the same recording)
    mismatched = ["eval", str(embed_run), "--test", str(test), "--out", str(out), "--bootstrap", "20", "--no-progress"]
    assert main([*mismatched, "--mismatched-reference", str(tmp_path / "audio" / "ref1.wav")]) == 0
    preds = read_csv(out / "predictions.csv")
    assert [bool(p["deepaq_lora_tiny"]) for p in preds] == [True, True, False, False, True, True]
    assert abs(float(preds[4]["deepaq_lora_tiny"])) > 1e-4
    # --reference mismatched: each row against the next row's reference from another piece (ref0 <-> ref1)
    assert main([*mismatched, "--reference", "mismatched"]) == 0
    preds = read_csv(out / "predictions.csv")
    assert all(p["deepaq_lora_tiny"] for p in preds) and abs(float(preds[4]["deepaq_lora_tiny"])) > 1e-4


def test_row_references_never_take_a_mismatched_anchor_from_the_rows_own_piece():
    from aqa.eval.listening import row_references

    rows = [{"degraded": "/d/a1", "reference": "/r/a"}, {"degraded": "/d/a2", "reference": "/r/a"},
            {"degraded": "/d/b1", "reference": "/r/b"}, {"degraded": "/d/x", "reference": ""}]
    assert row_references(rows) == ["/r/a", "/r/a", "/r/b", None]
    assert row_references(rows, mismatched=True) == ["/r/b", "/r/b", "/r/a", "/r/a"]
    assert row_references(rows, mismatched_reference="/r/b") == ["/r/b", "/r/b", None, "/r/b"]
    assert row_references(rows[:2], mismatched=True) == [None, None]  # one piece: nothing to compare with


def test_an_ensemble_folder_is_scored_as_the_mean_of_its_members(tmp_path):
    from aqa.eval.listening import predict_model

    folder = two_member_ensemble(tmp_path, zscore=False)  # member b's distances are 1.5x member a's
    rows = [{"degraded": str(tmp_path / "audio" / d), "reference": str(tmp_path / "audio" / r)}
            for d, r, _ in noisy_set(tmp_path / "audio", refs=1, snrs=(0, 20))]
    ensemble = predict_model(folder, rows, "cpu", "fp32", progress=False)["ens"]
    member = predict_model(tmp_path / "runs" / "a" / "a", rows, "cpu", "fp32", progress=False)["a"]
    assert np.allclose(ensemble, 1.25 * np.asarray(member), rtol=1e-4) and min(member) < 0


def test_calibrate_on_a_listening_test(tmp_path, capsys):
    run = make_run(tmp_path, "mmmos_tiny")
    rows = noisy_set(tmp_path / "audio", refs=2, snrs=(0, 10, 20, 30))
    test = write_test(tmp_path / "audio" / "t.csv", rows, lambda i, r: 1 + int(r[2][3:]) / 10)
    assert main(["calibrate", str(run), "--test", str(test), "--device", "cpu"]) == 0
    cal = json.loads((run / "calibration.json").read_text())["quality"]
    assert cal["kind"] == "cubic" and cal["n"] == 8 and cal["extra"]["test"] == str(test)
    assert cal["y_range"] == [1.0, 4.0]  # the subjective scale, not the training labels'
    capsys.readouterr()
    assert main(["score", str(run), str(tmp_path / "audio" / "deg0_0.wav"), "--no-progress"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert 1.0 <= record["quality_calibrated"] <= 4.0
    bad = tmp_path / "bad.csv"
    bad.write_text("degraded,score\n")
    assert main(["calibrate", str(run), "--test", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no rows after the header" in err
