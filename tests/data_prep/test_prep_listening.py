"""`aqa prep listening`: clean clips coded with real codecs, rated by ViSQOL v3 (a stand-in for listeners)."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import soundfile as sf
from synth import broadband

from aqa.cli import main

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (make install)")


def test_prep_listening_writes_a_rated_csv_whose_scores_fall_with_the_bit_rate(tmp_path, capsys):
    src = tmp_path / "clean.wav"
    sf.write(src, broadband(2.5, 48000, channels=2, seed=3).T, 48000)
    out = tmp_path / "test"
    code = main(["prep", "listening", "--src", str(src), "--out", str(out), "--codecs", "mp3",
                 "--bitrates", "16,128", "--excerpt-s", "2", "--no-progress"])
    assert code in (0, None), capsys.readouterr().err
    rows = list(csv.DictReader((out / "test.csv").open()))
    by_system = {r["system"]: r for r in rows}
    assert set(by_system) == {"reference", "mp3_16k", "mp3_128k"}
    for r in rows:  # every path exists, is the 2 s excerpt, and is rated against the clean excerpt
        audio, sr = sf.read(out / r["degraded"])  # paths are relative to the CSV's folder
        assert abs(len(audio) / sr - 2.0) < 0.05 and (out / r["reference"]).is_file()
        assert r["score_source"] == "visqol_v3_moslqo" and 1.0 <= float(r["score"]) <= 5.0
        assert (r["scale_min"], r["scale_max"]) == ("1", "5")  # MOS-LQO's scale: aqa eval --test reports raw MSE
    scores = [float(by_system[s]["score"]) for s in ("mp3_16k", "mp3_128k", "reference")]
    assert np.all(np.diff(scores) > 0), scores  # 16 kbps < 128 kbps < the clean excerpt itself


def test_prep_listening_refuses_an_unknown_codec_in_one_line(tmp_path, capsys):
    src = tmp_path / "clean.wav"
    sf.write(src, broadband(1.0, 16000, channels=1).T, 16000)
    code = main(["prep", "listening", "--src", str(src), "--out", str(tmp_path / "o"), "--codecs", "wma"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "wma" in err, err


def test_prep_listening_keeps_clips_of_one_name_apart(tmp_path, capsys):
    for k, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "clip.wav", broadband(1.2, 16000, channels=1, seed=k).T, 16000)
    out = tmp_path / "test"
    code = main(["prep", "listening", "--src", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                 "--codecs", "opus", "--bitrates", "64", "--excerpt-s", "1", "--rate", "16000", "--no-progress"])
    assert code in (0, None), capsys.readouterr().err
    rows = list(csv.DictReader((out / "test.csv").open()))
    assert len(rows) == 4 and len({r["degraded"] for r in rows}) == 4  # 2 clips x (reference + opus 64k)
    assert len({r["clip"] for r in rows}) == 2
