"""Label normalisation (``tasks.X.normalize: zscore``): the training split's mean and std read from the shards'
labels, kept in the module's buffers, the losses on z-scores, the scores out on the label scale; and the config
checks around it (difference-only losses need it, embedding tasks refuse it)."""

import json
import logging

import numpy as np
import pytest
import torch
import webdataset as wds

from aqa.config import ConfigError, check_values, compose
from aqa.data.labels import shard_labels
from aqa.heads import LabelScale
from aqa.losses import LOSSES
from aqa.tasks import build_module
from aqa.tasks.multitask import fit_label_scales

ROWS = [{"mos": 2.0, "pq": 7.0}, {"mos": None, "pq": 9.0}, {"mos": 4.5, "pq": "n/a"}, {"mos": 3.0}, {"mos": 1.5, "pq": 8.5}]


def write_shard(path, rows) -> str:
    """A shard whose audio members are not audio: reading the labels must not decode them."""
    with wds.TarWriter(str(path)) as sink:
        for i, row in enumerate(rows):
            sink.write({"__key__": f"s{i:03d}", "json": json.dumps({"group": i, **row}).encode(), "flac": b"not audio"})
    return str(path)


def test_shard_labels_reads_the_json_labels_only_with_nan_for_missing(tmp_path):
    urls = [write_shard(tmp_path / "train-0000.tar", ROWS[:3]), write_shard(tmp_path / "train-0001.tar", ROWS[3:])]
    got = shard_labels(str(tmp_path / "train-*.tar"), ["mos", "pq"])
    np.testing.assert_array_equal(got["mos"], [2.0, np.nan, 4.5, 3.0, 1.5])
    np.testing.assert_array_equal(got["pq"], [7.0, 9.0, np.nan, np.nan, 8.5])
    assert shard_labels(urls, ["mos"])["mos"].shape == (5,)


def test_label_scale_maps_between_z_units_and_the_label_scale(rng):
    scale = LabelScale(5.0, 2.0)
    raw = torch.randn(6, generator=rng).to(torch.bfloat16)
    out = scale(raw)
    assert out.dtype == torch.float32  # the label scale is not held in bf16
    torch.testing.assert_close(out, 5.0 + 2.0 * raw.float())
    torch.testing.assert_close(scale.standardise(out), raw.float())
    frames = {"score": raw.float(), "frames": raw.float()[:, None].repeat(1, 3), "frame_mask": torch.ones(6, 3).bool()}
    mapped = scale(frames)
    torch.testing.assert_close(mapped["frames"], 5.0 + 2.0 * frames["frames"])
    assert mapped["frame_mask"] is frames["frame_mask"]
    assert set(scale.state_dict()) == {"mean", "std"}
    with pytest.raises(ValueError, match="std > 0"):
        scale.set(1.0, 0.0)


