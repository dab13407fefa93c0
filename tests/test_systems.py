"""The four systems' experiments end to end: tiny random encoders on shards the tests build with the real
pipeline (JND mixtures, HAAQI versions x listeners, coded music with ViSQOL labels, an imported rated corpus)."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf, open_dict
from scipy.stats import spearmanr
from synth import music
from tiny_encoders import CONFIGS

import aqa.metrics
from aqa.config import ConfigError, available, compose
from aqa.eval.runs import calibrate, evaluate
from aqa.tasks import build_module, init_from_checkpoint
from aqa.tasks.multitask import COMPOSITE, fit_label_scales
from aqa.tasks.training import train

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (make install)")

SR = 16000
TINY = sorted(e for e in available("experiment") if e.endswith("_tiny"))


def voice(path: Path, seconds: float, f0: float, seed: int) -> Path:
    """A speech-like test signal: a harmonic source with vibrato under a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    x = 0.2 * x + 0.005 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR)
    return path


def _fake_haaqi(name, ref, sr_ref, deg, sr_deg, audiogram, level_db):  # deterministic, fast stand-in label
    return {"haaqi": float(1.0 / (1.0 + np.mean(audiogram) / 50 + np.mean(np.abs(ref - deg))))}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Shards for every tiny experiment, made by the project's own recipes."""
    from data_prep.codec import build_codec_shards
    from data_prep.haaqi import main as haaqi_main
    from data_prep.jnd import build_jnd_shards
    from data_prep.rated import main as import_main

    root = tmp_path_factory.mktemp("systems")
    src = [voice(root / "src" / f"utt{i}.wav", 1.3, f0, i) for i, f0 in enumerate((110.0, 150.0, 210.0))]
    out = {"jnd": root / "jnd", "haaqi": root / "haaqi", "mos": root / "mos", "aes": root / "aes"}
    build_jnd_shards(src, out["jnd"], snrs=(0, 2, 5, 10, 20), noise_types=("pink",), min_s=0.5,
                     splits={"utt0": "train", "utt1": "train", "utt2": "val"}, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aqa.metrics, "compute_arrays", _fake_haaqi)
        listing = root / "haaqi_list.csv"
        listing.write_text("path,split\n" + "".join(f"{p},{'val' if i == 2 else 'train'}\n" for i, p in enumerate(src)))
        assert haaqi_main(["--src", str(listing), "--out", str(out["haaqi"]), "--excerpt-s", "0.6",
                           "--max-excerpts", "1", "--processings", "clean,lowpass,noise", "--audiograms", "2",
                           "--no-progress"]) == 0
    build_codec_shards(src, out["mos"], excerpt_s=1.0, codecs=("mp3", "opus"), bitrates=(32, 128), mono=True,
                       splits={"utt0": "train", "utt1": "train", "utt2": "val"}, progress=False)
    corpus = root / "aes_corpus"
    rows = []
    for i in range(8):
        voice(corpus / "clips" / f"c{i}.wav", 0.8, 100.0 + 25 * i, 10 + i)
        axes = {"Production_Quality": [2.0 + i % 5, 3.0 + i % 4], "Production_Complexity": [1.0 + i % 3],
                "Content_Enjoyment": [4.0], "Content_Usefulness": [5.0 + i % 2]}
        rows.append({"data_path": f"/your_path/clips/c{i}.wav", **axes})
    for name, part in (("train", rows[:5]), ("dev", rows[5:])):  # the split comes from the file name
        (corpus / f"AES_natural_{name}.jsonl").write_text("\n".join(json.dumps(r) for r in part) + "\n")
    assert import_main(["--src", str(corpus), "--out", str(out["aes"]), "--no-progress"]) == 0
    for d in out.values():
        assert list(d.glob("train-*.tar")) and list(d.glob("val-*.tar")), f"{d} needs train and val shards"
    return out


DATA_OF = {"jsqa_jnd_tiny": "jnd", "haaqi_net_tiny": "haaqi", "mmmos_tiny": "mos"}


def overrides(shards: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"data.train_urls={shards}/train-*.tar", f"data.val_urls={shards}/val-*.tar", f"run_dir={run_dir}",
            "trainer.max_epochs=1", "logger=csv", "data.crop_s=0.5", "data.val_crop_s=0.6", *extra]


@pytest.mark.parametrize("experiment", sorted(available("experiment")))
def test_every_experiment_composes(experiment):
    cfg = compose(experiment)
    assert cfg.tasks and all(t.label for t in cfg.tasks.values())
    if experiment.endswith("_tiny"):
        build_module(cfg, with_teacher=False)  # head/loss pairs checked, tiny encoders built


def test_every_tiny_experiment_has_a_test():
    assert set(TINY) == {"deepaq_lora_tiny", "deepaq_demo_tiny", "haaqi_net_student_tiny", *DATA_OF}, \
        "add its shards to DATA_OF"


