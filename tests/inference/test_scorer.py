"""The Python API: `aqa.load(path)` on runs, exported models and ensembles; `score`, `embed`, `score_files`."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from synth import broadband, make_run, two_member_ensemble

from aqa.cli import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    run = make_run(tmp, "mmmos_tiny")
    assert main(["export", str(run), str(tmp / "model")]) == 0
    return tmp / "model"


def test_api_scores_arrays_like_the_cli_scores_the_file(exported, tmp_path, capsys):
    import aqa

    x = broadband(1.2, 44100, channels=2, seed=7)  # (C, T) at 44.1 kHz
    y = broadband(0.7, 44100, channels=2, seed=8)
    sf.write(tmp_path / "x.wav", x.T, 44100, subtype="FLOAT")
    assert main(["score", str(exported), str(tmp_path / "x.wav"), "--no-progress"]) == 0
    cli = json.loads(capsys.readouterr().out.splitlines()[0])["quality"]
    scorer = aqa.load(exported, device="cpu")
    one = scorer.score(x, sr=44100)
    assert set(one) == {"quality"} and isinstance(one["quality"], float)
    assert one["quality"] == pytest.approx(cli, abs=1e-5)
    assert scorer.score(torch.from_numpy(x), sr=44100)["quality"] == pytest.approx(cli, abs=1e-5)
    batch = scorer.score([x, y, str(tmp_path / "x.wav")], sr=44100)["quality"]  # arrays and a path, padded
    assert batch.shape == (3,)
    np.testing.assert_allclose(batch, [cli, scorer.score(y, sr=44100)["quality"], cli], atol=1e-5)
    with pytest.raises(ValueError, match="sr="):
        scorer.score(x)
    with pytest.raises(ValueError, match="no embedding task"):
        scorer.embed(x, sr=44100)
    records = list(scorer.score_files([tmp_path / "x.wav", tmp_path / "missing.wav"]))
    assert records[0]["quality"] == pytest.approx(cli, abs=1e-5) and "not found" in records[1]["error"]


def test_import_aqa_is_light():
    code = (
        "import sys, aqa; print(callable(aqa.load), [m for m in ('torch', 'lightning') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "[]"], done.stderr


def test_embed_and_reference_scores_agree(tmp_path):
    from aqa.inference.loading import load

    run = make_run(tmp_path, "deepaq_lora_tiny")
    scorer = load(run, device="cpu", precision="fp32")
    clean = broadband(1.0, 16000, channels=1, seed=1)[0]
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    emb = scorer.embed([clean, noisy], sr=16000)["quality"]
    assert emb.shape[0] == 2 and emb.ndim == 2
    got = scorer.score([clean, noisy], sr=16000, reference=clean)["quality"]
    np.testing.assert_allclose(got, [0.0, -np.linalg.norm(emb[1] - emb[0])], atol=1e-5)
    with pytest.raises(ValueError, match="reference"):
        scorer.score(noisy, sr=16000)  # an embedding model needs a reference


@pytest.mark.parametrize("zscore", [False, True])
def test_ensemble_folder_scores_the_mean_of_its_members(tmp_path, zscore):
    from aqa.inference.loading import load

    folder = two_member_ensemble(tmp_path, zscore)
    ens = load(folder, device="cpu")
    clean = broadband(1.0, 16000, channels=1, seed=1)[0]
    noisy = [
        clean + level * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
        for level in (0.02, 0.1)
    ]
    a, b = (
        load(folder.parent / "runs" / n / n, device="cpu").score(noisy, sr=16000, reference=clean)["quality"]
        for n in ("a", "b")
    )
    np.testing.assert_allclose(b, 1.5 * a, rtol=1e-4)  # the scaled head: the members really differ
    expected = ((a + 1.0) / 2.0 + (b + 3.0) / 0.5) / 2 if zscore else (a + b) / 2
    np.testing.assert_allclose(
        ens.score(noisy, sr=16000, reference=clean)["quality"], expected, rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="ensemble"):
        ens.embed(clean, sr=16000)


def test_ensemble_score_files_combines_per_file_with_calibration(tmp_path, capsys, monkeypatch):
    """An ensemble with a calibration.json scores files (its calibrated values stay scalars); the members'
    records are combined file by file: a file one member windowed and the other did not gives its whole-file
    record only, a file one member failed on gives one error record, and the next file still lines up."""
    import aqa.inference.scorer as scorer_mod
    from aqa.inference.calibration import fit_cubic
    from aqa.inference.loading import load

    folder = two_member_ensemble(tmp_path, zscore=False)
    cal = fit_cubic(np.linspace(-3, 0, 20), 1 + np.linspace(0, 4, 20))
    (folder / "calibration.json").write_text(json.dumps({"quality": cal.to_dict()}))
    clean = broadband(1.0, 16000, channels=1, seed=1)[0]
    sf.write(tmp_path / "clean.wav", clean, 16000)
    sf.write(tmp_path / "noisy.wav", clean + 0.05 * broadband(1.0, 16000, channels=1, seed=2)[0], 16000)
    args = [str(tmp_path / "noisy.wav"), "--reference", str(tmp_path / "clean.wav"), "--no-progress"]
    assert main(["score", str(folder), *args]) == 0
    (rec,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rec["quality_calibrated"] == pytest.approx(float(cal([rec["quality"]])[0]), abs=1e-9)

    ens = load(folder, device="cpu")
    a, b = (m.module for m in ens.members)
    x = [{"file": "x", "start_s": 0.0, "end_s": 1.0, "quality": -1.0}, {"file": "x", "start_s": 1.0, "end_s": 2.0,
         "quality": -3.0}, {"file": "x", "quality": -2.0, "windows": 2}]  # fmt: skip
    streams = {
        id(a): x + [{"file": "y", "error": "cannot decode y: bad"}, {"file": "z", "quality": -1.0}],
        id(b): [{"file": "x", "quality": -4.0, "note": "too short"}, {"file": "y", "quality": -1.0},
                {"file": "z", "quality": -3.0}],
    }  # fmt: skip
    monkeypatch.setattr(scorer_mod, "stream_files", lambda module, *args, **kw: iter(streams[id(module)]))
    got = list(ens.score_files(["x", "y", "z"]))
    assert [r["file"] for r in got] == ["x", "y", "z"]
    assert got[0]["quality"] == pytest.approx(-3.0) and "windows" not in got[0]
    assert "too short" in got[0]["note"] and "windowed this file differently" in got[0]["note"]
    assert got[1] == {"file": "y", "error": "cannot decode y: bad"}
    assert got[2]["quality"] == pytest.approx(-2.0) and isinstance(got[2]["quality_calibrated"], float)
    streams[id(b)] = x + streams[id(b)][1:]  # both windowed alike: window records, then the whole file
    got = list(ens.score_files(["x", "y", "z"]))
    assert [(r["file"], r.get("start_s")) for r in got] == [("x", 0.0), ("x", 1.0), ("x", None), ("y", None),
                                                            ("z", None)]  # fmt: skip
    assert got[2]["windows"] == 2 and got[2]["quality"] == pytest.approx(-2.0)


def test_a_reference_given_once_per_clip_is_decoded_and_embedded_once(tmp_path, monkeypatch):
    import aqa.inference.engine as score_module
    import aqa.inference.loading as loading
    import aqa.inference.scorer as scorer_module

    run = make_run(tmp_path, "deepaq_lora_tiny")
    scorer = loading.load(run, device="cpu", precision="fp32")
    clean = broadband(1.0, 16000, channels=1, seed=1)[0]
    sf.write(tmp_path / "clean.wav", clean, 16000, subtype="FLOAT")
    clips = [clean + 0.02 * k * np.random.default_rng(k).standard_normal(clean.shape).astype(np.float32)
             for k in range(4)]
    expected = scorer.score(clips, sr=16000, reference=clean)["quality"]  # one shared reference
    loads, embedded = [], []
    real_load, real_embed = scorer_module._load, score_module.embed_clips
    monkeypatch.setattr(scorer_module, "_load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    monkeypatch.setattr(
        score_module, "embed_clips", lambda m, c, *a, **k: embedded.append(len(c)) or real_embed(m, c, *a, **k)
    )
    got = scorer.score(clips, sr=16000, reference=[str(tmp_path / "clean.wav")] * 4)["quality"]
    assert len(loads) == 1 and embedded == [4, 1], (loads, embedded)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    embedded.clear()
    scorer.score(clips, sr=16000, reference=[clean] * 4)  # the same array object
    assert embedded == [4, 1]
    scorer.score(clips, sr=16000, reference=[clean.copy() for _ in clips])  # equal but distinct: each embedded
    assert embedded == [4, 1, 4, 4]


def _mmmos_ensemble(tmp_path: Path, edit) -> Path:
    """Three tiny MMMOS runs from one seed (equal weights), ``edit(i, state_dict)`` applied to run i's checkpoint,
    as one ensemble folder."""
    import yaml

    runs = []
    for i in range(3):
        run = make_run(tmp_path / f"r{i}", "mmmos_tiny")
        ckpt = run / "checkpoints" / "best.ckpt"
        state = torch.load(ckpt, weights_only=True)
        edit(i, state["state_dict"])
        torch.save(state, ckpt)
        runs.append(run)
    folder = tmp_path / "ens"
    folder.mkdir()
    spec = {"kind": "ensemble", "which": "best", "zscore": False, "tasks": ["quality"],
            "members": [{"run": str(r), "stats": {}} for r in runs]}
    (folder / "ensemble.yaml").write_text(yaml.safe_dump(spec))
    return folder


def test_ensemble_members_share_equal_encoders_and_run_them_once_per_batch(tmp_path):
    from aqa.inference.ensemble import ForwardMemo
    from aqa.inference.loading import load

    def edit(i, state):
        # every run its own fusion layer weights and head; run 2 also its own MuQ (one weight nudged)
        state["encoder.layer_weights.0.weights"] += 0.1 * i
        state["heads.quality.mlp.1.weight"] *= 1 + 0.5 * i
        if i == 2:
            key = next(k for k in state if k.startswith("encoder.members.1.") and state[k].is_floating_point())
            state[key] += 1e-3

    folder = _mmmos_ensemble(tmp_path, edit)
    scorer = load(folder, device="cpu", precision="fp32")
    fusions = [m.module.encoder for m in scorer.members]
    assert fusions[0] is not fusions[1]  # the layer weights differ: each member keeps its own fusion
    wavlm, muq, m2d = zip(*(f.members for f in fusions), strict=True)
    assert wavlm[0] is wavlm[1] is wavlm[2] and m2d[0] is m2d[1] is m2d[2]
    assert muq[0] is muq[1] and muq[2] is not muq[0]  # a changed weight is never shared
    clips = [broadband(s, 16000, channels=1, seed=s)[0] for s in (1, 2, 3)]
    got = scorer.score(clips, sr=16000)["quality"]
    assert isinstance(wavlm[0].forward, ForwardMemo) and wavlm[0].forward.runs == 1  # one batch, 3 members
    assert muq[0].forward.runs == 1 and not isinstance(muq[2].forward, ForwardMemo)
    alone = [load(m, device="cpu", precision="fp32").score(clips, sr=16000)["quality"]
             for m in sorted((tmp_path).glob("r*/mmmos_tiny"))]
    np.testing.assert_allclose(got, np.mean(alone, axis=0), atol=1e-5)
    assert np.ptp(np.array(alone), axis=0).min() > 1e-3  # the members really differ


def test_ensemble_of_equal_runs_shares_the_whole_encoder(tmp_path):
    from aqa.inference.loading import load

    scorer = load(_mmmos_ensemble(tmp_path, lambda i, state: None), device="cpu", precision="fp32")
    assert scorer.members[0].module.encoder is scorer.members[1].module.encoder is scorer.members[2].module.encoder
    records = list(scorer.score_files([str(p) for p in write_clips(tmp_path)], batch_size=2))
    assert scorer.members[0].module.encoder.forward.runs == 2  # two batches of the three files, not six
    alone = list(load(tmp_path / "r0" / "mmmos_tiny", device="cpu").score_files(
        [str(p) for p in write_clips(tmp_path)], batch_size=2))
    assert [r["quality"] for r in records] == pytest.approx([r["quality"] for r in alone], abs=1e-5)


def test_ensemble_members_at_one_rate_decode_each_file_once(tmp_path, monkeypatch):
    import aqa.inference.loading as loading
    import aqa.inference.scorer as scorer_module

    scorer = loading.load(_mmmos_ensemble(tmp_path, lambda i, state: None), device="cpu", precision="fp32")
    paths = [str(p) for p in write_clips(tmp_path)]
    expected = scorer.score(paths)["quality"]
    loads = []
    real_load = scorer_module._load
    monkeypatch.setattr(scorer_module, "_load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    np.testing.assert_allclose(scorer.score(paths)["quality"], expected, atol=1e-6)
    assert sorted(loads) == sorted(paths)  # three members at 16 kHz: each file decoded once, not three times


def write_clips(folder: Path) -> list[Path]:
    paths = [folder / f"clip{s}.wav" for s in (1, 2, 3)]
    for s, p in zip((1, 2, 3), paths, strict=True):
        sf.write(p, broadband(0.5 + 0.3 * s, 16000, channels=1, seed=s)[0], 16000, subtype="FLOAT")
    return paths


def test_soundfile_stereo_arrays_score_like_channels_first_and_unclear_layouts_are_refused(exported, tmp_path):
    import aqa

    sf.write(tmp_path / "s.wav", broadband(0.5, 16000, channels=2, seed=3).T, 16000, subtype="FLOAT")
    x, sr = sf.read(tmp_path / "s.wav", dtype="float32")  # soundfile's (T, C)
    assert x.shape == (8000, 2)
    scorer = aqa.load(exported, device="cpu")
    # the file, then the arrays: (T, C), (C, T) numpy and torch, and (T,) (one channel: another score)
    got = scorer.score([str(tmp_path / "s.wav"), x, x.T, torch.from_numpy(x.T.copy()), x[:, 0]], sr=sr)["quality"]
    np.testing.assert_allclose(got[1:4], [got[0]] * 3, atol=1e-5)
    assert abs(got[4] - got[0]) > 1e-6  # the channels differ, so a misread layout could not pass
    for shape in ((4, 4), (16, 44100), (2, 3, 100)):  # no axis of <= 8 channels beside a longer one; 3-D
        with pytest.raises(ValueError, match=r"\(T,\), \(C, T\) or \(T, C\) with C <= 8"):
            scorer.score(np.zeros(shape, np.float32), sr=sr)


def test_api_errors_name_arguments_and_the_cli_names_its_flags(tmp_path, capsys):
    from aqa.inference.loading import load

    run = make_run(tmp_path, "deepaq_lora_tiny")
    sf.write(tmp_path / "a.wav", broadband(0.5, 16000, channels=1, seed=1)[0], 16000)
    scorer = load(run, device="cpu")
    api_errors = []
    for call in (
        lambda: scorer.score(np.zeros(16000, np.float32), sr=16000),
        lambda: scorer.score_files([tmp_path / "a.wav"]),
        lambda: scorer.score_files([(tmp_path / "a.wav", tmp_path / "a.wav")], window_s=0.0),
    ):
        with pytest.raises(ValueError) as err:
            call()
        api_errors.append(str(err.value))
    assert "--" not in "".join(api_errors), api_errors
    assert "reference=" in api_errors[0] and "(file, reference) pairs" in api_errors[1]
    assert api_errors[2].startswith("window_s and hop_s must be > 0")
    assert main(["score", str(run), str(tmp_path / "a.wav"), "--no-progress"]) == 2
    assert main(["score", str(run), str(tmp_path / "a.wav"), "--window-s", "0", "--reference", str(tmp_path / "a.wav")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "pass --reference CLEAN.wav, --pairs or --ref-dir" in err[0] and "reference=" not in err[0]
    assert "--window-s and --hop-s must be > 0" in err[1]


def test_readme_python_api_block_runs(exported, tmp_path, monkeypatch, capsys):
    # the README's "Python API" block, run as written on tiny models ("models/mmmos": an exported mmmos_tiny,
    # "models/deepaq": a deepaq_lora_tiny run, both on the CPU) in a folder holding the files it names
    import re

    import aqa
    from aqa.inference.loading import load

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = re.findall(r"### Python API\n\n```python\n(.*?)```", readme, flags=re.S)
    assert "(file, reference) pairs" in block and "score_files(pairs)" in block  # the pairs form is shown
    models = {"models/mmmos": exported, "models/deepaq": make_run(tmp_path / "runs", "deepaq_lora_tiny")}
    monkeypatch.setattr(aqa, "load", lambda path, *a, **k: load(models[path], device="cpu", precision="fp32"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    names = ["a", "b", "coded", "original", "other"]
    clips = {name: broadband(0.5, 48000, channels=2, seed=i) for i, name in enumerate(names)}
    for name, x in clips.items():
        sf.write(f"{name}.wav", x.T, 48000)
    shutil.copy("a.wav", "folder/a.wav")
    for name in ("b", "other"):  # the block names mp3 files: written when this libsndfile writes MP3
        try:
            sf.write(f"{name}.mp3", clips[name].T, 48000)
        except (sf.LibsndfileError, ValueError, TypeError):
            pytest.skip("this libsndfile cannot write MP3")
    exec(compile(block, "README.md", "exec"), {**clips})  # arrays named as in the block (a, b, coded, original)
    out = capsys.readouterr().out
    assert "'quality'" in out and "coded.wav" in out
