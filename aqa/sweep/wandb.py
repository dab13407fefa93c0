"""``--wandb``: a sweep as a W&B sweep config whose agents run ``aqa sweep ... --trial ${args_no_hyphens}``
(:func:`aqa.sweep.run.run_one`), so each agent's trial is composed, named and recorded as a local run's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from aqa.files import write_text_atomic
from aqa.sweep.spec import Range, Sweep, default_out
from aqa.sweep.trials import plan

WANDB_FILE = "wandb_sweep.yaml"


def _wandb_distribution(spec: Range) -> str:
    if spec.log:
        return "q_log_uniform_values" if spec.integer else "log_uniform_values"
    return "int_uniform" if spec.integer else "uniform"


def wandb_sweep(
    sweep: Sweep, out: str | Path | None = None, extra: Sequence[str] = (), check_data: bool = True
) -> Path:
    """Write ``OUT/wandb_sweep.yaml``: the sweep as a W&B sweep config (start it with ``wandb sweep FILE``, then
    ``wandb agent ID`` on each machine). Its agents run ``aqa sweep SWEEP.yaml --out OUT [EXTRA...] --trial
    ${args_no_hyphens}``. W&B's random search has no seed: its draws are not this sweep's.

    Returns:
        The file written.
    """
    out = Path(out) if out is not None else default_out(sweep)
    _, configs, metric, mode = plan(sweep, out, extra, check_data=check_data)
    params: dict[str, Any] = {}
    for key, spec in sweep.parameters.items():
        if isinstance(spec, Range):
            params[key] = {"min": spec.low, "max": spec.high, "distribution": _wandb_distribution(spec)}
            if spec.integer and spec.log:
                params[key]["q"] = 1
        else:
            params[key] = {"values": spec}
    config: dict[str, Any] = {
        "name": sweep.name,
        "method": sweep.method,
        "metric": {"name": metric, "goal": "maximize" if mode == "max" else "minimize"},
        "parameters": params,
        "command": [
            "aqa",
            "sweep",
            str(sweep.path.resolve()),
            "--out",
            str(out.resolve()),
            *extra,
            "--trial",
            "${args_no_hyphens}",
        ],
    }
    if sweep.method == "random":
        config["run_cap"] = sweep.trials
    path = out / WANDB_FILE
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
    return path