def test_demo_experiment_fine_tunes_every_weight_and_prints_validation_before_and_after(tmp_path, capsys):
    """`make demo`'s deepaq_demo_tiny: no LoRA (every encoder weight trains), validation of the untrained model
    first, and `aqa train`'s table of matched and mismatched-reference SRCC before and after. Its learning is
    measured by the demo itself (configs/experiment/deepaq_demo_tiny.yaml gives seeds 0-4) and by
    test_deepaq_learns_a_quality_embedding (the same task and encoder setting)."""
    from aqa.cli import main as cli_main
    from data_prep.codec import build_codec_shards
    from data_prep.render import render_bright

    cfg = compose("deepaq_demo_tiny")
    assert cfg.validate_before and cfg.encoder.adapter is None
    module = build_module(cfg, with_teacher=False)
    encoder = [p for n, p in module.named_parameters() if n.startswith("encoder.")]
    assert encoder and all(p.requires_grad for p in encoder)
    assert not any("lora" in n.lower() for n, _ in module.named_parameters())
    splits = {f"bright{i}": "val" if i >= 2 else "train" for i in range(4)}  # two validation pieces
    (tmp_path / "src").mkdir()
    for i, piece in enumerate(splits):
        clip = render_bright(i, max_seconds=1.1)
        sf.write(tmp_path / "src" / f"{piece}.wav", clip.audio[0], clip.sample_rate)
    build_codec_shards(sorted((tmp_path / "src").glob("*.wav")), tmp_path / "shards", excerpt_s=1.0,
                       codecs=("mp3",), bitrates=(16, 64), mono=True, visqol=False, splits=splits, progress=False)
    assert cli_main(["train", "deepaq_demo_tiny", *overrides(tmp_path / "shards", tmp_path / "run")]) == 0
    table = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()
            if line.startswith("val/quality/srcc")}
    assert "before" in table and set(rows) == {"val/quality/srcc", "val/quality/srcc_mismatched"}, table
    assert all(len(v) == 2 and all(np.isfinite(float(x)) for x in v) for v in rows.values()), table


@pytest.mark.parametrize("experiment", sorted(DATA_OF))
def test_tiny_system_trains_and_evaluates(experiment, data, tmp_path):
    run = tmp_path / experiment
    metrics = train(compose(experiment, overrides(data[DATA_OF[experiment]], run)))
    (task,) = compose(experiment).tasks.keys()
    assert np.isfinite(metrics[f"val/{task}/srcc"]) and np.isfinite(metrics["train/loss"])
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "config.yaml").is_file()
    summary = evaluate(run)
    assert summary[task]["all"]["n"] > 0 and np.isfinite(summary[task]["all"]["srcc"])
    assert (run / "eval_val.png").is_file() and "rmse" not in summary[task]["all"]
    calibrate(run, "cubic")  # score -> label scale, fitted on the training split
    # on the split it was fitted on, a least-squares cubic (constant term included, outputs clipped to the label
    # range) is never worse than predicting the labels' mean: its RMSE is at most their standard deviation
    fitted = evaluate(run, split="train", plot=False)[task]["all"]
    labels = np.array([r["label"] for r in json.loads((run / "eval_train.json").read_text())["records"][task]])
    assert labels.std() > 0 and fitted["rmse"] <= labels.std() + 1e-9, (fitted["rmse"], labels.std())
    # on validation: the saved cubic applied to each raw score, the RMSE of those values against the labels
    mapped = evaluate(run, plot=False)[task]["all"]
    cal = json.loads((run / "calibration.json").read_text())[task]
    rows = json.loads((run / "eval_val.json").read_text())["records"][task]
    score, label = np.array([r["score"] for r in rows]), np.array([r["label"] for r in rows])
    z = (np.clip(score, *cal["x_range"]) - cal["x_mean"]) / cal["x_std"]
    expected = np.clip(np.polyval(cal["params"]["coef"], z), *cal["y_range"])
    np.testing.assert_allclose([r["calibrated"] for r in rows], expected, rtol=1e-9, atol=1e-9)
    assert mapped["rmse"] == pytest.approx(float(np.sqrt(np.mean((expected - label) ** 2))), rel=1e-6)
    assert mapped["srcc"] == summary[task]["all"]["srcc"]  # the mapping leaves the scores themselves alone


@pytest.mark.parametrize("experiment", sorted({*DATA_OF, "deepaq_lora_tiny"}))
def test_tiny_system_trains_evaluates_and_scores_in_bf16(experiment, data, tmp_path):
    """bf16-mixed on the CPU, as `trainer=gpu` runs on CUDA: dtype bugs that only autocast shows fail here."""
    from aqa.inference.engine import score_files
    from aqa.tasks import load_run

    shards = data[DATA_OF.get(experiment, "mos")]  # DeePAQ reads the coded shards' bitrate_rank
    run = tmp_path / experiment
    metrics = train(compose(experiment, overrides(shards, run, "trainer.precision=bf16-mixed")))
    (task,) = compose(experiment).tasks.keys()
    assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics[f"val/{task}/srcc"])
    summary = evaluate(run, plot=False, device="cpu", precision="bf16")
    assert summary[task]["all"]["n"] > 0 and np.isfinite(summary[task]["all"]["srcc"])
    module, _ = load_run(run)
    clip = voice(tmp_path / "clip.wav", 1.0, 180.0, 5)
    ref = voice(tmp_path / "ref.wav", 1.0, 180.0, 6)
    cond = {"audiogram": [10.0, 10, 20, 30, 40, 50, 60, 60]} if "haaqi" in experiment else None
    (record,) = score_files(module, [clip], ref, cond, device="cpu", precision="bf16")
    assert isinstance(record.get(task), float) and np.isfinite(record[task]), record


