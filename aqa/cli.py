"""Command line: ``aqa train | eval | calibrate | ensemble | score | list | prep | metric``. It parses and dispatches;
the work is done by :func:`aqa.tasks.training.train`, :mod:`aqa.eval.runs`, the :mod:`data_prep` recipes and
:mod:`aqa.metrics.runner`.

Each command imports what it runs when it runs: Lightning and transformers take seconds to import, and
``aqa prep``, ``aqa metric`` and ``aqa list`` need neither.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from aqa.config import ConfigError, available, compose

# `aqa prep NAME ARGS...` -> the data_prep module whose `main(argv) -> int` runs the recipe
PREP_RECIPES: dict[str, str] = {
    "codec": "data_prep.codec",
    "jnd": "data_prep.jnd",
    "haaqi": "data_prep.haaqi",
    "import": "data_prep.rated",
    "render": "data_prep.render",
}
GROUPS = ("experiment", "encoder", "head", "loss", "data", "trainer", "metric", "prep")
SCORE_OUTPUT = """output: one JSON object per file on stdout, in input order:
  {"file": PATH, TASK: score, ..., "TASK_calibrated": score on the label's scale (after aqa calibrate),
   "note": "too short ... / silent ..." (scored, but unreliable)}
  or {"file": PATH, "error": one line saying why the file could not be scored}.
  Scores: higher is better; embedding tasks give minus the distance to --reference.

