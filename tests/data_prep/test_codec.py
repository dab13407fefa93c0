"""data_prep.codec: codec shards (grouping, splits, deterministic jobs, resume, ViSQOL labels) and list files."""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import (
    CODECS,
    PIECES,
    SRC_SR,
    STORE_SR,
    VERSIONS,
    broadband,
    build,
    read_shards,
    write_pieces,
)

from data_prep.codec import assign_split, build_codec_shards, piece_id_for
from data_prep.codec import main as codec_main
from data_prep.shards import list_sources, source_units

REPO = Path(__file__).resolve().parents[2]
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (`make install`)")

def test_shards_counts_keys_and_grouping(shards):
    root, _, manifest = shards
    out = root / "out"
    tars = sorted(out.glob("*.tar"))
    assert {p.name for p in tars} == {s for info in manifest["splits"].values() for s in info["shards"]}
    assert all(re.fullmatch(r"(train|val)-0000-\d{5}\.tar", p.name) for p in tars)
    assert not list(out.glob("*.tmp"))
    rows = read_shards(tars)
    n_groups = sum(int(s) for s in PIECES.values())  # 1 s excerpts: floor(duration)
    assert len(rows) == n_groups * VERSIONS == manifest["totals"]["samples"]
    assert manifest["totals"]["groups"] == n_groups

    key_re = re.compile(r"(p[0-2])-(\d{4})-(clean-ref|opus-16|opus-64|mp3-16|mp3-64)")
    by_group: dict[str, list[tuple[str, str, np.ndarray, dict]]] = defaultdict(list)
    order: list[str] = []
    for row in rows:
        shard, key, audio, meta = row
        assert key_re.fullmatch(key), key
        assert meta["group"] == f"{meta['piece']}-{meta['excerpt']:04d}" and key.startswith(meta["group"])
        assert audio.shape == (1, STORE_SR) and meta["sample_rate"] == STORE_SR
        if not order or order[-1] != meta["group"]:
            assert meta["group"] not in by_group, "a group's samples must be consecutive"
            order.append(meta["group"])
        by_group[meta["group"]].append(row)
    for group, members in by_group.items():
        assert len(members) == VERSIONS and len({m[0] for m in members}) == 1, (
            group
        )  # whole group in one shard
        first = members[0][3]
        assert first["is_reference"] and first["codec"] == "clean" and first["bitrate_kbps"] is None
        assert first["bitrate_rank"] == 2 and members[0][1].endswith("-clean-ref")
        for _, key, _, meta in members[1:]:
            assert not meta["is_reference"] and meta["codec"] in CODECS
            assert meta["bitrate_rank"] == {16: 0, 64: 1}[meta["bitrate_kbps"]]
            assert key.endswith(f"-{meta['codec']}-{meta['bitrate_kbps']}")
        assert {m[3]["start_s"] for m in members} == {float(first["excerpt"])}


