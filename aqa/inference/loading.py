"""Model folders and loading a scorer from one: ``aqa.load(path)`` is :func:`load`.

A model folder is a training run (``config.yaml`` + ``checkpoints/``), an exported model (``aqa export``:
``model.safetensors`` + ``config.yaml``; read without unpickling anything) or an ensemble (``ensemble.yaml``,
written by ``aqa ensemble --out DIR``, read by ``aqa eval DIR`` and ``aqa score DIR`` as they read a run's
folder), each with an optional ``calibration.json`` (``aqa calibrate``)::

    kind: ensemble
    which: best              # the members' checkpoint
    zscore: false            # true: each member's task scores are standardised with its stats before averaging
    members:
      - run: /abs/path/to/run1
        stats: {TASK: {mean: float, std: float}, ...}   # the member's scores on the split the ensemble was built on
      - ...
    tasks: [TASK, ...]       # the tasks every member has

:func:`load` is the one place that reads a folder for a :class:`~aqa.inference.scorer.Scorer`, and it calls only
downward: the config and the model (:func:`load_module`, the config read once), shared encoders, calibrations,
and the device and precision, resolved once here and passed down to the scorer and its engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from aqa.config import ConfigError, load_config, validate
from aqa.files import write_text_atomic
from aqa.inference.calibration import load_calibrations
from aqa.inference.device import resolve_device, resolve_precision
from aqa.inference.ensemble import share_encoders
from aqa.inference.scorer import Member, Scorer
from aqa.model import QualityModel, build_model, checkpoint_state, load_weights

MODEL_FILE = "model.safetensors"
FORMAT = "aqa-export-1"  # safetensors metadata "format" of what `aqa export` writes
ENSEMBLE_FILE = "ensemble.yaml"


def kind_of(path: str | Path) -> str:
    """What folder ``path`` is: ``ensemble`` (ensemble.yaml), ``export`` (model.safetensors + config.yaml) or
    ``run`` (config.yaml + checkpoints/). Raises ``FileNotFoundError`` naming what a model folder holds."""
    path = Path(path)
    if (path / ENSEMBLE_FILE).is_file():
        return "ensemble"
    if (path / MODEL_FILE).is_file() and (path / "config.yaml").is_file():
        return "export"
    if (path / "config.yaml").is_file():
        return "run"
    raise FileNotFoundError(
        f"{path}: not a model folder (a run folder holds config.yaml and checkpoints/, an exported model "
        f"{MODEL_FILE} and config.yaml, an ensemble {ENSEMBLE_FILE})"
    )


def encoder_nodes(encoder: DictConfig) -> list[DictConfig]:
    """The encoder configs that name a ``checkpoint``: the encoder itself, or a fusion's members."""
    members = encoder.get("encoders")
    if members is not None and all(isinstance(m, DictConfig) for m in members):
        return list(members)
    return [encoder]


def encoder_checkpoints(cfg: DictConfig) -> list[str | None]:
    """The pretrained checkpoint each encoder (or fusion member) of ``cfg`` is built from (None: random weights)."""
    return [node.get("checkpoint") for node in encoder_nodes(cfg.encoder)]


