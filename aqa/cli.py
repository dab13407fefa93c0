"""Command line: ``aqa train | eval | calibrate | ensemble | score | list | prep | metric``. ``train(cfg)`` and ``evaluate(run_dir)`` are plain functions."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aqa.config import ConfigError, available, check_values, compose, save_config

log = logging.getLogger("aqa")

# `aqa prep NAME ARGS...` -> data_prep module whose `main(argv) -> int` runs the recipe (imported lazily)
PREP_RECIPES: dict[str, str] = {
    "codec": "data_prep.codec",
    "jnd": "data_prep.jnd",
    "haaqi": "data_prep.haaqi",
    "import": "data_prep.import_tests",
    "render": "data_prep.render",
}


def prep(recipe: str, argv: Sequence[str]) -> int:
    """Run the data-preparation recipe ``recipe`` (a key of ``PREP_RECIPES``) with its own arguments."""
    import importlib

    if recipe not in PREP_RECIPES:
        raise KeyError(f"unknown prep recipe {recipe!r}; choose from {sorted(PREP_RECIPES)}")
    module = PREP_RECIPES[recipe]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name not in (module, module.rsplit(".", 1)[0]):
            raise
        print(f"aqa prep {recipe}: error: recipe module {module} is not available ({err})", file=sys.stderr)
        return 2
    return int(mod.main(list(argv)))


def _datamodule(cfg: DictConfig, sample_rate: int) -> Any:
    from omegaconf import OmegaConf

    from aqa.data.datamodule import AQADataModule

    kwargs = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs.pop("name")
    return AQADataModule(**kwargs, sample_rate=sample_rate, seed=cfg.seed)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the experiment ``cfg`` describes; returns the final logged metrics and the best checkpoint path.

    The resolved config is written to ``run_dir/config.yaml`` and beside the checkpoints. With
    ``resume=true`` training continues from ``run_dir/checkpoints/last.ckpt`` (model, optimizer, scheduler,
    loop state). A run directory that already holds checkpoints is never overwritten silently.

    Raises:
        ConfigError: before anything is built or written, when a value is out of range or the shards are
            missing or empty (:func:`aqa.config.check_values`).
    """
    check_values(cfg)  # first: a bad value must not leave a run folder, a W&B run or a built model behind

    import lightning as L

    from aqa.tasks import build_module, build_trainer, init_from_checkpoint

    run_dir = Path(cfg.run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = None
    if cfg.resume:
        if last.is_file():
            ckpt_path = str(last)
            log.info("resuming from %s", last)
        else:
            log.warning("resume=true but %s does not exist: starting from scratch", last)
    elif last.is_file() and not cfg.overwrite:
        raise ConfigError(
            f"{run_dir} already holds checkpoints: pass resume=true to continue that run, "
            f"overwrite=true to start it again, or run_dir=... for a new one"
        )
    L.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg)
    if cfg.get("init_from") and ckpt_path is None:  # a resumed run already holds its own weights
        init_from_checkpoint(module, cfg.init_from)
    datamodule = _datamodule(cfg, module.encoder.sample_rate)
    save_config(cfg, run_dir / "config.yaml")
    save_config(cfg, run_dir / "checkpoints" / "config.yaml")
    trainer = build_trainer(cfg, run_dir)
    # weights_only: a resumed checkpoint cannot run code either (ours hold only tensors and plain values)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["best_model_path"] = (
        trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    )
    return metrics


def _records(
    run_dir: str | Path, which: str, split: str, mismatched: bool = False, device: str = "auto", precision: str = "auto"
) -> tuple[Any, DictConfig, dict[str, list[dict]]]:
    from aqa.eval.report import collect_scores
    from aqa.tasks.multitask import load_run

    module, cfg = load_run(run_dir, which)
    loader = _datamodule(cfg, module.encoder.sample_rate).eval_dataloader(split)
    labels = {name: t.label for name, t in cfg.tasks.items()}
    return module, cfg, collect_scores(module, loader, labels, mismatched, device, precision)


