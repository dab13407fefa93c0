"""MMMOS' ensemble (Lin et al. 2025, §V-A/§V-D): the composite score (the mean of the axes), the selection of
runs by their rank on one or two validation sets, and `aqa ensemble --select` end to end on untrained runs."""

import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from aqa.audio import encode_flac
from aqa.cli import main
from aqa.config import compose, save_config
from aqa.inference.ensemble import COMPOSITE, select_runs, task_srcc, with_composite
from aqa.tasks import build_module

AXES = ("pq", "pc", "ce", "cu")


def test_composite_is_the_mean_of_the_axes_per_clip():
    rec = {
        "pq": [{"key": "a", "score": 2.0, "label": 4.0, "system": "s"}, {"key": "b", "score": 1.0, "label": 1.0}],
        "pc": [{"key": "a", "score": 4.0, "label": 6.0, "system": "s", "calibrated": 3.0}],
    }
    out = with_composite(rec)
    assert out["pq"] == rec["pq"] and out["pc"] == rec["pc"]
    assert out[COMPOSITE] == [{"key": "a", "system": "s", "score": 3.0, "label": 5.0}]  # only clips in every task
    assert with_composite({"pq": rec["pq"]}) == {"pq": rec["pq"]}  # one task: nothing to average
    assert task_srcc({"pq": rec["pq"]}) == task_srcc({"pq": rec["pq"]}, "pq")  # its composite is the task itself
    with pytest.raises(KeyError, match="no task 'ce'"):
        task_srcc(rec, "ce")


def test_selection_is_the_top_k_on_one_set_or_their_intersection_on_two():
    # 16 runs as in the paper; the development set ranks them 0..15, PAM in another order
    dev = [1.0 - i / 100 for i in range(16)]
    pam_order = [3, 12, 0, 14, 5, 1, 15, 7, 9, 2, 13, 4, 6, 8, 10, 11]  # best first
    pam = [0.0] * 16
    for rank, run in enumerate(pam_order):
        pam[run] = 1.0 - rank / 100
    assert select_runs([dev], 4) == [0, 1, 2, 3]
    assert select_runs([pam], 4) == [3, 12, 0, 14]
    both = select_runs([dev, pam], 12)
    assert both == sorted(set(range(12)) & set(pam_order[:12]))  # in the first set's order
    assert both == [0, 1, 2, 3, 4, 5, 7, 9]  # 8 runs, as the paper's top 12 and top 12 gave
    assert select_runs([[math.nan, 0.5, 0.9]], 2) == [2, 1]  # an undefined SRCC ranks last
    assert select_runs([[0.5, 0.5, 0.5]], 2) == [0, 1]  # ties keep the runs' order
    with pytest.raises(ValueError, match=">= 1"):
        select_runs([dev], 0)


def write_set(path: Path, n: int, seed: int) -> str:
    """A rated shard (one clip per group, the four axes 1..10, like `aqa prep import`); returns its pattern."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    t = np.arange(16000) / 16000
    with tarfile.open(path / "val-000000.tar", "w") as tar:
        for i in range(n):
            x = (0.2 * np.sin(2 * np.pi * (150 + 60 * i) * t) + 0.02 * (i + 1) * rng.standard_normal(t.size)).astype(np.float32)
            meta = {"group": f"g{i}", "is_reference": False, "system": f"s{i % 3}",
                    **{a: float(rng.uniform(1, 10)) for a in AXES}}
            for ext, data in (("flac", encode_flac(x, 16000)), ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"c{seed}_{i:02d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path / "val-*.tar")


def make_run(run: Path, dev: str, seed: int) -> Path:
    """An untrained MMMOS run on the tiny fusion, as `aqa train` leaves a run directory."""
    cfg = compose("mmmos", ["encoder=fusion_tiny", "trainer=cpu", f"run_dir={run}", f"data.train_urls={dev}",
                            f"data.val_urls={dev}", "data.num_workers=0", "data.val_crop_s=1.0"])
    torch.manual_seed(seed)
    module = build_module(cfg)
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": module.state_dict()}, run / "checkpoints" / "best.ckpt")
    save_config(cfg, run / "config.yaml")
    return run


def composite_srcc(records: dict) -> float:
    """SRCC of the per-clip mean of the four axes' scores against the mean of their labels (scipy)."""
    by_key: dict[str, list] = {}
    for axis in AXES:
        for r in records[axis]:
            by_key.setdefault(r["key"], []).append((r["score"], r["label"]))
    rows = [np.mean(v, axis=0) for v in by_key.values() if len(v) == len(AXES)]
    return float(stats.spearmanr([r[0] for r in rows], [r[1] for r in rows])[0])


