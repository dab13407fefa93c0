"""Bad input gets one clear line (issue 15): every audio input, reference included, through the CLI."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import make_run

from aqa.audio import MIN_SECONDS, AudioError, audio_note, load_audio
from aqa.cli import main

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")




def tone(path: Path, seconds: float, sr: int = 16000, amplitude: float = 0.3) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return path


def broken_files(folder: Path) -> dict[str, Path]:
    """Random bytes (as .wav and .mp3), a 0-byte file and a text file."""
    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    files = {"random": folder / "random.wav", "mp3": folder / "random.mp3", "empty": folder / "empty.wav",
             "text": folder / "notes.txt"}
    files["random"].write_bytes(noise)
    files["mp3"].write_bytes(noise)
    files["empty"].write_bytes(b"")
    files["text"].write_text("hello, not audio\n")
    return files


def assert_one_line(message: str, path: Path) -> None:
    assert "\n" not in message.strip() and "Traceback" not in message, message
    assert len(message.strip()) < 160, message
    assert path.name in message, message
    for leak in ("ffmpeg -", "-nostdin", "aqa_decode_", "pcm_f32le", "possibly a pipe", "soundfile said"):
        assert leak not in message, message


# ------------------------------------------------------------------------------------------ load_audio


@needs_ffmpeg
def test_decode_errors_are_one_short_line_naming_the_file_and_reason(tmp_path, capfd):
    files = broken_files(tmp_path)
    reasons = {"random": "corrupt", "mp3": "corrupt", "empty": "empty", "text": "corrupt"}
    for key, path in files.items():
        with pytest.raises(AudioError) as info:
            load_audio(path)
        assert_one_line(str(info.value), path)
        assert reasons[key] in str(info.value)
        assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    # libmpg123 (inside libsndfile) must not write "Note: Trying to resync..." to the terminal
    captured = capfd.readouterr()
    assert "resync" not in captured.err and "Note:" not in captured.err, captured.err


def test_decoded_but_empty_audio_is_named(tmp_path):
    sf.write(tmp_path / "no_samples.wav", np.zeros((0, 1)), 16000)
    with pytest.raises(AudioError, match="no_samples.wav: empty"):
        load_audio(tmp_path / "no_samples.wav")


def test_audio_note_uses_the_metric_minimum_length():
    from aqa.metrics import visqol

    assert visqol.MIN_SECONDS is MIN_SECONDS  # one constant: `aqa metric` refuses what `aqa score` notes
    sr = 16000
    assert audio_note(np.full((1, sr), 0.1, np.float32), sr) is None
    assert "too short" in audio_note(np.full((1, int(0.05 * sr)), 0.1, np.float32), sr)
    assert "silent" in audio_note(np.zeros((1, sr), np.float32), sr)


# ------------------------------------------------------------------------------------------ aqa score


@needs_ffmpeg
def test_score_with_a_broken_reference_is_one_line(tmp_path, capsys):
    run = make_run(tmp_path, "deepaq_lora_tiny")  # an embedding model: it reads the reference
    clip = tone(tmp_path / "clip.wav", 1.0)
    for path in broken_files(tmp_path / "bad").values():
        code = main(["score", str(run), str(clip), "--reference", str(path), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = [ln for ln in err.splitlines() if ln.startswith("aqa score:")]
        assert len(lines) == 1 and "reference" in lines[0], err
        assert_one_line(lines[0], path)


@needs_ffmpeg
def test_score_records_name_broken_files_in_one_short_line(tmp_path, capsys):
    run = make_run(tmp_path)
    files = broken_files(tmp_path / "bad")
    assert main(["score", str(run), *map(str, files.values()), "--no-progress"]) == 1
    records = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert len(records) == len(files)
    for record, path in zip(records, files.values(), strict=True):
        assert "quality" not in record
        assert_one_line(record["error"], path)


def test_score_notes_silent_and_short_clips(tmp_path, capsys):
    run = make_run(tmp_path)
    good = tone(tmp_path / "good.wav", 1.0)
    short = tone(tmp_path / "short.wav", 0.05)
    silent = tone(tmp_path / "silent.wav", 1.0, amplitude=0.0)
    assert main(["score", str(run), str(good), str(short), str(silent), "--no-progress"]) == 0
    records = {Path(r["file"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert "note" not in records["good.wav"]
    assert "too short" in records["short.wav"]["note"] and f"{MIN_SECONDS:g} s" in records["short.wav"]["note"]
    assert "silent" in records["silent.wav"]["note"]
    assert all(np.isfinite(r["quality"]) for r in records.values())


# ------------------------------------------------------------------------------------------ aqa metric


def write_pairs(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["reference", "degraded"])
        w.writerows(rows)
    return path


def test_metric_pairs_with_only_a_header_is_an_error(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.csv", [])
    assert main(["metric", "peaq", "--pairs", str(pairs), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no pairs" in err and "pairs.csv" in err and "Traceback" not in err


def test_metric_pairs_empty_degraded_cell_names_the_row_and_reports_counts(tmp_path, capsys):
    ref = tone(tmp_path / "ref.wav", 1.0)
    deg = tone(tmp_path / "deg.wav", 1.0, amplitude=0.2)
    pairs = write_pairs(tmp_path / "pairs.csv", [("ref.wav", "deg.wav"), ("ref.wav", ""), ("ref.wav", "nope.wav")])
    code = main(["metric", "peaq", "--pairs", str(pairs), "--no-progress"])
    out, err = capsys.readouterr()
    records = [json.loads(ln) for ln in out.splitlines()]
    assert code == 1
    assert [Path(r["degraded"]).name for r in records] == [deg.name, "nope.wav"]
    assert "error" not in records[0] and "nope.wav" in records[1]["error"] and ref.exists()
    report = err.strip().splitlines()[-1]
    assert "1 pair(s) scored" in report and "1 with errors" in report, report
    assert "1 row(s) skipped" in report and "row 3: empty 'degraded' cell" in report, report


def test_metric_pairs_all_rows_without_degraded_is_an_error(tmp_path, capsys):
    tone(tmp_path / "ref.wav", 1.0)
    pairs = write_pairs(tmp_path / "pairs.csv", [("ref.wav", "")])
    assert main(["metric", "peaq", "--pairs", str(pairs), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no pairs" in err and "row 2: empty 'degraded' cell" in err


@needs_ffmpeg
def test_metric_broken_reference_is_one_line(tmp_path, capsys):
    deg = tone(tmp_path / "deg.wav", 1.0)
    for path in broken_files(tmp_path / "bad").values():
        assert main(["metric", "peaq", "--ref", str(path), "--deg", str(deg), "--no-progress"]) == 1
        record = json.loads(capsys.readouterr().out)
        assert record["error"].startswith("cannot read reference")
        assert_one_line(record["error"], path)


# ------------------------------------------------------------------------------------------ aqa prep


def codec_args(src: Path, out: Path) -> list[str]:
    return ["prep", "codec", "--src", str(src), "--out", str(out), "--excerpt-s", "1", "--max-excerpts", "1",
            "--versions-per-excerpt", "1", "--codecs", "mp3", "--bitrates", "64", "--no-visqol", "--no-progress"]


@needs_ffmpeg
def test_prep_warns_when_a_split_comes_out_empty_and_says_why(tmp_path, capsys):
    tone(tmp_path / "long.wav", 2.0, sr=44100)
    tone(tmp_path / "short.wav", 0.5, sr=44100)
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,split\n{tmp_path / 'long.wav'},train\n{tmp_path / 'short.wav'},val\n")
    code = main(codec_args(listing, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 0, err
    warning = [ln for ln in err.splitlines() if ln.startswith("warning: split 'val' is empty")]
    assert len(warning) == 1 and "short.wav" in warning[0] and "too short" in warning[0], err
    assert "split 'train'" not in err and "Traceback" not in err


@needs_ffmpeg
def test_prep_exits_non_zero_when_nothing_usable_was_written(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    tone(src / "a.wav", 0.5, sr=44100)
    tone(src / "b.wav", 0.4, sr=44100)
    assert main(codec_args(src, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "nothing usable was written" in err and "too short" in err and "Traceback" not in err


def test_prep_import_ends_with_a_count_line(tmp_path, capsys):
    for i in range(3):
        tone(tmp_path / f"c{i}.wav", 1.0, amplitude=0.1 * (i + 1))
    tone(tmp_path / "quiet.wav", 1.0, amplitude=0.0)
    rows = "".join(f"c{i}.wav,{i + 1}\n" for i in range(3)) + "quiet.wav,2\nc0.wav,not-a-number\n"
    (tmp_path / "s.csv").write_text("file,score\n" + rows)
    argv = ["prep", "import", "--src", str(tmp_path / "s.csv"), "--format", "csv", "--no-progress"]
    for extra, expected in (([], 1), (["--allow-partial"], 0)):  # dropped rows fail unless partial is allowed
        code = main([*argv, "--out", str(tmp_path / f"out{expected}"), *extra])
        err = capsys.readouterr().err
        assert code == expected and "Traceback" not in err, err
        report = next(line for line in err.splitlines() if "used," in line)
        assert "3 used, 2 skipped" in report, report
        assert ("--allow-partial" in err) == (expected == 1), err
        assert "silent: 1" in report and "unparsed row: 1" in report, report


# ------------------------------------------------------------------------------------------ help


def test_help_shows_defaults_output_and_exit_codes(capsys):
    for argv in (["score", "--help"], ["metric", "--help"], ["calibrate", "--help"], ["prep", "codec", "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 every file scored" in text and '"note"' in text  # score
    assert "exit codes: 0 every pair scored" in text  # metric
    assert "(default best)" in text and "(default cubic)" in text
    assert "(default opus,mp3,aac)" in text and "(default 16,32,48,64,80,96,128)" in text
    assert text.count("FILE instead of stdout") == 2 and "as well as" not in text  # --out: one meaning, score and metric
