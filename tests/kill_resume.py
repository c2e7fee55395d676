"""kill -9 harness: run a recipe script (or data_prep) as its own process and SIGKILL it at a chosen point.

    python tests/kill_resume.py <module> <point> <step> <script args...>

`point` is `none` (run to the end), `after_save` (checkpoint-<step> fully written, then killed: the common
case) or `mid_save` (killed after the weights, optimizer and RNG files of checkpoint-<step> but before
`trainer_state.json`: the half-written folder a kill during a save leaves), or `data_prep_shard` (data_prep
killed once its shard number <step> is on disk, by a pool worker when there are workers) or `snac_shard` (the
Orpheus SNAC cache, killed once its shard <step> is marked DONE). The kill is a real SIGKILL of the
process (no exception handling, no atexit), placed by patching the Trainer rather than by timing, so the test
is deterministic. `straight_and_killed` runs the uninterrupted reference, the killed run and the rerun of the
same command, and returns both final trainer states.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _arm(point: str, step: int) -> None:
    from transformers import Trainer

    def die():
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "after_save":
        save_checkpoint = Trainer._save_checkpoint

        def patched(self, *args, **kwargs):
            save_checkpoint(self, *args, **kwargs)
            if self.state.global_step == step:
                die()

        Trainer._save_checkpoint = patched
    elif point == "mid_save":
        save_rng_state = Trainer._save_rng_state

        def patched(self, *args, **kwargs):
            save_rng_state(self, *args, **kwargs)
            if self.state.global_step == step:
                die()

        Trainer._save_rng_state = patched
    elif point == "data_prep_shard":
        from data_prep import processing

        global _KILL_SHARD, _MAIN_PID
        _KILL_SHARD, _MAIN_PID = step, os.getpid()
        # Pool workers get the job pickled by reference; runpy(alter_sys=True) replaces `__main__` with the
        # script being run, so `__main__._dying_shard` would not resolve there. Register this module under a
        # name of its own (forked workers inherit sys.modules, and with it _KILL_SHARD and _MAIN_PID).
        sys.modules[_HARNESS_MODULE] = sys.modules[__name__]
        _dying_shard.__module__ = _HARNESS_MODULE
        processing._real_process_shard, processing._process_shard = processing._process_shard, _dying_shard
    elif point == "snac_shard":  # Orpheus SNAC cache: killed right after shard <step> is marked DONE
        import pathlib

        touch = pathlib.Path.touch

        def dying_touch(self, *args, **kwargs):
            touch(self, *args, **kwargs)
            if self.name == "DONE" and self.parent.name == f"shard-{step:05d}":
                die()

        pathlib.Path.touch = dying_touch
    elif point != "none":
        raise SystemExit(f"unknown kill point {point!r}")


_KILL_SHARD, _MAIN_PID = None, None
_HARNESS_MODULE = "_kill_resume_harness"


def _dying_shard(task):
    """data_prep's shard job, then a SIGKILL of the main process once shard `_KILL_SHARD` is on disk. Module
    level, so that a forked pool worker can unpickle it (the kill then comes from the worker)."""
    from data_prep import processing

    index = processing._real_process_shard(task)
    if index == _KILL_SHARD:
        os.kill(_MAIN_PID, signal.SIGKILL)
    return index


def run(module: str, argv: list[str], point: str = "none", step: int = 0, timeout: float = 2400):
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", MPLCONFIGDIR=os.environ.get("MPLCONFIGDIR", "/tmp/mplconfig-tests"))
    return subprocess.run([sys.executable, __file__, module, point, str(step), *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def straight_and_killed(module: str, argv: list[str], root: Path, point: str, step: int):
    """(uninterrupted final trainer state, killed-then-rerun final trainer state, rerun's stderr)."""
    straight = run(module, argv + ["--output_dir", str(root / "straight")])
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = run(module, argv + ["--output_dir", str(root / "killed")], point, step)
    assert killed.returncode == -signal.SIGKILL, f"expected a SIGKILL, got {killed.returncode}: {killed.stderr[-3000:]}"
    assert not (root / "killed" / "trainer_state.json").exists()  # it really died before the end
    rerun = run(module, argv + ["--output_dir", str(root / "killed")])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    states = [json.loads((root / name / "trainer_state.json").read_text()) for name in ("straight", "killed")]
    return states[0], states[1], rerun.stderr


def losses(state: dict) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


if __name__ == "__main__":
    module, point, step, *script_argv = sys.argv[1:]
    _arm(point, int(step))
    sys.argv = [module, *script_argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
