"""`aqa sweep`: sweep files checked before anything trains, grid and seeded random expansion, the shipped sweeps,
the W&B export, and the tiny MMMOS sweep end to end: one trial run as a W&B agent would, the rest interrupted
midway, resumed (finished trials not rerun, the interrupted one continued from its last.ckpt, a failed one
recorded and rerun), then ensembled with `aqa ensemble --sweep` and evaluated with `aqa eval ENSEMBLE_DIR`.
Also: uniform integer draws, agent values that name the local trial, damaged records, failed trials started
again, and an agent's trial validated as it trained and listed in sweep.csv.
"""

import csv
import io
import itertools
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import aqa.tasks.training
from aqa.audio import encode_flac
from aqa.cli import main
from aqa.config import ConfigError, available, compose
from aqa.sweep import (
    Range,
    expand,
    finished_runs,
    load_sweep,
    parse_assignment,
    plan,
    read_record,
    trial_name,
    wandb_sweep,
    write_csv,
)
from aqa.sweep.trials import _metric_problem, _trial

SR = 16000


def write_split(folder: Path, split: str, n: int, seed: int) -> str:
    """Rated clips as `make data` leaves the MOS demo (one per group, a `visqol_moslqo` label that follows the
    noise level); returns the shard pattern."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(SR // 2) / SR
    with tarfile.open(folder / f"{split}-000000.tar", "w") as tar:
        for i in range(n):
            quality = float(rng.uniform(1, 5))
            x = 0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.04 * (5 - quality) * rng.standard_normal(
                t.size
            )
            meta = {
                "group": f"{split}{i}",
                "is_reference": False,
                "codec": f"c{i % 2}",
                "visqol_moslqo": quality,
            }
            for ext, data in (
                ("flac", encode_flac(x.astype(np.float32), SR)),
                ("json", json.dumps(meta).encode()),
            ):
                info = tarfile.TarInfo(f"{split}_{i:02d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(folder / f"{split}-*.tar")


@pytest.fixture(scope="module")
def extra(tmp_path_factory) -> list[str]:
    """Overrides that point mmmos_tiny at tiny shards and keep a trial to one step of training."""
    root = tmp_path_factory.mktemp("mos")
    train, val = write_split(root, "train", 8, 0), write_split(root, "val", 12, 1)
    return [
        f"data.train_urls={train}",
        f"data.val_urls={val}",
        "logger=none",
        "data.crop_s=0.5",
        "data.val_crop_s=0.5",
        "data.groups_per_batch=8",
        "checkpoint_every_n_steps=0",
    ]


def write_sweep(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "experiment: mmmos_tiny\nparameters: {tasks.quality.loss: [mse]}\ntrails: 3\n",
            "unknown key 'trails'",
        ),
        ("experiment: mmmos_tiny\nparameters: {optimizer.lr: {min: 0.1, max: 1}}\n", "needs method: random"),
        ("experiment: mmmos_tiny\nmethod: random\nparameters: {optimizer.lr: [1]}\n", "needs trials: N"),
        (
            "experiment: mmmos_tiny\nparameters: {tasks.quality.head: [mlp, nohead]}\n",
            "unknown head 'nohead'",
        ),
        (
            "experiment: mmmos_tiny\nparameters: {trainer.max_epoch: [1, 2]}\n",
            "unknown config key 'trainer.max_epoch'",
        ),
        ("experiment: mmmos_tiny\nparameters: {optimizer.lr: [0.1, -1.0]}\n", "optimizer.lr=-1.0 is invalid"),
        (
            "experiment: mmmos_tiny\nmetric: val/pq/srcc\nmode: max\nparameters: {seed: [0, 1]}\n",
            "'val/pq/srcc' is not measured",
        ),
        ("experiment: mmmos_tiny\nmetric: val/quality/loss\nparameters: {seed: [0, 1]}\n", "mode: required"),
        (
            "experiment: mmmos_tiny\nmetric: val/quality/pearson\nmode: max\nparameters: {seed: [0, 1]}\n",
            "'val/quality/pearson' is not measured",
        ),
        (  # a score head has no reference to mismatch
            "experiment: mmmos_tiny\nmetric: val/quality/srcc_mismatched\nmode: max\nparameters: {seed: [0, 1]}\n",
            "'val/quality/srcc_mismatched' is not measured",
        ),
        ("parameters: {seed: [0, 1]}\n", "give the base experiment"),
        ("experiment: mmmos_tiny\nparameters: {tasks.*.head.*: [mlp]}\n", "the only wildcard"),
        ("experiment: mmmos_tiny\nmethod: random\ntrials: 5\nparameters: {seed: [0, 1]}\n", "only 2"),
    ],
)
def test_sweep_mistakes_are_one_line_errors_before_anything_runs(tmp_path, capsys, extra, body, message):
    out = tmp_path / "out"
    assert main(["sweep", write_sweep(tmp_path, body), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not out.exists()  # nothing trained, nothing written


def test_grid_and_seeded_random_expansion(tmp_path):
    grid = load_sweep(
        write_sweep(
            tmp_path,
            "experiment: mmmos\nparameters:\n  tasks.pq.head: [mlp, blstm_h]\n"
            "  tasks.*.loss: [ccc, dcq, utmos]\n",
        )
    )
    trials, cfgs, metric, mode = plan(grid, tmp_path / "g", check_data=False)
    assert len(trials) == 6 and len({t.name for t in trials}) == 6 and (metric, mode) == ("val/loss", "min")
    assert [t.name for t in expand(grid)] == [t.name for t in trials]  # names depend on the values only
    for trial, cfg in zip(trials, cfgs, strict=True):
        loss = trial.values["tasks.*.loss"]
        assert {t.loss.name for t in cfg.tasks.values()} == {loss}  # the wildcard reaches all four axes
        assert cfg.tasks.pq.head.name == trial.values["tasks.pq.head"] and cfg.tasks.pc.head.name == "mlp"
        assert cfg.run_dir == str(tmp_path / "g" / trial.name) and f"loss-{loss}" in trial.name
    seen = {(t.values["tasks.pq.head"], t.values["tasks.*.loss"]) for t in trials}
    assert seen == {(h, loss) for h in ("mlp", "blstm_h") for loss in ("ccc", "dcq", "utmos")}

    text = (
        "experiment: mmmos_tiny\nmethod: random\ntrials: 6\nseed: {seed}\nparameters:\n"
        "  optimizer.lr: {{min: 1.0e-5, max: 1.0e-1, log: true}}\n  data.groups_per_batch: {{min: 2, max: 9}}\n"
        "  tasks.quality.loss: [mse, ccc]\n"
    )
    draws = [expand(load_sweep(write_sweep(tmp_path, text.format(seed=s)))) for s in (0, 0, 1)]
    assert [t.values for t in draws[0]] == [t.values for t in draws[1]]  # seeded
    assert [t.values for t in draws[0]] != [t.values for t in draws[2]]
    values = [t.values for t in draws[0] + draws[2]]
    assert all(1e-5 <= v["optimizer.lr"] <= 1e-1 and isinstance(v["optimizer.lr"], float) for v in values)
    assert all(
        isinstance(v["data.groups_per_batch"], int) and 2 <= v["data.groups_per_batch"] <= 9 for v in values
    )
    # log-uniform: over many draws about half fall below the geometric middle (1e-3), not ~1 %
    rng = np.random.default_rng(0)
    below = np.mean([Range(1e-5, 1e-1, log=True).draw(rng) < 1e-3 for _ in range(2000)])
    assert 0.45 < below < 0.55


def test_shipped_sweeps_compose_as_the_papers_describe(tmp_path):
    assert {"mmmos_table2", "mmmos_table3", "deepaq_ablation", "mmmos_tiny"} <= set(available("sweep"))
    for name in available("sweep"):
        plan(load_sweep(name), tmp_path / name, check_data=False)
    trials, cfgs, metric, mode = plan(load_sweep("mmmos_table3"), tmp_path / "t3", check_data=False)
    assert (metric, mode) == ("val/composite/srcc", "max")
    rows = [
        (
            c.experiment,
            {t.loss.name for t in c.tasks.values()},
            c.trunk and (c.trunk.name, c.trunk.shared),
            len(c.encoder.encoders),
        )
        for c in cfgs
    ]
    # Table III: for each loss, BiEnc + MLP, TriEnc + MLP, TriEnc + BLSTM(t), TriEnc + BLSTM(h), the BLSTM shared
    # by the four axes' MLPs (§III-B)
    expected = [
        (exp, {loss}, trunk, members)
        for loss in ("ccc", "pairwise_margin", "dcq", "utmos")
        for exp, trunk, members in (
            ("mmmos_bienc", None, 2),
            ("mmmos", None, 3),
            ("mmmos_blstm_t", ("blstm_t", True), 3),
            ("mmmos_blstm_h", ("blstm_h", True), 3),
        )
    ]
    assert rows == expected and all(set(c.tasks) == {"pq", "pc", "ce", "cu"} for c in cfgs)
    assert all(t.normalize == "zscore" and t.head.name == "mlp" for c in cfgs for t in c.tasks.values())
    # Table II: the 7 non-empty subsets of {WavLM, MuQ, M2D-CLAP}, MLP aggregation, UTMOS, ranked by the composite
    _, cfgs, metric, mode = plan(load_sweep("mmmos_table2"), tmp_path / "t2", check_data=False)
    assert (metric, mode) == ("val/composite/srcc", "max")
    subsets = [tuple(e.name for e in c.encoder.encoders) for c in cfgs]
    assert len(set(subsets)) == 7 and all(len(s) == len(c.encoder.layers) for s, c in zip(subsets, cfgs, strict=True))
    assert {frozenset(s) for s in subsets} == {
        frozenset(s) for n in (1, 2, 3) for s in itertools.combinations(("wavlm_base_plus", "muq_large_msd", "m2d_vit_base"), n)
    }
    assert all(c.experiment == "mmmos" and {t.loss.name for t in c.tasks.values()} == {"utmos"} and not c.trunk
               for c in cfgs)
    assert all(e.checkpoint.split("/")[1].startswith("m2d_clap") for c in cfgs for e in c.encoder.encoders
               if e.name == "m2d_vit_base")
    trials, cfgs, metric, _ = plan(load_sweep("deepaq_ablation"), tmp_path / "d", check_data=False)
    assert metric == "val/quality/srcc"
    by_exp = {c.experiment: c for c in cfgs}
    assert set(by_exp) == {
        "deepaq_lora",
        "deepaq_full",
        "deepaq_frozen",
        "deepaq_visqol_only",
        "deepaq_wav2vec2",
    }
    assert by_exp["deepaq_frozen"].encoder.freeze and not by_exp["deepaq_full"].encoder.freeze
    assert by_exp["deepaq_lora"].encoder.adapter and by_exp["deepaq_full"].encoder.adapter is None
    assert (
        "terms" in by_exp["deepaq_lora"].tasks.quality
        and "terms" not in by_exp["deepaq_visqol_only"].tasks.quality
    )
    assert by_exp["deepaq_wav2vec2"].encoder.name != by_exp["deepaq_lora"].encoder.name


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_mmmos_sweep_interrupted_resumed_and_ensembled(tmp_path, capsys, monkeypatch, extra):
    out, ens = tmp_path / "sweep", tmp_path / "ens"
    sweep = ["sweep", "mmmos_tiny", *extra, "--out", str(out), "--no-progress"]
    trials = expand(load_sweep("mmmos_tiny"), extra)
    names = [t.name for t in trials]

    # the W&B export: the same search, whose agents run `aqa sweep ... --trial KEY=VALUE ...`
    assert main([*sweep, "--wandb"]) == 0
    spec = yaml.safe_load((out / "wandb_sweep.yaml").read_text())
    assert spec["method"] == "grid" and spec["metric"] == {"name": "val/quality/srcc", "goal": "maximize"}
    assert spec["parameters"] == {
        "tasks.quality.head": {"values": ["mlp", "blstm_h"]},
        "tasks.*.loss": {"values": ["ccc", "utmos"]},
    }
    assert spec["command"][:2] == ["aqa", "sweep"] and spec["command"][-2:] == [
        "--trial",
        "${args_no_hyphens}",
    ]
    assert all(o in spec["command"] for o in extra)

    real_train = aqa.tasks.training.train
    calls: list[tuple[str, bool]] = []

    def counting(cfg, fail_on=None, kill_on=None):
        calls.append((Path(cfg.run_dir).name, bool(cfg.resume)))
        if fail_on == len(calls):
            raise RuntimeError("CUDA out of memory (injected)")
        result = real_train(cfg)
        if kill_on == len(calls):
            raise KeyboardInterrupt  # killed after its checkpoints, before the sweep recorded it
        return result

    # 1. an agent runs the first trial alone: it lands in the folder the local sweep uses for it
    monkeypatch.setattr(aqa.tasks.training, "train", counting)
    argv = [f"{k}={v}" for k, v in trials[0].values.items()]
    assert main([*sweep, "--trial", *argv]) == 0 and calls == [(names[0], False)]
    assert json.loads((out / names[0] / "trial.json").read_text())["status"] == "done"

    # 2. the local sweep continues; the third trial is killed after training
    calls.clear()
    monkeypatch.setattr(aqa.tasks.training, "train", lambda cfg: counting(cfg, kill_on=2))
    with pytest.raises(KeyboardInterrupt):
        main([*sweep, "--resume"])
    assert calls == [(names[1], False), (names[2], False)]
    rows = read_csv(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["done", "done", "interrupted", "pending"] and [
        r["trial"] for r in rows
    ] == names
    done_mtimes = {n: (out / n / "checkpoints" / "best.ckpt").stat().st_mtime_ns for n in names[:2]}
    killed_step = torch.load(out / names[2] / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]

    assert main(sweep) == 2  # no --resume: refused, nothing touched
    assert "already holds a sweep: pass --resume" in capsys.readouterr().err

    # 3. resume: the killed trial continues from its last.ckpt, the last one fails (recorded, not raised)
    calls.clear()
    monkeypatch.setattr(aqa.tasks.training, "train", lambda cfg: counting(cfg, fail_on=2))
    assert main([*sweep, "--resume"]) == 1
    assert calls == [(names[2], True), (names[3], False)]
    assert "failed: " + names[3] in capsys.readouterr().out
    rows = read_csv(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed"]
    assert rows[3]["error"] == "RuntimeError: CUDA out of memory (injected)"
    assert (
        torch.load(out / names[2] / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == killed_step
    )

    # 4. resume again: only the failed trial runs
    calls.clear()
    monkeypatch.setattr(aqa.tasks.training, "train", counting)
    assert main([*sweep, "--resume"]) == 0 and calls == [(names[3], False)]
    assert {n: (out / n / "checkpoints" / "best.ckpt").stat().st_mtime_ns for n in names[:2]} == done_mtimes
    rows = read_csv(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["done"] * 4
    srcc = {r["trial"]: float(r["val/quality/srcc"]) for r in rows}
    assert all(math.isfinite(v) for v in srcc.values()) and "val/quality/loss" in rows[0]
    by_rank = sorted(rows, key=lambda r: int(r["rank"]))
    assert [float(r["val/quality/srcc"]) for r in by_rank] == sorted(srcc.values(), reverse=True)
    for r in rows:  # the recorded value is that of the best checkpoint the run kept (ModelCheckpoint's score)
        record = json.loads((out / r["trial"] / "trial.json").read_text())
        assert record["metrics"]["monitor_best"] == pytest.approx(srcc[r["trial"]], abs=1e-5)
        head, loss = r["tasks.quality.head"], r["tasks.*.loss"]
        assert f"tasks.quality.head={head}" in r["overrides"] and f"tasks.*.loss={loss}" in r["overrides"]

    # 5. the sweep's finished trials as ensemble candidates (MMMOS §V-D), then the folder evaluated like a run
    capsys.readouterr()
    assert main(["ensemble", "--sweep", str(out), "--select", "3", "--out", str(ens), "--device", "cpu"]) == 0
    saved = json.loads((ens / "ensemble_val.json").read_text())
    ranked = saved["selection"]["srcc"]["val"]
    assert set(ranked) == {str(out / n) for n in names}
    for run, value in ranked.items():  # aqa eval's SRCC of each best checkpoint = the sweep's validation SRCC
        assert value == pytest.approx(srcc[Path(run).name], abs=1e-5)
    spec = yaml.safe_load((ens / "ensemble.yaml").read_text())
    assert spec["kind"] == "ensemble" and spec["which"] == "best" and spec["zscore"] is False
    assert spec["tasks"] == ["quality"] and [m["run"] for m in spec["members"]] == saved["runs"]
    assert all(Path(m["run"]).is_absolute() for m in spec["members"]) and len(saved["runs"]) == 3
    member_scores = np.array([r["member_scores"] for r in saved["records"]["quality"]])
    for i, m in enumerate(spec["members"]):
        assert m["stats"]["quality"]["mean"] == pytest.approx(member_scores[:, i].mean(), rel=1e-6)
        assert m["stats"]["quality"]["std"] == pytest.approx(member_scores[:, i].std(), rel=1e-6)
    assert main(["eval", str(ens), "--no-plot", "--device", "cpu"]) == 0
    evaluated = json.loads((ens / "eval_val.json").read_text())
    assert evaluated["summary"]["quality"]["all"]["srcc"] == pytest.approx(
        saved["summary"]["quality"]["all"]["srcc"]
    )
    assert [r["score"] for r in evaluated["records"]["quality"]] == pytest.approx(
        [r["score"] for r in saved["records"]["quality"]], abs=1e-6
    )

    capsys.readouterr()

    assert main(["ensemble", str(out / names[0]), "--sweep", str(out), "--out", str(tmp_path / "e")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["ensemble", "--sweep", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert "is not a sweep folder" in capsys.readouterr().err


def test_ensemble_folder_mistakes_are_one_line_errors(tmp_path, capsys):
    ens = tmp_path / "ens"
    ens.mkdir()
    (ens / "ensemble.yaml").write_text(
        "kind: ensemble\nwhich: best\nzscore: false\ntasks: [q]\n"
        f"members: [{{run: {tmp_path}/gone, stats: {{}}}}, {{run: {tmp_path}, stats: {{}}}}]\n"
    )
    assert main(["eval", str(ens), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert "members[0]" in err and "is not a run folder" in err and "Traceback" not in err
    (ens / "ensemble.yaml").write_text("kind: run\n")
    assert main(["eval", str(ens), "--no-plot"]) == 2
    assert "not an ensemble file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="members"):
        from aqa.inference.loading import read_ensemble

        (ens / "ensemble.yaml").write_text("kind: ensemble\nzscore: false\ntasks: [q]\nmembers: []\n")
        read_ensemble(ens)


def test_random_integers_are_uniform_and_agent_values_name_the_local_trials(tmp_path):
    rng = np.random.default_rng(0)
    counts = np.bincount([Range(2, 9).draw(rng) for _ in range(4000)], minlength=10)[2:]
    assert counts.sum() == 4000 and (counts / 4000 > 0.1).all() and (counts / 4000 < 0.15).all()  # ends too
    ints = [Range(1, 1000, log=True).draw(rng) for _ in range(500)]
    assert all(isinstance(v, int) and 1 <= v <= 1000 for v in ints) and np.mean(np.array(ints) < 32) > 0.4

    sweep = load_sweep(
        write_sweep(
            tmp_path,
            "experiment: mmmos_tiny\nmethod: random\ntrials: 3\nparameters:\n"
            "  optimizer.lr: {min: 1.0e-5, max: 1.0e-2, log: true}\n"
            "  data.groups_per_batch: {min: 2, max: 64, log: true}\n  seed: {min: 0, max: 9}\n"
            "  tasks.quality.loss: [mse, ccc]\n",
        )
    )
    params = yaml.safe_load(wandb_sweep(sweep, tmp_path / "w", check_data=False).read_text())["parameters"]
    assert params["data.groups_per_batch"] == {
        "min": 2,
        "max": 64,
        "distribution": "q_log_uniform_values",
        "q": 1,
    }
    assert params["optimizer.lr"]["distribution"] == "log_uniform_values"
    assert params["seed"]["distribution"] == "int_uniform"

    # an agent's text (Python's str of W&B's value) gives the values, and so the name, of the same local trial
    values = {"optimizer.lr": 1e-05, "data.groups_per_batch": 8, "seed": 3, "tasks.quality.loss": "ccc"}
    given = parse_assignment(sweep, [f"{k}={v}" for k, v in values.items()])
    assert given == values and isinstance(given["optimizer.lr"], float)
    assert isinstance(given["data.groups_per_batch"], int)
    assert trial_name(given, "mmmos_tiny") == _trial(sweep, values, ()).name


def test_trial_records_and_csv_tolerate_damage_and_finished_runs_read_the_records(tmp_path, capsys):
    out = tmp_path / "sweep"
    for name, text in [("a", "[1, 2]"), ("b", "{not json"), ("c", '{"no": "status"}')]:
        (out / name).mkdir(parents=True)
        (out / name / "trial.json").write_text(text)
        assert read_record(out / name) is None
    assert main(["ensemble", "--sweep", str(out), "--out", str(tmp_path / "e")]) == 2
    assert "is not a sweep folder" in capsys.readouterr().err

    # trials that W&B agents finished (no sweep.csv): found from their records, done ones only
    for name, status in [("t1", "done"), ("t2", "failed"), ("t3", "done"), ("t4", "running")]:
        (out / name).mkdir()
        (out / name / "trial.json").write_text(
            json.dumps({"status": status})
        )  # a done record without metrics
    assert finished_runs(out) == [out / "t1", out / "t3"]
    trials = [
        _trial(load_sweep("mmmos_tiny"), {"tasks.quality.head": "mlp", "tasks.*.loss": n}, ()) for n in "xy"
    ]
    records = {trials[0].name: {"status": "done"}, trials[1].name: {"status": "done", "metrics": {"m": 1.0}}}
    write_csv(out / "sweep.csv", trials, records, "m", "max")
    rows = read_csv(out / "sweep.csv")
    assert [(r["status"], r["rank"]) for r in rows] == [("done", ""), ("done", "1")]
    (out / "sweep.csv").write_text("trial,status\nt3,done\nt2,failed\nt1,pending\n")
    assert finished_runs(out) == [out / "t3", out / "t1"]  # sweep.csv's order; the records say what is done
    for name in ("t1", "t3"):
        (out / name / "trial.json").write_text('{"status": "failed"}')
    assert main(["ensemble", "--sweep", str(out), "--out", str(tmp_path / "e")]) == 2
    assert "no finished trial" in capsys.readouterr().err


def test_failed_trials_start_again_and_unrecorded_checkpoints_are_refused(
    tmp_path, capsys, monkeypatch, extra
):
    out = tmp_path / "sweep"
    sweep = ["sweep", "mmmos_tiny", *extra, "--out", str(out), "--no-progress"]
    trials = expand(load_sweep("mmmos_tiny"), extra)
    (out / trials[0].name / "checkpoints").mkdir(parents=True)
    (out / trials[0].name / "checkpoints" / "last.ckpt").write_bytes(b"a NaN state")
    assert main(sweep) == 2  # checkpoints but no trial.json: still a sweep's folder
    assert "already holds a sweep: pass --resume" in capsys.readouterr().err

    (out / trials[1].name / "checkpoints").mkdir(parents=True)
    (out / trials[1].name / "checkpoints" / "last.ckpt").write_bytes(b"interrupted")
    for trial, status in zip(trials[:2], ["failed", "running"], strict=True):
        record = {"status": status, "overrides": list(trial.overrides)}
        (out / trial.name / "trial.json").write_text(json.dumps(record))
    calls = []

    def failing(cfg):
        calls.append((Path(cfg.run_dir).name, bool(cfg.resume), bool(cfg.overwrite)))
        raise RuntimeError("injected")

    monkeypatch.setattr(aqa.tasks.training, "train", failing)
    assert main([*sweep, "--resume"]) == 1
    names = [t.name for t in trials]
    assert calls == [
        (names[0], False, True),
        (names[1], True, False),
        (names[2], False, False),
        (names[3], False, False),
    ]
    # all four now failed: a second resume starts each of them again, none from its last.ckpt
    calls.clear()
    assert main([*sweep, "--resume"]) == 1
    assert [c[1:] for c in calls] == [(False, True)] * 4


def test_overrides_may_follow_the_options_and_an_unknown_flag_is_still_refused(tmp_path, capsys, extra):
    # the README's order: aqa sweep NAME --out DIR key=value ... (options first, then the overrides)
    out = tmp_path / "sweep"
    assert main(["sweep", "mmmos_tiny", extra[0], "--out", str(out), "--dry-run", *extra[1:]]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1] == "4 trials, ranked by val/quality/srcc (max)"
    assert all(line.endswith(" ".join(extra)) for line in listed[:-1]), listed  # in the order given
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "mmmos_tiny", "--out", str(out), "--dry-run", *extra, "--bogus"])
    assert stop.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert not out.exists()


def test_resume_reuses_the_overrides_the_sweep_was_started_with(tmp_path, capsys, monkeypatch, extra):
    out = tmp_path / "sweep"
    seen: list[tuple[str, str, bool]] = []

    def fake_train(cfg, interrupt=False):
        seen.append((Path(cfg.run_dir).name, cfg.data.train_urls, bool(cfg.resume)))
        if interrupt:
            raise KeyboardInterrupt  # stopped before it trained: sweep.csv says interrupted, not running
        raise RuntimeError("injected")

    monkeypatch.setattr(aqa.tasks.training, "train", lambda cfg: fake_train(cfg, interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        main(["sweep", "mmmos_tiny", *extra, "--out", str(out), "--no-progress"])
    assert [r["status"] for r in read_csv(out / "sweep.csv")] == ["interrupted", "pending", "pending", "pending"]

    # --resume alone: the stored overrides (data.train_urls, ...) are those every trial composes with
    monkeypatch.setattr(aqa.tasks.training, "train", fake_train)
    assert main(["sweep", "mmmos_tiny", "--out", str(out), "--no-progress", "--resume"]) == 1
    names = [t.name for t in expand(load_sweep("mmmos_tiny"), extra)]
    train_urls = extra[0].partition("=")[2]
    assert seen[1:] == [(n, train_urls, False) for n in names]
    assert [r["status"] for r in read_csv(out / "sweep.csv")] == ["failed"] * 4
    # the same overrides again are accepted; other ones are refused (the finished trials used the stored ones)
    assert main(["sweep", "mmmos_tiny", *extra, "--out", str(out), "--no-progress", "--resume"]) == 1
    capsys.readouterr()
    assert main(["sweep", "mmmos_tiny", *extra, "trainer.max_epochs=3", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "was started with the overrides" in err and "--resume reuses the stored ones" in err, err


def test_ctrl_c_stops_a_sweep_and_a_training_run_as_sigterm_does_and_marks_the_trial_interrupted(tmp_path, capsys, monkeypatch, extra):
    """A real SIGINT, sent by the process to itself as its second training step starts (the slow twin in
    tests/test_reliability.py sends it to a fresh `aqa sweep` process)."""
    import os
    import signal

    from lightning.pytorch.callbacks import Callback

    import aqa.tasks.trainer

    class CtrlC(Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 1:
                os.kill(os.getpid(), signal.SIGINT)

    build = aqa.tasks.trainer.build_callbacks
    monkeypatch.setattr(aqa.tasks.trainer, "build_callbacks", lambda *a: [*build(*a), CtrlC()])
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "sweep"
    fast = ["data.groups_per_batch=2", "checkpoint_every_n_steps=0", "--out", str(out), "--no-progress"]
    assert main(["sweep", "mmmos_tiny", *extra, *fast]) == 130  # 128 + SIGINT
    assert "stopped by SIGINT (Ctrl-C); continue with the same command with --resume" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the handler is aqa's only while the command runs
    rows = read_csv(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["interrupted", "pending", "pending", "pending"], rows
    # like SIGTERM, the batch ended and last.ckpt was written at step 2 for --resume to continue from
    assert "SIGINT" in rows[0]["error"]
    assert torch.load(out / rows[0]["trial"] / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    # aqa train alike: last.ckpt, then the resume hint
    run = tmp_path / "run"
    assert main(["train", "mmmos_tiny", *extra, *fast[:2], "trainer.max_epochs=1", f"run_dir={run}"]) == 130
    assert "aqa train: stopped by SIGINT (Ctrl-C); continue with resume=true" in capsys.readouterr().err
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_agent_trial_is_validated_as_it_trained_and_reaches_sweep_csv(tmp_path, extra):
    """One real tiny trial, as a W&B agent runs it, validating on 1 of its 2 validation batches."""
    out = tmp_path / "sweep"
    trial = expand(load_sweep("mmmos_tiny"), extra)[0]
    argv = [f"{k}={v}" for k, v in trial.values.items()]
    assert (
        main(
            [
                "sweep",
                "mmmos_tiny",
                *extra,
                "trainer.limit_val_batches=1",
                "--out",
                str(out),
                "--trial",
                *argv,
            ]
        )
        == 0
    )
    record = json.loads((out / trial.name / "trial.json").read_text())
    metrics = record["metrics"]
    assert metrics["val/quality/srcc"] == pytest.approx(metrics["monitor_best"], abs=1e-5)
    rows = read_csv(out / "sweep.csv")
    assert [(r["trial"], r["status"]) for r in rows][0] == (record["trial"], "done")
    assert [r["status"] for r in rows[1:]] == ["pending"] * 3
    assert finished_runs(out) == [out / record["trial"]]


def test_embedding_tasks_can_be_ranked_by_their_mismatched_reference_srcc():
    assert _metric_problem("val/quality/srcc_mismatched", compose("deepaq_lora_tiny")) is None
    assert _metric_problem("val/quality/group_order", compose("deepaq_lora_tiny")) is None
    assert "srcc_mismatched with TASK in ['quality']" in _metric_problem("val/x/srcc", compose("deepaq_lora_tiny"))
