"""`aqa eval RUN1 RUN2 --test`: each model's progress bar names its model (the run folder's name)."""

from __future__ import annotations

import re

from synth import make_run
from test_listening import noisy_set, write_test

from aqa.cli import main


def test_each_models_progress_bar_names_its_model(tmp_path, capsys):
    runs = [make_run(tmp_path / name, "mmmos_tiny").rename(tmp_path / name / name) for name in ("alpha", "beta")]
    test = write_test(tmp_path / "audio" / "t.csv", noisy_set(tmp_path / "audio", refs=1, snrs=(0, 20)))
    args = ["eval", *map(str, runs), "--test", str(test), "--out", str(tmp_path / "out"), "--bootstrap", "5"]
    assert main([*args, "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    for name in ("alpha", "beta"):  # tqdm: "NAME: 100%|...| 2/2 [...]"
        assert re.search(rf"(^|\r){name}: +100%\|.*\| 2/2 ", err, flags=re.M), err
