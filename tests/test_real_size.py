"""Real-size checks (`make real-size-smoke`, all `slow`) and the GPU check's CPU rehearsal (fast).

The slow tests build each recipe's model from its real config with random weights and run 2 optimizer steps
of the recipe code through benchmarks/real_size_smoke.py, one model per process, checking the parameter
count against the published size, the trainable count, finite losses and that the trained tensors changed.
Run them one at a time (they wait for free memory before starting) and read outputs/real_size/results.md.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def run_smoke(model: str, out: Path, *extra: str, timeout: int = 1800) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks/real_size_smoke.py"), "--models", model,
                             "--out", str(out), *extra], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (row,) = json.loads((out / "results.json").read_text())
    return row


@pytest.fixture(scope="module")
def real_size_out():
    # Accumulates the per-model rows the Makefile target also prints; outputs/ is git-ignored.
    out = REPO / "outputs" / "real_size" / "tests"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", ["f5", "xtts", "pocket", "orpheus", "xtts_extended", "pocket_student"])
def test_real_size_two_steps(model, real_size_out):
    # Orpheus-3B is the slow one on CPU: ~20 GFLOP per token, bf16 base computed in fp32 (benchmarks/README.md).
    row = run_smoke(model, real_size_out / model, timeout=3600 if model == "orpheus" else 1800)
    assert row["problems"] == []
    assert row["steps"] == 2 and len(row["losses"]) == 2
    assert abs(row["size_ratio"] - 1) <= 0.01
    assert row["peak_rss_gb"] < 18
    if model == "orpheus":
        assert row["trainable"] == 28 * 16 * 54_272  # LoRA r16 on all 7 projections of the 28 layers
        assert "base bfloat16 (fp32 compute), LoRA torch.float32" in row["dtype"] and row["params"] > 3.2e9
        assert row["tokens_per_step"] >= 1024  # one packed row of >= 1,024 tokens (issue 20)
    if model == "xtts":
        assert row["trainable"] == 30 * 16 * 16 * 1024  # c_attn + c_proj + c_fc + mlp.c_proj, r16
    if model == "xtts_extended":
        base, grown = row["text_tokens"]
        assert base == 6681 and grown == base + row["vocab_added"] and row["vocab_added"] > 4  # 4 tags + BPE tokens
        # ca_dialects_adapter.yaml: LoRA r32 on the 4 projections + each new id's embedding row, head row and bias.
        assert row["trainable"] == 30 * 32 * 16 * 1024 + row["vocab_added"] * (2 * 1024 + 1)
        assert {"ca_balear", "ca_central", "ca_valencia"} & set(row["languages_trained"])
        assert any("text_embedding.modules_to_save" in k and k.endswith("new_weight") for k in row["updated"])
        assert any("text_head.modules_to_save" in k and k.endswith("new_weight") for k in row["updated"])
    if model == "pocket_student":
        assert row["layers"] == [24, 6] and row["per_layer_params"] == 12_587_008
        assert row["student_params"] == row["teacher_params"] - 18 * 12_587_008
        assert row["trainable"] == row["trainable_expected"] < row["student_params"]  # flow/EOS heads frozen
        assert any(k.startswith("flow_lm.transformer.layers.") for k in row["updated"])


def test_tiny_smoke_new_language_and_student(tmp_path):
    """`--size tiny` of the two variant rows: XTTS vocab extension + LoRA, Pocket student distillation."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks/real_size_smoke.py"), "--size", "tiny",
                             "--models", "xtts_extended", "pocket_student", "--out", str(tmp_path)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    xtts, pocket = json.loads((tmp_path / "results.json").read_text())
    assert xtts["problems"] == [] and pocket["problems"] == []
    assert xtts["text_tokens"][1] == xtts["text_tokens"][0] + xtts["vocab_added"] and xtts["vocab_added"] > 4
    assert xtts["trainable"] == xtts["trainable_expected"] and len(xtts["losses"]) == 2
    assert any(k.endswith("text_head.modules_to_save.default.new_weight") for k in xtts["updated"])
    assert pocket["layers"] == [4, 2] and pocket["trainable"] == pocket["trainable_expected"]
    assert pocket["student_params"] == pocket["teacher_params"] - 2 * pocket["per_layer_params"]
    assert len(pocket["losses"]) == 2 and pocket["updated"]


def test_tiny_smoke_catches_a_wrong_size(tmp_path, monkeypatch):
    """The size check is live: a published size off by 5 % fails the run (tiny models, seconds)."""
    import real_size_smoke

    result = {"model": "f5", "params": 337_100_000, "problems": []}
    assert real_size_smoke.check_size(dict(result, problems=[]), "real")["problems"] == []
    monkeypatch.setitem(real_size_smoke.PUBLISHED["f5"], "params", 337_100_000 * 1.05)
    assert "published" in real_size_smoke.check_size(dict(result, problems=[]), "real")["problems"][0]


def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    """`python benchmarks/gpu_check.py --tiny`: every part runs (or says why it is skipped) on tiny models."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--tiny", "--out", str(tmp_path)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads((tmp_path / "results.json").read_text())
    parts = report["parts"]
    assert set(parts) == {"orpheus_full_ft", "fsdp2", "snac", "qlora", "f5", "xtts_lora", "pocket_teacher"}
    for name in ("orpheus_full_ft", "fsdp2", "snac", "f5", "xtts_lora", "pocket_teacher"):
        assert parts[name]["status"] == "ok", (name, parts[name])
    assert parts["qlora"]["status"] == "skipped" and "CUDA" in parts["qlora"]["reason"]
    variants = parts["orpheus_full_ft"]["variants"]
    assert set(variants) == {"sdpa, padded", "sdpa, packed"}
    assert variants["sdpa, packed"]["padding_fraction"] == 0 and variants["sdpa, padded"]["padding_fraction"] > 0
    assert all(v["tokens_per_s"] > 0 for v in variants.values())
    assert parts["snac"]["x_real_time_batched"] > 0 and parts["f5"]["ratio_ours_over_upstream"] > 0
    assert len(parts["xtts_lora"]["losses"]) == 2 and parts["pocket_teacher"]["problems"] == []
    text = (tmp_path / "results.md").read_text()
    assert "Orpheus full fine-tune" in text and "packed" in text and "qlora" in text