def evaluate(
    run_dir: str | Path,
    which: str = "best",
    split: str = "val",
    plot: bool = True,
    reference: str = "matched",
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Score a trained run's held-out shards; print and save (``run_dir/eval_{split}.json``) the results.

    ``reference="mismatched"`` scores embedding tasks against another excerpt's clean reference (DeePAQ's
    mismatched-reference mode; results in ``eval_{split}_mismatched.json``). ``device`` (cpu | cuda | auto)
    and ``precision`` (fp32 | bf16 | auto) say where and how the model runs.

    Returns the summary: task -> subset ("all" and each value of the config's ``report.by``, e.g. each
    codec) -> n, SRCC, PCC; with a ``calibration.json`` (``aqa calibrate``) also the RMSE of the mapped scores.
    """
    from aqa.eval.report import apply_calibration, plot_scores, print_summary, save_results, summarise

    if reference not in ("matched", "mismatched"):
        raise ValueError(f"reference must be 'matched' or 'mismatched', got {reference!r}")
    run_dir = Path(run_dir)
    _, cfg, records = _records(run_dir, which, split, reference == "mismatched", device, precision)
    if reference == "matched":  # the calibration was fitted on matched-reference scores
        apply_calibration(records, run_dir / "calibration.json")
    report = cfg.get("report") or {"by": "codec", "x": "bitrate_kbps"}
    summary = summarise(records, by=report["by"])
    name = f"eval_{split}" + ("_mismatched" if reference == "mismatched" else "")
    print_summary(summary, title=f"{cfg.experiment}: {split} ({which} checkpoint, {reference} reference)")
    save_results(run_dir / f"{name}.json", summary, records)
    if plot and (png := plot_scores(records, run_dir / f"{name}.png", x=report["x"], by=report["by"])):
        print(f"plot: {png}")
    return summary


def calibrate(
    run_dir: str | Path,
    kind: str = "cubic",
    which: str = "best",
    split: str = "train",
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Fit a score -> label mapping per task on ``split`` and save it as ``run_dir/calibration.json``.

    Afterwards ``aqa eval`` reports the RMSE of the mapped scores and ``aqa score`` adds ``TASK_calibrated``.
    Returns task -> the calibration's dict.
    """
    import json

    from aqa.eval.calibration import FITS

    if kind not in FITS:
        raise KeyError(f"unknown calibration {kind!r}; choose from {sorted(FITS)}")
    run_dir = Path(run_dir)
    _, _, records = _records(run_dir, which, split, device=device, precision=precision)
    fitted = {}
    for task, rows in records.items():
        cal = FITS[kind]([r["score"] for r in rows], [r["label"] for r in rows])
        cal.extra["split"] = split
        fitted[task] = cal.to_dict()
        print(f"{task}: {kind} mapping fitted on {len(rows)} {split} clips")
    path = run_dir / "calibration.json"
    path.write_text(json.dumps(fitted, indent=1))
    print(f"wrote {path}")
    return fitted


