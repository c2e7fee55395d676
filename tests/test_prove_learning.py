"""Issue 19: each recipe overfits a few clips with its own training script and its own inference entry point
regenerates them (scripts/prove_learning.py, `make prove-learning`). Slow: minutes per recipe on 2 cores.

The fast tests check the harness itself: a wrong threshold check or a misaligned accuracy would make the slow
ones meaningless."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("prove_learning", REPO / "scripts" / "prove_learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prove = _script()


def test_position_accuracy_counts_missing_and_shifted_tokens():
    reference = np.arange(10)
    assert prove._position_accuracy(reference, reference) == 1.0
    assert prove._position_accuracy(reference[:5], reference) == 0.5  # stopped early: the rest is wrong
    assert prove._position_accuracy(np.arange(1, 11), reference) == 0.0  # off by one position
    assert prove._position_accuracy(np.arange(20), reference) == 1.0  # too long: EOS error catches it


def test_check_applies_the_issue_thresholds():
    good = {"token_accuracy": 0.95, "eos_frame_error": -1, "dialect_selection_ok": True}
    assert prove.check("orpheus", good) == []
    assert prove.check("orpheus", {**good, "eos_frame_error": 2})
    assert prove.check("orpheus", {**good, "token_accuracy": 0.89})
    assert prove.check("orpheus", {**good, "dialect_selection_ok": False})
    assert prove.check("pocket", {"latent_rel_error": 0.31, "eos_frame_error": 0})
    assert prove.check("pocket", {"latent_rel_error": 0.2, "eos_frame_error": -3})
    assert prove.check("f5", {"griffin_lim_wer": 0.6})
    xtts = {"token_accuracy": 0.95, "upstream_token_accuracy": 0.95, "stop_code_error": -4, "upstream_stop_code_error": 5}
    assert prove.check("xtts", xtts) == []
    assert prove.check("xtts", {**xtts, "upstream_token_accuracy": None}) == [
        "xtts.upstream_token_accuracy = None, needs >= 0.9"]
    assert prove.check("xtts", {**xtts, "stop_code_error": 120 - 46}) == ["xtts.stop_code_error = 74, needs <= 5"]


def test_write_results_has_exactly_the_issue_keys(tmp_path):
    details = {part: {**{k: 1.0 for k in keys}, "steps": 10, "loss_final": 0.1, "seconds": 1.0,
                      "losses": [(1, 1.0), (10, 0.1)]} for part, keys in prove.RESULT_KEYS.items()}
    details["f5"].update(griffin_lim_transcript="x", recording_transcript="x", recording_wer=0.0,
                         reference_mel_griffin_lim_wer=0.0)
    results = prove.write_results(tmp_path, details)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert {p: set(r) for p, r in results.items()} == {
        p: {*keys, "steps", "loss_final", "seconds"} for p, keys in prove.RESULT_KEYS.items()}
    assert (tmp_path / "loss_curves.png").stat().st_size > 0
    assert (tmp_path / "results.md").read_text().count("\n| ") == 1 + len(prove.RESULT_KEYS)


@pytest.fixture(scope="module")
def orpheus_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("prove")
    return out, prove.prove_orpheus(out / "orpheus")


@pytest.mark.slow
def test_orpheus_pretraining_reproduces_its_clips(orpheus_out):
    _, figures = orpheus_out
    assert prove.check("orpheus", figures) == [], figures


@pytest.mark.slow
def test_orpheus_lora_reproduces_its_clips(orpheus_out):
    out, _ = orpheus_out
    figures = prove.prove_orpheus_lora(out / "orpheus_lora")
    assert prove.check("orpheus_lora", figures) == [], figures
    assert prove.check("orpheus_lora", figures["merged"]) == [], figures["merged"]


def test_pocket_reference_is_the_clip_the_collator_trains_on():
    """The latents the Pocket proof compares against must come from exactly the samples training saw. An energy
    trim (the first version) kept the ~0.06 s the default VAD trim cuts from the start: every reference frame sat
    0.75 frame off the training grid, and two clips came out a frame longer, which the +-2 EOS margin paid for."""
    from data_prep.demo_corpus import load_demo_dataset
    from recipes.pocket.data import PocketCollator

    rows = load_demo_dataset(sampling_rate=24000).filter(lambda i: i in prove.POCKET_CLIPS, input_columns="id")
    collator = PocketCollator(prompt_pool=rows, tokenizer_path="unused.model")  # the recipe's default trim: vad
    for row in rows:
        expected = collator._trimmed(row, keep_after_s=0.2)
        got = prove._pocket_target_wave(row, 24000, collator.trim)
        assert len(got) == len(expected) and np.array_equal(got, expected), row["id"]


@pytest.mark.slow
def test_pocket_reproduces_its_clips(tmp_path):
    figures = prove.prove_pocket(tmp_path / "pocket")
    assert prove.check("pocket", figures) == [], figures


@pytest.mark.slow
def test_xtts_reproduces_its_clips(tmp_path):
    figures = prove.prove_xtts(tmp_path / "xtts")
    assert prove.check("xtts", figures) == [], figures


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make system-deps)")
def test_f5_griffin_lim_speech_is_understood(tmp_path):
    figures = prove.prove_f5(tmp_path / "f5")
    assert figures["recording_wer"] <= 0.1, figures  # the sentence itself is understood as recorded
    assert prove.check("f5", figures) == [], figures
    assert (tmp_path / "f5_griffin_lim.wav").exists()
