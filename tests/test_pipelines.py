"""Bake-off and recordings->voice pipelines: templates, resumable stages, declined languages, tables, cards."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from recipes.pipelines import bakeoff, voice
from recipes.pipelines.stages import Stages, expand, trainable_parameters, training_steps

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "pipelines" / "configs"


def test_expand_fills_lists_and_drops_absent_flags():
    values = {"python": "py", "dialects": ["a", "b"], "speakers": None, "out": "/o", "opts": None}
    assert expand(["{python}", "x.py", "--dialects", "{dialects}", "--speakers", "{speakers}", "--out", "{out}/m"],
                  values) == ["py", "x.py", "--dialects", "a", "b", "--out", "/o/m"]


def test_a_finished_stage_is_skipped_on_rerun_and_a_changed_one_runs_again(tmp_path):
    counter = tmp_path / "runs.txt"
    command = [sys.executable, "-c", f"open({str(counter)!r}, 'a').write('x'); print('trainable params: 1,234 / 9')"]
    stages = Stages(tmp_path / "run")
    first = stages.run("train", command)
    again = Stages(tmp_path / "run").run("train", command)  # a new process would see the same markers
    assert first["skipped"] is False and again["skipped"] is True and counter.read_text() == "x"
    assert trainable_parameters(Path(first["log"]).read_text()) == 1234
    assert first["peak_rss_mb"] > 1 and first["seconds"] >= 0
    changed = stages.run("train", command + ["--changed"])
    assert changed["skipped"] is False and counter.read_text() == "xx"


def test_a_failing_stage_names_its_log_and_leaves_no_marker(tmp_path):
    stages = Stages(tmp_path)
    with pytest.raises(SystemExit, match=r"\[prepare\] failed \(exit 3\).*prepare.log"):
        stages.run("prepare", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    assert not stages.marker("prepare").exists()
    assert "boom" in (tmp_path / "logs" / "prepare.log").read_text()


def test_training_steps_reads_the_latest_checkpoint(tmp_path):
    for step in (10, 30):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    assert training_steps(tmp_path) == 30 and training_steps(tmp_path / "missing") is None


def test_xtts_declines_catalan_with_its_reason_in_the_shipped_configs():
    for name in ("bakeoff_demo.yaml", "bakeoff.yaml"):
        cfg = yaml.safe_load((CONFIGS / name).read_text())
        ok, why = bakeoff.accepts(cfg["recipes"]["xtts"], "ca")
        assert not ok and "tokenizer" in why
        assert bakeoff.accepts(cfg["recipes"]["xtts"], "pt")[0]
        assert bakeoff.accepts(cfg["recipes"]["orpheus"], "ca")[0]


FAKE_TRAIN = ("import json, os, sys; d = sys.argv[1]; os.makedirs(d, exist_ok=True); "
              "open(os.path.join(d, 'trainer_state.json'), 'w').write(json.dumps({'global_step': 7})); "
              "print('trainable params: 2,048 / 10,000 (20.480%)')")
FAKE_EVAL = ("import json, os, sys; d = sys.argv[1]; os.makedirs(d, exist_ok=True); "
             "open(os.path.join(d, 'results.json'), 'w').write(json.dumps({'overall': {'wer': 0.5, 'cer': 0.25, "
             "'similarity': 0.7, 'mcd': 9.0, 'rtf': 0.1, 'no_eos': 1, 'silent': 0}, "
             "'ground_truth': {'wer': 0.05, 'cer': 0.02, 'similarity': 0.9}, 'meta': {'meaningful': True}}))")


def test_bakeoff_table_skips_a_declining_recipe_and_reruns_nothing(tmp_path, capsys):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation"]}))
    (tmp_path / "eval.yaml").write_text("asr_backend: faster-whisper\ndialects: [central]\n")
    cfg = {"name": "t", "dataset": str(dataset), "language": "ca", "evaluation_config": str(tmp_path / "eval.yaml"),
           "output_root": str(tmp_path / "out"),
           "evaluate_command": ["{python}", "-c", FAKE_EVAL, "{eval_dir}"],
           "recipes": {"a": {"languages": "any", "train": [["{python}", "-c", FAKE_TRAIN, "{model_dir}"]]},
                       "b": {"languages": ["pt"], "declines": "no Catalan in its tokenizer",
                             "train": [["{python}", "-c", "raise SystemExit(1)"]]}}}
    path = tmp_path / "bakeoff.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = bakeoff.main(["--config", str(path)])
    a, b = result["recipes"]
    assert b == {"recipe": "b", "skipped": "no Catalan in its tokenizer"}
    assert a["metrics"]["wer"] == 0.5 and a["eos"] == {"no_eos": 1, "silent": 0}
    assert a["steps"] == 7 and a["trainable_parameters"] == 2048
    markdown = (tmp_path / "out" / "t" / "results.md").read_text()
    assert "| b | skipped: no Catalan in its tokenizer |" in markdown
    assert "| recordings (ceiling) | 0.050 | 0.020 | 0.900 |" in markdown
    assert {line.count("|") for line in markdown.splitlines() if line.startswith("| ")} == {13}  # 12 columns
    assert (tmp_path / "out" / "t" / "charts" / "wer.png").stat().st_size > 1000
    capsys.readouterr()
    bakeoff.main(["--config", str(path)])  # the rerun trains and evaluates nothing again
    printed = capsys.readouterr().out
    assert printed.count("skipped. Delete") == 2 and "+ " not in printed


def test_bakeoff_refuses_a_dataset_without_a_shared_validation_split(tmp_path):
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    with pytest.raises(SystemExit, match="same held-out clips"):
        bakeoff.check_split(str(tmp_path))


def test_voice_card_gets_the_evaluation_table_and_samples(tmp_path):
    from data_prep.audio import write_audio
    import numpy as np

    model, evaluation = tmp_path / "model", tmp_path / "eval"
    model.mkdir()
    (model / "README.md").write_text("---\nlicense: other\n---\n# my voice\n")
    (evaluation / "wavs" / "en").mkdir(parents=True)
    write_audio(evaluation / "wavs" / "en" / "seg_001.wav", np.zeros(2400, np.float32), 24000)
    write_audio(evaluation / "wavs" / "en" / "seg_001.ground_truth.wav", np.zeros(2400, np.float32), 24000)
    summary = {"meta": {"model": "m", "meaningful": True, "dataset": "d", "split": "validation", "rows": 1,
                        "asr_model": "whisper", "speaker_model": "dvector"},
               "overall": {"n": 1, "wer": 0.1}, "ground_truth": {"n": 1, "wer": 0.0}, "groups": {},
               "rows": [{"id": "seg_001", "text": "Hello there."}]}
    (evaluation / "results.json").write_text(json.dumps(summary))
    (evaluation / "results.md").write_text("table")
    card = voice.write_card(model, evaluation, "anna", "xtts").read_text()
    assert card.startswith("---\nlicense: other") and "# my voice" in card
    assert "## Evaluation results (m)" in card and "[`samples/seg_001.wav`](samples/seg_001.wav): Hello there." in card
    assert (model / "samples" / "seg_001.wav").exists() and not (model / "samples" / "seg_001.ground_truth.wav").exists()
    assert voice.write_card(model, evaluation, "anna", "xtts").read_text().count("## Evaluation results") == 1


def test_pipelines_evaluate_with_the_settings_not_the_demo_run_of_an_eval_config(tmp_path):
    from recipes.pipelines.stages import evaluation_config_copy

    copy = evaluation_config_copy(ROOT / "recipes/eval/configs/offline.yaml", tmp_path / "e.yaml")
    settings = yaml.safe_load(Path(copy).read_text())
    assert "dialects" not in settings and "synthesizer_options" not in settings and "model_path" not in settings
    assert settings["asr_backend"] == "faster-whisper"
