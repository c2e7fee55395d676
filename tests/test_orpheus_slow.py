"""Heavier Orpheus checks (`make slow_test`): the demo config with real SNAC encoding, and a 2-process DDP run."""

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
