import pytest
from omegaconf import OmegaConf

from aqa.config import ConfigError, available, check_target, compose, instantiate, load_config, save_config


@pytest.mark.parametrize("experiment", available("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose(experiment)
    assert cfg.experiment == experiment
    assert cfg.tasks and all("name" in t.head and "name" in t.loss for t in cfg.tasks.values())
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_overrides_apply_and_groups_swap():
    cfg = compose("deepaq_lora_tiny", ["trainer.max_epochs=3", "tasks.bitrate.loss=l1", "optimizer.lr=0.5"])
    assert cfg.trainer.max_epochs == 3 and cfg.tasks.bitrate.loss.name == "l1" and cfg.optimizer.lr == 0.5
    cfg = compose("deepaq_lora_tiny", ["tasks.bitrate.loss.temperature=0.5"])
    assert cfg.tasks.bitrate.loss.temperature == 0.5
    assert compose("deepaq_lora_tiny", ["encoder=mert_v1_95m"]).encoder.name == "mert_v1_95m"


def test_unknown_key_is_refused_with_valid_keys():
    with pytest.raises(ConfigError, match="unknown config key 'no_such_key'.*trainer"):
        compose("deepaq_lora_tiny", ["no_such_key=1"])
    with pytest.raises(ConfigError, match="trainer.max_epoch.*max_epochs"):
        compose("deepaq_lora_tiny", ["trainer.max_epoch=1"])


@pytest.mark.parametrize(
    "override,message",
    [
        ("encoder.name=nope", "unknown encoder 'nope'; choose from .*mert_v1_95m_tiny"),
        ("encoder=nope", "unknown encoder 'nope'; choose from .*mert_v1_95m"),
        ("tasks.bitrate.head=nope", "unknown head 'nope'; choose from .*rnc_embedding"),
        ("tasks.nope.head=mean_pool", "unknown task 'nope'"),
        ("logger=paper", "unknown logger 'paper'"),
        ("justakey", "key=value"),
    ],
)
def test_bad_names_fail_clearly(override, message):
    with pytest.raises(ConfigError, match=message):
        compose("deepaq_lora_tiny", [override])


def test_unknown_experiment_lists_choices():
    with pytest.raises(ConfigError, match="deepaq_lora_tiny"):
        compose("nope")


def test_targets_are_allow_listed():
    with pytest.raises(ConfigError, match="not allowed"):
        compose("deepaq_lora_tiny", ["optimizer._target_=os.system"])
    with pytest.raises(ConfigError, match="not allowed"):
        instantiate({"_target_": "subprocess.Popen", "args": ["true"]})
    check_target("torch.optim.SGD")
    opt = instantiate({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    import torch

    assert isinstance(opt([torch.nn.Parameter(torch.zeros(1))]), torch.optim.SGD)


def test_saved_config_round_trips(tmp_path):
    cfg = compose("deepaq_lora_tiny")
    save_config(cfg, tmp_path / "config.yaml")
    loaded = load_config(tmp_path / "config.yaml")
    assert OmegaConf.to_container(loaded) == OmegaConf.to_container(cfg, resolve=True)