@pytest.mark.parametrize("experiment", TINY)
def test_losses_are_float32_under_bf16_autocast(experiment, rng):
    """The loss contract: whatever dtype the heads return under autocast, losses are computed in float32."""
    cfg = compose(experiment)
    module = build_module(cfg, with_teacher=False)
    n, sr = 4, module.encoder.sample_rate
    batch = {
        "wav": torch.randn(n, sr, generator=rng) * 0.1,
        "lengths": torch.tensor([sr, sr, sr // 2, sr]),
        "labels": {t.label: torch.rand(n, generator=rng) * 5 for t in cfg.tasks.values()},
        "group": torch.tensor([0, 0, 1, 1]),
        "is_reference": torch.tensor([True, False, True, False]),
        "conditions": {"audiogram": torch.rand(n, 8, generator=rng) * 60},
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, outputs = module._shared_step(batch, "val")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()  # the graph through the bf16 encoder and heads is intact


AXES = ("pq", "pc", "ce", "cu")


def noisy_voice(path: Path, f0: float, snr_db: float, seed: int) -> Path:
    """:func:`voice` (1 s) under white noise at ``snr_db``."""
    x, _ = sf.read(voice(path, 1.0, f0, seed))
    noise = np.random.default_rng(seed).standard_normal(x.size) * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))
    sf.write(path, (x + noise).astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def rated(tmp_path_factory) -> Path:
    """An AES-format corpus of 48 voices (36 train, 12 dev) under noise at 0-30 dB SNR, imported by `aqa prep
    import`. Its four axes lie far apart on the 1..10 scale and follow the audio: pq 6..9.5 and cu 5..9 rise with
    the SNR, pc 1..3 with the pitch, ce 3..6 with both."""
    from data_prep.rated import main as import_main

    root = tmp_path_factory.mktemp("rated")
    rng = np.random.default_rng(0)
    n = 48
    snrs, f0s = np.linspace(0, 30, n)[rng.permutation(n)], np.geomspace(100, 260, n)[rng.permutation(n)]
    rows: dict[str, list] = {"train": [], "dev": []}
    for i, (snr, f0) in enumerate(zip(snrs, f0s, strict=True)):
        noisy_voice(root / "corpus" / "clips" / f"c{i}.wav", f0, snr, i)
        q, p = snr / 30, (f0 - 100) / 160
        axes = {"Production_Quality": [6 + 3.5 * q], "Production_Complexity": [1 + 2 * p],
                "Content_Enjoyment": [3 + 2 * q + p], "Content_Usefulness": [5 + 4 * q]}
        rows["dev" if i % 4 == 3 else "train"].append({"data_path": f"/your_path/clips/c{i}.wav", **axes})
    for name, part in rows.items():  # the split comes from the file name
        (root / "corpus" / f"AES_natural_{name}.jsonl").write_text("\n".join(json.dumps(r) for r in part) + "\n")
    assert import_main(["--src", str(root / "corpus"), "--out", str(root / "aes"), "--no-progress"]) == 0
    return root / "aes"


# MMMOS' recipe shape on the tiny fusion: frozen members (no adapters), MLP aggregation (a linear layer per axis),
# z-scored axes; lr 1e-3 and 4 epochs of 5 batches so that tiny runs get somewhere.
MMMOS_RECIPE = ("encoder=fusion_tiny", "trainer=cpu", "encoder.freeze=true", "encoder.adapter=null",
                "data.num_workers=0", "data.groups_per_batch=8", "optimizer.lr=1e-3", "trainer.max_epochs=4",
                "early_stopping=null")


def _val_records(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per axis, the scores and labels `aqa eval` gives the last checkpoint on the validation clips."""
    evaluate(run, which="last", plot=False, device="cpu", precision="fp32")
    rows = json.loads((run / "eval_val.json").read_text())["records"]
    return {axis: (np.array([r["score"] for r in rows[axis]]), np.array([r["label"] for r in rows[axis]]))
            for axis in AXES}


@pytest.fixture(scope="module")
def mmmos_runs(rated, tmp_path_factory) -> dict[str, Path]:
    """mmmos (four axes) trained with each of MMMOS' losses but CCC (MSE as the reference) on the rated corpus."""
    root = tmp_path_factory.mktemp("mmmos_losses")
    runs = {}
    for loss in ("mse", "pairwise_margin", "dcq", "utmos"):
        runs[loss] = root / loss
        train(compose("mmmos", overrides(rated, runs[loss], *MMMOS_RECIPE, *(f"tasks.{a}.loss={loss}" for a in AXES))))
    return runs


def test_mmmos_difference_losses_score_on_the_label_scale_as_well_as_mse(mmmos_runs):
    """Con and DCQ depend on score differences only (UTMOS partly): trained on z-scored axes, their scores come
    back on each axis's own level, and their validation MSE on the 1..10 scale is within 2x of the same run
    trained with MSE. On raw labels (aqa before z-scoring; the heads' bias started at 5.5) Con and DCQ left every
    axis where its bias started: mmmos_tiny's one axis (bias 3, pq labels) had 7x the MSE run's error."""
    mse = {axis: np.mean((s - y) ** 2) for axis, (s, y) in _val_records(mmmos_runs["mse"]).items()}
    for loss in ("pairwise_margin", "dcq", "utmos"):
        got = {axis: np.mean((s - y) ** 2) for axis, (s, y) in _val_records(mmmos_runs[loss]).items()}
        assert all(got[a] <= 2 * mse[a] for a in AXES), (loss, got, mse)


def test_mmmos_scores_each_axis_on_its_own_scale_from_an_imported_corpus(mmmos_runs, rated):
    """mmmos (UTMOS) on the four axes of an imported corpus: each axis's z-score statistics are its training
    labels' (stored in the checkpoint), each axis's scores lie at its own level of the 1..10 scale (pq about 7.8,
    pc about 2), and the SNR-driven axis is learnt."""
    from aqa.data.labels import shard_labels
    from aqa.tasks import load_run

    module, _ = load_run(mmmos_runs["utmos"], "last")
    labels = shard_labels(f"{rated}/train-*.tar", AXES)
    for axis in AXES:
        scale = module.label_scales[axis]
        assert float(scale.mean) == pytest.approx(np.nanmean(labels[axis]), rel=1e-5)
        assert float(scale.std) == pytest.approx(np.nanstd(labels[axis], ddof=1), rel=1e-5)
    records = _val_records(mmmos_runs["utmos"])
    for axis, (scores, _) in records.items():  # pq ~7.8, pc ~2, ce ~4.5, cu ~7: the axis's own level, not 0 or 5.5
        mean, std = float(module.label_scales[axis].mean), float(module.label_scales[axis].std)
        assert len(scores) == 12 and abs(scores.mean() - mean) < 0.5 * std, (axis, scores, mean, std)
    scores, truth = records["pq"]
    assert spearmanr(scores, truth)[0] >= 0.6, (scores, truth)


def _val_srcc_of_axes(module, cfg) -> dict[str, float]:
    """Validation SRCC of every axis and of their composite (per clip the axes' mean score against their mean
    label, MMMOS §V-A) of ``module``, as `aqa eval` measures a run."""
    from aqa.data.datamodule import datamodule_from_config
    from aqa.eval.report import collect_scores, summarise
    from aqa.inference.ensemble import with_composite

    loader = datamodule_from_config(cfg, module.encoder.sample_rate).eval_dataloader("val")
    records = collect_scores(module, loader, {t: c.label for t, c in cfg.tasks.items()}, device="cpu", precision="fp32")
    return {task: s["all"]["srcc"] for task, s in summarise(with_composite(records)).items()}


def test_mmmos_learns_with_its_recipe(mmmos_runs, rated):
    """The paper's recipe shape (frozen members, MLP aggregation, UTMOS on z-scored axes) on tiny random members:
    the composite's validation SRCC rises clearly from where the untrained model starts."""
    # seeds 0-4, composite SRCC: -0.30 -> 0.77, -0.18 -> 0.94, 0.41 -> 0.80, -0.04 -> 0.81, 0.18 -> 0.83 (pq, the
    # SNR-driven axis: 0.41 -> 0.94, -0.50 -> 0.92, 0.70 -> 0.90, 0.22 -> 0.97, 0.29 -> 0.88)
    from aqa.tasks import load_run

    cfg = compose("mmmos", overrides(rated, mmmos_runs["utmos"], *MMMOS_RECIPE))
    before = _val_srcc_of_axes(_start(cfg), cfg)
    after = _val_srcc_of_axes(load_run(mmmos_runs["utmos"], "last")[0], cfg)
    assert after[COMPOSITE] >= 0.6 and after[COMPOSITE] >= before[COMPOSITE] + 0.3, (before, after)


def test_ensemble_of_two_runs_scores_their_mean(data, tmp_path, capsys):
    from aqa.cli import main

    runs = [tmp_path / f"r{seed}" for seed in (0, 1)]
    for seed, run in enumerate(runs):
        train(compose("mmmos_tiny", overrides(data["mos"], run, f"seed={seed}")))
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "ens")]) == 0
    saved = json.loads((tmp_path / "ens" / "ensemble_val.json").read_text())
    assert saved["runs"] == [str(r) for r in runs]
    rows = saved["records"]["quality"]
    assert rows and all(r["score"] == pytest.approx(sum(r["member_scores"]) / 2) for r in rows)
    assert "ensemble of 2 runs" in capsys.readouterr().out


