import pytest
from omegaconf import OmegaConf

from aqa.config import (
    ConfigError,
    available,
    check_target,
    compose,
    encoder_config,
    instantiate,
    load_config,
    save_config,
)


@pytest.mark.parametrize("experiment", available("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose(experiment)
    assert cfg.experiment == experiment
    assert cfg.tasks and all("name" in t.head and "name" in t.loss for t in cfg.tasks.values())
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_overrides_apply_and_groups_swap():
    cfg = compose("deepaq_lora_tiny", ["trainer.max_epochs=3", "tasks.quality.loss=l1", "optimizer.lr=0.5"])
    assert cfg.trainer.max_epochs == 3 and cfg.tasks.quality.loss.name == "l1" and cfg.optimizer.lr == 0.5
    cfg = compose("deepaq_lora_tiny", ["tasks.quality.loss.temperature=0.5"])
    assert cfg.tasks.quality.loss.temperature == 0.5
    assert compose("deepaq_lora_tiny", ["encoder=mert_v1_95m"]).encoder.name == "mert_v1_95m"


def test_tiny_encoder_files_name_their_full_size_builder():
    cfg = compose("deepaq_lora_tiny", ["encoder=wavlm_base_plus_tiny"]).encoder
    assert cfg.name == "wavlm_base_plus" and cfg.checkpoint is None and cfg.arch.hidden_size == 32
    assert {"mert_v1_95m", "mert_v1_95m_tiny", "fusion", "fusion_tiny"} <= set(available("encoder"))


def test_compose_resolves_fusion_members():
    members = compose("mmmos_tiny").encoder.encoders
    assert [m.name for m in members] == ["wavlm_base_plus", "muq_large_msd", "m2d_vit_base"]
    assert members[0] == encoder_config("wavlm_base_plus_tiny")  # each member's complete file
    assert members[2].arch.input_size == [80, 64] and members[2].checkpoint is None
    # a mapping's `name` picks the file, its other keys override the file's; names given on the command line too
    cfg = compose("mmmos_tiny", ["encoder.encoders=[{name: wavlm_base_plus_tiny, freeze: true, adapter: {r: 2}},"
                                 "mert_v1_95m_tiny]"])
    first, second = cfg.encoder.encoders
    assert first.name == "wavlm_base_plus" and first.freeze is True and first.arch.hidden_size == 32
    assert first.adapter.r == 2 and list(first.adapter.target_modules) == ["q_proj", "v_proj"]
    assert second == encoder_config("mert_v1_95m_tiny")
    full = compose("mmmos", ["encoder.encoders=[{name: wavlm_base_plus, checkpoint: null}]"]).encoder.encoders[0]
    assert full.checkpoint is None and full.adapter.r == 8 and "arch" not in full
    with pytest.raises(ConfigError, match="unknown encoder 'nope'; choose from .*wavlm_base_plus_tiny"):
        compose("mmmos_tiny", ["encoder.encoders=[nope]"])
    with pytest.raises(ConfigError, match="a name or a mapping with `name`"):
        compose("mmmos_tiny", ["encoder.encoders=[{freeze: true}]"])
    with pytest.raises(ConfigError, match="list of encoder names"):
        compose("mmmos_tiny", ["encoder.encoders=wavlm_base_plus_tiny"])


def test_unknown_key_is_refused_with_valid_keys():
    with pytest.raises(ConfigError, match="unknown config key 'no_such_key'.*trainer"):
        compose("deepaq_lora_tiny", ["no_such_key=1"])
    with pytest.raises(ConfigError, match="trainer.max_epoch.*max_epochs"):
        compose("deepaq_lora_tiny", ["trainer.max_epoch=1"])


@pytest.mark.parametrize(
    "override,message",
    [
        ("encoder.name=nope", "unknown encoder 'nope'; choose from .*'mert_v1_95m'"),
        ("encoder=nope", "unknown encoder 'nope'; choose from .*mert_v1_95m"),
        ("tasks.quality.head=nope", "unknown head 'nope'; choose from .*rnc_embedding"),
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


def test_runs_saved_before_tiny_encoders_became_yaml_variants_still_load(tmp_path):
    from aqa.config import load_config, save_config
    from aqa.encoders import build_encoder

    old = compose("mmmos_tiny")
    old.encoder.name = "fusion_tiny"  # how runs were saved: the variant's name, members by name
    old.encoder.encoders = ["wavlm_base_plus_tiny", "muq_large_msd_tiny", "m2d_vit_base_tiny"]
    save_config(old, tmp_path / "config.yaml")
    cfg = load_config(tmp_path / "config.yaml")
    assert cfg.encoder.name == "fusion" and [m.name for m in cfg.encoder.encoders] == [
        "wavlm_base_plus", "muq_large_msd", "m2d_vit_base"]
    assert build_encoder(OmegaConf.to_container(cfg.encoder)).output_dim > 0


def test_aqa_list_names_every_group(capsys):
    from aqa.cli import main

    assert main(["list"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert {"experiment", "encoder", "encoder families", "head", "loss", "data", "trainer", "metric", "prep"} <= set(lines)
    assert "visqol" in lines["metric"].split() and "codec" in lines["prep"].split()
    assert "mert_v1_95m_tiny" in lines["encoder"].split() and "blstm_t" in lines["head"].split()
