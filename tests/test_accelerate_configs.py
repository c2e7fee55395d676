"""Every shipped accelerate config loads with accelerate's own parser and says what it claims."""

from pathlib import Path

import pytest
import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "accelerate_configs"
EXPECTED = {
    "single_gpu.yaml": "NO",
    "ddp.yaml": "MULTI_GPU",
    "fsdp2.yaml": "FSDP",
    "zero2.yaml": "DEEPSPEED",
    "zero3.yaml": "DEEPSPEED",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIG_DIR / name))
    assert config.distributed_type.value == EXPECTED[name]
    assert config.mixed_precision == "bf16"


def test_sharded_configs_save_loadable_checkpoints():
    fsdp = yaml.safe_load((CONFIG_DIR / "fsdp2.yaml").read_text())["fsdp_config"]
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    zero3 = yaml.safe_load((CONFIG_DIR / "zero3.yaml").read_text())["deepspeed_config"]
    assert zero3["zero_stage"] == 3 and zero3["zero3_save_16bit_model"] and zero3["zero3_init_flag"]
    assert yaml.safe_load((CONFIG_DIR / "zero2.yaml").read_text())["deepspeed_config"]["zero_stage"] == 2


def test_no_unexpected_configs():
    assert {p.name for p in CONFIG_DIR.glob("*.yaml")} == set(EXPECTED)
