"""FAD (aqa.eval.fad): the Fréchet distance against its closed form, its guards, the embeddings of a tiny zoo encoder,
and `aqa eval --test ... --baselines fad` reporting it at the system level only."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from synth import broadband

from aqa.cli import main
from aqa.eval.fad import (
    MIN_CLIPS,
    build_fad_encoder,
    embed_files,
    fad,
    frechet_distance,
    gaussian_stats,
    reference_set,
)

SR = 16000
TINY = "mert_v1_95m_tiny"


def closed_form_diagonal(mu1, var1, mu2, var2) -> float:
    # diagonal covariances commute: sqrt(S1 S2) = diag(sqrt(v1 v2)), so FD = |mu1-mu2|^2 + sum (sqrt v1 - sqrt v2)^2
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))


def test_frechet_distance_matches_the_closed_form_of_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(closed_form_diagonal(mu1, var1, mu2, var2), rel=1e-9)


def test_frechet_distance_of_full_covariances_matches_a_rotated_diagonal_pair():
    # S1 = Q D1 Q^T, S2 = Q D2 Q^T commute too: the same closed form holds for non-diagonal matrices
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    d1, d2 = rng.uniform(0.2, 2.0, 5), rng.uniform(0.2, 2.0, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    got = frechet_distance(mu1, q @ np.diag(d1) @ q.T, mu2, q @ np.diag(d2) @ q.T)
    assert got == pytest.approx(closed_form_diagonal(mu1, d1, mu2, d2), rel=1e-7)


def test_frechet_distance_of_non_commuting_covariances_matches_scipy_sqrtm():
    import scipy.linalg

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)


def test_fad_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(2)
    a = rng.normal([0.0, 1.0, 2.0], [1.0, 2.0, 0.5], size=(20000, 3))
    b = rng.normal([1.0, 1.0, 0.0], [0.5, 2.0, 1.5], size=(20000, 3))
    truth = closed_form_diagonal(
        np.array([0.0, 1.0, 2.0]), np.array([1.0, 4.0, 0.25]), np.array([1.0, 1.0, 0.0]), np.array([0.25, 4.0, 2.25])
    )
    assert fad(a, b) == pytest.approx(truth, rel=0.02)


def test_identical_sets_give_zero_even_when_rank_deficient(caplog):
    x = np.random.default_rng(3).normal(size=(10, 32))  # 10 samples of 32 dims: covariance rank 9
    assert fad(x, x.copy()) == pytest.approx(0.0, abs=1e-6)
    assert "rank-deficient" in caplog.text
    y = x + 0.5  # a shifted copy: the mean term alone, the covariances are the same
    assert fad(y, x) == pytest.approx(32 * 0.25, rel=1e-4)


def test_too_few_embeddings_or_mismatched_sizes_are_refused():
    x = np.zeros((MIN_CLIPS - 1, 4))
    with pytest.raises(ValueError, match=f"at least {MIN_CLIPS} embeddings"):
        gaussian_stats(x)
    with pytest.raises(ValueError, match="sizes differ"):
        fad(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def _clips(folder: Path, n: int, seconds: float = 0.5) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        path = folder / f"c{k}.wav"
        sf.write(path, broadband(seconds + 0.05 * k, SR, channels=1, seed=k)[0], SR)
        paths.append(str(path))
    return paths


def test_embeddings_of_a_tiny_zoo_encoder_are_per_clip_and_batch_independent(tmp_path):
    torch.manual_seed(0)
    encoder = build_fad_encoder(TINY)
    paths = _clips(tmp_path, 3)
    batched = embed_files(paths, encoder, layer=-1, batch_size=3, device="cpu")
    alone = embed_files(paths, encoder, layer=-1, batch_size=1, device="cpu")
    assert [e.shape for e in batched] == [(encoder.output_dim,)] * 3
    for a, b in zip(batched, alone, strict=True):  # padding frames are masked out of the time mean
        np.testing.assert_allclose(a, b, atol=1e-4)
    frames = embed_files(paths[:1], encoder, layer=0, pooling="frames", device="cpu")[0]
    assert frames.ndim == 2 and frames.shape[1] == encoder.output_dim and frames.shape[0] > 10
    with pytest.raises(ValueError, match="hidden states"):
        embed_files(paths[:1], encoder, layer=99, device="cpu")


def test_reference_set_needs_references_or_an_explicit_folder(tmp_path):
    rows = [{"degraded": "a.wav", "reference": "", "system": "x"}]
    with pytest.raises(ValueError, match="--fad-reference"):
        reference_set(rows)
    paths = _clips(tmp_path / "refs", 2)
    assert reference_set(rows, tmp_path / "refs") == sorted(paths)


def _fad_test(tmp_path: Path) -> Path:
    """3 systems x 4 items on 4 references: clean-ish (0.02 noise), medium (0.3), heavy (1.0); scores 5/3/1."""
    folder = tmp_path / "audio"
    refs = _clips(folder, 4, seconds=1.0)
    rng = np.random.default_rng(0)
    lines = ["degraded,score,reference,system"]
    for system, level, score in (("clean", 0.02, 5), ("medium", 0.3, 3), ("heavy", 1.0, 1)):
        for k, ref in enumerate(refs):
            x, _ = sf.read(ref)
            noisy = x + level * np.sqrt(np.mean(x**2)) * rng.standard_normal(x.size)
            sf.write(folder / f"{system}{k}.wav", noisy.astype(np.float32), SR)
            lines.append(f"{system}{k}.wav,{score + 0.1 * k},{Path(ref).name},{system}")
    test = folder / "test.csv"
    test.write_text("\n".join(lines) + "\n")
    return test


def test_eval_reports_fad_at_the_system_level_only_and_it_grows_with_the_degradation(tmp_path, capsys, caplog):
    test = _fad_test(tmp_path)
    out = tmp_path / "out"
    args = ["eval", "--test", str(test), "--baselines", "fad", "--fad-encoder", TINY, "--fad-layer", "1"]
    assert main([*args, "--out", str(out), "--bootstrap", "50", "--no-progress", "--device", "cpu"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    with (out / "summary.csv").open(newline="") as f:
        summary = list(csv.DictReader(f))
    fad_rows = [r for r in summary if r["model"] == "fad"]
    assert fad_rows and {r["level"] for r in fad_rows} == {"system"}  # no item-level rows, none faked
    srcc = next(r for r in fad_rows if r["metric"] == "SRCC")
    assert srcc["n"] == "3" and float(srcc["value"]) == pytest.approx(-1.0)  # lower FAD = better score
    with (out / "fad_systems.csv").open(newline="") as f:
        systems = {r["system"]: r for r in csv.DictReader(f)}
    assert sorted(systems) == ["clean", "heavy", "medium"] and systems["clean"]["layer"] == "1"
    assert systems["clean"]["clips"] == systems["clean"]["reference_clips"] == "4"
    assert float(systems["clean"]["fad"]) < float(systems["medium"]["fad"]) < float(systems["heavy"]["fad"])
    assert "rank-deficient" in caplog.text  # 4 clips of 32 dimensions
    preds = out / "predictions.csv"  # written for per-item columns only: FAD has none
    assert not preds.exists() or "fad" not in next(csv.reader(preds.open()))
    assert (out / "scatter_fad.png").is_file()