def ensemble(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    which: str = "best",
    split: str = "val",
    zscore: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Evaluate the mean of several runs' scores per clip (MMMOS's ensembles) on the first run's data.

    Every run is scored on the same clips (the first run's ``data`` shards); the summary of the ensemble is
    printed next to each member's and saved, with the per-clip records, to ``out/ensemble_{split}.json``.
    """
    from aqa.eval.ensemble import ensemble_records
    from aqa.eval.report import collect_scores, print_summary, save_results, summarise
    from aqa.tasks.multitask import load_run

    _, first = load_run(run_dirs[0], which)
    report = first.get("report") or {"by": "codec", "x": "bitrate_kbps"}
    members = []
    for run in run_dirs:
        module, cfg = load_run(run, which)
        loader = _datamodule(first, module.encoder.sample_rate).eval_dataloader(split)
        records = collect_scores(module, loader, {name: t.label for name, t in cfg.tasks.items()}, False, device, precision)
        print_summary(summarise(records, by=report["by"]), title=f"member {run}")
        members.append(records)
    records = ensemble_records(members, zscore=zscore)
    summary = summarise(records, by=report["by"])
    print_summary(summary, title=f"ensemble of {len(run_dirs)} runs: {split}")
    save_results(Path(out) / f"ensemble_{split}.json", summary, records, runs=[str(r) for r in run_dirs])
    return summary


def score(
    run_dir: str | Path,
    files: Sequence[str],
    reference: str | None = None,
    conditions: dict[str, list[float]] | None = None,
    which: str = "best",
    out: str | None = None,
    progress: bool = True,
    device: str = "auto",
    precision: str = "auto",
) -> int:
    """Score audio files (or folders of them) with a trained run; print one JSON object per file.

    Returns 0 when every file was scored, 1 when some gave an error (each in its record).
    """
    import json

    from tqdm import tqdm

    from aqa.data.shards import AUDIO_SUFFIXES
    from aqa.eval.calibration import load_calibrations
    from aqa.eval.score import score_files
    from aqa.tasks.multitask import load_run

    paths: list[Path] = []
    for item in files:
        p = Path(item)
        paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES) if p.is_dir() else [p]
    if not paths:
        raise FileNotFoundError(f"no audio files in {list(files)}")
    module, _ = load_run(run_dir, which)
    calibrations = load_calibrations(Path(run_dir) / "calibration.json")  # written by `aqa calibrate`
    sink = open(out, "w") if out else None  # noqa: SIM115 - closed below; records are flushed one by one
    failed = 0
    try:
        records = score_files(module, paths, reference, conditions, calibrations, device, precision)
        for record in tqdm(records, total=len(paths), disable=not progress or len(paths) < 2, file=sys.stderr):
            failed += "error" in record
            line = json.dumps(record)
            print(line, flush=True)
            if sink:
                sink.write(line + "\n")
                sink.flush()
    finally:
        if sink:
            sink.close()
    return 1 if failed else 0


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _list(group: str | None) -> None:
    from aqa.encoders import ENCODERS
    from aqa.heads import HEADS
    from aqa.losses import LOSSES

    registries = {"encoder": ENCODERS, "head": HEADS, "loss": LOSSES}
    groups = [group] if group else ["experiment", "encoder", "head", "loss", "data", "trainer"]
    for g in groups:
        names = sorted(registries[g]) if g in registries else available(g)
        print(f"{g}: {' '.join(names)}")


def _runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the model runs (default auto: CUDA when a GPU is visible)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="fp32, or bf16 autocast (default auto: bf16 on CUDA, fp32 on CPU)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aqa`` console script."""
    parser = argparse.ArgumentParser(prog="aqa", description="Perceptual audio quality assessment")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train an experiment: aqa train EXPERIMENT [key=value ...]")
    p.add_argument("experiment", help=f"one of: {' '.join(available('experiment'))}")
    p.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. trainer.max_epochs=3 encoder=mert_v1_95m"
    )
    p = sub.add_parser("eval", help="evaluate a trained run on its held-out shards")
    p.add_argument("run_dir", help="a run directory, e.g. runs/deepaq_lora_tiny")
    p.add_argument("--which", default="best", help="checkpoint name in run_dir/checkpoints (best | last)")
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--reference", default="matched", choices=["matched", "mismatched"],
                   help="embedding tasks: distance to the clip's own clean reference or to another excerpt's")
    _runtime_args(p)
    p = sub.add_parser("ensemble", help="evaluate the mean score of several runs: aqa ensemble RUN RUN ... --out DIR")
    p.add_argument("run_dirs", nargs="+", help="trained run directories (the first one's data is used)")
    p.add_argument("--out", required=True, help="folder for ensemble_{split}.json")
    p.add_argument("--which", default="best", help="checkpoint name in each run's checkpoints (best | last)")
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--zscore", action="store_true", help="standardise each run's scores before averaging")
    _runtime_args(p)
    p = sub.add_parser("calibrate", help="fit a score -> label mapping (cubic | mlp) for aqa eval and aqa score")
    p.add_argument("run_dir", help="a trained run directory, e.g. runs/deepaq_lora")
    p.add_argument("--kind", default="cubic", choices=["cubic", "mlp"])
    p.add_argument("--split", default="train", choices=["train", "val"], help="split to fit on (default train)")
    p.add_argument("--which", default="best", help="checkpoint name in run_dir/checkpoints (best | last)")
    _runtime_args(p)
    p = sub.add_parser("score", help="score your own files: aqa score RUN_DIR FILE_OR_DIR... [--reference REF]")
    p.add_argument("run_dir", help="a trained run directory, e.g. runs/mmmos_tiny")
    p.add_argument("files", nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument("--reference", help="reference recording for distance-based (embedding) tasks")
    p.add_argument("--audiogram", type=_floats, help="hearing thresholds, dB HL at 250,500,1k,2k,3k,4k,6k,8k Hz")
    p.add_argument("--which", default="best", help="checkpoint name in run_dir/checkpoints (best | last)")
    p.add_argument("--out", help="also write the JSON lines to this file")
    p.add_argument("--no-progress", action="store_true")
    _runtime_args(p)
    p = sub.add_parser("list", help="list experiments and registered components")
    p.add_argument("group", nargs="?", choices=["experiment", "encoder", "head", "loss", "data", "trainer"])
    p = sub.add_parser("prep", help="build WebDataset shards: aqa prep codec --src DIR --out DIR ...")
    p.add_argument(
        "recipe", choices=sorted(PREP_RECIPES), help="data_prep recipe; `aqa prep NAME -h` for its options"
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = sub.add_parser("metric", help="reference metrics: aqa metric visqol --ref REF.wav --deg DEG.wav")
    from aqa.metrics.runner import build_parser as metric_parser

    metric_parser(p)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            metrics = train(compose(args.experiment, args.overrides))
            print({k: v for k, v in metrics.items()})
        elif args.command == "eval":
            evaluate(args.run_dir, args.which, args.split, plot=not args.no_plot, reference=args.reference,
                     device=args.device, precision=args.precision)
        elif args.command in ("calibrate", "score", "ensemble"):
            try:
                if args.command == "ensemble":
                    ensemble(args.run_dirs, args.out, args.which, args.split, args.zscore, args.device, args.precision)
                elif args.command == "calibrate":
                    calibrate(args.run_dir, args.kind, args.which, args.split, args.device, args.precision)
                else:
                    conditions = {"audiogram": args.audiogram} if args.audiogram else None
                    return score(args.run_dir, args.files, args.reference, conditions, args.which, args.out,
                                 progress=not args.no_progress, device=args.device, precision=args.precision)
            except ValueError as err:  # too few clips to fit; a reference or audiogram the call did not give
                print(f"aqa {args.command}: error: {err}", file=sys.stderr)
                return 2
        elif args.command == "list":
            _list(args.group)
        elif args.command == "prep":
            return prep(args.recipe, args.args)
        elif args.command == "metric":
            from aqa.metrics.runner import run_cli

            return run_cli(args)
    except (ConfigError, FileNotFoundError, KeyError) as err:
        print(f"aqa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as stop:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(stop, SIGTERMException):
            raise
        print(f"aqa {args.command}: stopped by SIGTERM; continue with resume=true", file=sys.stderr)
        return 143  # 128 + SIGTERM, as a shell reports a job the signal ended
    return 0


if __name__ == "__main__":
    sys.exit(main())
