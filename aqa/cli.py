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
from pathlib import Path

from aqa.config import CONFIG_PATH_ENV, ConfigError, available, compose, set_config_dirs
from data_prep import RECIPES as PREP_RECIPES

GROUPS = ("experiment", "encoder", "head", "loss", "data", "trainer", "sweep", "metric", "prep")
SCORE_OUTPUT = """output (--format jsonl, the default): one JSON object per file, in input order, on stdout
  (or in --out FILE instead):
  {"file": PATH, ["reference": REF,] TASK: score, ..., "TASK_calibrated": score on the label's scale
   (after aqa calibrate), "note": "too short ... / silent ..." (scored, but unreliable)}
  or {"file": PATH, "error": one line saying why the file could not be scored}.
  With --window-s, a longer file gives one record per window ({"file", "start_s", "end_s", TASK...}) and then
  its whole-file record ("windows": N; each score the mean over the windows).
  --format csv: the same fields as columns (file,reference,start_s,end_s,windows,TASK...,note,error).
  Scores: higher is better; embedding tasks give minus the distance to the reference.

exit codes: 0 every file scored; 1 some file gave an "error" record (or a --pairs row was skipped); 2 a usage
  error (bad model folder, no audio files, missing or undecodable --reference, missing --audiogram, a --pairs
  CSV without pairs), one line on stderr."""
EVAL_TEST_HELP = """listening test (--test TEST.csv): a CSV with a header; columns
  degraded   audio path (relative paths: from the CSV's folder)          required
  score      subjective rating (MOS, MUSHRA, ...)                         required
  reference  clean original: full-reference runs and metrics need it      optional
  system     system / condition id: system-level figures average per system  optional
  scale_min, scale_max  the rating scale's ends (1,5 MOS; 0,100 MUSHRA): raw MSE
             is reported only for a run or metric on that scale          optional
  condition, listener_count, any other column: usable with --by           optional
  (`aqa prep import --csv-out FILE` writes one from NISQA, ODAQ, TCD-VoIP, ...)

outputs in --out: predictions.csv (a column per run and metric), summary.csv (model,subset,level,metric,
  value,ci_low,ci_high,n; MSE LCC SRCC KTAU MSE_mapped LCC_mapped at utterance and system level; MSE only
  where the predictor and the test share a scale), summary.md (its Scales section says why, per predictor),
  scatter_MODEL.png; the table is logged to W&B when a wandb run is active.
metric results are stored (--cache DIR, default ~/.cache/aqa/metrics) and reused when metric, options,
  package versions and file contents match; --no-cache computes them afresh."""


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