def test_jsqa_stage_two_starts_from_stage_one(data, tmp_path):
    stage1 = tmp_path / "jnd"
    train(compose("jsqa_jnd_tiny", overrides(data["jnd"], stage1)))
    cfg = compose("jsqa_mos", overrides(data["aes"], tmp_path / "mos", "encoder=wavlm_base_plus_tiny", "trainer=cpu",
                                        f"init_from={stage1}", "data.num_workers=0", "data.groups_per_batch=4",
                                        "data.label_keys=[pq]", "tasks.mos.label=pq"))  # AES has no overall MOS
    module = build_module(cfg)
    got = init_from_checkpoint(module, stage1)
    assert got == {"loaded": ["encoder"], "kept": ["heads.mos"]}  # the stage-1 embedding head does not carry over
    pretrained = torch.load(stage1 / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    for k, v in module.state_dict().items():
        if k.startswith("encoder."):
            torch.testing.assert_close(v, pretrained[k])
    assert np.isfinite(train(cfg)["val/mos/loss"])


def test_embedding_runs_evaluate_against_a_mismatched_reference(data, tmp_path):
    run = tmp_path / "jnd"
    train(compose("jsqa_jnd_tiny", overrides(data["jnd"], run, "trainer.limit_train_batches=1")))
    matched = evaluate(run, split="train", plot=False)["jnd"]["all"]
    mismatched = evaluate(run, split="train", plot=False, reference="mismatched")["jnd"]["all"]
    assert mismatched["n"] == matched["n"] > 0 and np.isfinite(mismatched["srcc"])
    assert mismatched["srcc"] != matched["srcc"]  # another utterance's clean anchor: different distances
    assert (run / "eval_train_mismatched.json").is_file()


def test_init_from_refuses_another_encoder(tmp_path, data):
    run = tmp_path / "jnd"
    train(compose("jsqa_jnd_tiny", overrides(data["jnd"], run, "trainer.limit_train_batches=1")))
    with pytest.raises(ValueError, match="does not match"):
        init_from_checkpoint(build_module(compose("deepaq_lora_tiny")), run)
    with pytest.raises(FileNotFoundError, match="init_from"):
        init_from_checkpoint(build_module(compose("deepaq_lora_tiny")), tmp_path / "nowhere")


@pytest.mark.parametrize(
    "experiment,override,match",
    [
        ("deepaq_lora_tiny", "tasks.quality.loss=mse", "gives embeddings"),
        ("haaqi_net_tiny", "tasks.haaqi.head=mean_pool", "giving frame scores, but MeanPoolHead"),
        ("mmmos_tiny", "tasks.quality.loss=rnc", "needs a head giving embeddings"),
    ],
)
def test_mismatched_head_and_loss_are_refused(experiment, override, match):
    with pytest.raises(ConfigError, match=match):
        build_module(compose(experiment, [override]))


def test_haaqi_net_without_audiogram_says_how_to_fix(data, tmp_path):
    cfg = compose("haaqi_net_tiny", overrides(data["haaqi"], tmp_path / "r", "data.condition_keys=[]"))
    with pytest.raises(ValueError, match="data.condition_keys"):
        train(cfg)


def test_haaqi_student_distils_from_its_teacher(data, tmp_path):
    teacher = tmp_path / "teacher"
    train(compose("haaqi_net_tiny", overrides(data["haaqi"], teacher)))
    student = tmp_path / "student"
    metrics = train(compose("haaqi_net_student_tiny", overrides(data["haaqi"], student, f"distill.teacher={teacher}")))
    assert np.isfinite(metrics["train/haaqi/distill/loss"]) and np.isfinite(metrics["val/haaqi/distill/loss"])
    state = torch.load(student / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    # the student's own weights only (distill_proj: its projections onto the teacher's hidden states)
    assert all(k.startswith(("encoder.", "heads.", "distill_proj.")) for k in state), "the teacher must not be saved"
    from aqa.tasks import load_run

    module, _ = load_run(student)  # inference needs no teacher
    assert not module._teacher and sum(p.numel() for p in module.encoder.parameters()) < sum(
        p.numel() for p in load_run(teacher)[0].encoder.parameters()
    )


def test_distillation_from_an_identical_teacher_costs_nothing(rng):
    import copy

    module = build_module(compose("haaqi_net_tiny"), with_teacher=False).eval()
    module._teacher = [copy.deepcopy(module.model)]
    batch = {"wav": torch.randn(2, 16000, generator=rng) * 0.1, "lengths": torch.tensor([16000, 9000]),
             "conditions": {"audiogram": torch.rand(2, 8, generator=rng) * 60}}
    with torch.no_grad():
        outputs = module(batch["wav"], batch["lengths"], batch["conditions"])
        _, teacher = module._teacher_outputs(batch)
        losses = module._distill(teacher, outputs)
    assert set(losses) == {"haaqi"} and float(losses["haaqi"]) == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():  # a different student pays for every score it does not share
        module.heads["haaqi"].frame_out.bias.add_(1.0)
        assert float(module._distill(teacher, module(batch["wav"], batch["lengths"], batch["conditions"]))["haaqi"]) > 1e-4


# --- Each system learns -------------------------------------------------------------------------------------------
# One training run per system on demo-style shards a little larger than `data` (nine voices, three of them held out)
# made by the same recipes. A run must end clearly above the validation SRCC of the very model it starts from (same
# seed, same weights), measured as `aqa eval` measures the last checkpoint, and above a floor. The spreads quoted
# with each test are seeds 0-4 of exactly that run; the tests themselves are seeded, so they are reproducible. With
# the learning removed (optimizer.lr=1e-12: the config check refuses 0) every one of them fails.

LEARN_SPLITS = {f"utt{i}": "val" if i % 3 == 2 else "train" for i in range(9)}


@pytest.fixture(scope="module")
def learning_data(tmp_path_factory) -> dict[str, Path]:
    """JND, HAAQI and coded shards of nine voices (six train, three val) by the project's recipes."""
    from data_prep.codec import build_codec_shards
    from data_prep.haaqi import main as haaqi_main
    from data_prep.jnd import build_jnd_shards

    root = tmp_path_factory.mktemp("learning")
    src = [voice(root / "src" / f"utt{i}.wav", 1.3, float(f0), 100 + i)
           for i, f0 in enumerate(np.geomspace(100.0, 260.0, len(LEARN_SPLITS)))]
    out = {"jnd": root / "jnd", "haaqi": root / "haaqi", "mos": root / "mos"}
    # 2 dB steps: neighbours lie within one JND (3 dB), so the JND loss has positives
    build_jnd_shards(src, out["jnd"], snrs=tuple(range(-6, 13, 2)), noise_types=("white",), min_s=0.5,
                     splits=LEARN_SPLITS, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aqa.metrics, "compute_arrays", _fake_haaqi)
        listing = root / "haaqi_list.csv"
        listing.write_text("path,split\n" + "".join(f"{p},{LEARN_SPLITS[p.stem]}\n" for p in src))
        assert haaqi_main(["--src", str(listing), "--out", str(out["haaqi"]), "--excerpt-s", "0.6",
                           "--max-excerpts", "1", "--processings", "clean,lowpass,noise", "--audiograms", "2",
                           "--no-progress"]) == 0
    build_codec_shards(src, out["mos"], excerpt_s=1.0, codecs=("mp3", "opus"), bitrates=(16, 32, 64, 128), mono=True,
                       splits=LEARN_SPLITS, progress=False)
    return out


def _only_task(cfg) -> str:
    (task,) = cfg.tasks
    return task


def _start(cfg):
    """The module `train(cfg)` starts from: the same seed, hence the same weights (and `init_from` loaded)."""
    import lightning as L

    L.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg)
    if cfg.get("init_from"):
        init_from_checkpoint(module, cfg.init_from)
    fit_label_scales(module, cfg.data.train_urls)
    return module.eval()


def _val_srcc(module, cfg, mismatched: bool = False) -> float:
    """Validation SRCC of ``module`` as `aqa eval` measures a run: every val clip, crops from the clip start;
    ``mismatched``: embedding heads against another excerpt's reference (`--reference mismatched`)."""
    from aqa.data.datamodule import datamodule_from_config
    from aqa.eval.report import collect_scores, summarise

    loader = datamodule_from_config(cfg, module.encoder.sample_rate).eval_dataloader("val")
    records = collect_scores(module, loader, {t: c.label for t, c in cfg.tasks.items()}, mismatched, device="cpu",
                             precision="fp32")
    return summarise(records)[_only_task(cfg)]["all"]["srcc"]


@torch.no_grad()
def _val_loss(module, cfg) -> float:
    """The training loss on the validation clips (mean over clips), as `val/loss` logs it."""
    from aqa.data.datamodule import datamodule_from_config

    total = count = 0.0
    for batch in datamodule_from_config(cfg, module.encoder.sample_rate).eval_dataloader("val"):
        with warnings.catch_warnings():  # outside a Trainer its self.log() calls only warn
            warnings.simplefilter("ignore")
            loss, _ = module._shared_step(batch, "val")
        total, count = total + float(loss) * len(batch["wav"]), count + len(batch["wav"])
    return total / count


def learn(experiment: str, shards: Path, run: Path, *extra: str) -> tuple[float, float]:
    """Validation SRCC (before, after) of one seeded training run of ``experiment`` (its last checkpoint)."""
    cfg = compose(experiment, overrides(shards, run, *extra))
    before = _val_srcc(_start(cfg), cfg)
    train(cfg)
    after = evaluate(run, which="last", plot=False, device="cpu", precision="fp32")[_only_task(cfg)]["all"]["srcc"]
    return before, after


@pytest.fixture(scope="module")
def haaqi_net_run(learning_data, tmp_path_factory) -> tuple[Path, float, float]:
    """haaqi_net_tiny trained for its 10 epochs on the learning shards: (run dir, SRCC before, after)."""
    run = tmp_path_factory.mktemp("haaqi_net") / "run"
    return run, *learn("haaqi_net_tiny", learning_data["haaqi"], run, "trainer.max_epochs=10")


def test_haaqi_net_learns(haaqi_net_run):
    # seeds 0-4, before -> after: -0.82 -> 0.93, 0.74 -> 0.98, -0.26 -> 0.97, -0.91 -> 0.71, -0.67 -> 0.97. The
    # stand-in label falls with the listener's mean hearing loss, which an untrained head reads with a random sign.
    _, before, after = haaqi_net_run
    assert after >= 0.6 and after >= before + 0.2, (before, after)


def test_haaqi_net_student_learns_from_its_teacher(haaqi_net_run, learning_data, tmp_path):
    # Its default settings (seed 0, 10 epochs, Adam 2e-3: haaqi_net_student_tiny.yaml says why), from the seed-0
    # teacher. Seeds 0-4, before -> after: 0.87 -> 0.97, -0.28 -> 0.95, -0.12 -> 0.99, 0.70 -> 0.90, 0.47 -> 0.93;
    # at the published 1e-3: 0.87 -> 0.77, -0.28 -> 0.94, -0.12 -> 0.77, 0.70 -> 0.83, 0.47 -> 0.51. Seed 0's
    # untrained student already ranks well by chance (its head reads the hearing loss with the right sign).
    teacher, _, _ = haaqi_net_run
    epochs = compose("haaqi_net_student_tiny").trainer.max_epochs  # its default (`overrides` trains one epoch)
    before, after = learn("haaqi_net_student_tiny", learning_data["haaqi"], tmp_path / "student",
                          f"trainer.max_epochs={epochs}", f"distill.teacher={teacher}")
    assert after >= 0.85 and after >= before + 0.05, (before, after)


@pytest.mark.slow  # `make test-full`: the default suite shows MMMOS learning in its recipe's shape (test_mmmos_learns_with_its_recipe)
def test_mmmos_tiny_demo_twin_learns(learning_data, tmp_path):
    """mmmos_tiny as `make demos` trains it (LoRA'd tiny members, MSE on one z-scored axis) learns the ViSQOL label."""
    # seeds 0-4 after 12 epochs: -0.37 -> 0.72, -0.30 -> 0.48, -0.60 -> 0.72, -0.16 -> 0.56, -0.09 -> 0.47 (measured
    # before mmmos_tiny z-scored its label; with it, seed 0: -0.37 -> 0.78)
    before, after = learn("mmmos_tiny", learning_data["mos"], tmp_path / "run", "trainer.max_epochs=12")
    assert after >= 0.35 and after >= before + 0.4, (before, after)


@torch.no_grad()
def _val_group_order(module, cfg) -> float:
    """``val/{task}/group_order`` of ``module`` on every validation clip, through its own validation hooks."""
    from aqa.data.datamodule import datamodule_from_config

    metric = module.val_group_order[_only_task(cfg)]
    metric.reset()
    with warnings.catch_warnings():  # outside a Trainer its self.log() calls only warn
        warnings.simplefilter("ignore")
        for i, batch in enumerate(datamodule_from_config(cfg, module.encoder.sample_rate).eval_dataloader("val")):
            module.validation_step(batch, i)
    value = float(metric.compute())
    metric.reset()
    return value


def learn_objective(experiment: str, shards: Path, run: Path, *extra: str) -> tuple[Path, float, float, float, float]:
    """One seeded training run of an embedding ``experiment``: (run dir, validation loss before, after, validation
    within-group order before, after), each measured on the start and on the last checkpoint."""
    from aqa.tasks import load_run

    cfg = compose(experiment, overrides(shards, run, *extra))
    start = _start(cfg)
    loss_before, order_before = _val_loss(start, cfg), _val_group_order(start, cfg)
    train(cfg)
    trained = load_run(run, "last")[0].eval()
    return run, loss_before, _val_loss(trained, cfg), order_before, _val_group_order(trained, cfg)


DEEPAQ_SPLITS = {f"utt{i}": "val" if i % 3 == 2 else "train" for i in range(36)}
# deepaq_lora_tiny's task (bit-rate RnC, clean = infinity, coded anchors) under deepaq_full's encoder setting. LoRA
# adapts a pretrained encoder; over a random tiny MERT its q/v updates cannot create a codec cue that the frozen
# random front end does not compute (seed 0 with LoRA: mismatched SRCC 0.12 -> 0.11), so the test fine-tunes every
# weight, the paper's `deepaq_full` ablation. Batches of 8 excerpts x 5 versions (the paper's 32 is 4 x 8), random
# 0.75 s crops of the 1 s excerpts (without them the runs memorise the 24 training excerpts: the validation loss
# rises after about 25 epochs), the best checkpoint by validation loss as in deepaq_lora.
DEEPAQ_LEARNING = ("encoder.adapter=null", "optimizer.lr=6e-4", "trainer.gradient_clip_val=1.0",
                   "trainer.max_epochs=40", "data.crop_s=0.75", "data.val_crop_s=1.0", "data.groups_per_batch=8",
                   "monitor.metric=val/loss", "monitor.mode=min")


@pytest.fixture(scope="module")
def deepaq_run(tmp_path_factory) -> tuple[Path, float, float, float, float]:
    """DeePAQ trained on MP3-coded bright music (36 pieces: 24 train, 12 val): (run dir, validation SRCC with a
    mismatched reference before, after, with the matched reference before, after), "after" on the best
    checkpoint, as `aqa eval RUN [--reference mismatched]` measures it."""
    from data_prep.codec import build_codec_shards

    root = tmp_path_factory.mktemp("deepaq")
    (root / "src").mkdir()
    src = [root / "src" / f"{piece}.wav" for piece in DEEPAQ_SPLITS]
    for i, path in enumerate(src):
        sf.write(path, music(1.3, 48000, seed=100 + i), 48000)
    # MP3 alone: its low-pass falls with the bit rate (99 % bandwidth 2.8 / 4.5 / 10.7 / 14.8 kHz at 16-128 kbit/s
    # here), a cue that does not depend on the notes; Opus keeps the full band at every rate
    build_codec_shards(src, root / "shards", excerpt_s=1.0, codecs=("mp3",), bitrates=(16, 32, 64, 128), mono=True,
                       visqol=False, splits=DEEPAQ_SPLITS, progress=False)
    run = root / "run"
    cfg = compose("deepaq_lora_tiny", overrides(root / "shards", run, *DEEPAQ_LEARNING))
    start = _start(cfg)
    before = _val_srcc(start, cfg, mismatched=True), _val_srcc(start, cfg)
    train(cfg)
    after = [evaluate(run, which="best", plot=False, reference=reference, device="cpu", precision="fp32")
             ["quality"]["all"]["srcc"] for reference in ("mismatched", "matched")]
    return run, before[0], after[0], before[1], after[1]


def test_deepaq_learns_a_quality_embedding(deepaq_run):
    """DeePAQ's embedding is meant to score against any clean reference (the paper's mismatched-reference mode).
    A random encoder's distance to another excerpt's reference says nothing about the bit rate; a trained one
    places the versions along a bit-rate axis shared by every excerpt."""
    # seeds 0-4, mismatched-reference SRCC: 0.10 -> 0.79, 0.07 -> 0.61, 0.06 -> 0.90, 0.05 -> 0.77, 0.00 -> 0.82
    # (optimizer.lr=1e-12: 0.10 -> 0.10)
    _, before, after, _, _ = deepaq_run
    assert after >= 0.45 and after >= before + 0.4, (before, after)


def test_deepaq_keeps_ranking_against_the_matched_reference(deepaq_run):
    """With the clip's own reference any encoder ranks the bit rates well (a random one: SRCC 0.87-0.92), and
    training for the mismatched mode need not raise it. It must not lose it either."""
    # seeds 0-4, matched-reference SRCC: 0.90 -> 0.86, 0.87 -> 0.72, 0.88 -> 0.93, 0.92 -> 0.83, 0.92 -> 0.87
    run, _, _, before, after = deepaq_run
    assert after >= 0.65 and after >= before - 0.2, (before, after)
    logged = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/quality/srcc_mismatched" in logged  # the mode is followed during training too


@pytest.fixture(scope="module")
def jsqa_stage_one(learning_data, tmp_path_factory) -> tuple[Path, float, float, float, float]:
    """jsqa_jnd_tiny (every weight training) for its 4 epochs on the learning JND shards: (run dir, validation JND
    loss before, after, val/jnd/group_order before, after)."""
    run = tmp_path_factory.mktemp("jsqa_jnd") / "run"
    return learn_objective("jsqa_jnd_tiny", learning_data["jnd"], run, "trainer.max_epochs=4")


def test_jsqa_stage_one_learns_its_jnd_objective(jsqa_stage_one):
    # seeds 0-4, validation JND loss: 1.854 -> 1.062, 1.976 -> 1.053, 1.837 -> 1.301, 1.922 -> 1.112, 1.737 -> 1.015
    # (LoRA only, as jsqa_jnd_lora, seed 0, 8 epochs: 1.853 -> 1.718)
    _, loss_before, loss_after, _, _ = jsqa_stage_one
    assert loss_after <= loss_before - 0.3, (loss_before, loss_after)


def test_jsqa_stage_one_validation_puts_each_utterances_mixtures_in_snr_order(jsqa_stage_one):
    """Stage 1's validation metric measures what its loss works on: within each group (one utterance + one noise
    at several SNRs), the share of pairs of mixtures whose embedding distances to the clean reference are ordered as
    their SNRs (val/jnd/group_order). The SRCC pooled over utterances is not (it fell while this loss fell: seeds
    0-4, 8 epochs of LoRA: 0.97/0.82/0.88/0.44/0.89 -> 0.96/0.78/0.79/0.39/0.73)."""
    # seeds 0-4, 4 epochs: 0.978 -> 1.000, 0.963 -> 1.000, 0.978 -> 1.000, 0.926 -> 1.000, 1.000 -> 1.000. A random
    # encoder orders most pairs already (distance to the reference grows with the noise): training puts the rest in
    # order. LoRA only (jsqa_jnd_lora's adapter on this random encoder), seed 0, 8 epochs: 0.978 -> 0.978.
    run, _, _, before, after = jsqa_stage_one
    assert before < 1.0 and after >= 0.99 and 1.0 - after <= 0.5 * (1.0 - before), (before, after)
    logged = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/jnd/group_order" in logged  # followed during training too


def test_jsqa_stage_two_learns_from_stage_one(jsqa_stage_one, learning_data, tmp_path):
    """JSQA's second stage: the stage-1 encoder fine-tuned (every weight) with a score head on rated clips. The demo
    data's only rated speech-in-noise clips are the JND mixtures, rated by their SNR here (a stand-in for MOS). A
    head on a JND-trained encoder often starts high (it reads an SNR axis, with a random sign), so its L1 loss on
    validation says whether it learnt."""
    # seeds 0-4 (each on its own stage 1), 6 epochs, SRCC: 0.83 -> 0.96, 0.27 -> 0.99, 0.89 -> 0.97, -0.57 -> 0.96,
    # -0.86 -> 0.99; validation L1 (dB): 4.94 -> 2.65, 4.99 -> 2.52, 4.98 -> 2.93, 5.03 -> 2.87, 5.04 -> 2.66.
    # jsqa_mos_scratch on the same data (random tiny encoder), SRCC: 0.15 -> 0.97, 0.16 -> 0.96, 0.23 -> 0.94,
    # 0.22 -> 0.97, 0.13 -> 0.99: this toy task needs no pretraining.
    from aqa.tasks import load_run

    run = tmp_path / "run"
    cfg = compose("jsqa_mos", overrides(learning_data["jnd"], run, "encoder=wavlm_base_plus_tiny", "trainer=cpu",
                                        f"init_from={jsqa_stage_one[0]}", "data.num_workers=0",
                                        "data.groups_per_batch=2", "data.label_keys=[snr_db]",
                                        "tasks.mos.label=snr_db", "optimizer.lr=1e-3", "trainer.max_epochs=6"))
    start = _start(cfg)
    before, loss_before = _val_srcc(start, cfg), _val_loss(start, cfg)
    train(cfg)
    trained = load_run(run, "last")[0].eval()
    after, loss_after = _val_srcc(trained, cfg), _val_loss(trained, cfg)
    assert after >= 0.9 and loss_after <= 0.7 * loss_before, (before, after, loss_before, loss_after)


# tiny: jsqa_mos_scratch with the tiny WavLM's arch (0.2 s, the default suite; q_proj std / 0.02 over seeds 0-4:
# 1.003, 0.990, 1.029, 0.980, 1.011); full (slow, `make test-full`): WavLM Base+'s 94 M (3.0 s on the shared 2 cores)
@pytest.mark.parametrize(
    ("size", "shape", "min_params"),
    [pytest.param("tiny", (3, 32), 0, id="tiny"), pytest.param("full", (13, 768), 94e6, marks=pytest.mark.slow, id="full")],
)
def test_jsqa_scratch_baseline_builds_wavlm_base_plus_from_random_weights(size, shape, min_params):
    """jsqa_mos_scratch, "the same network trained from scratch": WavLM Base+'s architecture built with no
    checkpoint (offline: nothing to load), randomly initialised, every weight trainable (no LoRA)."""
    cfg = compose("jsqa_mos_scratch")
    assert cfg.encoder.checkpoint is None and cfg.get("init_from") is None
    if size == "tiny":
        with open_dict(cfg):
            cfg.encoder.arch = OmegaConf.load(CONFIGS / "wavlm_base_plus_tiny.yaml").arch
    torch.manual_seed(0)
    module = build_module(cfg)
    assert (module.encoder.num_layers, module.encoder.output_dim) == shape
    params = dict(module.named_parameters())
    assert sum(p.numel() for k, p in params.items() if k.startswith("encoder.")) > min_params
    assert all(p.requires_grad for p in params.values()) and not any("lora_" in k for k in params)
    q = next(p for k, p in params.items() if k.endswith("layers.0.attention.q_proj.weight"))
    init = module.encoder.model.config.initializer_range  # transformers' random init: N(0, initializer_range)
    assert float(q.detach().std()) == pytest.approx(init, rel=0.05), float(q.detach().std())


def test_student_distils_hidden_states_in_bf16(data, tmp_path):
    """The student's hidden-state distillation under bf16-mixed (as `trainer=gpu` trains it): its projections run
    in float32 on the bf16 hidden states autocast gave the encoder."""
    from synth import make_run

    teacher = make_run(tmp_path / "teacher", "haaqi_net_tiny")
    metrics = train(compose("haaqi_net_student_tiny", overrides(
        data["haaqi"], tmp_path / "student", "trainer.precision=bf16-mixed", f"distill.teacher={teacher}")))
    assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["train/distill/hidden/loss"])