exit codes: 0 every file scored; 1 some file gave an "error" record; 2 a usage error (bad run folder,
  no audio files, missing or undecodable --reference, missing --audiogram), one line on stderr."""


def prep(recipe: str, argv: Sequence[str]) -> int:
    """Run the data-preparation recipe ``recipe`` (a key of ``PREP_RECIPES``) with its own arguments."""
    if recipe not in PREP_RECIPES:
        raise KeyError(f"unknown prep recipe {recipe!r}; choose from {sorted(PREP_RECIPES)}")
    return int(importlib.import_module(PREP_RECIPES[recipe]).main(list(argv)))


def list_components(group: str | None = None) -> None:
    """Print the experiments, registered components, config files, reference metrics and prep recipes
    (``aqa list [GROUP]``)."""
    from aqa.encoders import ENCODERS
    from aqa.heads import HEADS
    from aqa.losses import LOSSES
    from aqa.metrics import METRICS

    registries = {"head": HEADS, "loss": LOSSES, "metric": METRICS, "prep": PREP_RECIPES}
    for g in [group] if group else GROUPS:
        names = sorted(registries[g]) if g in registries else available(g)
        print(f"{g}: {' '.join(names)}")
        if g == "encoder":
            print(f"encoder families: {' '.join(sorted(ENCODERS))}")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the model runs (default auto: CUDA when a GPU is visible)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="fp32, or bf16 autocast (default auto: bf16 on CUDA, fp32 on CPU)")


def _which(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--which", default="best",
                        help="checkpoint name in run_dir/checkpoints: best | last (default best)")


def _version() -> str:
    try:
        return version("aqa")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``aqa`` argument parser; each sub-command's ``handler`` is set with ``set_defaults``."""
    from aqa.metrics.runner import build_parser as metric_parser

    parser = argparse.ArgumentParser(prog="aqa", description="Perceptual audio quality assessment")
    parser.add_argument("--version", action="version", version=f"aqa {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an experiment: aqa train EXPERIMENT [key=value ...]")
    p.add_argument("experiment", help=f"one of: {' '.join(available('experiment'))}")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. trainer.max_epochs=3 encoder=mert_v1_95m")
    p.set_defaults(handler=_train)

    p = sub.add_parser("eval", help="evaluate a trained run on its held-out shards")
    p.add_argument("run_dir", help="a run directory, e.g. runs/deepaq_lora_tiny")
    _which(p)
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--reference", default="matched", choices=["matched", "mismatched"],
                   help="embedding tasks: distance to the clip's own clean reference or to another excerpt's")
    _runtime_args(p)
    p.set_defaults(handler=_eval)

    p = sub.add_parser("ensemble", help="evaluate the mean score of several runs: aqa ensemble RUN RUN ... --out DIR "
                                        "[--select K --on SET [--on SET]]")
    p.add_argument("run_dirs", nargs="+", help="trained run directories (the first one's data is used)")
    p.add_argument("--out", required=True, help="folder for ensemble_{split}.json")
    _which(p)
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--zscore", action="store_true", help="standardise each run's scores before averaging")
    p.add_argument("--select", type=int, metavar="K",
                   help="MMMOS's selection (§V-D): keep the runs in the top K by SRCC on every --on set (one set: its "
                        "top K; two: the intersection of their top K)")
    p.add_argument("--on", action="append", dest="select_on", metavar="SET",
                   help="a selection set for --select: val or train (the first run's shards) or a quoted shard "
                        "pattern ('data/pam/val-*.tar'); repeat for a second set (default: val)")
    p.add_argument("--rank-by", default="composite", metavar="TASK",
                   help="the task whose SRCC ranks the runs (default composite: the mean of the tasks' scores "
                        "against the mean of their labels)")
    _runtime_args(p)
    p.set_defaults(handler=_ensemble)

    p = sub.add_parser("calibrate", help="fit a score -> label mapping (cubic | mlp) for aqa eval and aqa score")
    p.add_argument("run_dir", help="a trained run directory, e.g. runs/deepaq_lora")
    p.add_argument("--kind", default="cubic", choices=["cubic", "mlp"], help="mapping to fit (default cubic)")
    p.add_argument("--split", default="train", choices=["train", "val"], help="split to fit on (default train)")
    _which(p)
    _runtime_args(p)
    p.set_defaults(handler=_calibrate)

    p = sub.add_parser(
        "score", help="score your own files: aqa score RUN_DIR FILE_OR_DIR... [--reference REF]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score audio files (or folders of them, searched recursively) with a trained run.",
        epilog=SCORE_OUTPUT)
    p.add_argument("run_dir", help="a trained run directory, e.g. runs/mmmos_tiny")
    p.add_argument("files", nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument("--reference", help="reference recording for distance-based (embedding) tasks")
    p.add_argument("--audiogram", type=_floats, help="hearing thresholds, dB HL at 250,500,1k,2k,3k,4k,6k,8k Hz")
    _which(p)
    p.add_argument("--out", metavar="FILE",
                   help="write the JSON lines to FILE as well as to stdout (default: stdout only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _runtime_args(p)
    p.set_defaults(handler=_score)

    p = sub.add_parser("list", help="list experiments and registered components")
    p.add_argument("group", nargs="?", choices=GROUPS)
    p.set_defaults(handler=lambda a: list_components(a.group))

    p = sub.add_parser("prep", help="build WebDataset shards: aqa prep codec --src DIR --out DIR ...")
    p.add_argument("recipe", choices=sorted(PREP_RECIPES), help="data_prep recipe; `aqa prep NAME -h` for its options")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=lambda a: prep(a.recipe, a.args))

    from aqa.metrics.runner import METRIC_OUTPUT

    p = sub.add_parser("metric", help="reference metrics: aqa metric visqol --ref REF.wav --deg DEG.wav",
                       epilog=METRIC_OUTPUT, formatter_class=argparse.RawDescriptionHelpFormatter)
    metric_parser(p)
    p.set_defaults(handler=_metric)
    return parser


def _train(args: argparse.Namespace) -> None:
    from aqa.tasks.training import train

    print(train(compose(args.experiment, args.overrides)))


def _eval(args: argparse.Namespace) -> None:
    from aqa.eval.runs import evaluate

    evaluate(args.run_dir, args.which, args.split, plot=not args.no_plot, reference=args.reference,
             device=args.device, precision=args.precision)


def _ensemble(args: argparse.Namespace) -> None:
    from aqa.eval.runs import ensemble

    ensemble(args.run_dirs, args.out, args.which, args.split, args.zscore, args.device, args.precision,
             select=args.select, select_on=args.select_on or ("val",), rank_by=args.rank_by)


def _calibrate(args: argparse.Namespace) -> None:
    from aqa.eval.runs import calibrate

    calibrate(args.run_dir, args.kind, args.which, args.split, args.device, args.precision)


def _score(args: argparse.Namespace) -> int:
    from aqa.eval.runs import score

    conditions = {"audiogram": args.audiogram} if args.audiogram else None
    return score(args.run_dir, args.files, args.reference, conditions, args.which, args.out,
                 progress=not args.no_progress, device=args.device, precision=args.precision)


def _metric(args: argparse.Namespace) -> int:
    from aqa.metrics.runner import run_cli

    return run_cli(args)


# commands whose ValueError is the user's (too few clips to fit, a missing reference or audiogram)
_USER_VALUE_ERRORS = {"calibrate", "score", "ensemble"}


def _is_audio_error(err: BaseException) -> bool:
    # an input file that cannot be decoded (one line, naming it), on any command; aqa.audio is only looked
    # up, never imported here, so `aqa --version` stays light
    audio = sys.modules.get("aqa.audio")
    return audio is not None and isinstance(err, audio.AudioError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aqa`` console script: parse, dispatch, turn expected errors into one line."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return int(handler(args) or 0)
    except (ConfigError, FileNotFoundError, KeyError) as err:
        print(f"aqa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        if args.command not in _USER_VALUE_ERRORS and not _is_audio_error(err):
            raise
        print(f"aqa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as stop:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(stop, SIGTERMException):
            raise
        print(f"aqa {args.command}: stopped by SIGTERM; continue with resume=true", file=sys.stderr)
        return 143  # 128 + SIGTERM, as a shell reports a job the signal ended


if __name__ == "__main__":
    sys.exit(main())