def _config_dir_option(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("--config-dir", action="append", default=[], metavar="DIR", dest=dest,
                        help="a folder of your own configs (experiment/, encoder/, head/, loss/, data/, trainer/, "
                             f"sweep/), searched before ${CONFIG_PATH_ENV} and the built-in ones; repeatable")


def _names(group: str) -> str:
    """The config names of a group for a help text (a bad $AQA_CONFIG_PATH is reported when a command runs)."""
    try:
        return " ".join(available(group))
    except ConfigError:
        return f"(see aqa list {group})"


def _version() -> str:
    try:
        return version("aqa")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``aqa`` argument parser; each sub-command's ``handler`` is set with ``set_defaults``."""
    from aqa.metrics.runner import build_parser as metric_parser
    from aqa.metrics.runner import cache_args

    parser = argparse.ArgumentParser(prog="aqa", description="Perceptual audio quality assessment")
    parser.add_argument("--version", action="version", version=f"aqa {_version()}")
    _config_dir_option(parser, "config_dir")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an experiment: aqa train EXPERIMENT [key=value ...]")
    p.add_argument("experiment", help=f"one of: {_names('experiment')}")
    _config_dir_option(p, "sub_config_dir")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. trainer.max_epochs=3 encoder=mert_v1_95m")
    p.set_defaults(handler=_train)

    p = sub.add_parser("sweep", help="run a grid or random search over config overrides: aqa sweep SWEEP.yaml "
                                     "[key=value ...] [--resume] (format: aqa.sweep)")
    p.add_argument("sweep", help=f"a sweep file, or one of: {_names('sweep')}")
    _config_dir_option(p, "sub_config_dir")
    p.add_argument("overrides", nargs="*", help="added to every trial's overrides, e.g. data.train_urls=...")
    p.add_argument("--out", help="folder for the trials and sweep.csv (default runs/sweeps/SWEEP_NAME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out: finished trials are kept, an interrupted one continues from "
                        "its last.ckpt, failed ones run again")
    p.add_argument("--dry-run", action="store_true", help="compose and check every trial, list them, train nothing")
    p.add_argument("--wandb", action="store_true",
                   help="write OUT/wandb_sweep.yaml (the same search as a W&B sweep; its agents run --trial) and exit")
    p.add_argument("--trial", nargs="+", metavar="KEY=VALUE",
                   help="run only the trial with these swept values (what the W&B agents call)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(handler=_sweep)

    p = sub.add_parser(
        "eval", help="evaluate a run on its held-out shards (aqa eval RUN_DIR), or runs and reference metrics "
                     "on a listening test (aqa eval [RUN_DIR ...] --test TEST.csv --out DIR)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EVAL_TEST_HELP)
    p.add_argument("run_dir", nargs="*", help="run directories, e.g. runs/deepaq_lora_tiny (one without --test)")
    _which(p)
    p.add_argument("--split", default="val", choices=["val", "train"], help="shards to evaluate (default val)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--reference", default="matched", choices=["matched", "mismatched"],
                   help="embedding tasks: distance to the clip's own clean reference or to another piece's "
                        "(default matched; with --test: another row's, from another piece)")
    p.add_argument("--test", metavar="TEST.csv", help="a listening-test CSV (columns below); needs --out")
    p.add_argument("--baselines", metavar="M1,M2", default="",
                   help="with --test: reference metrics scored beside the runs, e.g. visqol,pesq,peaq (default none); "
                        "fad: DeePAQ's Frechet Audio Distance per system to the test's references (system level only)")
    p.add_argument("--fad-encoder", metavar="NAME", help="with --baselines fad: the zoo encoder whose embeddings "
                   "it compares (a configs/encoder name; default mert_v1_95m)")
    p.add_argument("--fad-layer", type=int, metavar="N", help="with --baselines fad: hidden state used, time-averaged "
                   "per clip (default -1, the last: MERT-v1-95M's layer 12)")
    p.add_argument("--fad-reference", metavar="DIR", help="with --baselines fad: clean recordings forming the "
                   "reference set (default: the test's reference files; needed when it has none)")
    p.add_argument("--by", metavar="COLUMN", help="with --test: also report each value of this CSV column")
    p.add_argument("--jobs", type=int, default=1, help="with --test: worker processes for the metrics (default 1)")
    p.add_argument("--out", metavar="DIR", help="with --test: folder for predictions.csv, summary.csv/.md, plots")
    p.add_argument("--mismatched-reference", metavar="FILE",
                   help="with --test: embedding tasks score every row against FILE instead of its reference "
                        "(rows whose reference is FILE are left empty)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="with --test: bootstrap resamples of the 95%% intervals (default 1000, seed 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    cache_args(p)
    _runtime_args(p)
    p.set_defaults(handler=_eval)

    p = sub.add_parser("ensemble", help="evaluate the mean score of several runs: aqa ensemble RUN RUN ... --out DIR "
                                        "[--select K --on SET [--on SET]]")
    p.add_argument("run_dirs", nargs="*", help="trained run directories (the first one's data is used)")
    p.add_argument("--sweep", metavar="DIR", help="take the finished trials of the sweep in DIR (aqa sweep --out DIR) "
                                                  "as the runs, instead of listing them")
    p.add_argument("--out", required=True, help="folder for ensemble.yaml (aqa eval/score take the folder like a run) "
                                                "and ensemble_{split}.json")
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
    p.add_argument("--test", metavar="TEST.csv",
                   help="fit to a listening test's subjective scores instead of a split (CSV as in aqa eval --test)")
    _which(p)
    _runtime_args(p)
    p.set_defaults(handler=_calibrate)

    p = sub.add_parser(
        "score", help="score your own files: aqa score MODEL INPUT... [--reference REF | --pairs CSV | --ref-dir DIR]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score audio files, folders (searched recursively) or list files (.lst/.list/.scp: one path "
                    "per line) with a trained run, an exported model (aqa export) or an ensemble folder; the model "
                    "is loaded once, files are decoded ahead (--jobs) and scored in padded batches.",
        epilog=SCORE_OUTPUT)
    p.add_argument("run_dir", metavar="MODEL", help="a run folder, an exported model folder or an ensemble folder")
    p.add_argument("files", nargs="*", metavar="INPUT", help="audio files, folders or list files (none with --pairs)")
    refs = p.add_mutually_exclusive_group()
    refs.add_argument("--reference", help="one reference recording for every file (embedding tasks)")
    refs.add_argument("--pairs", metavar="CSV",
                      help="score the pairs of a CSV with columns reference,degraded (paths relative to the CSV)")
    refs.add_argument("--ref-dir", metavar="DIR", help="each file's reference: the file of the same name in DIR")
    p.add_argument("--audiogram", type=_floats, help="hearing thresholds, dB HL at 250,500,1k,2k,3k,4k,6k,8k Hz")
    _which(p)
    p.add_argument("--batch-size", type=int, default=8, help="clips (files or windows) per forward (default 8)")
    p.add_argument("--jobs", type=int, default=2,
                   help="decoding threads running ahead of the model (default 2; 0: decode between batches)")
    p.add_argument("--window-s", type=float, metavar="S",
                   help="score files longer than S seconds per window, plus a whole-file record (default: whole files)")
    p.add_argument("--hop-s", type=float, metavar="S", help="seconds between window starts (default --window-s)")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "csv"], help="record format (default jsonl)")
    p.add_argument("--out", metavar="FILE", help="write the records to FILE instead of stdout (default stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _runtime_args(p)
    p.set_defaults(handler=_score)

    p = sub.add_parser("export", help="a shareable model folder: aqa export RUN_DIR|ENSEMBLE_DIR OUT_DIR",
                       description="Write model.safetensors, the resolved config.yaml, calibration.json (when "
                                   "present) and a README.md model card; aqa score and aqa.load() read it without "
                                   "unpickling anything. An ensemble is exported member by member.")
    p.add_argument("src", metavar="RUN_DIR", help="a trained run folder, an exported model or an ensemble folder")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write")
    p.add_argument("--which", default=None,
                   help="checkpoint name in run_dir/checkpoints: best | last (default best; for an ensemble its "
                        "ensemble.yaml's which)")
    p.add_argument("--without-encoder", action="store_true",
                   help="leave out the encoder weights that come unchanged from its pretrained checkpoint (frozen "
                        "public encoders); loading then needs that checkpoint, which the model card names")
    p.set_defaults(handler=_export)

    p = sub.add_parser("download", help="pre-fetch the published weights of experiments or encoders: aqa download "
                                        "EXPERIMENT|ENCODER ... (e.g. on a cluster's login node)",
                       description="Download into the caches (HF_HOME, AQA_CACHE) every published checkpoint the "
                                   "experiments or encoders load (a fusion's members, a teacher run's encoder); one "
                                   "line per file: fetched / cached / local, with its path. Offline (HF_HUB_OFFLINE=1) "
                                   "each missing file is named on one line and the exit code is 1.")
    p.add_argument("targets", nargs="+", metavar="EXPERIMENT|ENCODER")
    p.set_defaults(handler=_download)

    p = sub.add_parser("list", help="list experiments and registered components")
    p.add_argument("group", nargs="?", choices=GROUPS)
    _config_dir_option(p, "sub_config_dir")
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
    from aqa.tasks.training import before_after_table, summary, train

    metrics = train(compose(args.experiment, args.overrides))
    if metrics.get("before"):  # validate_before: the validation metrics before and after training
        print(before_after_table(metrics))
    print(summary(metrics))


def _eval(args: argparse.Namespace) -> None:
    if args.test is None:
        test_only = [f"--{k}" for k in ("baselines", "by", "out", "mismatched_reference") if getattr(args, k)]
        if len(args.run_dir) != 1 or test_only:
            raise ValueError("give one RUN_DIR (held-out shards), or --test TEST.csv"
                             + (f" (needed by {' '.join(test_only).replace('_', '-')})" if test_only else ""))
        from aqa.eval.runs import evaluate

        evaluate(args.run_dir[0], args.which, args.split, plot=not args.no_plot, reference=args.reference,
                 device=args.device, precision=args.precision)
        return
    if not args.out:
        raise ValueError("--test needs --out DIR for predictions.csv, summary.csv, summary.md and the plots")
    from aqa.eval.listening import evaluate_test
    from aqa.metrics.runner import cache_of

    evaluate_test(args.test, args.run_dir, args.baselines, args.out, by=args.by, jobs=args.jobs, device=args.device,
                  precision=args.precision, which=args.which, mismatched_reference=args.mismatched_reference,
                  reference=args.reference, n_boot=args.bootstrap, progress=not args.no_progress,
                  cache=cache_of(args), fad={"encoder": args.fad_encoder, "layer": args.fad_layer,
                                             "reference": args.fad_reference})


def _sweep(args: argparse.Namespace) -> int:
    """``aqa sweep NAME [key=value ...]``: run the sweep (``--resume``), list its trials (``--dry-run``), write its
    W&B sweep file (``--wandb``) or run one ``--trial`` (``KEY=VALUE`` items, as a W&B agent does). Returns the exit
    code: 0 when every trial it ran finished, 1 otherwise."""
    from aqa.sweep import CSV_FILE, DONE, default_out, load_sweep, plan, run_one, run_sweep, wandb_sweep

    out, extra = args.out, args.overrides
    spec = load_sweep(args.sweep)
    if args.wandb:
        path = wandb_sweep(spec, out, extra)
        print(f"wrote {path}; start it with: wandb sweep {path}, then wandb agent SWEEP_ID on each machine")
        return 0
    if args.trial:
        return 0 if run_one(spec, args.trial, out, extra)["status"] == DONE else 1
    folder = Path(out or default_out(spec))
    if args.dry_run:
        trials, _, metric, mode = plan(spec, folder, extra)
        for t in trials:
            print(f"{t.name}  {t.experiment} {' '.join(t.overrides)}")
        print(f"{len(trials)} trials, ranked by {metric} ({mode})")
        return 0
    rows = run_sweep(spec, out, extra, args.resume, progress=not args.no_progress)
    failed = [r["trial"] for r in rows if r["status"] != DONE]
    print(
        f"wrote {folder / CSV_FILE}: {len(rows) - len(failed)} of {len(rows)} trials done"
        + (f"; failed: {' '.join(failed)} (rerun them with --resume)" if failed else "")
    )
    return 1 if failed else 0


def _ensemble(args: argparse.Namespace) -> None:
    from aqa.eval.runs import ensemble

    if bool(args.sweep) == bool(args.run_dirs):
        raise ValueError("give the runs either as RUN_DIR ... or as --sweep DIR, not both or neither")
    if args.sweep:
        from aqa.sweep import finished_runs

        args.run_dirs = finished_runs(args.sweep)
    ensemble(args.run_dirs, args.out, args.which, args.split, args.zscore, args.device, args.precision,
             select=args.select, select_on=args.select_on or ("val",), rank_by=args.rank_by)


def _calibrate(args: argparse.Namespace) -> None:
    from aqa.eval.runs import calibrate

    calibrate(args.run_dir, args.kind, args.which, args.split, args.device, args.precision, test=args.test)


def _score(args: argparse.Namespace) -> int:
    from aqa.eval.runs import score

    conditions = {"audiogram": args.audiogram} if args.audiogram else None
    return score(args.run_dir, args.files, args.reference, conditions, args.which, args.out,
                 progress=not args.no_progress, device=args.device, precision=args.precision, pairs=args.pairs,
                 ref_dir=args.ref_dir, batch_size=args.batch_size, jobs=args.jobs, window_s=args.window_s,
                 hop_s=args.hop_s, fmt=args.format)


def _export(args: argparse.Namespace) -> None:
    from aqa.inference.export import export

    out = export(args.src, args.out_dir, args.which, args.without_encoder)
    print(f"exported {args.src} -> {out} (score with: aqa score {out} FILE...)")


def _download(args: argparse.Namespace) -> int:
    from aqa.download import download

    return download(args.targets)


def _metric(args: argparse.Namespace) -> int:
    from aqa.metrics.runner import run_cli

    return run_cli(args)


# commands whose ValueError is the user's (too few clips to fit, a missing reference or audiogram)
_USER_VALUE_ERRORS = {"calibrate", "score", "ensemble", "eval", "export"}


def _is_audio_error(err: BaseException) -> bool:
    # an input file that cannot be decoded (one line, naming it), on any command; aqa.audio is only looked
    # up, never imported here, so `aqa --version` stays light
    audio = sys.modules.get("aqa.audio")
    return audio is not None and isinstance(err, audio.AudioError)


# commands that train: Ctrl-C (SIGINT) stops them as SIGTERM does (last.ckpt, then the resume hint)
_TRAINING = {"train", "sweep"}


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides of ``aqa train`` and ``aqa sweep`` may also follow the options
    (``aqa sweep NAME --out DIR data.train_urls=...``): argparse gives the positional ``overrides`` only the words
    before the first option, and the rest are added to it in order. Anything else left over (an unknown
    ``--flag``, a stray word of another command) is a usage error (exit 2), as before."""
    args, rest = parser.parse_known_args(argv)
    if isinstance(getattr(args, "overrides", None), list):
        args.overrides = [*args.overrides, *(w for w in rest if not w.startswith("-"))]
        rest = [w for w in rest if w.startswith("-")]
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aqa`` console script: parse, dispatch, turn expected errors into one line."""
    args = parse_args(build_parser(), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    received: list[str] = []  # interrupting signals seen while a training command ran
    try:
        set_config_dirs([*args.config_dir, *getattr(args, "sub_config_dir", [])])
        if args.command in _TRAINING:
            from aqa.sweep.run import sigint_as_sigterm

            with sigint_as_sigterm() as received:
                return int(handler(args) or 0)
        return int(handler(args) or 0)
    except (ConfigError, FileNotFoundError, KeyError) as err:
        print(f"aqa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        if args.command not in _USER_VALUE_ERRORS and not _is_audio_error(err):
            raise
        # the command line's wording of an error the Python API words with its argument names (UsageError)
        print(f"aqa {args.command}: error: {getattr(err, 'cli_message', err)}", file=sys.stderr)
        return 2
    except (SystemExit, KeyboardInterrupt) as stop:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not (received or isinstance(stop, SIGTERMException)):
            raise
        how = "the same command with --resume" if args.command == "sweep" else "resume=true"
        print(f"aqa {args.command}: stopped by {'SIGINT (Ctrl-C)' if received else 'SIGTERM'}; continue with "
              f"{how}", file=sys.stderr)
        return 130 if received else 143  # 128 + the signal, as a shell reports a job the signal ended


if __name__ == "__main__":
    sys.exit(main())
