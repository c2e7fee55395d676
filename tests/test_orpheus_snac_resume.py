"""The Orpheus SNAC cache under kill -9: the tokenise CLI killed after a finished shard and rerun with the same
command encodes only the unfinished shards and writes the same rows as an uninterrupted run."""

import signal
from pathlib import Path

import pytest

from tests.kill_resume import run

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_snac_cache_survives_kill_9(tmp_path):
    from datasets import load_from_disk

    from recipes.orpheus.build_tiny import build_tiny_orpheus

    tiny = build_tiny_orpheus(tmp_path / "tiny")
    argv = ["--dataset", "demo", "--tokenizer", tiny["model"], "--snac_model", tiny["snac"], "--dialects", "balear",
            "--snac_shard_size", "2", "--validation_fraction", "0.2"]
    script = "recipes.orpheus.tokenize_dataset"
    straight = run(script, argv + ["--out", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr[-3000:]
    out = tmp_path / "killed"
    killed = run(script, argv + ["--out", str(out)], "snac_shard", 1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "dataset").exists()
    done = sorted(p.parent.name for p in out.glob("snac_cache/*/shard-*/DONE"))
    assert "shard-00001" in done
    rerun = run(script, argv + ["--out", str(out)])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already encoded, resuming" in rerun.stderr
    a, b = load_from_disk(str(tmp_path / "straight" / "dataset")), load_from_disk(str(out / "dataset"))
    assert set(a) == set(b)
    for split in a:
        assert len(b[split]["id"]) == len(set(b[split]["id"]))  # no duplicate rows
        assert a[split]["id"] == b[split]["id"] and a[split]["input_ids"] == b[split]["input_ids"]
