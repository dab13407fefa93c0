"""Batch runner behind ``aqa metric``: many (reference, degraded) pairs, several metrics, worker processes.

Every pair gives one record, ``{"reference", "degraded", <values...>, "notes"?, "error"?}``, in input order.
Nothing a pair does stops the others: every exception becomes that pair's one-line ``error``, and a worker
process that dies (a crash inside a compiled library) is replaced and the pairs it held are retried one
by one in fresh processes, so only the pair that crashes it is reported as failed. With a cache
(:mod:`aqa.metrics.cache`; ``aqa metric`` uses one unless ``--no-cache``) a pair a metric already scored is
read back instead of computed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import chain
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aqa.metrics import (
    METRICS,
    NO_REFERENCE,
    MetricError,
    accepted_options,
    check_options,
    compute_arrays,
    parse_names,
    read,
)
from aqa.metrics.cache import MetricCache, open_cache
from aqa.tables import sniff_delimiter

__all__ = ["score_pair", "iter_results", "run", "read_pairs", "parse_options", "main", "cache_args", "cache_of"]

Pair = tuple[str | None, str]
METRIC_OUTPUT = """output: one JSON object per pair, in input order, on stdout (or in --out FILE):
  {"reference", "degraded", VALUE: number, ..., "notes": [what was done to the input], "error": one line}.

