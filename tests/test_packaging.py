"""aqa as a package: the config search path (``--config-dir``, ``$AQA_CONFIG_PATH``, the built-in configs), the
data-root rule outside a checkout, and a wheel installed into a fresh virtual environment that lists, trains a
user-folder experiment and scores from a folder outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import aqa.data.urls as urls
from aqa.cli import main
from aqa.config import CONFIG_DIR, ConfigError, available, compose, config_dirs, find_config, set_config_dirs
from aqa.sweep import sweep_path

REPO = Path(__file__).resolve().parent.parent
# a user experiment: built-in encoder, data, trainer, head and loss; shard paths relative (data-root rule)
USER_EXPERIMENT = """\
defaults: {encoder: mert_v1_95m_tiny, data: codec_demo, trainer: cpu}
trainer: {max_epochs: 1}
monitor: {metric: val/quality/srcc, mode: max}
data: {train_urls: shards/train-*.tar, val_urls: shards/val-*.tar, crop_s: 0.5, val_crop_s: 1.0, groups_per_batch: 2}
tasks:
  quality: {head: rnc_embedding, loss: rnc, label: bitrate_kbps, anchors: coded, reference_label: .inf}
"""


@pytest.fixture
def user_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user config folder holding one experiment (``my_tiny``) and a trainer that shadows the built-in cpu."""
    folder = tmp_path / "my_configs"
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "my_tiny.yaml").write_text(USER_EXPERIMENT)
    (folder / "trainer").mkdir()
    cpu = (CONFIG_DIR / "trainer" / "cpu.yaml").read_text()
    assert "log_every_n_steps: 1\n" in cpu
    (folder / "trainer" / "cpu.yaml").write_text(cpu.replace("log_every_n_steps: 1\n", "log_every_n_steps: 7\n"))
    monkeypatch.delenv("AQA_CONFIG_PATH", raising=False)
    yield folder
    set_config_dirs([])


def test_user_folder_experiment_composes_builtin_components_and_shadows_by_group(user_configs, monkeypatch):
    assert "my_tiny" not in available("experiment")
    assert compose("deepaq_lora_tiny").trainer.log_every_n_steps == 1
    monkeypatch.setenv("AQA_CONFIG_PATH", os.pathsep.join([str(user_configs), ""]))
    assert config_dirs() == [user_configs.resolve(), CONFIG_DIR]
    assert {"my_tiny", "deepaq_lora_tiny"} <= set(available("experiment"))
    cfg = compose("my_tiny", ["trainer.max_epochs=2"])  # built-in encoder, data, head and loss
    assert cfg.encoder.name == compose("deepaq_lora_tiny").encoder.name and cfg.trainer.max_epochs == 2
    assert cfg.tasks.quality.head.name == "rnc_embedding" and cfg.tasks.quality.loss.name == "rnc"
    assert cfg.data.train_urls == "shards/train-*.tar" and list(cfg.data.label_keys) == ["bitrate_kbps", "bitrate_rank"]
    # the user's trainer/cpu.yaml shadows the built-in one, also for built-in experiments; other groups do not
    assert cfg.trainer.log_every_n_steps == 7 and compose("deepaq_lora_tiny").trainer.log_every_n_steps == 7
    assert find_config("trainer", "cpu") == user_configs.resolve() / "trainer" / "cpu.yaml"
    assert find_config("trainer", "gpu") == CONFIG_DIR / "trainer" / "gpu.yaml"


def test_config_dir_option_comes_first_and_unknown_names_list_every_folder(user_configs, tmp_path, monkeypatch):
    other = tmp_path / "other" / "experiment"
    other.mkdir(parents=True)
    (other / "my_tiny.yaml").write_text(USER_EXPERIMENT.replace("max_epochs: 1", "max_epochs: 3"))
    (other / "only_here.yaml").write_text(USER_EXPERIMENT)
    monkeypatch.setenv("AQA_CONFIG_PATH", str(user_configs))
    set_config_dirs([other.parent])
    assert config_dirs() == [other.parent.resolve(), user_configs.resolve(), CONFIG_DIR]
    assert compose("my_tiny").trainer.max_epochs == 3  # --config-dir wins over $AQA_CONFIG_PATH
    with pytest.raises(ConfigError, match=r"only_here.*searched .*other, .*my_configs, .*configs"):
        compose("no_such_experiment")
    with pytest.raises(ConfigError, match="--config-dir: config folder .*missing.* does not exist"):
        set_config_dirs([tmp_path / "missing"])


def test_cli_config_dir_before_or_after_the_command(user_configs, capsys):
    assert main(["--config-dir", str(user_configs), "list", "experiment"]) == 0
    assert "my_tiny" in capsys.readouterr().out.split()
    assert main(["list", "experiment", "--config-dir", str(user_configs)]) == 0
    assert "my_tiny" in capsys.readouterr().out.split()
    set_config_dirs([])
    assert main(["train", "my_tiny"]) == 2
    assert "unknown experiment 'my_tiny'" in capsys.readouterr().err


