"""Stored metric results: wall time of a first and a second ``aqa eval --test ... --baselines visqol`` on the same
test (the second reads every ViSQOL result back from the cache, aqa.metrics.cache), and the speed-up.

Run with ``make bench`` (or ``python tests/benchmarks/bench_metric_cache.py [--jobs N]``). The test is the 9 real
reference/degraded music pairs of ViSQOL v3's audio-mode conformance set (``../shared/data/visqol_v3``, 48 kHz
stereo, 5-12 s; its README), with their published MOS-LQO standing in for subjective scores (timing only, scale
1..5). Each run is the real command in a fresh process (imports, plots and the bootstrap included), the first with
an empty cache folder. Prints figures, asserts nothing (issue 22 wants >= 5x); timings on the shared 2-core machine
vary with its load. Skips with a reason when the data is absent.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "visqol_v3"
AQA = Path(sys.executable).with_name("aqa")


def write_test(folder: Path) -> Path:
    """The conformance pairs as a listening-test CSV (absolute paths, MOS-LQO as score, scale 1..5)."""
    with (DATA / "golden.csv").open(newline="") as f:
        golden = list(csv.DictReader(f))
    path = folder / "visqol_conformance_test.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["degraded", "score", "reference", "system", "scale_min", "scale_max"])
        for g in golden:
            w.writerow([DATA / g["degraded"], g["expected_moslqo"], DATA / g["reference"], g["case"], 1, 5])
    return path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1, help="aqa eval --jobs (default 1)")
    args = parser.parse_args()
    if not (DATA / "golden.csv").is_file():
        print(f"metric cache bench skipped: ViSQOL conformance pairs not found at {DATA} (../shared/data beside the checkout)")
        return
    with tempfile.TemporaryDirectory(prefix="aqa_bench_cache_") as tmp:
        tmp_path = Path(tmp)
        test = write_test(tmp_path)
        cache = tmp_path / "cache"
        cmd = [str(AQA), "eval", "--test", str(test), "--baselines", "visqol", "--jobs", str(args.jobs),
               "--cache", str(cache), "--no-progress"]
        first = timed([*cmd, "--out", str(tmp_path / "first")])
        second = timed([*cmd, "--out", str(tmp_path / "second")])
        same = (tmp_path / "first" / "predictions.csv").read_text() == (tmp_path / "second" / "predictions.csv").read_text()
        entries = len(list(cache.rglob("*.json")))
        print(f"aqa eval --test (the 9 ViSQOL v3 conformance pairs, 48 kHz stereo) --baselines visqol --jobs {args.jobs}")
        print(f"{'first (computes)':<22} {first:8.2f} s")
        print(f"{'second (cached)':<22} {second:8.2f} s")
        print(f"speed-up {first / second:.1f}x; {entries} cache entries; predictions identical: {same}")


if __name__ == "__main__":
    main()