def test_ensemble_select_on_two_sets_keeps_the_intersection_and_reports_the_composite(tmp_path, capsys):
    from aqa.eval.runs import evaluate

    dev = write_set(tmp_path / "dev", 8, seed=1)
    pam = write_set(tmp_path / "pam", 8, seed=2)
    runs = [make_run(tmp_path / f"r{s}", dev, s) for s in range(4)]
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, runs), "--out", str(out), "--select", "3", "--on", "val", "--on", pam]) == 0
    saved = json.loads((out / "ensemble_val.json").read_text())
    sel = saved["selection"]
    assert sel["k"] == 3 and sel["on"] == ["val", pam] and sel["rank_by"] == COMPOSITE
    # the ranking SRCC is the composite's, recomputed here from each run's own evaluation on either set
    for run in runs:
        evaluate(run, plot=False)
        records = json.loads((run / "eval_val.json").read_text())["records"]
        assert sel["srcc"]["val"][str(run)] == pytest.approx(composite_srcc(records), abs=1e-6)
    top = {name: sorted(sel["srcc"][name], key=lambda r: -sel["srcc"][name][r])[:3] for name in ("val", pam)}
    assert set(saved["runs"]) == set(top["val"]) & set(top[pam]) and len(saved["runs"]) >= 2
    assert saved["runs"] == [r for r in top["val"] if r in top[pam]]
    ens = saved["records"]
    assert all(len(r["member_scores"]) == len(saved["runs"]) for r in ens["pq"])
    pq = {r["key"]: r for r in ens["pq"]}
    for row in ens[COMPOSITE]:  # the composite of the ensemble: the mean of its four axes
        by_axis = [{r["key"]: r for r in ens[a]}[row["key"]] for a in AXES]
        assert row["score"] == pytest.approx(np.mean([r["score"] for r in by_axis]))
        assert row["label"] == pytest.approx(np.mean([r["label"] for r in by_axis])) and row["key"] in pq
    assert COMPOSITE in saved["summary"] and set(AXES) <= set(saved["summary"])
    printed = capsys.readouterr().out
    assert "selection: top 3 by composite SRCC" in printed and f"ensemble of {len(saved['runs'])} runs" in printed

    # the plain mean of the runs given still works, now with the composite
    assert main(["ensemble", *map(str, runs[:2]), "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "ensemble_val.json").read_text())
    assert plain["runs"] == [str(r) for r in runs[:2]] and "selection" not in plain and COMPOSITE in plain["summary"]


def test_ensemble_selection_mistakes_are_one_line_errors(tmp_path, capsys):
    dev = write_set(tmp_path / "dev", 4, seed=1)
    runs = [str(make_run(tmp_path / f"r{s}", dev, s)) for s in range(2)]
    assert main(["ensemble", *runs, "--out", str(tmp_path / "e"), "--on", dev]) == 2
    assert "add --select" in capsys.readouterr().err
    assert main(["ensemble", *runs, str(tmp_path / "dev" / "val-000000.tar"), "--out", str(tmp_path / "e")]) == 2
    assert "quote shard patterns" in capsys.readouterr().err  # an unquoted --on pattern the shell expanded
    assert main(["ensemble", *runs, "--out", str(tmp_path / "e"), "--select", "1", "--on", "val", "--on", dev]) == 2
    assert "an ensemble needs two" in capsys.readouterr().err


def test_zscore_uses_the_saved_stats_when_given():
    from aqa.inference.ensemble import ensemble_records, member_stats

    a = {"q": [{"key": k, "score": s, "label": 1.0} for k, s in (("x", 1.0), ("y", 3.0))]}
    b = {"q": [{"key": k, "score": s, "label": 1.0} for k, s in (("x", 10.0), ("y", 30.0))]}
    assert member_stats(b) == {"q": {"mean": 20.0, "std": 10.0}}
    own = ensemble_records([a, b], zscore=True)["q"]  # each member standardised by its own scores: -1, +1
    assert [r["member_scores"] for r in own] == [[-1.0, -1.0], [1.0, 1.0]]
    stats = [{"q": {"mean": 0.0, "std": 2.0}}, {"q": {"mean": 10.0, "std": 0.0}}]  # std 0: left as it is
    saved = ensemble_records([a, b], zscore=True, stats=stats)["q"]
    assert [r["member_scores"] for r in saved] == [[0.5, 10.0], [1.5, 30.0]]
    assert [r["score"] for r in saved] == [5.25, 15.75]
    assert ensemble_records([a, b], zscore=False, stats=stats)["q"][0]["member_scores"] == [1.0, 10.0]


def test_ensemble_folder_is_evaluated_like_a_run(tmp_path, capsys):
    import yaml

    dev = write_set(tmp_path / "dev", 6, seed=1)
    runs = [make_run(tmp_path / f"r{s}", dev, s) for s in range(2)]
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, runs), "--zscore", "--out", str(out), "--device", "cpu"]) == 0
    spec = yaml.safe_load((out / "ensemble.yaml").read_text())
    assert list(spec) == ["kind", "which", "zscore", "members", "tasks"]
    assert spec["kind"] == "ensemble" and spec["zscore"] is True and spec["tasks"] == list(AXES)
    assert [m["run"] for m in spec["members"]] == [str(r.resolve()) for r in runs]
    built = json.loads((out / "ensemble_val.json").read_text())
    assert all(main(["eval", str(run), "--no-plot", "--device", "cpu"]) == 0 for run in runs)
    for axis in AXES:  # the stats are each member's raw scores on the split, the ones zscore standardised with
        raw = [[r["score"] for r in json.loads((run / "eval_val.json").read_text())["records"][axis]] for run in runs]
        for member, scores in zip(spec["members"], raw, strict=True):
            assert member["stats"][axis]["mean"] == pytest.approx(np.mean(scores), rel=1e-6)
            assert member["stats"][axis]["std"] == pytest.approx(np.std(scores), rel=1e-6)
    capsys.readouterr()
    assert main(["eval", str(out), "--no-plot", "--device", "cpu"]) == 0
    assert "ensemble of 2 runs" in capsys.readouterr().out
    evaluated = json.loads((out / "eval_val.json").read_text())
    assert evaluated["runs"] == [m["run"] for m in spec["members"]]
    for task in (*AXES, COMPOSITE):
        assert [r["score"] for r in evaluated["records"][task]] == pytest.approx(
            [r["score"] for r in built["records"][task]], abs=1e-6)


