"""Listening-test importers: each reader on a tiny fixture written in the corpus' published layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.corpora import detect_layout, read_corpus
from data_prep.rated import main as import_main

SR = 8000


def wav(path: Path, seconds: float = 0.2, seed: int = 0, silent: bool = False) -> Path:
    """A tiny noisy tone at SR Hz (or silence)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = (
        0.0 * t
        if silent
        else 0.3 * np.sin(2 * np.pi * (300 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR)
    return path


def samples(out: Path) -> dict[str, dict]:
    """key -> json of every sample in the shards of out."""
    found = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    found[m.name[: -len(".json")]] = json.loads(tar.extractfile(m).read())
                elif m.name.endswith(".flac"):
                    x, sr = sf.read(io.BytesIO(tar.extractfile(m).read()))
                    assert sr == SR and len(x) > 0
    return found


# ------------------------------------------------------------------------------------------- fixtures


def nisqa_corpus(root: Path) -> Path:
    header = (
        "db,con,file,con_description,filename_deg,filename_ref,source,lang,votes,mos,noi,col,dis,loud,"
        "noi_std,col_std,dis_std,loud_std,mos_std,filepath_deg,filepath_ref"
    )
    rows = [
        "NISQA_TRAIN_SIM,1,1,bgn 10 dB,c00001_a.wav,a_ref.wav,src,en,5,3.2,2.8,3.6,4.1,3.9,0.8,0.7,0.6,0.5,0.9,"
        "NISQA_TRAIN_SIM/deg/c00001_a.wav,NISQA_TRAIN_SIM/ref/a_ref.wav",
        "NISQA_VAL_LIVE,7,2,zoom call,c00007_b.wav,,live,en,6,2.1,1.9,2.5,3.0,3.3,1,1,1,1,1,"
        "NISQA_VAL_LIVE/deg/c00007_b.wav,",
        "NISQA_TEST_FOR,3,3,codec,c00003_c.wav,c_ref.wav,src,en,5,4.4,4.5,4.2,4.8,4.6,0,0,0,0,0,"
        "NISQA_TEST_FOR/deg/c00003_c.wav,NISQA_TEST_FOR/ref/c_ref.wav",
    ]
    (root / "NISQA_corpus_file.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "NISQA_corpus_file.csv").write_text("\n".join([header, *rows]) + "\n")
    for i, p in enumerate(
        [
            "NISQA_TRAIN_SIM/deg/c00001_a.wav",
            "NISQA_VAL_LIVE/deg/c00007_b.wav",
            "NISQA_TEST_FOR/deg/c00003_c.wav",
            "NISQA_TRAIN_SIM/ref/a_ref.wav",
        ]
    ):
        wav(root / p, seed=i)
    return root


def bvcc_corpus(root: Path) -> Path:
    data = root / "main" / "DATA"
    (data / "sets").mkdir(parents=True)
    (data / "sets" / "train_mos_list.txt").write_text(
        "sys64e2f-utt491a78a.wav,3.25\nsys7ab3c-utt0a1b2c3.wav,1.5\n"
    )
    (data / "sets" / "val_mos_list.txt").write_text("sys64e2f-utt5d9e0f1.wav,4.0\n")
    (data / "sets" / "test_mos_list.txt").write_text("sys7ab3c-utt99aa00b.wav,2.75\n")
    for i, name in enumerate(
        ["sys64e2f-utt491a78a", "sys7ab3c-utt0a1b2c3", "sys64e2f-utt5d9e0f1", "sys7ab3c-utt99aa00b"]
    ):
        wav(data / "wav" / f"{name}.wav", seed=i)
    return root


def aes_corpus(root: Path) -> Path:
    root.mkdir(parents=True)
    ratings = {
        "Production_Quality": [8.0, 7.0, 9.0],
        "Production_Complexity": [2.0, 3.0, 1.0],
        "Content_Enjoyment": [5.0, 6.0, 4.0],
        "Content_Usefulness": [7.0, 7.0, 7.0],
    }
    lines = [
        {"data_path": "/your_path/EARS/p001/emo_contentment_sentences.wav", **ratings},
        {
            "data_path": "/your_path/MUSDB18/test/Song - A/bass.wav",
            **ratings,
            "Production_Quality": [2.0, 4.0],
        },
    ]
    (root / "AES_natural_speech.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (root / "audiomos2025-track2-dev_list.csv").write_text(
        "sample_id,data_path,Production_Quality,Production_Complexity,Content_Enjoyment,Content_Usefulness\n"
        "audiomos2025-track2-audio-x_0_10000,/your_path/unbalanced_train_segments/audio/x_0_10000.flac,4.1,3.5,3.0,4.3\n"
    )
    wav(root / "EARS/p001/emo_contentment_sentences.wav", seed=1)
    wav(root / "MUSDB18/test/Song - A/bass.wav", seed=2)
    x = np.zeros(int(0.2 * SR), np.float32) + 0.1 * np.sin(np.arange(int(0.2 * SR)) / 3.0).astype(np.float32)
    (root / "unbalanced_train_segments/audio").mkdir(parents=True)
    sf.write(root / "unbalanced_train_segments/audio/x_0_10000.flac", x, SR)
    return root


def odaq_xml(subject: str, scores: dict[str, dict[str, float]]) -> str:
    trials = "".join(
        f'<trial trialName="{t}" trialSeconds="30" referencePlays="2">'
        + "".join(f'<testFile fileName="{f}" plays="1" score="{s}"/>' for f, s in files.items())
        + "</trial>"
        for t, files in scores.items()
    )
    return (
        f'<mushra><info subjectName="{subject}" testName="ODAQ" stimuliDirectory="." trialsPerSession="2" '
        f'testStatus="complete"/>{trials}</mushra>'
    )


def odaq_corpus(root: Path, with_xml: bool = True) -> Path:
    lt = root / "ODAQ" / "ODAQ_listening_test"
    for trial in ("LP_Song1", "PE_Song2"):
        wav(lt / trial / "reference.wav", seed=0)
        wav(lt / trial / "Q1.wav", seed=1)
        wav(lt / trial / "Q2.wav", seed=2)
    if with_xml:
        (lt / "subject01.xml").write_text(
            odaq_xml(
                "s1",
                {"LP_Song1": {"Q1.wav": 20, "Q2.wav": 60, "reference.wav": 100}, "PE_Song2": {"Q1.wav": 35}},
            )
        )
        (lt / "subject02.xml").write_text(
            odaq_xml(
                "s2",
                {"LP_Song1": {"Q1.wav": 30, "Q2.wav": 70, "reference.wav": 96}, "PE_Song2": {"Q1.wav": 45}},
            )
        )
    else:
        (lt / "ODAQ_results.csv").write_text(
            "subject,method,condition,process,item,score\n"
            "s1,LP,Q1,Q1,Song1,20\ns2,LP,Q1,Q1,Song1,30\ns1,PE,Q2,Q2,Song2,80\n"
        )
    return root


def tcd_corpus(root: Path) -> Path:
    for kind, ids in (("chop", ["C_01_CHOP_FA", "C_02_CHOP_MK"]), ("echo", ["C_14_ECHO_FA"])):
        folder = root / "Test Set" / kind
        rows = ["Filename,ConditionID,MOS"]
        for i, name in enumerate(ids):
            wav(folder / f"{name}.wav", seed=i)
            wav(folder / "ref" / f"{name.replace('C_', 'R_', 1)}.wav", seed=9)
            rows.append(f"{name}.wav,{i + 1},{2.5 + i}")
        (folder / f"tcd_{kind}.csv").write_text("\n".join(rows) + "\n")
    return root


# ---------------------------------------------------------------------------------------------- tests


def test_nisqa_reader(tmp_path: Path) -> None:
    ratings, bad = read_corpus(nisqa_corpus(tmp_path / "NISQA_Corpus"), "nisqa")
    assert not bad and [r.split for r in ratings] == ["train", "val", "test"]
    r = ratings[0]
    assert r.mos == 3.2 and r.scores == {"noi": 2.8, "col": 3.6, "dis": 4.1, "loud": 3.9}
    assert r.system == "NISQA_TRAIN_SIM/c1" and r.reference == "NISQA_TRAIN_SIM/ref/a_ref.wav"
    assert r.path.is_file() and ratings[1].reference is None and r.extra["mos_std"] == 0.9


def test_bvcc_reader(tmp_path: Path) -> None:
    ratings, _ = read_corpus(bvcc_corpus(tmp_path / "bvcc"), "bvcc")
    assert [(r.split, r.mos, r.system) for r in ratings] == [
        ("train", 3.25, "sys64e2f"),
        ("train", 1.5, "sys7ab3c"),
        ("val", 4.0, "sys64e2f"),
        ("test", 2.75, "sys7ab3c"),
    ]
    assert all(r.path.is_file() for r in ratings)


def test_aes_reader(tmp_path: Path) -> None:
    ratings, _ = read_corpus(aes_corpus(tmp_path / "aes"), "aes")
    by = {r.path.name: r for r in ratings}
    speech = by["emo_contentment_sentences.wav"]
    assert speech.mos is None and speech.scores == {"pq": 8.0, "pc": 2.0, "ce": 5.0, "cu": 7.0}
    assert speech.extra["pq_n"] == 3 and speech.scale == (1.0, 10.0) and speech.system == "speech"
    assert by["bass.wav"].scores["pq"] == 3.0 and by["bass.wav"].path.is_file()
    assert by["x_0_10000.flac"].split == "val" and by["x_0_10000.flac"].scores["cu"] == 4.3


@pytest.mark.parametrize("with_xml", [True, False])
def test_odaq_reader(tmp_path: Path, with_xml: bool) -> None:
    ratings, _ = read_corpus(odaq_corpus(tmp_path, with_xml), "auto")
    by = {(r.extra["trial"], r.path.name): r for r in ratings}
    assert by[("LP_Song1", "Q1.wav")].mos == 25.0 and by[("LP_Song1", "Q1.wav")].extra["raters"] == 2
    assert all(r.scale == (0.0, 100.0) and r.reference.endswith("reference.wav") for r in ratings)
    assert all(r.path.is_file() and r.split == "test" for r in ratings)
    assert len(ratings) == (4 if with_xml else 2)


def test_tcd_voip_reader(tmp_path: Path) -> None:
    ratings, _ = read_corpus(tcd_corpus(tmp_path / "TCD-VOIP"), "tcd_voip")
    assert [(r.system, r.mos) for r in ratings] == [("chop/1", 2.5), ("chop/2", 3.5), ("echo/1", 2.5)]
    assert ratings[0].reference == "Test Set/chop/ref/R_01_CHOP_FA.wav"
    assert all(r.path.is_file() for r in ratings)


def test_generic_csv_reader(tmp_path: Path) -> None:
    for i in range(3):
        wav(tmp_path / "clips" / f"c{i}.wav", seed=i)
    (tmp_path / "scores.csv").write_text(
        "file,score,reference,system\nclips/c0.wav,4.5,clips/c2.wav,sysA\n"
        "clips/c1.wav,nan,,sysB\nclips/c1.wav,2.0,,sysB\n"
    )
    ratings, bad = read_corpus(tmp_path / "scores.csv", "csv")
    assert [(r.mos, r.system, r.reference) for r in ratings] == [
        (4.5, "sysA", "clips/c2.wav"),
        (2.0, "sysB", None),
    ]
    assert len(bad) == 1 and "score" in bad[0].reason
    (tmp_path / "plain.csv").write_text("clips/c0.wav,3\n")  # no header: file,score order
    assert read_corpus(tmp_path / "plain.csv", "csv")[0][0].mos == 3.0


def test_detect_layout(tmp_path: Path) -> None:
    assert detect_layout(nisqa_corpus(tmp_path / "n")) == "nisqa"
    assert detect_layout(bvcc_corpus(tmp_path / "b")) == "bvcc"
    assert detect_layout(tcd_corpus(tmp_path / "t")) == "tcd_voip"
    assert detect_layout(aes_corpus(tmp_path / "a")) == "aes"


def test_import_cli_writes_shards_and_skips_bad_audio(tmp_path: Path) -> None:
    root = nisqa_corpus(tmp_path / "NISQA_Corpus")
    wav(root / "NISQA_TEST_FOR/deg/c00003_c.wav", silent=True)  # rated but silent: skipped, listed
    out = tmp_path / "out"
    # one rated stimulus dropped: exit 1 unless --allow-partial
    assert import_main(["--src", str(root), "--out", str(out), "--no-progress", "--allow-partial"]) == 0
    got = samples(out)
    assert sorted(got) == ["nisqa-NISQA_TRAIN_SIM-c00001_a", "nisqa-NISQA_VAL_LIVE-c00007_b"]
    meta = got["nisqa-NISQA_TRAIN_SIM-c00001_a"]
    assert (
        meta["mos"] == 3.2 and meta["noi"] == 2.8 and meta["split"] == "train" and meta["corpus"] == "nisqa"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["reason"].split(":")[0] for s in manifest["skipped"]] == ["silent"]
    assert {k: v["samples"] for k, v in manifest["splits"].items()} == {"test": 0, "train": 1, "val": 1}
    assert manifest["label_stats"]["mos"]["count"] == 2
    # a rerun reuses the finished shards (and still reports the dropped stimulus: exit 1)
    assert import_main(["--src", str(root), "--out", str(out), "--no-progress"]) == 1
    assert json.loads((out / "manifest.json").read_text())["jobs"]["num_shards"] == 1


def test_import_cli_generic_csv_hashes_splits(tmp_path: Path) -> None:
    for i in range(6):
        wav(tmp_path / f"c{i}.wav", seed=i)
    (tmp_path / "s.csv").write_text("file,score\n" + "".join(f"c{i}.wav,{i}\n" for i in range(6)))
    out = tmp_path / "out"
    assert (
        import_main(
            [
                "--src",
                str(tmp_path / "s.csv"),
                "--out",
                str(out),
                "--format",
                "csv",
                "--val-fraction",
                "0.5",
                "--corpus-name",
                "mine",
                "--no-progress",
            ]
        )
        == 0
    )
    got = samples(out)
    assert len(got) == 6 and {m["split"] for m in got.values()} <= {"train", "val"}
    assert all(m["corpus"] == "mine" and m["scale"] is None for m in got.values())


# ------------------------------------------------------------------- report line, exit codes, listening-test CSV


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from aqa.cli import main

    code = main(["prep", "import", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_import_exits_1_when_stimuli_were_dropped_unless_allow_partial(tmp_path, capsys):
    for i in range(4):
        wav(tmp_path / f"c{i}.wav", seed=i)
    wav(tmp_path / "quiet.wav", silent=True)
    (tmp_path / "s.csv").write_text(
        "file,score\n" + "".join(f"c{i}.wav,{i}\n" for i in range(4)) + "quiet.wav,2\nc0.wav,n/a\n"
    )
    argv = [
        "--src",
        str(tmp_path / "s.csv"),
        "--out",
        str(tmp_path / "out"),
        "--format",
        "csv",
        "--no-progress",
    ]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert "aqa prep import: shards: 4 used, 2 skipped (silent: 1, unparsed row: 1)" in err
    assert "--allow-partial" in err
    code, _, err = run_cli(capsys, *argv, "--allow-partial")
    assert code == 0 and "shards: 4 used, 2 skipped" in err
    (tmp_path / "good.csv").write_text("file,score\n" + "".join(f"c{i}.wav,{i}\n" for i in range(4)))
    code, _, err = run_cli(
        capsys,
        "--src",
        str(tmp_path / "good.csv"),
        "--out",
        str(tmp_path / "out2"),
        "--format",
        "csv",
        "--no-progress",
    )
    assert code == 0 and "shards: 4 used, 0 skipped" in err


def test_csv_out_writes_a_listening_test_with_references(tmp_path, capsys):
    from aqa.eval.listening import read_test

    root = nisqa_corpus(tmp_path / "NISQA_Corpus")  # row 3 names a reference that is not there
    test = tmp_path / "nisqa_test.csv"
    code, out, err = run_cli(capsys, "--src", str(root), "--csv-out", str(test))
    assert code == 0, err  # a missing reference is reported but drops no stimulus
    assert "csv: 3 used, 0 skipped; 1 reference(s) missing (left empty)" in err
    assert not (tmp_path / "out").exists() and "1 with a reference" in out
    rows = read_test(test)  # what aqa eval --test reads
    assert [r["score"] for r in rows] == [3.2, 2.1, 4.4]
    assert rows[0]["reference"] == str(root / "NISQA_TRAIN_SIM/ref/a_ref.wav") and rows[2]["reference"] == ""
    assert rows[0]["system"] == "NISQA_TRAIN_SIM/c1" and rows[0]["condition"] == "bgn 10 dB"
    assert rows[0]["listener_count"] == "5" and rows[0]["noi"] == "2.8" and rows[0]["scale_max"] == "5.0"
    code, _, _ = run_cli(capsys, "--src", str(root), "--csv-out", str(test), "--score", "noi")
    assert code == 0 and [r["score"] for r in read_test(test)] == [2.8, 1.9, 4.5]


def test_csv_out_drops_missing_audio_and_odaq_keeps_references(tmp_path, capsys):
    from aqa.eval.listening import read_test

    root = odaq_corpus(tmp_path)
    (root / "ODAQ/ODAQ_listening_test/PE_Song2/Q1.wav").unlink()
    test = tmp_path / "odaq.csv"
    code, _, err = run_cli(capsys, "--src", str(root), "--csv-out", str(test))
    assert code == 1 and "csv: 3 used, 1 skipped (missing file: 1)" in err and "Q1.wav" in err
    code, _, _ = run_cli(capsys, "--src", str(root), "--csv-out", str(test), "--allow-partial")
    rows = read_test(test)
    assert code == 0 and len(rows) == 3
    assert all(r["reference"].endswith("reference.wav") and Path(r["reference"]).is_file() for r in rows)
    assert {r["condition"] for r in rows} == {"LP"} and rows[0]["listener_count"] == "2"


def test_import_help_documents_the_generic_layout_and_bad_usage_is_one_line(capsys):
    from aqa.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["prep", "import", "-h"])
    assert stop.value.code == 0
    help_text = capsys.readouterr().out
    assert "file,score[,reference][,system][,split]" in help_text and "--csv-out" in help_text
    code, _, err = run_cli(capsys, "--src", "x.csv")
    assert code == 2 and err.strip() == (
        "aqa prep import: error: give --out DIR (shards) and/or --csv-out FILE (listening-test CSV)"
    )