exit codes: 0 every pair scored; 1 some pair gave an "error" or a --pairs row was skipped; 2 a usage
  error (unknown metric or option, unreadable or empty --pairs CSV), one line on stderr."""
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, MetricError) and text:
        return text[:400]
    return f"{err.__class__.__name__}: {text}"[:400] if text else err.__class__.__name__


def score_pair(
    names: Sequence[str],
    ref: str | None,
    deg: str,
    opts: dict[str, dict[str, Any]] | None = None,
    cache: MetricCache | None = None,
) -> dict[str, Any]:
    """Score one pair of files with each metric in ``names``; never raises.

    The files are read once. Values of a later metric whose name collides with an earlier one's get the
    metric's name as prefix (``visqol_speech_moslqo``). Failing metrics are listed in ``error``
    (``"pesq: reason; stoi: reason"``); the others' values are still returned.

    Args:
        names: registered metric names.
        ref: reference path (None or "" for no-reference metrics only).
        deg: degraded path.
        opts: per-metric keyword options, ``{name: {key: value}}``.
        cache: stored results (:mod:`aqa.metrics.cache`): a metric found there is not computed (the files are
            not even decoded when every metric is found); a new result is stored.

    Returns:
        ``{"reference", "degraded", values..., "notes": [...] (if any), "error": str (if any)}``.
    """
    opts = opts or {}
    record: dict[str, Any] = {"reference": ref or None, "degraded": deg}
    notes: list[str] = []
    errors: list[str] = []
    keys, stored = _stored(names, ref, deg, opts, cache)
    try:
        todo = [n for n in names if n not in stored]
        deg_audio, sr_deg = read(deg, "degraded") if todo else (None, 0)
        needs_ref = any(n not in NO_REFERENCE for n in todo)
        if needs_ref and not ref:
            raise MetricError(f"no reference given ({', '.join(n for n in names if n not in NO_REFERENCE)})")
        ref_audio, sr_ref = read(ref, "reference") if needs_ref and ref else (None, sr_deg)
    except Exception as err:  # noqa: BLE001 - any failure becomes this pair's error
        record["error"] = _one_line(err)
        return record
    for name in names:
        try:
            values = stored[name] if name in stored else compute_arrays(
                name, ref_audio, sr_ref, deg_audio, sr_deg, **opts.get(name, {})
            )
        except Exception as err:  # noqa: BLE001
            errors.append(f"{name}: {_one_line(err)}" if len(names) > 1 else _one_line(err))
            continue
        if cache is not None and name in keys and name not in stored:  # errors are never stored
            cache.put(keys[name], values)
        values = dict(values)
        for note in values.pop("notes", []):
            if note not in notes:
                notes.append(note)
        for key, value in values.items():
            record[f"{name}_{key}" if key in record else key] = value
    if notes:
        record["notes"] = notes
    if errors:
        record["error"] = "; ".join(errors)
    return record


def _stored(
    names: Sequence[str], ref: str | None, deg: str, opts: dict[str, dict[str, Any]], cache: MetricCache | None
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    # (metric -> its cache key, metric -> its stored result) for the metrics of the pair found in the cache
    keys: dict[str, dict[str, Any]] = {}
    stored: dict[str, dict[str, Any]] = {}
    if cache is None:
        return keys, stored
    for name in names:
        try:
            if name in NO_REFERENCE or ref:
                keys[name] = cache.key(name, ref, deg, opts.get(name))
        except OSError:  # an unreadable file: reading it reports why
            continue
        if name in keys and (hit := cache.get(keys[name])) is not None:
            stored[name] = hit
    return keys, stored


def _worker(
    index: int, names: Sequence[str], pair: Pair, opts: dict[str, dict[str, Any]], cache: MetricCache | None
) -> tuple[int, dict]:
    return index, score_pair(names, pair[0], pair[1], opts, cache)


@contextmanager
def _threads_per_worker(jobs: int) -> Iterator[None]:
    # Workers inherit the environment: give each an equal share of the cores so `--jobs N` does not
    # oversubscribe them (torch, onnxruntime, numba and BLAS all default to every core).
    share = str(max(1, (os.cpu_count() or 1) // jobs))
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k in _THREAD_VARS:
        os.environ.setdefault(k, share)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the parent may hold threads (tqdm, torch) that a forked child would inherit broken.
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def _parallel(
    names: Sequence[str],
    pairs: Sequence[Pair],
    opts: dict[str, dict[str, Any]],
    jobs: int,
    cache: MetricCache | None = None,
) -> Iterator[tuple[int, dict]]:
    pending: set[int] = set(range(len(pairs)))
    with _threads_per_worker(jobs):
        try:
            with _pool(jobs) as pool:
                futures: set[Future] = {
                    pool.submit(_worker, i, names, pairs[i], opts, cache) for i in sorted(pending)
                }
                while futures:
                    done, futures = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        index, record = fut.result()  # BrokenProcessPool surfaces here
                        pending.discard(index)
                        yield index, record
        except BrokenProcessPool:
            pass
        # A worker died: retry what it (or its pool) still held, each pair alone, to find the culprit.
        for i in sorted(pending):
            try:
                with _pool(1) as pool:
                    yield pool.submit(_worker, i, names, pairs[i], opts, cache).result()
            except BrokenProcessPool:
                ref, deg = pairs[i]
                yield (
                    i,
                    {
                        "reference": ref or None,
                        "degraded": deg,
                        "error": "the metric crashed its worker process",
                    },
                )


def iter_results(
    names: str | Sequence[str],
    pairs: Sequence[Pair],
    *,
    opts: dict[str, dict[str, Any]] | None = None,
    jobs: int = 1,
    progress: bool = False,
    cache: str | Path | bool | MetricCache | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one record per pair, in input order, as soon as it and all pairs before it are done.

    Args:
        names: metric name(s), a comma list or a sequence.
        pairs: ``(reference path or None, degraded path)`` tuples.
        opts: per-metric options ``{name: {key: value}}`` (see :func:`parse_options`).
        jobs: worker processes; 1 computes in this process.
        progress: show a tqdm progress bar on stderr.
        cache: stored results to reuse and add to (:func:`aqa.metrics.cache.open_cache`: True the default
            folder, a folder, None/False none).

    Raises:
        ValueError: an option value the metric does not take (:func:`aqa.metrics.check_options`), before any
            pair is scored.
    """
    names = parse_names(names)
    opts = opts or {}
    for name in names:  # a bad option value is one error here, not one per pair
        check_options(name, opts.get(name, {}))
    cache = open_cache(cache)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    bar = tqdm(total=len(pairs), unit="pair", file=sys.stderr, disable=not progress, desc=",".join(names))
    stream: Iterable[tuple[int, dict]]
    # pairs every metric of which is stored are read back here: workers are started only for the others
    todo = [i for i, (ref, deg) in enumerate(pairs) if len(_stored(names, ref, deg, opts, cache)[1]) < len(names)]
    if jobs == 1 or len(todo) <= 1:
        stream = ((i, score_pair(names, ref, deg, opts, cache)) for i, (ref, deg) in enumerate(pairs))
    else:
        missing = set(todo)
        stream = chain(
            ((i, score_pair(names, ref, deg, opts, cache)) for i, (ref, deg) in enumerate(pairs) if i not in missing),
            ((todo[j], r) for j, r in _parallel(names, [pairs[i] for i in todo], opts, min(jobs, len(todo)), cache)),
        )
    ready: dict[int, dict] = {}
    next_index = 0
    try:
        for index, record in stream:
            bar.update(1)
            ready[index] = record
            while next_index in ready:
                yield ready.pop(next_index)
                next_index += 1
    finally:
        bar.close()


