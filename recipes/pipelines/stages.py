"""Resumable stages for the multi-step pipelines (bake-off, recordings -> voice).

Each stage is a command (a recipe script, `python -m data_prep ...`, `recipes/evaluate.py`) run as a child
process with its output streamed to the console and to `<folder>/logs/<stage>.log`. When it succeeds,
`<folder>/stages/<stage>.json` records its wall time, peak memory and the command's fingerprint; a rerun
with the same command skips it, a changed command runs it again. A killed pipeline therefore resumes at
the stage it was in (and the recipes themselves resume from their last checkpoint inside that stage).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


def expand(template: list, values: dict) -> list[str]:
    """Fill a command template: "{name}" -> str(value); an item that is exactly "{name}" of a list value
    expands to several arguments (e.g. "--dialects", "{dialects}" -> --dialects a b c); a pair whose value
    is None or an empty list is dropped with its flag."""
    out: list[str] = []
    for item in template:
        item = str(item)
        whole = re.fullmatch(r"\{(\w+)\}", item)
        if whole and whole.group(1) in values and isinstance(values[whole.group(1)], (list, tuple, type(None))):
            value = values[whole.group(1)]
            if not value:
                if out and out[-1].startswith("--"):
                    out.pop()  # the flag whose value is absent
                continue
            out.extend(str(v) for v in value)
        else:
            # only known placeholders are filled: code in a template (`python -c "{...}"`) keeps its braces
            out.append(re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0),
                              item))
    return out


def _gpu_memory_used_mb() -> float | None:
    """Sum of used GPU memory (nvidia-smi), or None without a GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        text = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10).stdout
        return float(sum(float(x) for x in text.split()))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def run_command(command: list[str], log_path: Path, env: dict | None = None) -> dict:
    """Run `command`, tee its output to `log_path`; return seconds, peak RSS (MB) and peak GPU memory (MB)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print("+ " + " ".join(command), flush=True)
    start = time.perf_counter()
    gpu_peak: list[float] = []
    stop = threading.Event()

    def poll_gpu():
        while not stop.is_set():
            used = _gpu_memory_used_mb()
            if used is None:
                return
            gpu_peak.append(used)
            stop.wait(1.0)

    poller = threading.Thread(target=poll_gpu, daemon=True)
    poller.start()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=ROOT, env={**os.environ, **(env or {})}, bufsize=1)
        for line in proc.stdout:  # progress bars and logs stay visible
            sys.stdout.write(line)
            log.write(line)
        # wait4 gives this child's own resource usage, children of its own included (ru_maxrss in KiB)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    poller.join(timeout=5)
    return {"command": command, "returncode": proc.returncode, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_gpu_mb": round(max(gpu_peak), 1) if gpu_peak else None, "log": str(log_path)}


def fingerprint(command: list[str]) -> str:
    return hashlib.sha256(json.dumps(command).encode()).hexdigest()[:16]


class Stages:
    """`run(name, command)` once per distinct command; finished stages are skipped on a rerun."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        (self.folder / "stages").mkdir(parents=True, exist_ok=True)

    def marker(self, name: str) -> Path:
        return self.folder / "stages" / f"{name}.json"

    def finished(self, name: str, command: list[str]) -> dict | None:
        path = self.marker(name)
        if not path.exists():
            return None
        info = json.loads(path.read_text())
        return info if info.get("fingerprint") == fingerprint(command) else None

    def run(self, name: str, command: list[str], env: dict | None = None) -> dict:
        done = self.finished(name, command)
        if done:
            print(f"[{name}] finished earlier ({done['seconds']} s): skipped. Delete {self.marker(name)} to rerun.")
            return {**done, "skipped": True}
        info = run_command(command, self.folder / "logs" / f"{name}.log", env=env)
        if info["returncode"] != 0:
            raise SystemExit(f"[{name}] failed (exit {info['returncode']}); its log: {info['log']}. "
                             "Fix the cause and rerun the same command: finished stages are skipped.")
        info["fingerprint"] = fingerprint(command)
        self.marker(name).write_text(json.dumps(info, indent=2))
        return {**info, "skipped": False}


# ---- what a finished training run tells about itself -------------------------------------------------
def training_steps(model_dir: str | os.PathLike) -> int | None:
    """The largest `global_step` in trainer_state.json of the run folder or its checkpoints."""
    steps = []
    for path in [Path(model_dir) / "trainer_state.json", *Path(model_dir).glob("checkpoint-*/trainer_state.json")]:
        try:
            steps.append(int(json.loads(path.read_text())["global_step"]))
        except (OSError, ValueError, KeyError):
            continue
    return max(steps) if steps else None


def trainable_parameters(log_text: str) -> int | None:
    """The count `recipes.common.log_trainable_parameters` printed ("trainable params: 1,234 / ...")."""
    found = re.findall(r"trainable params:\s*([\d,]+)", log_text)
    return int(found[-1].replace(",", "")) if found else None


# Keys of an evaluation YAML that describe one particular run (the demo's model, data and filters); a
# pipeline sets its own, so they are dropped from the copy it evaluates with.
RUN_SPECIFIC_EVAL_KEYS = ("recipe", "model_path", "synthesizer_options", "dataset", "dataset_config", "dialects",
                          "languages", "speakers", "output_dir", "run_name", "validation_fraction", "seed")


def evaluation_config_copy(source: str | os.PathLike, destination: str | os.PathLike) -> str:
    """The evaluation settings of `source` (ASR, speaker model, normaliser, batch sizes...) without its run."""
    import yaml

    settings = yaml.safe_load(Path(source).read_text()) or {}
    kept = {k: v for k, v in settings.items() if k not in RUN_SPECIFIC_EVAL_KEYS}
    Path(destination).parent.mkdir(parents=True, exist_ok=True)
    Path(destination).write_text(f"# settings of {source}, without its run-specific keys\n" + yaml.safe_dump(kept))
    return str(destination)