def test_a_normalised_task_trains_on_z_scores_and_scores_on_the_label_scale(tmp_path, rng):
    """The MSE the module trains on is the MSE of the z-scores; the module's output (what validation, `aqa eval`,
    `aqa score` and ensembles read) is on the label scale; the statistics are the training labels' (ddof 1)."""
    urls = write_shard(tmp_path / "train-0000.tar", ROWS)
    module = build_module(compose("mmmos_tiny", ["tasks.quality.label=mos"]), with_teacher=False).eval()
    stats = fit_label_scales(module, urls)
    mean, std = stats["quality"]
    assert mean == pytest.approx(np.mean([2.0, 4.5, 3.0, 1.5])) and std == pytest.approx(np.std([2.0, 4.5, 3.0, 1.5], ddof=1))
    wav, lengths = torch.randn(4, 16000, generator=rng) * 0.1, torch.full((4,), 16000)
    raw = module.heads["quality"](*module.encoder(wav, lengths))
    with torch.no_grad():
        scores = module(wav, lengths)["quality"]
    torch.testing.assert_close(scores, mean + std * raw.detach(), rtol=1e-5, atol=1e-5)
    labels = torch.tensor([2.0, float("nan"), 4.0, 1.0])
    batch = {"wav": wav, "lengths": lengths, "labels": {"mos": labels}, "group": torch.arange(4),
             "is_reference": torch.zeros(4, dtype=torch.bool)}
    with pytest.warns(UserWarning):  # self.log outside a Trainer
        loss, _ = module._shared_step(batch, "val")
    keep = torch.isfinite(labels)
    expected = ((raw.detach() - (labels - mean) / std)[keep] ** 2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    assert {"label_scales.quality.mean", "label_scales.quality.std"} <= set(module.state_dict())


def test_label_statistics_need_two_distinct_training_labels(tmp_path):
    urls = write_shard(tmp_path / "train-0000.tar", [{"mos": 3.0}, {"mos": 3.0}, {"mos": None}])
    module = build_module(compose("mmmos_tiny", ["tasks.quality.label=mos"]), with_teacher=False)
    with pytest.raises(ConfigError, match="tasks.quality.normalize=zscore: label 'mos'.*vary"):
        fit_label_scales(module, urls)


@pytest.mark.parametrize("name", sorted(n for n, loss in LOSSES.items() if loss.input_kind == "score"))
def test_difference_only_is_declared_exactly_by_the_losses_that_leave_the_offset_free(name, rng):
    """A loss declares ``difference_only`` when shifting every prediction by one constant changes nothing:
    its gradient with respect to that shift (the output bias) is zero on any batch."""
    loss = LOSSES[name]()
    pred, target = torch.randn(8, generator=rng) + 3.0, torch.randn(8, generator=rng) * 2
    shift = torch.zeros((), requires_grad=True)
    loss(pred + shift, target).backward()
    assert (abs(float(shift.grad)) < 1e-6) == loss.difference_only, (name, float(shift.grad))


@pytest.mark.parametrize("loss", ["pairwise_margin", "dcq"])
def test_a_difference_only_loss_on_raw_labels_is_refused_before_training(loss):
    cfg = compose("mmmos_tiny", [f"tasks.quality.loss={loss}", "tasks.quality.normalize=null"])
    with pytest.raises(ConfigError, match=f"tasks.quality.loss={loss} depends on score differences only.*"
                                          "tasks.quality.normalize=zscore"):
        check_values(cfg, data=False)
    check_values(compose("mmmos_tiny", [f"tasks.quality.loss={loss}"]), data=False)  # z-scored: fine


def test_utmos_on_raw_labels_is_only_warned_about(caplog):
    """UTMOS' clipped MSE does pin the level, to within tau; its tau and margin assume z-scored labels."""
    with caplog.at_level(logging.WARNING, logger="aqa.config"):
        check_values(compose("mmmos_tiny", ["tasks.quality.loss=utmos", "tasks.quality.normalize=null"]), data=False)
    assert "tasks.quality.loss=utmos on labels that are not z-scored" in caplog.text


def test_normalize_values_and_embedding_tasks_are_checked():
    with pytest.raises(ConfigError, match=r"tasks.quality.normalize='minmax' is invalid: choose from \['zscore'\]"):
        compose("mmmos_tiny", ["tasks.quality.normalize=minmax"])
    with pytest.raises(ConfigError, match="gives embeddings.*only score tasks can be normalised"):
        build_module(compose("deepaq_lora_tiny", ["tasks.quality.normalize=zscore"]), with_teacher=False)


def test_mmmos_experiments_z_score_every_axis_with_the_released_utmos_constants():
    """MMMOS' released code z-scores each axis and trains UTMOS with tau 0.5, margin 0.1, w_con 0.5 on them."""
    for experiment in ("mmmos", "mmmos_bienc", "mmmos_blstm_h", "mmmos_blstm_t", "mmmos_tiny"):
        cfg = compose(experiment)
        for task in cfg.tasks.values():
            assert task.normalize == "zscore" and task.head.bias_init == 0.0, experiment
            if task.loss.name == "utmos":
                assert (task.loss.tau, task.loss.margin, task.loss.w_con) == (0.5, 0.1, 0.5)