def export_metadata(path: str | Path) -> dict[str, str]:
    """The metadata ``aqa export`` stored in ``model.safetensors`` (``format``, ``without_encoder``, ...)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_module(path: str | Path, which: str = "best") -> tuple[QualityModel, DictConfig]:
    """The trained model of a run folder (``checkpoints/{which}.ckpt``) or an exported folder, in eval mode, and its
    config; no Lightning. The folder's ``config.yaml`` is read and validated once, before anything is built (no
    ``_target_`` outside the allow-list), and nothing is unpickled: a checkpoint is read with
    ``torch.load(weights_only=True)`` (:func:`aqa.model.checkpoint_state`), an export with safetensors.
    Training-only weights (losses, distillation projections: checkpoints, and exports written before scoring had a
    model of its own) are ignored.

    Full exports hold every weight: the encoder is built with random weights of its published architecture and
    overwritten. ``--without-encoder`` exports hold the other weights only: the encoder is built from the
    checkpoint its config names (which must be available here), then the stored weights are loaded over it.
    """
    from safetensors.torch import load_file

    path = Path(path)
    exported = kind_of(path) == "export"
    meta = export_metadata(path / MODEL_FILE) if exported else {}
    without_encoder = meta.get("without_encoder") == "true"
    cfg = load_config(path / "config.yaml")
    validate(cfg)
    built, needs = cfg, encoder_checkpoints(cfg)
    if exported and not without_encoder:  # every weight is stored: no pretrained checkpoint is read
        built = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        for node in encoder_nodes(built.encoder):
            if node.get("checkpoint") is not None:
                node.checkpoint = None
    state = load_file(str(path / MODEL_FILE)) if exported else checkpoint_state(path, which)
    try:
        module = build_model(built)
    except (OSError, ValueError) as err:
        if not without_encoder:
            raise
        raise FileNotFoundError(
            f"{path}: exported without encoder weights; it needs the encoder checkpoint(s) "
            f"{needs}: {' '.join(str(err).split())[:200]}"
        ) from None
    try:
        missing, unexpected = load_weights(module, state, strict=not without_encoder)
    except RuntimeError as err:
        if not exported:
            raise
        raise ValueError(
            f"{path / MODEL_FILE}: the stored weights do not fit the encoder's published architecture "
            f"({' '.join(str(err).split())[:160]}); export with --without-encoder instead"
        ) from None
    bad = [k for k in missing if not k.startswith("encoder.")] + list(unexpected)
    if bad:  # --without-encoder exports (the others load strictly)
        raise ValueError(f"{path / MODEL_FILE}: weights do not fit config.yaml (e.g. {bad[:3]})")
    return module.eval(), cfg


def write_ensemble(
    out: str | Path,
    runs: Sequence[str | Path],
    stats: Sequence[Mapping[str, Mapping[str, float]]],
    zscore: bool = False,
    which: str = "best",
) -> Path:
    """Write ``out/ensemble.yaml`` (atomically): the members (absolute paths) with their score stats and the
    tasks they share. Returns the file."""
    if len(runs) != len(stats):
        raise ValueError(f"{len(runs)} runs but {len(stats)} members' stats")
    tasks = [t for t in stats[0] if all(t in s for s in stats[1:])] if stats else []
    spec = {
        "kind": "ensemble",
        "which": which,
        "zscore": bool(zscore),
        "members": [
            {
                "run": str(Path(run).resolve()),
                "stats": {t: {k: float(v) for k, v in s[t].items()} for t in tasks},
            }
            for run, s in zip(runs, stats, strict=True)
        ],
        "tasks": tasks,
    }
    return write_text_atomic(Path(out) / ENSEMBLE_FILE, yaml.safe_dump(spec, sort_keys=False))


def is_ensemble(folder: str | Path) -> bool:
    """True when ``folder`` is an ensemble folder (holds ``ensemble.yaml``)."""
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def read_ensemble(folder: str | Path) -> dict[str, Any]:
    """Read and check ``folder/ensemble.yaml``.

    Returns:
        ``{"kind", "which", "zscore", "members": [{"run", "stats"}], "tasks"}``.

    Raises:
        ConfigError: one line naming the file and what is wrong with it (a member folder that is gone included).
    """
    path = Path(folder) / ENSEMBLE_FILE
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot be read ({str(err).splitlines()[0]})") from None
    if not isinstance(spec, dict) or spec.get("kind") != "ensemble":
        raise ConfigError(f"{path}: not an ensemble file (kind: ensemble); write one with aqa ensemble --out")
    members, tasks = spec.get("members"), spec.get("tasks")
    if not isinstance(members, list) or len(members) < 2:
        raise ConfigError(f"{path}: members: a list of at least two {{run, stats}}, got {members!r}")
    if not isinstance(tasks, list) or not tasks or not isinstance(spec.get("zscore"), bool):
        raise ConfigError(f"{path}: needs tasks: [TASK, ...] and zscore: true|false")
    for i, m in enumerate(members):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("run"), str)
            or not isinstance(m.get("stats"), dict)
        ):
            raise ConfigError(
                f"{path}: members[{i}] must be {{run: PATH, stats: {{TASK: {{mean, std}}}}}}, got {m!r}"
            )
        m["run"] = (
            str(Path(folder) / m["run"]) if not Path(m["run"]).is_absolute() else m["run"]
        )  # relative: to it
        if not (Path(m["run"]) / "config.yaml").is_file():
            raise ConfigError(f"{path}: members[{i}]: {m['run']} is not a run folder (no config.yaml)")
        if spec["zscore"] and any(not isinstance(m["stats"].get(t), dict) for t in tasks):
            raise ConfigError(f"{path}: members[{i}]: zscore needs stats for every task {tasks}")
    spec.setdefault("which", "best")
    return spec


def load_members(path: str | Path, which: str = "best") -> tuple[list[Member], list[str] | None, dict[str, Any], bool]:
    """What a :class:`~aqa.inference.scorer.Scorer` of the folder ``path`` (see :func:`kind_of`) is built from:
    ``(members, tasks, calibrations, zscore)``; ``tasks`` None: the first member's. ``which``: run folders' checkpoint
    (``best`` | ``last``); for ensembles the default is the ensemble.yaml's ``which``.

    Ensemble members whose encoders (or fusion members) hold identical weights, such as the frozen WavLM, MuQ
    and M2D of MMMOS' runs, share one copy, which runs once per batch for all of them
    (:func:`aqa.inference.ensemble.share_encoders`).
    """
    path = Path(path)
    spec = read_ensemble(path) if kind_of(path) == "ensemble" else None
    members, pool = [], []
    for m in spec["members"] if spec else [{"run": path}]:
        module, cfg = load_module(m["run"], m.get("which") or (spec or {}).get("which") or which)
        if spec:  # as each loads: an encoder equal to an earlier member's is held once
            share_encoders(module, pool)
        members.append(Member(module, cfg, {t: dict(s) for t, s in (m.get("stats") or {}).items()}))
    tasks = None
    if spec:
        tasks = spec.get("tasks") or [t for t in members[0].module.heads if all(t in m.module.heads for m in members)]
    return members, tasks, load_calibrations(path / "calibration.json"), bool((spec or {}).get("zscore", False))


def load(path: str | Path, which: str = "best", device: str = "auto", precision: str = "auto") -> Scorer:
    """A :class:`~aqa.inference.scorer.Scorer` for a run folder, an exported model folder or an ensemble folder
    (:func:`load_members`), on ``device`` in ``precision``.

    Args:
        path: the folder (see :func:`kind_of`).
        which: run folders: the checkpoint (``best`` | ``last``); for ensembles the default is the
            ensemble.yaml's ``which``.
        device: ``auto`` | ``cpu`` | ``cuda`` (auto: CUDA when a GPU is visible).
        precision: ``auto`` | ``fp32`` | ``bf16`` (auto: bf16 autocast on CUDA, fp32 on the CPU).
    """
    members, tasks, calibrations, zscore = load_members(path, which)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    return Scorer(members, tasks, calibrations, zscore, dev, prec)
