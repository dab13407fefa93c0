"""Sweeps (``aqa sweep``): a grid or a seeded random search over config overrides, one trial after another.

A sweep file (``configs/sweep/NAME.yaml``)::

    experiment: mmmos_tiny            # the base experiment (or sweep `experiment` under parameters instead)
    method: grid                      # grid: every combination | random: `trials` seeded draws
    trials: 8                         # random only: how many distinct trials to draw
    seed: 0                           # random only: the draws' seed
    metric: val/quality/srcc          # what "best" means (default: the experiment's monitor.metric and mode)
    mode: max                         # max | min; required with metric unless metric is the monitor
    overrides: [trainer.max_epochs=2] # fixed for every trial (key=value, as `aqa train` takes them)
    parameters:                       # each key: a list of values (grid and random) or, random only,
      tasks.quality.head: [mlp, blstm_h]        # a range {min: A, max: B[, log: true]} (integers when A, B are)
      tasks.*.loss: [ccc, utmos]                # `tasks.*.KEY`: the same value for every task of the experiment
      optimizer.lr: {min: 1.0e-4, max: 1.0e-2, log: true}
      # experiment: [mmmos_bienc, mmmos]        # the experiment itself may be swept (each trial composes its own)

Each trial is ``compose(experiment, overrides + its values + command-line extras + run_dir=OUT/NAME)``; NAME
comes from its swept values alone (``head-mlp__loss-ccc-3fa2c1``: readable labels plus a hash of the values),
so the same trial always lands in the same folder. Every trial is composed and its values and shards checked
(:func:`aqa.config.check_values`) before the first one trains; a bad sweep is one line per problem.

Trials run through :func:`aqa.tasks.training.train`, each in ``OUT/NAME`` with ``OUT/NAME/trial.json``
recording its state (``running``, ``done`` with its metrics, ``failed`` with the error, ``interrupted`` by
SIGTERM or Ctrl-C, which ``aqa sweep`` treats alike: the trial's ``last.ckpt`` is written and the resume hint
printed). ``OUT/sweep.csv`` is
rewritten after every state change: one row per trial with its swept values, status, rank by ``metric``, the
epoch of its best checkpoint and the validation metrics of that checkpoint (the experiment's
``monitor.metric`` picks it; ``metric`` ranks the trials). ``--resume`` (which reuses the command-line overrides the sweep was
started with, read back from its trial records) skips finished trials, continues an
interrupted (``interrupted``, or ``running`` after SIGKILL) one from its ``checkpoints/last.ckpt`` (``resume=true``) and starts failed ones again
(``overwrite=true``: a failed run's last state may be the cause).

``--wandb`` writes ``OUT/wandb_sweep.yaml``, the same search as a W&B sweep whose agents run
``aqa sweep SWEEP.yaml --out OUT --trial ${args_no_hyphens}``: one trial, composed, named and recorded exactly
as here, so agents on a cluster and a local ``--resume`` share trial folders; each agent rewrites
``sweep.csv`` from the trial records when its trial starts and ends.
"""

from aqa.sweep.records import (
    CSV_FILE,
    DONE,
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    TRIAL_FILE,
    finished_runs,
    read_record,
    recorded_extra,
    write_csv,
)
from aqa.sweep.run import best_metrics, run_one, run_sweep, run_trial, sigint_as_sigterm
from aqa.sweep.spec import Range, Sweep, default_out, load_sweep, sweep_path
from aqa.sweep.trials import Trial, compose_trial, expand, override_value, parse_assignment, plan, trial_name
from aqa.sweep.wandb import WANDB_FILE, wandb_sweep

__all__ = [
    "CSV_FILE",
    "DONE",
    "FAILED",
    "INTERRUPTED",
    "PENDING",
    "RUNNING",
    "Range",
    "Sweep",
    "TRIAL_FILE",
    "Trial",
    "WANDB_FILE",
    "best_metrics",
    "compose_trial",
    "default_out",
    "expand",
    "finished_runs",
    "load_sweep",
    "override_value",
    "parse_assignment",
    "plan",
    "read_record",
    "recorded_extra",
    "run_one",
    "run_sweep",
    "run_trial",
    "sigint_as_sigterm",
    "sweep_path",
    "trial_name",
    "wandb_sweep",
    "write_csv",
]
