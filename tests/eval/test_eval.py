import pytest
import torch
from scipy import stats

from aqa.correlation import pearson, spearman
from aqa.eval.report import summarise


def test_correlations_match_scipy(rng):
    x = torch.randint(0, 5, (40,), generator=rng).double()  # with ties
    y = x + torch.randn(40, generator=rng, dtype=torch.float64)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-5)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-6)


def test_summarise_per_codec():
    rows = [{"codec": c, "score": float(s), "label": float(s)} for c in ("mp3", "opus") for s in range(4)]
    summary = summarise({"bitrate": rows})
    assert set(summary["bitrate"]) == {"all", "mp3", "opus"}
    assert summary["bitrate"]["mp3"]["srcc"] == pytest.approx(1.0) and summary["bitrate"]["all"]["n"] == 8
    small = summarise({"t": rows[:4] + [{"codec": "aac", "score": 1.0, "label": 2.0}] * 2})
    assert small["t"]["aac"] == {"n": 2, "srcc": None, "pcc": None}  # two clips: a correlation says nothing


def test_ensemble_averages_shared_clips_and_tasks():
    from aqa.inference.ensemble import ensemble_records

    a = {"pq": [{"key": "x", "score": 2.0, "label": 3.0}, {"key": "y", "score": 4.0, "label": 5.0}],
         "only_a": [{"key": "x", "score": 1.0, "label": 1.0}]}
    b = {"pq": [{"key": "y", "score": 6.0, "label": 5.0}, {"key": "z", "score": 0.0, "label": 1.0}]}
    out = ensemble_records([a, b])
    assert list(out) == ["pq"]  # tasks every member has
    assert out["pq"] == [{"key": "y", "score": 5.0, "label": 5.0, "member_scores": [4.0, 6.0]}]
    z = ensemble_records([a, b], zscore=True)["pq"][0]["member_scores"]
    assert z == [1.0, 1.0]  # each member standardised over its own clips first
    with pytest.raises(ValueError, match="at least two"):
        ensemble_records([a])
    with pytest.raises(ValueError, match="no clip"):
        ensemble_records([{"pq": [{"key": "x", "score": 1.0, "label": 1.0}]}, {"pq": [{"key": "q", "score": 1.0, "label": 1.0}]}])


def test_inference_device_and_precision_resolve():
    from aqa.inference.device import autocast, resolve_device, resolve_precision, to_device

    cpu = resolve_device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    moved = to_device({"a": torch.ones(1), "b": [torch.zeros(1)], "c": "x"}, cpu)
    assert moved["c"] == "x" and moved["b"][0].device == cpu
