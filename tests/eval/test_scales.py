"""Rating scales (aqa.eval.scales): `aqa eval --test` reports raw MSE only for a predictor on the test's scale
(scale_min/scale_max) and says in summary.md why, one line per predictor; where a run's scale comes from."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf
from synth import make_run
from test_listening import noisy_set

from aqa.cli import main
from aqa.eval.scales import scale_of_test, task_scale
from aqa.tasks.training import record_rating_scales


def _test_csv(folder: Path, lo: float | None, hi: float | None, factor: float = 1.0) -> Path:
    rows = noisy_set(folder / "audio", refs=2, snrs=(0, 10, 20, 30))
    lines = ["degraded,score,reference,system,scale_min,scale_max"] + [
        f"{d},{factor * (1 + i % 4 + 0.1 * (i // 4)):.2f},{r},{s},{'' if lo is None else lo},{'' if hi is None else hi}"
        for i, (d, r, s) in enumerate(rows)
    ]
    path = folder / "audio" / f"test_{lo}_{hi}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _metrics(out: Path) -> dict[str, set[str]]:
    with (out / "summary.csv").open(newline="") as f:
        got: dict[str, set[str]] = {}
        for r in csv.DictReader(f):
            got.setdefault(r["model"], set()).add(r["metric"])
        return got


def _eval(test: Path, out: Path, *runs: Path) -> str:
    args = ["eval", *map(str, runs), "--test", str(test), "--baselines", "pesq", "--out", str(out)]
    assert main([*args, "--bootstrap", "20", "--no-progress", "--device", "cpu"]) == 0
    return (out / "summary.md").read_text()


def test_raw_mse_only_for_predictors_on_the_tests_scale(tmp_path):
    # mmmos_tiny predicts its label visqol_moslqo (1..5); deepaq_lora_tiny scores by minus a distance (no scale)
    mos, embed = make_run(tmp_path, "mmmos_tiny"), make_run(tmp_path, "deepaq_lora_tiny")
    md = _eval(_test_csv(tmp_path, 1, 5), tmp_path / "mos", mos, embed)
    got = _metrics(tmp_path / "mos")
    assert "MSE" in got["mmmos_tiny"] and "MSE" in got["pesq"] and "MSE" not in got["deepaq_lora_tiny"]
    assert all("MSE_mapped" in m for m in got.values())
    scales = md.split("## Scales")[1].strip().splitlines()
    assert len(scales) == 3
    assert "`mmmos_tiny` 1..5" in scales[0] and "the test's 1..5" in scales[0] and "raw MSE reported" in scales[0]
    assert "`deepaq_lora_tiny` unknown (unknown: an embedding task" in scales[1] and "left out" in scales[1]
    assert "`pesq` 1..5" in scales[2] and "raw MSE reported" in scales[2]
    # MUSHRA-like 0..100 scores: a 1..5 metric's raw MSE would be in the thousands; only MSE_mapped is reported
    md = _eval(_test_csv(tmp_path, 0, 100, factor=20.0), tmp_path / "mushra")
    assert "MSE" not in _metrics(tmp_path / "mushra")["pesq"]
    (line,) = md.split("## Scales")[1].strip().splitlines()
    assert "`pesq` 1..5" in line and "the test's 0..100 (scale_min/scale_max)" in line and "left out" in line


def test_unknown_or_mixed_test_scale_is_not_shared(tmp_path, capsys):
    md = _eval(_test_csv(tmp_path, None, None), tmp_path / "none")
    assert "MSE" not in _metrics(tmp_path / "none")["pesq"] and "the test's unknown" in md
    rows = [{"scale_min": "1", "scale_max": "5"}, {"scale_min": "0", "scale_max": "100"}]
    scale, why = scale_of_test(rows)
    assert scale is None and "differ between rows" in why and "0..100 (row 3)" in why
    assert scale_of_test([{"degraded": "x"}]) == (None, "unknown: the test has no scale_min/scale_max columns")
    bad = _test_csv(tmp_path, 5, 1)
    assert main(["eval", "--test", str(bad), "--baselines", "pesq", "--out", str(tmp_path / "bad")]) == 2
    assert "row 2: a scale is two numbers min, max with max > min" in capsys.readouterr().err


def _shard(path: Path, metas: list[dict]) -> str:
    with tarfile.open(path, "w") as tar:
        for i, meta in enumerate(metas):
            data = json.dumps(meta).encode()
            info = tarfile.TarInfo(f"s{i}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_a_runs_scale_comes_from_its_config_its_shards_or_its_label(tmp_path):
    rated = _shard(tmp_path / "rated.tar", [{"mos": 40.0 + i, "scores": {}, "scale": [0, 100]} for i in range(3)])
    mixed = _shard(tmp_path / "mixed.tar", [{"mos": 3.0, "scale": [1, 5]}, {"mos": 30.0, "scale": [0, 100]}])
    bare = _shard(tmp_path / "bare.tar", [{"mos": 3.0}, {"bitrate_kbps": 64}])

    def cfg(urls: str, label: str = "mos", **task) -> object:
        return OmegaConf.create({"data": {"train_urls": urls}, "tasks": {"q": {"label": label, **task}}})

    assert task_scale(cfg(rated), "q") == ((0.0, 100.0), "the training shards' scale of label 'mos'")
    assert task_scale(cfg(rated, scale=[1, 10]), "q")[0] == (1.0, 10.0)  # the config's tasks.q.scale first
    assert task_scale(cfg(bare, label="visqol_moslqo"), "q")[0] == (1.0, 5.0)  # a metric's output as label
    assert task_scale(cfg(rated), "q", embedding=True)[0] is None
    assert "not all on one rating scale" in task_scale(cfg(mixed), "q")[1]
    assert "give no rating scale" in task_scale(cfg(bare), "q")[1]
    assert "not readable here" in task_scale(cfg(str(tmp_path / "nope-*.tar")), "q")[1]
    # aqa train records the shards' scale in the run's config, so exports and ensembles carry it
    run_cfg = cfg(rated)
    module = SimpleNamespace(heads={"q": SimpleNamespace(is_embedding=False)})
    assert record_rating_scales(run_cfg, module) == {"q": (0.0, 100.0)} and list(run_cfg.tasks.q.scale) == [0.0, 100.0]
    assert record_rating_scales(cfg(bare), module) == {}


@pytest.mark.parametrize("scale", [[5, 1], ["a", 2], [1]])
def test_a_bad_task_scale_is_a_config_error(scale):
    from aqa.config import ConfigError, compose

    with pytest.raises(ConfigError, match=r"tasks.quality.scale=.* is invalid"):
        compose("mmmos_tiny", [f"tasks.quality.scale={json.dumps(scale)}"])
    assert list(compose("mmmos_tiny", ["tasks.quality.scale=[1,5]"]).tasks.quality.scale) == [1, 5]
