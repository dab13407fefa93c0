"""``aqa export RUN_DIR|ENSEMBLE_DIR OUT_DIR``: a self-contained, shareable model folder.

A model folder holds:

- ``model.safetensors``: the weights (every weight, or with ``--without-encoder`` all but the encoder weights
  that come unchanged from its pretrained checkpoint: LoRA adapters and fine-tuned parts are kept);
  its metadata says which (``format``, ``without_encoder``, ``encoder_checkpoints``, ``source``);
- ``config.yaml``: the resolved experiment config the model is rebuilt from;
- ``calibration.json`` when the run has one (``aqa calibrate``);
- ``README.md``: a model card (what it predicts, scale and direction, NR / FR / mismatched mode, audiogram,
  training data, validation figures from the run's ``eval_*.json``).

:func:`aqa.inference.loading.load` reads it with safetensors and YAML only: nothing is unpickled. An ensemble folder
(``ensemble.yaml``) is exported member by member into ``OUT/members/NAME/`` with an ``ensemble.yaml`` pointing at
them by relative path.

The folder is built in a temporary sibling of ``OUT`` and moved into place at the end, so a crash leaves no half
export; a previous export at ``OUT`` is replaced whole (nothing of it survives), any other non-empty ``OUT`` is
refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from aqa.config import compose
from aqa.inference.loading import (
    ENSEMBLE_FILE,
    FORMAT,
    MODEL_FILE,
    encoder_checkpoints,
    encoder_nodes,
    export_metadata,
    kind_of,
    load_module,
    read_ensemble,
)
from aqa.model import build_model


def is_export(folder: str | Path) -> bool:
    """True when ``folder`` is what ``aqa export`` writes: a model folder whose ``model.safetensors`` metadata
    says ``format: aqa-export-1``, or an ensemble folder whose members all live in its ``members/``."""
    folder = Path(folder)
    try:
        if (folder / MODEL_FILE).is_file():
            return export_metadata(folder / MODEL_FILE).get("format") == FORMAT
        if (folder / ENSEMBLE_FILE).is_file() and (folder / "members").is_dir():
            runs = [str(m["run"]) for m in read_ensemble(folder)["members"]]
            return bool(runs) and all(r.startswith("members/") and is_export(folder / r) for r in runs)
    except Exception:  # unreadable: not ours to replace
        return False
    return False


def publish(out: str | Path, build: Any) -> Path:
    """Run ``build(tmp)`` on a new temporary sibling folder of ``out``, then move it into place: ``out`` appears
    whole or not at all. A previous export at ``out`` is replaced whole; returns ``out``.

    Raises:
        ValueError: ``out`` is a file, or a non-empty folder that is not a previous export.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUT_DIR {out} is a file; pick a folder")
    old = out.is_dir() and any(out.iterdir())
    if old and not is_export(out):
        raise ValueError(
            f"OUT_DIR {out} is not empty and holds no previous export; pick a new or empty folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        os.chmod(tmp, 0o755)
        build(tmp)
        if old:  # move the previous export aside, put the new one in place, then delete the old one
            trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, trash / "old")
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)  # out absent or an empty folder
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def checkpoint_keys(cfg: DictConfig, state: Mapping[str, Tensor]) -> list[str]:
    """The ``encoder.*`` weights of ``state`` that building ``cfg`` reproduces from its pretrained checkpoint:
    equal to the trained value in two builds under different seeds (so not random initialisations)."""
    fresh = []
    for seed in (1, 2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh.append(build_model(cfg).state_dict())
    return [
        k
        for k, v in state.items()
        if k.startswith("encoder.")
        and all(k in f and f[k].shape == v.shape and torch.equal(f[k], v) for f in fresh)
    ]


def _weights(module: nn.Module, cfg: DictConfig, without_encoder: bool) -> dict[str, Tensor]:
    state = {
        k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()
    }  # no shared memory
    if not without_encoder:
        return state
    if any(c is None for c in encoder_checkpoints(cfg)):
        raise ValueError(
            "--without-encoder: the encoder has random weights (checkpoint: null), there is no "
            "checkpoint to name; export it with its weights"
        )
    for key in checkpoint_keys(cfg, state):
        del state[key]
    return state


def _figures(run_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    # (file, task, the "all" subset's figures) from the run's eval_*.json (aqa eval)
    rows = []
    for path in sorted(run_dir.glob("eval_*.json")):
        try:
            summary = json.loads(path.read_text()).get("summary", {})
        except (OSError, ValueError):
            continue
        for task, subsets in summary.items():
            if isinstance(subsets, dict) and isinstance(subsets.get("all"), dict):
                rows.append((path.name, task, subsets["all"]))
    return rows


def _differences(trained: Any, fresh: Any, key: str) -> list[str]:
    # the ``key=value`` items that make the container ``fresh`` into ``trained`` (dicts compared key by key)
    if isinstance(trained, dict) and isinstance(fresh, dict):
        return [
            item
            for k in sorted(trained.keys() | fresh.keys(), key=str)
            for item in _differences(trained.get(k, _UNSET), fresh.get(k, _UNSET), f"{key}.{k}" if key else str(k))
        ]
    if trained == fresh:
        return []
    return [f"{key}={'(unset)' if trained is _UNSET else yaml_value(trained)}"]


_UNSET = object()


def model_changes(cfg: DictConfig) -> list[str] | None:
    """What the model of ``cfg`` was trained with beyond its experiment file, as ``key=value`` items: the
    ``encoder.*`` and ``tasks.*`` settings (what the model is and learns) that differ from composing
    ``cfg.experiment`` here (e.g. ``encoder.adapter=null`` on ``deepaq_lora``); the rating scales ``aqa train``
    records (``tasks.T.scale``) are left out. None when the experiment cannot be composed here."""
    try:
        shipped = compose(str(cfg.experiment))
    except (KeyError, ValueError):  # ConfigError included
        return None
    trained, fresh = (
        {group: OmegaConf.to_container(c, resolve=True).get(group, _UNSET) for group in ("encoder", "tasks")}  # type: ignore[union-attr]
        for c in (cfg, shipped)
    )
    return [
        item
        for item in _differences(trained, fresh, "")
        if not (item.startswith("tasks.") and item.split("=")[0].split(".")[2:] == ["scale"])
    ]


def yaml_value(value: Any) -> str:
    """``value`` as a ``key=value`` override writes it (``null``, ``true``, ``[a, b]``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _encoder_lines(cfg: DictConfig) -> list[str]:
    # per encoder (or fusion member): its real pretrained checkpoint or random init, its adapter, frozen or not
    lines = []
    for node in encoder_nodes(cfg.encoder):
        checkpoint = node.get("checkpoint")
        adapter = node.get("adapter")
        lines.append(
            f"- encoder `{node.name}`: "
            + (f"pretrained checkpoint `{checkpoint}`" if checkpoint else "no pretrained checkpoint (trained from random init)")
            + "; adapter: "
            + (
                f"`{adapter.name}` ({', '.join(f'{k}={yaml_value(v)}' for k, v in OmegaConf.to_container(adapter).items() if k != 'name')})"
                if isinstance(adapter, DictConfig)
                else "none"
            )
            + ("; frozen" if node.get("freeze") is True else "")
            + "."
        )
    return lines


def model_card(
    module: nn.Module, cfg: DictConfig, source: Path, calibrations: Mapping[str, Any], without_encoder: bool
) -> str:
    """The README.md of an exported model (markdown). Its title is the experiment name and, when the model was
    trained with other encoder or task settings than that experiment's file (:func:`model_changes`), those."""
    heads = module.heads
    embedding = [t for t, h in heads.items() if h.is_embedding]
    conditions = {k: n for h in heads.values() for k, n in h.condition_dims.items()}
    name = cfg.get("experiment", source.name)
    changes = model_changes(cfg) if "experiment" in cfg else []
    shown = ", ".join(changes[:3]) + (f", +{len(changes) - 3} more" if len(changes or ()) > 3 else "")
    lines = [f"# {name} ({shown})" if changes else f"# {name}", "", f"Exported by `aqa export` from `{source}`."]
    if changes:
        lines += ["", f"Trained as the experiment `{name}` with: {', '.join(f'`{c}`' for c in changes)}."]
    elif changes is None:
        lines += ["", f"(The experiment `{name}` is not found here: this model's settings may differ from it.)"]
    lines += ["", "## What it predicts", ""]
    for task, t in cfg.tasks.items():
        kind = "embedding (scored by distance to a reference)" if task in embedding else "score"
        lines.append(
            f"- `{task}`: head `{t.head.name}`, {kind}, trained on the label `{t.label}` with loss "
            f"`{t.loss.name}`."
        )
    lines += ["", "## Scale and direction", ""]
    for task in heads:
        if task in embedding:
            lines.append(
                f"- `{task}`: minus the embedding distance to the reference, 0 for identical audio; "
                "higher is better; no fixed scale (compare files scored against the same reference)."
            )
        else:
            lines.append(
                f"- `{task}`: higher is better, on the scale the head learnt for `{cfg.tasks[task].label}`."
            )
    for task, cal in calibrations.items():
        lines.append(
            f"- `{task}_calibrated`: `{task}` mapped to the label's scale ({cal.get('kind', 'mapping')} fitted "
            f"on the {cal.get('extra', {}).get('split', cal.get('split', '?'))} split, calibration.json)."
        )
    mode = (
        "full-reference (FR) or mismatched-reference: give the clean original, or any recording as an anchor"
        if embedding
        else "no-reference (NR): scores a file alone"
    )
    lines += ["", "## Mode", "", f"- {mode}."]
    if conditions:
        for key, n in conditions.items():
            lines.append(
                f"- conditioned on `{key}` ({n} values"
                + (
                    ", hearing thresholds in dB HL at 250, 500, 1k, 2k, 3k, 4k, 6k, 8k Hz): "
                    "pass `--audiogram V1,...`"
                    if key == "audiogram"
                    else ")"
                )
                + "."
            )
    else:
        lines.append("- no audiogram or other condition.")
    lines += [
        "",
        "## Input and encoder",
        "",
        f"- any audio file or array; down-mixed to mono and resampled to {module.encoder.sample_rate} Hz.",
        *_encoder_lines(cfg),
    ]
    lines.append(
        "- encoder weights are NOT stored: loading builds the encoder from the checkpoint(s) above, which "
        "must be available (a local path or the Hugging Face cache), then loads the stored weights."
        if without_encoder
        else "- every weight is stored in model.safetensors; no checkpoint is needed."
    )
    data = cfg.get("data") or {}
    lines += [
        "",
        "## Training data",
        "",
        f"- data `{data.get('name', '?')}`: train `{data.get('train_urls', '?')}`, validation "
        f"`{data.get('val_urls', '?')}`, labels {list(data.get('label_keys') or [])}.",
    ]
    if cfg.get("trainer"):
        lines.append(
            f"- trained up to {cfg.trainer.get('max_epochs', '?')} epochs, selected on "
            f"`{cfg.monitor.metric}` ({cfg.monitor.mode})."
        )
    figures = _figures(source)
    lines += ["", "## Validation", ""]
    if figures:
        lines += ["| file | task | n | SRCC | PCC | RMSE (calibrated) |", "|---|---|---|---|---|---|"]
        for file, task, f in figures:

            def fmt(v: Any) -> str:
                return f"{v:.3f}" if isinstance(v, int | float) else "-"

            lines.append(
                f"| {file} | {task} | {f.get('n', '-')} | {fmt(f.get('srcc'))} | {fmt(f.get('pcc'))} | "
                f"{fmt(f.get('rmse'))} |"
            )
    else:
        lines.append("No eval_*.json in the run folder (run `aqa eval RUN_DIR` before exporting).")
    lines += [
        "",
        "## Use",
        "",
        "```",
        f"aqa score {{this folder}} FILE_OR_DIR...{' --reference CLEAN.wav' if embedding else ''}",
        "```",
        "",
        "```python",
        "import aqa",
        "scorer = aqa.load('this folder')",
        "scorer.score(wave, sr=44100"
        + (", reference=clean" if embedding else "")
        + (", audiogram=[...]" if conditions else "")
        + ")",
        "```",
        "",
    ]
    return "\n".join(lines)


def export_model(
    src: str | Path, out: str | Path, which: str = "best", without_encoder: bool = False
) -> Path:
    """Export a run folder (or an exported folder) to ``out`` (built aside, moved into place: see
    :func:`publish`); returns ``out``. See the module docstring."""
    return publish(out, lambda tmp: _write_model(Path(src), tmp, which, without_encoder))


def _write_model(src: Path, out: Path, which: str, without_encoder: bool) -> None:
    # the model folder's files, written into the (new) folder out
    from safetensors.torch import save_file

    from aqa.config import save_config

    module, cfg = load_module(src, which)
    state = _weights(module, cfg, without_encoder)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "without_encoder": "true" if without_encoder else "false",
        "encoder_checkpoints": json.dumps(encoder_checkpoints(cfg)),
        "source": str(src.resolve()),
        "which": which,
    }
    save_file(state, str(out / MODEL_FILE), metadata=meta)
    save_config(cfg, out / "config.yaml")
    calibrations: dict[str, Any] = {}
    if (src / "calibration.json").is_file():
        calibrations = json.loads((src / "calibration.json").read_text())
        shutil.copyfile(src / "calibration.json", out / "calibration.json")
    card = model_card(module, cfg, src, calibrations, without_encoder)
    (out / "README.md").write_text(card, encoding="utf-8")


def export_ensemble(
    src: str | Path, out: str | Path, which: str | None = None, without_encoder: bool = False
) -> Path:
    """Export every member of an ensemble folder into ``out/members/NAME/`` and write ``out/ensemble.yaml``
    pointing at them by relative path (stats, zscore and tasks kept); ``which`` None: the ensemble.yaml's
    ``which`` (else ``best``). Built aside and moved into place (see :func:`publish`); returns ``out``."""
    return publish(out, lambda tmp: _write_ensemble(Path(src), tmp, which, without_encoder))


def _write_ensemble(src: Path, out: Path, which: str | None, without_encoder: bool) -> None:
    # the ensemble folder's files, written into the (new) folder out
    spec = read_ensemble(src)
    which = which or spec.get("which") or "best"
    names: list[str] = []
    members = []
    for m in spec["members"]:
        name = Path(m["run"]).name or "member"
        while name in names:
            name = f"{name}_{len(names)}"
        names.append(name)
        _write_model(Path(m["run"]), out / "members" / name, m.get("which") or which, without_encoder)
        members.append({**{k: v for k, v in m.items() if k != "run"}, "run": f"members/{name}"})
    new = {
        **{k: v for k, v in spec.items() if k != "members"},
        "kind": "ensemble",
        "which": which,
        "members": members,
    }
    OmegaConf.save(OmegaConf.create(new), out / ENSEMBLE_FILE)
    if (src / "calibration.json").is_file():
        shutil.copyfile(src / "calibration.json", out / "calibration.json")
    card = [
        f"# Ensemble of {len(members)} models",
        "",
        f"Exported by `aqa export` from `{src}`.",
        "",
        f"Each task's score is the mean over the members' scores{', each z-scored first with its stats' if new.get('zscore') else ''}.",
        f"Tasks: {list(new.get('tasks') or [])}.",
        "",
        "Members (each has its own README.md):",
        "",
    ]
    card += [f"- `members/{n}` (from `{m['run']}`)" for n, m in zip(names, spec["members"], strict=True)]
    (out / "README.md").write_text("\n".join(card) + "\n", encoding="utf-8")


def export(src: str | Path, out: str | Path, which: str | None = None, without_encoder: bool = False) -> Path:
    """``aqa export``: a run, an exported model or an ensemble folder -> a model folder at ``out``.

    Args:
        which: the checkpoint (``best`` | ``last``); None: ``best`` for runs, the ensemble.yaml's ``which`` for
            ensembles.

    Raises:
        FileNotFoundError: ``src`` is no model folder, or its checkpoint is missing.
        ValueError: ``out`` is ``src``, inside ``src``'s checkpoints/ or holds ``src``; ``out`` is not empty and
            no previous export; ``--without-encoder`` on random weights.
    """
    src, out = Path(src), Path(out)
    kind = kind_of(src)
    s, o = src.resolve(), out.resolve()
    if o == s:
        raise ValueError(f"OUT_DIR {out} is the source folder; pick a new folder")
    if o.is_relative_to(s / "checkpoints"):
        raise ValueError(f"OUT_DIR {out} is inside the source's checkpoints/; pick a folder outside it")
    if s.is_relative_to(o):
        raise ValueError(f"OUT_DIR {out} holds the source folder {src}; pick another folder")
    if kind == "ensemble":
        return export_ensemble(src, out, which, without_encoder)
    return export_model(src, out, which or "best", without_encoder)