def test_shards_split_by_piece_and_manifest(shards):
    root, sources, manifest = shards
    rows = read_shards(sorted((root / "out").glob("*.tar")))
    split_of: dict[str, set[str]] = defaultdict(set)
    for shard, _, _, meta in rows:
        split_of[meta["piece"]].add(shard.split("-")[0])
    assert all(len(s) == 1 for s in split_of.values()), split_of  # no piece in two splits
    assert set(manifest["splits"]) == {"train", "val"}  # both exist even for three pieces
    pieces = {q["piece"]: q for q in manifest["sources"]}
    for name, info in manifest["splits"].items():
        assert sorted(p for p, q in pieces.items() if q["split"] == name) == sorted(
            p for p, s in split_of.items() if s == {name}
        )
        assert info["samples"] == info["groups"] * VERSIONS
        assert info["duration_s"] == pytest.approx(info["samples"] * 1.0)
    assert {p: q["split"] for p, q in pieces.items()} == {p: s.pop() for p, s in split_of.items()}
    reasons = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"corrupt.wav", "quiet.wav", "short.wav"}
    assert reasons["corrupt.wav"].startswith("cannot load")
    assert reasons["quiet.wav"].startswith("silent") and reasons["short.wav"].startswith("too short")
    assert manifest["totals"]["skipped"] == 3
    assert manifest["config"]["codecs"] == list(CODECS) and manifest["config"]["store_rate"] == STORE_SR
    assert manifest["bitrate_rank"] == {"16": 0, "64": 1, "clean": 2}
    stats = manifest["label_stats"]
    assert stats["bitrate_rank"]["min"] == 0 and stats["bitrate_rank"]["max"] == 2
    assert stats["bitrate_kbps"]["count"] == manifest["totals"]["samples"] - manifest["totals"]["groups"]
    assert stats["bitrate_kbps"]["mean"] == pytest.approx(40.0)
    on_disk = json.loads((root / "out" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert (root / "out" / "manifest-0000-of-0001.json").is_file()
    assert sorted(Path(p).name for p in pieces.values() for p in [p["source"]]) == [
        p.name for p in sources[:3]
    ]


def test_shards_identical_for_any_jobs(shards):
    root, sources, manifest = shards
    manifest2 = build(sources, root / "out_jobs2", jobs=2)
    a = read_shards(sorted((root / "out").glob("*.tar")))
    b = read_shards(sorted((root / "out_jobs2").glob("*.tar")))
    assert [(s, k, m) for s, k, _, m in a] == [(s, k, m) for s, k, _, m in b]
    assert all(np.array_equal(x[2], y[2]) for x, y in zip(a, b, strict=True))
    assert manifest2["splits"] == manifest["splits"]
    again = build(sources, root / "out_jobs2", jobs=2)  # a rerun reuses every finished shard
    job = json.loads((root / "out_jobs2" / "manifest-0000-of-0001.json").read_text())["job"]
    assert job["shards_built"] == 0 and job["shards_resumed"] == manifest["totals"]["shards"]
    assert again["splits"] == manifest["splits"]


def shard_rows(folder: Path) -> dict[str, tuple[dict, np.ndarray, str]]:
    """key -> (json, audio, shard name) over every shard of a folder (keys must be unique)."""
    rows = read_shards(sorted(folder.glob("*.tar")))
    out = {k: (m, a, s) for s, k, a, m in rows}
    assert len(out) == len(rows), "duplicate keys across shards"
    return out


def test_shard_id_jobs_are_disjoint_and_union_is_the_single_build(shards):
    root, sources, manifest = shards
    out = root / "out_split"
    first = build(sources, out, jobs=1, shard_id=0, num_shards=2)
    assert "jobs" not in first and not (out / "manifest.json").exists()  # waits for job 1
    merged = build(sources, out, jobs=1, shard_id=1, num_shards=2)
    assert merged["jobs"] == {**merged["jobs"], "num_shards": 2, "merged": [0, 1], "missing": []}
    names = sorted(p.name for p in out.glob("*.tar"))
    per_job = [{n for n in names if re.fullmatch(rf"(train|val)-000{i}-\d{{5}}\.tar", n)} for i in (0, 1)]
    assert per_job[0] and per_job[1] and per_job[0] | per_job[1] == set(names)
    keys = [set(k for k, (_, _, s) in shard_rows(out).items() if s in job) for job in per_job]
    assert not keys[0] & keys[1]
    split_rows, single = shard_rows(out), shard_rows(root / "out")
    assert set(split_rows) == set(single)
    for k, (meta, audio, _) in single.items():
        assert split_rows[k][0] == meta and np.array_equal(split_rows[k][1], audio)
    assert merged["totals"] == {**manifest["totals"], "shards": merged["totals"]["shards"]}
    assert sorted(s["source"] for s in merged["skipped"]) == sorted(s["source"] for s in manifest["skipped"])


@needs_ffmpeg
def test_prep_codec_killed_midway_resumes_to_identical_shards(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        sf.write(src / f"k{i}.wav", broadband(1.0, SRC_SR, channels=1, seed=40 + i).T, SRC_SR)
    (src / "k9_corrupt.flac").write_bytes(b"fLaC" + b"\x00" * 64)

    def cmd(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "aqa.cli", "prep", "codec", "--src", str(src), "--out", str(out),
            "--excerpt-s", "0.5", "--codecs", "mp3", "--bitrates", "32", "--val-fraction", "0",
            "--no-visqol", "--no-progress",
        ]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"  # the uninterrupted build, in-process (same function the CLI calls)
    build_codec_shards(
        sorted(src.iterdir()), full, excerpt_s=0.5, codecs=["mp3"], bitrates=[32], val_fraction=0.0,
        visqol=False, progress=False,
    )  # fmt: skip
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(killed.glob("*.tar")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(killed.glob("*.tar")))
    assert finished >= 1 and not (killed / "manifest.json").exists()
    if finished == 5:  # four pieces + the corrupt file (an empty shard marks it done)
        pytest.skip("the build finished before it could be killed")
    subprocess.run(cmd(killed), check=True, env=env, capture_output=True, timeout=300)
    assert not list(killed.glob("*.tmp")) and not list((killed / ".records").glob("*.tmp"))
    job = json.loads((killed / "manifest-0000-of-0001.json").read_text())["job"]
    assert job["shards_resumed"] == finished and job["shards_built"] == 5 - finished
    assert sorted(p.name for p in killed.glob("*.tar")) == sorted(p.name for p in full.glob("*.tar"))
    a, b = shard_rows(full), shard_rows(killed)
    assert set(a) == set(b)
    assert all(a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]) for k in a)
    manifest = json.loads((killed / "manifest.json").read_text())
    assert [s["unit"] for s in manifest["skipped"]] == ["k9_corrupt"]
    assert manifest["totals"]["groups"] == 8 and manifest["totals"]["samples"] == 16


@needs_ffmpeg
def test_codec_visqol_labels(tmp_path):
    pytest.importorskip("visqol")
    sf.write(tmp_path / "v.wav", broadband(1.0, SRC_SR, channels=1, seed=7).T, SRC_SR)
    manifest = build_codec_shards(
        [tmp_path / "v.wav"], tmp_path / "out", excerpt_s=1.0, codecs=["mp3"], bitrates=[8, 64],
        store_rate=STORE_SR, progress=False,
    )  # fmt: skip
    rows = {
        m["codec"] + str(m["bitrate_kbps"]): m
        for _, _, _, m in read_shards(sorted((tmp_path / "out").glob("*.tar")))
    }
    assert set(rows) == {"cleanNone", "mp38", "mp364"}
    assert all(1.0 <= m["visqol_moslqo"] <= 5.0 for m in rows.values())
    assert rows["cleanNone"]["visqol_moslqo"] > rows["mp364"]["visqol_moslqo"] > rows["mp38"]["visqol_moslqo"]
    assert manifest["label_stats"]["visqol_moslqo"]["count"] == 3


def test_split_rules():
    assert assign_split("piece", 0.0) == "train" and assign_split("piece", 1.0) == "val"
    names = [f"piece{i}" for i in range(2000)]
    share = np.mean([assign_split(n, 0.2) == "val" for n in names])
    assert 0.17 < share < 0.23
    assert [assign_split(n, 0.2, seed=3) for n in names[:50]] == [
        assign_split(n, 0.2, seed=3) for n in names[:50]
    ]
    assert piece_id_for(Path("/x/Kevin_MacLeod_-_Vibe_Ace.hq.ogg")) == "Kevin_MacLeod_-_Vibe_Ace_hq"
    assert len(piece_id_for(Path("a" * 300 + ".wav"))) <= 60


def test_source_units_name_split_and_balance():
    units = source_units(["/a/song.wav", "/b/song.flac", "/c/x y.wav"], {"/c/x y.wav": "test"}, 0.5)
    assert [(u.name, u.split) for u in units][2] == ("x_y", "test")  # a given split wins, by the path as given
    assert [u.name for u in units][:2] == ["song", "song_2"] and str(units[1]) == "/b/song.flac"
    # every name hashes to train at val_fraction 0.01; with two or more hashed, one moves so both splits exist
    names = [f"/p/piece{i}.wav" for i in range(4)]
    assert all(assign_split(f"piece{i}", 0.01) == "train" for i in range(4))
    assert sorted(u.split for u in source_units(names, None, 0.01)) == ["train", "train", "train", "val"]
    assert [u.split for u in source_units(names[:1], None, 0.01)] == ["train"]  # one source: nothing to move
    assert all(u.split == "train" for u in source_units(names, None, 0.0))  # no validation asked for
    assert len(source_units(["/p/" + "a" * 300 + ".wav"], None, 0.2, max_len=40)[0].name) <= 40


@needs_ffmpeg
def test_cli_list_with_explicit_splits(tmp_path):
    src = tmp_path / "audio"
    src.mkdir()
    for name in ("a", "b", "c"):
        sf.write(src / f"{name}.flac", broadband(1.0, 8000, channels=1, seed=ord(name)).T, 8000)
    (tmp_path / "list.csv").write_text("path,split\na.flac,val\nb.flac,train\nc.flac\n")
    paths, splits = list_sources(tmp_path / "list.csv", root=src)
    assert [p.name for p in paths] == ["a.flac", "b.flac", "c.flac"]
    assert splits == {str(src / "a.flac"): "val", str(src / "b.flac"): "train"}
    code = codec_main(
        [
            "--src",
            str(tmp_path / "list.csv"),
            "--root",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--excerpt-s",
            "1",
            "--codecs",
            "mp3",
            "--bitrates",
            "32",
            "--no-progress",
            "--val-fraction",
            "0",
        ]
    )
    assert code == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {q["piece"]: q["split"] for q in manifest["sources"]} == {"a": "val", "b": "train", "c": "train"}
    assert list_sources(src)[0] == [src / "a.flac", src / "b.flac", src / "c.flac"]
    assert codec_main(["--src", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")]) == 2


def test_demo_list_resolves(shared_data):
    paths, splits = list_sources(REPO / "data_prep" / "lists" / "demo_music.csv", root=shared_data / "clean")
    assert len(paths) == 5 and all(p.is_file() for p in paths)
    assert sorted(splits.values()) == ["train"] * 4 + ["val"]
    assert [Path(p).name for p, s in splits.items() if s == "val"] == ["Kevin_MacLeod_-_Vibe_Ace.hq.ogg"]


def test_list_sources_refuses_an_empty_folder_or_list(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match="no audio files"):
        list_sources(tmp_path / "empty")
    (tmp_path / "list.csv").write_text("path,split\n")
    with pytest.raises(ValueError, match="no audio files listed"):
        list_sources(tmp_path / "list.csv")
    assert codec_main(["--src", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2


def test_versions_per_excerpt_draws_a_seeded_subset_per_excerpt():
    from data_prep.codec import version_points

    grid = version_points(("opus", "mp3", "aac"), (16, 32, 48, 64, 80, 96, 128), None, "0:a-0000")
    assert len(grid) == 21
    drawn = {key: version_points(("opus", "mp3", "aac"), (16, 32, 48, 64, 80, 96, 128), 8, key)
             for key in ("0:a-0000", "0:a-0001", "1:a-0000")}
    assert all(len(v) == 8 and set(v) <= set(grid) for v in drawn.values())
    assert drawn["0:a-0000"] == version_points(("opus", "mp3", "aac"), (16, 32, 48, 64, 80, 96, 128), 8, "0:a-0000")
    assert len({tuple(v) for v in drawn.values()}) == 3  # another excerpt or seed draws another subset


@needs_ffmpeg
def test_build_codes_each_excerpt_at_k_points(tmp_path):
    sources = write_pieces(tmp_path / "src")[:2]
    manifest = build(sources, tmp_path / "out", jobs=1, versions_per_excerpt=2)
    rows = read_shards(sorted((tmp_path / "out").glob("*.tar")))
    groups = defaultdict(list)
    for _, _, _, meta in rows:
        groups[meta["group"]].append(meta)
    assert groups and all(len(g) == 3 and sum(m["is_reference"] for m in g) == 1 for g in groups.values())
    assert manifest["config"]["versions_per_excerpt"] == 2
    # the manifest says what a group holds: the clean excerpt and its 2 drawn points (not every codec x rate)
    assert manifest["versions_per_group"] == 3 == manifest["totals"]["samples"] / manifest["totals"]["groups"]