def test_sweeps_follow_the_search_path(user_configs, monkeypatch):
    (user_configs / "sweep").mkdir()
    (user_configs / "sweep" / "mine.yaml").write_text((CONFIG_DIR / "sweep" / "mmmos_tiny.yaml").read_text())
    with pytest.raises(FileNotFoundError, match="mmmos_tiny"):
        sweep_path("mine")
    monkeypatch.setenv("AQA_CONFIG_PATH", str(user_configs))
    assert sweep_path("mine") == user_configs.resolve() / "sweep" / "mine.yaml"
    assert sweep_path("mmmos_tiny") == CONFIG_DIR / "sweep" / "mmmos_tiny.yaml"


def test_relative_shards_read_from_aqa_data_else_checkout_else_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("AQA_DATA", raising=False)
    assert urls.REPO_ROOT == REPO  # tests run from a checkout
    assert urls.data_root()[0] == REPO
    monkeypatch.setattr(urls, "REPO_ROOT", None)  # as installed from a wheel
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "train-00000.tar").write_bytes(b"")
    assert urls.expand_shard_urls("shards/train-*.tar") == [str(tmp_path / "shards" / "train-00000.tar")]
    with pytest.raises(FileNotFoundError, match="relative paths are read from the current folder"):
        urls.expand_shard_urls("elsewhere/*.tar")
    monkeypatch.setenv("AQA_DATA", str(tmp_path / "shards"))
    assert urls.expand_shard_urls("train-00000.tar") == [str(tmp_path / "shards" / "train-00000.tar")]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (make install)")
def test_wheel_installs_and_lists_trains_and_scores_outside_the_checkout(shards, tmp_path):
    """The wheel, installed (not editable) into a fresh venv that reuses this environment's packages through a
    .pth file: from a folder outside the checkout it lists, trains a user-folder experiment on shards found
    relative to the current folder, and scores a file. ~45 s on 2 busy cores, most of it two imports of torch."""
    src = tmp_path / "src"  # build from a copy: the checkout gets no build/ or egg-info, whoever runs beside
    for name in ("aqa", "data_prep", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("AQA_DATA", "AQA_CONFIG_PATH", "PYTHONPATH")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
         tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("aqa-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", str(wheel)], tmp_path, env)
    # this environment's packages (torch, Lightning, ...), after aqa's own site-packages; the .pth files there
    # (the checkout's editable aqa) are not run, so `import aqa` can only find the wheel's copy
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "zz_reuse_test_env.pth").write_text("\n".join(site.getsitepackages() + [sysconfig.get_paths()["purelib"]]))

    work = tmp_path / "work"  # outside the checkout: configs, shards and runs all here
    (work / "my_configs" / "experiment").mkdir(parents=True)
    (work / "my_configs" / "experiment" / "my_tiny.yaml").write_text(USER_EXPERIMENT)
    shutil.copytree(shards[0] / "out", work / "shards", ignore=shutil.ignore_patterns("manifest.json"))
    env["AQA_CONFIG_PATH"] = "my_configs"

    where = _run([str(python), "-c", "import aqa, aqa.config, aqa.data.urls as u; "
                  "print(aqa.__file__); print(aqa.config.CONFIG_DIR); print(u.REPO_ROOT)"], work, env)
    module, config_dir, repo_root = where.stdout.split()
    assert Path(module).is_relative_to(venv) and Path(config_dir) == Path(module).parent / "configs"
    assert repo_root == "None"

    listed = _run([str(venv / "bin" / "aqa"), "list"], work, env).stdout
    assert {"deepaq_lora_tiny", "my_tiny"} <= set(listed.splitlines()[0].split())

    _run([str(venv / "bin" / "aqa"), "train", "my_tiny", "logger=csv", "seed=0"], work, env)
    run = work / "runs" / "my_tiny"
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "config.yaml").is_file()
    saved = (run / "config.yaml").read_text()
    assert "shards/train-*.tar" in saved

    rng = np.random.default_rng(0)
    ref = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    sf.write(work / "ref.wav", ref, 24000)
    sf.write(work / "coded.wav", ref + 0.05 * rng.standard_normal(24000).astype(np.float32), 24000)
    scored = _run([str(venv / "bin" / "aqa"), "score", "runs/my_tiny", "coded.wav", "--reference", "ref.wav",
                   "--no-progress"], work, env).stdout
    (record,) = [json.loads(line) for line in scored.splitlines() if line.startswith("{")]
    assert record["file"].endswith("coded.wav") and np.isfinite(record["quality"])