def test_runs_with_equal_encoders_are_scored_in_one_pass(tmp_path, monkeypatch):
    """`aqa ensemble` and `aqa eval ENSEMBLE` score the runs with score_runs: runs whose encoders are equal (one
    seed, own heads) share them and each batch runs them once; every run's records stay what it gets alone."""
    from aqa.encoders.hf import HFEncoder
    from aqa.eval.runs import evaluate, score_runs

    dev = write_set(tmp_path / "dev", 8, seed=1)
    pam = write_set(tmp_path / "pam", 8, seed=2)
    runs = []
    for i in range(3):
        run = make_run(tmp_path / f"r{i}", dev, seed=0)
        ckpt = run / "checkpoints" / "best.ckpt"
        state = torch.load(ckpt, weights_only=True)
        for key in state["state_dict"]:
            if key.startswith("heads."):
                state["state_dict"][key] = state["state_dict"][key] * (1 + 0.5 * i)
        torch.save(state, ckpt)
        runs.append(run)
    calls = []
    real = HFEncoder.forward
    monkeypatch.setattr(HFEncoder, "forward", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    cfg = compose("mmmos", ["encoder=fusion_tiny", f"data.val_urls={dev}", "data.num_workers=0", "data.val_crop_s=1.0"])
    scored = score_runs(runs, "best", cfg, ("val", pam), device="cpu", precision="fp32")
    assert len(calls) == 2  # the fusion's WavLM: one batch per set for all three runs (6 without sharing)
    for run, per_set in zip(runs, scored, strict=True):
        evaluate(run, plot=False)
        alone = {(a, r["key"]): r["score"] for a, rows in
                 json.loads((run / "eval_val.json").read_text())["records"].items() for r in rows}
        got = {(a, r["key"]): r["score"] for a, rows in per_set["val"].items() for r in rows}
        assert got.keys() == alone.keys() and all(got[k] == pytest.approx(alone[k], abs=1e-5) for k in got)
    assert scored[0]["val"]["pq"][0]["score"] != pytest.approx(scored[1]["val"]["pq"][0]["score"])
