"""`accelerate_configs/ddp.yaml` launches the headline recipe with 2 processes (gloo ranks on CPU).

Without a GPU, accelerate starts a MULTI_GPU config's ranks on CPU over gloo; this is the same code path a
user's 8-GPU launch takes (process group, sharded sampler, rank-0-only saving), minus NCCL.
"""

import os
import subprocess
import sys
from pathlib import Path

from tests.test_orpheus_recipe import tokenized_rows

ROOT = Path(__file__).resolve().parent.parent


def test_ddp_config_launches_two_processes(tmp_path):
    from recipes.orpheus.build_tiny import build_tiny_orpheus

    tiny = build_tiny_orpheus(tmp_path / "tiny")
    out = tmp_path / "run"
    cmd = [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", "accelerate_configs/ddp.yaml",
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "29517",
        "recipes/orpheus/pretrain_dialects.py", "--config", "recipes/orpheus/configs/demo.yaml",
        "--model_name_or_path", tiny["model"], "--snac_model", tiny["snac"], "--build_tiny_model", "false",
        "--tokenized_dataset", tokenized_rows(tiny, tmp_path / "rows"), "--output_dir", str(out),
        "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--sample_every_n_steps", "0",
        "--sample_max_new_tokens", "14", "--sample_min_new_tokens", "0", "--report_to", "none",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    # the card records per-device batch x gradient accumulation x world size: two ranks trained
    assert "global batch 2 x 1 x 2 rows" in (out / "README.md").read_text()
    assert (out / "model.safetensors").exists() or list(out.glob("model*.safetensors"))
    assert (out / "final_samples").is_dir()
