"""Shared recipe plumbing: card metadata, default config, audio sample logging."""

import sys

import numpy as np
import yaml


def _metadata(card_path):
    text = card_path.read_text()
    return yaml.safe_load(text.split("---")[1])


def test_card_metadata_names_only_hub_ids(tmp_path):
    from recipes.common import write_model_card

    local = tmp_path / "base"
    local.mkdir()
    path = write_model_card(str(tmp_path / "card"), title="t", base_model=str(local), license="mit", language=["ca"],
                            summary="s", datasets=["outputs/data/commonvoice_ca/dataset", "demo", "org/cv-ca"])
    meta = _metadata(path)
    assert "base_model" not in meta and meta["datasets"] == ["org/cv-ca"]
    path = write_model_card(str(tmp_path / "card2"), title="t", base_model="coqui/XTTS-v2", license="other",
                            language=None, summary="s", library_name="coqui")
    meta = _metadata(path)
    assert meta["base_model"] == "coqui/XTTS-v2" and meta["library_name"] == "coqui"
    assert "Framework versions" in path.read_text() and "torch:" in path.read_text()


def test_default_config_applies_only_without_config(tmp_path, monkeypatch):
    from dataclasses import dataclass

    from recipes.common import parse_recipe_args

    @dataclass
    class Args:
        name: str = "default"
        steps: int = 1

    real = tmp_path / "real.yaml"
    real.write_text("name: real\nsteps: 5\n")
    other = tmp_path / "other.yaml"
    other.write_text("name: other\n")
    monkeypatch.setattr(sys, "argv", ["x"])
    assert parse_recipe_args(Args, default_config=real, argv=[])[0] == Args("real", 5)
    assert parse_recipe_args(Args, default_config=real, argv=["--config", str(other)])[0] == Args("other", 1)
    assert parse_recipe_args(Args, default_config=real, argv=["--steps", "7"])[0] == Args("real", 7)  # CLI > YAML


def test_audio_sample_logger_writes_wavs_and_tensorboard(tmp_path):
    from recipes.common import AudioSampleLogger

    logger = AudioSampleLogger(str(tmp_path / "runs"), str(tmp_path), report_to=["tensorboard"])
    written = logger.log({"samples/balear": (np.zeros(2400, np.float32), 24_000)}, step=3)
    assert written[0] == tmp_path / "samples" / "step-3" / "samples_balear.wav" and written[0].stat().st_size > 44
    assert list((tmp_path / "runs").glob("events.out.tfevents*"))