def run(
    names: str | Sequence[str],
    pairs: Sequence[Pair],
    *,
    opts: dict[str, dict[str, Any]] | None = None,
    jobs: int = 1,
    progress: bool = False,
    cache: str | Path | bool | MetricCache | None = None,
) -> list[dict[str, Any]]:
    """All records of :func:`iter_results` as a list (input order)."""
    return list(iter_results(names, pairs, opts=opts, jobs=jobs, progress=progress, cache=cache))


def read_pairs(path: str | Path, skipped: list[str] | None = None) -> list[Pair]:
    """Read a pairs CSV with columns ``reference,degraded`` (``,``, ``;`` or tab between them, as
    :func:`aqa.tables.sniff_delimiter` finds); relative paths are taken from the CSV's folder.

    ``reference`` may be empty for no-reference metrics. Blank rows are ignored; a row with an empty
    ``degraded`` cell is left out, and ``"row N: empty 'degraded' cell"`` (N counts the header as row 1) is
    appended to ``skipped`` when given. Raises ValueError for a missing column.
    """
    path = Path(path)
    base = path.resolve().parent
    with path.open(newline="") as f:
        text = f.read()
    reader = csv.DictReader(io.StringIO(text), delimiter=sniff_delimiter(text))
    fields = [c.strip() for c in reader.fieldnames or []]
    if "degraded" not in fields or "reference" not in fields:
        raise ValueError(f"{path}: needs columns 'reference,degraded', found {fields}")
    pairs: list[Pair] = []
    for number, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        if not row.get("degraded") and not row.get("reference"):
            continue
        if not row.get("degraded"):
            if skipped is not None:
                skipped.append(f"row {number}: empty 'degraded' cell")
            continue

        def resolve(p: str) -> str:
            return p if not p or Path(p).is_absolute() else str(base / p)

        pairs.append((resolve(row["reference"]) or None, resolve(row["degraded"])))
    return pairs


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(items: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Turn ``--opt`` items into per-metric options.

    ``key=value`` goes to every metric in ``names`` that accepts ``key``; ``metric.key=value`` to that one.
    Values are JSON where they parse (numbers, lists), ``true``/``false``/``none``, else strings.

    Raises:
        ValueError: malformed item, a metric not in ``names``, a key that no named metric accepts, or a value
            it does not take (:func:`aqa.metrics.check_options`: once, before any pair is scored).
    """
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--opt {item!r}: expected key=value or metric.key=value")
        key = key.strip()
        scope, dot, bare = key.rpartition(".")
        targets = [scope] if dot else list(names)
        key = bare if dot else key
        if dot and scope not in out:
            raise ValueError(
                f"--opt {item!r}: {scope!r} is not one of the metrics asked for ({', '.join(names)})"
            )
        takers = [n for n in targets if (acc := accepted_options(n)) is None or key in acc]
        if not takers:
            known = {n: sorted(accepted_options(n) or []) for n in targets}
            raise ValueError(f"--opt {item!r}: no metric takes {key!r}; options: {known}")
        for n in takers:
            out[n][key] = _value(text)
    for n, given in out.items():
        try:
            check_options(n, given)
        except ValueError as err:
            raise ValueError(f"--opt: {err}") from None
    return out


def main(argv: Sequence[str] | None = None, *, parser: argparse.ArgumentParser | None = None) -> int:
    """``aqa metric NAME --ref REF --deg DEG | --pairs CSV [--opt k=v] [--jobs N] [--out FILE]``.

    Prints one JSON object per pair (or writes them to ``--out``); with ``--pairs`` or ``--out`` ends with a
    report line on stderr (pairs scored, errors, CSV rows skipped and why). Returns 0 when every pair was
    scored, 1 when some gave an ``error`` or a CSV row was skipped, 2 for a usage error (including a pairs CSV
    with no usable row).
    """
    parser = parser or build_parser(argparse.ArgumentParser(prog="aqa metric", epilog=METRIC_OUTPUT,
                                                            formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    return run_cli(args)


def build_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``aqa metric`` arguments to ``p`` (used by :mod:`aqa.cli`)."""
    p.add_argument("name", help=f"metric, or a comma list of them: {', '.join(sorted(METRICS))}")
    p.add_argument("--ref", help="reference audio file")
    p.add_argument("--deg", help="degraded audio file")
    p.add_argument("--pairs", help="CSV with columns reference,degraded (paths relative to the CSV); "
                   "rows with an empty degraded cell are skipped and reported")
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metric option, e.g. mode=speech, pesq.mode=nb, audiogram=0,0,10,20,30,40,50,60",
    )
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (default: 1)")
    p.add_argument("--out", metavar="FILE",
                   help="write the JSON lines to FILE instead of stdout (default: stdout only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    cache_args(p)
    return p


def cache_args(p: argparse.ArgumentParser) -> None:
    """``--cache DIR`` / ``--no-cache`` (``aqa metric``, ``aqa eval --test``); read back with :func:`cache_of`."""
    p.add_argument("--cache", metavar="DIR",
                   help="folder of stored metric results, reused when metric, options, package versions and "
                   "file contents match (default $AQA_METRIC_CACHE, else ~/.cache/aqa/metrics)")
    p.add_argument("--no-cache", action="store_true", help="compute every metric result afresh, store nothing")


def cache_of(args: argparse.Namespace) -> str | bool:
    """The ``cache`` argument of :func:`iter_results` that :func:`cache_args`' flags ask for."""
    return False if args.no_cache else (args.cache or True)


def run_cli(args: argparse.Namespace) -> int:
    """Run the parsed ``aqa metric`` arguments; see :func:`main`."""

    def usage(msg: str) -> int:
        print(f"aqa metric: error: {msg}", file=sys.stderr)
        return 2

    try:
        names = parse_names(args.name)
        opts = parse_options(args.opt, names)
        skipped: list[str] = []
        if args.pairs:
            if args.ref or args.deg:
                return usage("give either --pairs or --ref/--deg, not both")
            pairs = read_pairs(args.pairs, skipped)
            if not pairs:
                why = f" ({_summary(skipped)})" if skipped else " (only a header, or blank rows)"
                return usage(f"{args.pairs}: no pairs to score{why}")
        else:
            if not args.deg:
                return usage("--deg (or --pairs) is required")
            if not args.ref and any(n not in NO_REFERENCE for n in names):
                return usage(f"--ref is required for {', '.join(n for n in names if n not in NO_REFERENCE)}")
            pairs = [(args.ref, args.deg)]
        if args.jobs < 1:
            return usage("--jobs must be >= 1")
    except (KeyError, ValueError, OSError) as err:
        # KeyError's str() is the repr of its message: take the message itself (never cut quotes off a path)
        return usage(err.args[0] if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) else str(err))
    out = open(args.out, "w") if args.out else sys.stdout  # noqa: SIM115 - closed below
    n_err = 0
    try:
        for record in iter_results(
            names, pairs, opts=opts, jobs=args.jobs, progress=not args.no_progress, cache=cache_of(args)
        ):
            n_err += "error" in record
            out.write(json.dumps(record) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    if args.out or args.pairs:
        report = f"aqa metric: {len(pairs) - n_err} pair(s) scored, {n_err} with errors"
        if args.pairs:
            report += f", {len(skipped)} row(s) skipped" + (f" ({_summary(skipped)})" if skipped else "")
        print(report + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    return 1 if n_err or skipped else 0


def _summary(items: Sequence[str], limit: int = 3) -> str:
    # "a; b; c; and 4 more": a report line stays one line however many rows were skipped
    more = len(items) - limit
    return "; ".join(items[:limit]) + (f"; and {more} more" if more > 0 else "")


if __name__ == "__main__":
    sys.exit(main())
