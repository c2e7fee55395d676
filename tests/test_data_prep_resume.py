"""data_prep under kill -9: a rerun of the same command resumes from the finished shards, with no row lost or
duplicated (ids checked against an uninterrupted run), for the Common Voice, folder and manifest sources."""

import json
import signal
from pathlib import Path

import pytest

from tests.kill_resume import run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from data_prep.exporters import export_all

    return export_all(out_dir=tmp_path_factory.mktemp("resume_formats"), formats=["common_voice", "folder", "manifest"])


def _outcome(out: Path) -> tuple[list[str], list[tuple[str, str]]]:
    from datasets import load_from_disk

    data = load_from_disk(str(out / "dataset"))
    ids = sorted(i for split in data.values() for i in split["id"])
    skips = sorted((s["id"], s["reason"]) for s in json.loads((out / "report" / "skips.json").read_text())["skips"])
    return ids, skips


@pytest.mark.slow
@pytest.mark.parametrize("source,num_proc", [
    ("common-voice", "1"),
    ("folder", "2"),  # with workers: the kill comes from the pool worker that finished the shard
    ("manifest", "1")])
def test_kill_9_mid_run_then_rerun_resumes_without_lost_or_duplicate_rows(exported, tmp_path, source, num_proc):
    path = {"common-voice": exported["common_voice"] / "ca" if (exported["common_voice"] / "ca").is_dir()
            else exported["common_voice"], "folder": exported["folder"],
            "manifest": exported["manifest"]}[source]
    argv = [source, "--path", str(path), "--min_per_speaker", "1", "--shard_size", "3", "--num_proc", num_proc]
    argv += {"common-voice": ["--mapping", str(REPO / "data_prep/mappings/catalan_dialects.yaml")],
             "folder": ["--label_levels", "dialect/speaker"], "manifest": []}[source]
    straight = run("data_prep", argv + ["--output_dir", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "killed"
    killed = run("data_prep", argv + ["--output_dir", str(out)], "data_prep_shard", 1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "dataset").exists()
    finished = list((out / "cache").glob("shards-*/skips-*.json"))
    total = len(list((out / "cache").glob("shards-*")))
    # shard 1 made it to disk (with 2 workers shard 0 may still have been running: it is then redone)
    assert total == 1 and any(p.name == "skips-000001.json" for p in finished)

    rerun = run("data_prep", argv + ["--output_dir", str(out)])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming: {len(finished)} of" in rerun.stdout
    ids, skips = _outcome(out)
    assert len(ids) == len(set(ids)) and ids  # no duplicate rows
    assert (ids, skips) == _outcome(tmp_path / "straight")  # and none lost, none skipped differently
    assert not (out / "cache").exists()
