"""benchmarks/data_prep_scale.py --bookkeeping_clips on a few hundred rows: the measurement the README's Common Voice
size table comes from keeps running (its inputs are read back through the real reader and pipeline steps)."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bookkeeping_measurement_runs_every_phase(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import data_prep_scale
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    out = tmp_path / "bench" / "data_prep_scale.json"
    data_prep_scale.main(["--sizes", "--bookkeeping_clips", "300", "--work_dir", str(tmp_path / "work"),
                          "--out", str(out)])
    (result,) = json.loads((out.parent / "data_prep_bookkeeping.json").read_text())
    assert result["clips"] == 300  # the child asserts the reader read back every row of the release
    assert list(result["phases"]) == ["imports", "read Common Voice TSVs", "resume key + duplicate ids",
                                      "decoder import (held = what each forked decode worker maps)",
                                      "balance + split", "save_to_disk + report + card"]
    assert all(p["peak_mb"] > 0 and p["held_mb"] > 0 for p in result["phases"].values())
