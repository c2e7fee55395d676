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


def _checkpoint(folder, *, state=True, weights="model.safetensors", extra=()):
    folder.mkdir(parents=True)
    if weights:
        (folder / weights).write_bytes(b"w")
    if state:
        (folder / "trainer_state.json").write_text('{"global_step": 1}')
    for name in extra:
        (folder / name).write_bytes(b"x")
    return folder


def test_resume_skips_half_written_checkpoints_with_a_warning(tmp_path, caplog):
    from types import SimpleNamespace

    import pytest

    from recipes.common import resume_checkpoint

    args = SimpleNamespace(resume_from_checkpoint=None, output_dir=str(tmp_path))
    assert resume_checkpoint(args) is None
    _checkpoint(tmp_path / "checkpoint-2", extra=["ema.pt"])
    _checkpoint(tmp_path / "checkpoint-9", extra=["ema.pt"])  # numeric order, not text order: 10 > 9
    _checkpoint(tmp_path / "checkpoint-10", state=False, extra=["ema.pt"])  # killed before trainer_state.json
    _checkpoint(tmp_path / "checkpoint-11", weights=None)  # no weights at all
    (_checkpoint(tmp_path / "checkpoint-12") / "trainer_state.json").write_text('{"global_st')  # torn write
    _checkpoint(tmp_path / "checkpoint-13")  # complete for the Trainer, but the recipe's EMA is missing
    (tmp_path / "checkpoint-14").write_text("a file, not a checkpoint")
    with caplog.at_level("WARNING", logger="recipes.common"):
        assert resume_checkpoint(args) == str(tmp_path / "checkpoint-13")
        assert resume_checkpoint(args, required_files=["ema.pt"]) == str(tmp_path / "checkpoint-9")
    warned = caplog.text
    assert "checkpoint-10: no trainer_state.json" in warned and "checkpoint-11: no model weights" in warned
    assert "checkpoint-12: trainer_state.json is unreadable" in warned and "checkpoint-13: missing ema.pt" in warned
    # PEFT adapters and DeepSpeed shards count as weights
    _checkpoint(tmp_path / "checkpoint-20", weights="adapter_model.safetensors", extra=["ema.pt"])
    assert resume_checkpoint(args, required_files=["ema.pt"]) == str(tmp_path / "checkpoint-20")
    # an explicit choice that is incomplete is an error naming it, not a silent fallback
    args.resume_from_checkpoint = str(tmp_path / "checkpoint-10")
    with pytest.raises(ValueError, match="checkpoint-10: no trainer_state.json"):
        resume_checkpoint(args)
    args.resume_from_checkpoint = str(tmp_path / "checkpoint-9")
    assert resume_checkpoint(args) == str(tmp_path / "checkpoint-9")
