"""Heavier Orpheus checks (`make slow_test`): the demo config with real SNAC encoding, 2-process DDP and FSDP2 runs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.test_orpheus_recipe import REPO, run_script, tokenized_rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from recipes.orpheus.build_tiny import build_tiny_orpheus

    return build_tiny_orpheus(tmp_path_factory.getbasetemp() / "orpheus_tiny")


@pytest.mark.slow
def test_demo_config_end_to_end_with_snac(tiny, tmp_path):
    import soundfile as sf

    out = tmp_path / "demo"
    trainer = run_script(["--config", str(REPO / "recipes/orpheus/configs/demo.yaml"), "--model_name_or_path",
                          tiny["model"], "--build_tiny_model", "false", "--snac_model", tiny["snac"],
                          "--dialects", "balear", "valencia", "--output_dir", str(out), "--max_steps", "12",
                          "--eval_steps", "6", "--sample_every_n_steps", "6", "--sample_max_new_tokens", "35",
                          "--sample_min_new_tokens", "28"])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 1.0  # visibly falls
    for dialect in ("balear", "valencia"):
        wave, sr = sf.read(out / "final_samples" / f"{dialect}.wav")
        assert sr == 24000 and len(wave) in (4 * 2048, 5 * 2048)
    report = [p for p in (out / "snac_cache").iterdir() if p.name.startswith("train-")]
    assert report and (report[0] / "skipped.jsonl").exists()


@pytest.mark.slow
def test_two_process_ddp_run(tiny, tmp_path):
    script = tmp_path / "run.py"
    script.write_text("import sys\nfrom recipes.orpheus import pretrain_dialects as p\n"
                      "t = p.main(*p.make_parser_args(sys.argv[1:]))\n"
                      # one file per rank: two ranks printing into one pipe can interleave mid-line
                      "import os, pathlib\n"
                      "pathlib.Path(sys.argv[sys.argv.index('--output_dir') + 1], f\"rank{os.environ['RANK']}.txt\")"
                      ".write_text(f'WORLD {t.args.world_size} STEP {t.state.global_step}')\n"
                      "from recipes.common import finish_distributed\nfinish_distributed()\n")  # as the script's __main__
    args = ["--config", str(REPO / "recipes/orpheus/configs/demo.yaml"), "--model_name_or_path", tiny["model"],
            "--build_tiny_model", "false", "--snac_model", tiny["snac"],
            "--tokenized_dataset", tokenized_rows(tiny, tmp_path / "rows"), "--output_dir", str(tmp_path / "ddp"),
            "--max_steps", "3", "--eval_steps", "2", "--save_steps", "2", "--sample_every_n_steps", "2",
            "--sample_max_new_tokens", "14", "--sample_min_new_tokens", "0"]
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script),
                             *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(tmp_path / "ddp" / f"rank{r}.txt").read_text() for r in (0, 1)] == ["WORLD 2 STEP 3"] * 2
    state = json.loads((tmp_path / "ddp" / "trainer_state.json").read_text())
    assert np.isfinite([h["loss"] for h in state["log_history"] if "loss" in h]).all()


@pytest.mark.slow
def test_fsdp2_config_trains_evaluates_saves_reloads_and_samples_on_cpu(tiny, tmp_path):
    """accelerate_configs/fsdp2.yaml with 2 gloo ranks on CPU (no GPU needed): the sharded path of the real
    recipe (fully_shard, sharded generate with synced_gpus, full-state-dict save) stays proven."""
    import os
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    out = tmp_path / "fsdp2"
    rows = tokenized_rows(tiny, tmp_path / "rows")

    def launch(max_steps):
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
               "accelerate_configs/fsdp2.yaml", "--num_processes", "2", "--mixed_precision", "no",
               "--main_process_port", "29523", "recipes/orpheus/pretrain_dialects.py",
               "--config", "recipes/orpheus/configs/demo.yaml", "--model_name_or_path", tiny["model"],
               "--build_tiny_model", "false", "--snac_model", tiny["snac"], "--tokenized_dataset", rows,
               "--output_dir", str(out), "--max_steps", str(max_steps), "--eval_steps", "2", "--save_steps", "2",
               "--logging_steps", "1", "--sample_every_n_steps", "2", "--sample_max_new_tokens", "14",
               "--sample_min_new_tokens", "7",
               "--report_to", "none", "--disable_tqdm", "true"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        return json.loads((out / "trainer_state.json").read_text())

    state = launch(2)  # trains, evaluates and saves checkpoint-2 with sharded weights
    assert (out / "checkpoint-2").is_dir() and state["global_step"] == 2
    assert any("eval_all_loss" in h for h in state["log_history"])
    state = launch(3)  # reloads: resumes from checkpoint-2 under FSDP2
    assert state["global_step"] == 3 and [h["step"] for h in state["log_history"] if "loss" in h][-1] == 3
    assert np.isfinite([h["loss"] for h in state["log_history"] if "loss" in h]).all()
    # the full state dict is a normal checkpoint, and both ranks took part in sampling
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size >= 156939
    assert (out / "samples" / "step-2" / "samples_balear.wav").is_file()
    assert (out / "final_samples" / "balear.wav").is_file() and (out / "final_samples" / "central.wav").is_file()
