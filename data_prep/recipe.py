"""The skeleton every ``aqa prep`` recipe shares: one error path for ``main()`` and one end-of-run report.

A recipe module holds ``build_parser()``, its builder and ``main(argv) -> int``; its ``main`` is::

    def main(argv=None):
        return run_main("aqa prep NAME", build_parser(), _run, argv)

where ``_run(args) -> int`` builds the data and usually ends with :func:`report`. Exit codes are the same
for every recipe: 0 done, 1 nothing usable written (or, per recipe, something was dropped), 2 bad input
(one ``PROG: error: ...`` line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from data_prep.shards import split_warnings

__all__ = ["INPUT_ERRORS", "report", "run_main"]

# what a recipe raises for bad input (a missing file, a bad value, an unknown name, a missing optional package)
INPUT_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, ImportError)


def run_main(
    prog: str,
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and return ``run(args)``; bad input (:data:`INPUT_ERRORS`)
    becomes one ``PROG: error: MESSAGE`` line on stderr and exit code 2."""
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return int(run(args))
    except INPUT_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err  # KeyError's str() adds quotes
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


def report(
    manifest: Mapping[str, Any],
    out: Path,
    elapsed: float,
    *,
    expected: Sequence[str] = (),
    prog: str = "aqa prep",
    unit: str = "groups",
) -> int:
    """Print a shard manifest's summary: per split its groups (called ``unit``), samples and shards, every
    skipped input and why, and, once every job is done, a warning per empty split (``expected`` ones included)
    saying why. Returns 0 when samples were written (by this job or all), else 1 with an error line."""
    for name, info in manifest["splits"].items():
        print(f"{name}: {info['groups']} {unit}, {info['samples']} samples, {len(info['shards'])} shards")
    for item in manifest["skipped"]:
        print(f"skipped {item['source']}: {item['reason']}", file=sys.stderr)
    if "jobs" in manifest:  # the merged manifest: a split is only known to be empty once all jobs are done
        for line in split_warnings(manifest, expected):
            print(line, file=sys.stderr)
    done = out / "manifest.json" if "jobs" in manifest else "this job's manifest (waiting for other jobs)"
    samples = manifest["totals"].get("samples", 0)
    rate = f" ({elapsed / samples:.2f} s per sample)" if samples else ""
    print(f"{done} in {elapsed:.1f} s{rate}")
    if manifest["totals"]["groups"] > 0:
        return 0
    print(
        f"{prog}: error: nothing usable was written ({manifest['totals'].get('skipped', 0)} input(s) skipped; "
        "reasons above and under 'skipped' in the manifest)",
        file=sys.stderr,
    )
    return 1
