"""See dependency drift before users do: resolve the newest versions our ranges allow, test them, report.

    make upgrade-check                       # lift every `known break` bound, run the fast tests
    python scripts/upgrade_check.py --lift transformers -- -k xtts   # lift one bound, run some tests
    python scripts/upgrade_check.py --keep_bounds --no_tests          # only: what would move within the ranges

Steps: (1) rewrite requirements*.txt with each bound tagged `# known break (supported <X)` widened to <X
(unless --keep_bounds), (2) `uv pip compile` that into a scratch folder, (3) compare with requirements.lock:
which packages moved, appeared or disappeared, (4) `uv pip sync` a scratch venv with it and run the fast
tests there, (5) print and write outputs/upgrade_check/report.md. Exit status 1 when a test broke.
The lock and the project's .venv are never touched.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ["requirements.txt", "requirements-offline-models.txt"]
KNOWN_BREAK = re.compile(r"#\s*known break \(supported (<[^)\s]+)\)")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lift_known_breaks(text: str, only: set[str] | None = None) -> tuple[str, list[str]]:
    """Widen each `pkg>=a,<b  # known break (supported <c)` to `pkg>=a,<c`. Returns (text, lifted lines)."""
    out, lifted = [], []
    for line in text.splitlines():
        match = KNOWN_BREAK.search(line)
        spec = line.split("#", 1)[0].strip()
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
        if match and name and (only is None or normalise(name.group(0)) in only):
            widened = re.sub(r"<[^,;\s]+", match.group(1), spec, count=1)
            lifted.append(f"{spec}  ->  {widened}")
            line = widened
        out.append(line)
    return "\n".join(out) + "\n", lifted


def read_pins(lock_text: str) -> dict[str, str]:
    pins = {}
    for line in lock_text.splitlines():
        match = PIN.match(line)
        if match:
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def diff_pins(old: dict[str, str], new: dict[str, str]) -> dict[str, list]:
    return {
        "moved": sorted((n, old[n], new[n]) for n in old.keys() & new.keys() if old[n] != new[n]),
        "added": sorted((n, new[n]) for n in new.keys() - old.keys()),
        "removed": sorted((n, old[n]) for n in old.keys() - new.keys()),
    }


def broken_tests(pytest_output: str) -> list[str]:
    """FAILED/ERROR lines of pytest's -rfE summary: what broke, with the first line of the reason."""
    return [line.strip() for line in pytest_output.splitlines() if re.match(r"^(FAILED|ERROR) ", line)]


def top_errors(pytest_output: str, n: int = 3) -> list[str]:
    """The most frequent exception lines (pytest's `E   ...`): usually one root cause behind many failures."""
    counts: dict[str, int] = {}
    for line in pytest_output.splitlines():
        if line.startswith("E   ") and re.search(r"\w+(Error|Exception)\b", line):
            key = line[4:].strip()[:300]
            counts[key] = counts.get(key, 0) + 1
    return [f"{c}x {e}" for e, c in sorted(counts.items(), key=lambda kv: -kv[1])[:n]]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, **kw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep_bounds", action="store_true", help="resolve the ranges as written (no lifting)")
    parser.add_argument("--lift", nargs="*", default=None, help="lift only these packages' known-break bounds")
    parser.add_argument("--no_tests", action="store_true", help="resolve and diff only")
    parser.add_argument("--workdir", default="/tmp/tts-recipes-upgrade-check", help="scratch folder (venv inside)")
    parser.add_argument("--report", default=str(ROOT / "outputs/upgrade_check/report.md"))
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest (default: -m 'not slow')")
    args = parser.parse_args(argv)

    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        sys.exit("uv not found: run `make install` (uv is pinned in requirements.lock)")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    only = None if args.lift is None else {normalise(n) for n in args.lift}
    lifted_all, inputs = [], []
    for name in INPUTS:
        text, lifted = (ROOT / name).read_text(), []
        if not args.keep_bounds:
            text, lifted = lift_known_breaks(text, only)
        (work / name).write_text(text)
        inputs.append(str(work / name))
        lifted_all += lifted

    resolved = work / "resolved.txt"
    compiled = run([uv, "pip", "compile", "-q", "--upgrade", "--python-version", "3.11", "--python-platform",
                    "x86_64-manylinux_2_28", "--no-header", *inputs, "-o", str(resolved)], capture_output=True)
    if compiled.returncode:
        print(compiled.stderr)
        sys.exit("the ranges no longer resolve (above): that is drift too — fix requirements.txt")
    drift = diff_pins(read_pins((ROOT / "requirements.lock").read_text()), read_pins(resolved.read_text()))

    lines = ["# upgrade-check", "", "Known-break bounds lifted: " + ("; ".join(lifted_all) or "none"), ""]
    lines += ["## Packages that moved (lock -> newest allowed)", ""]
    lines += [f"- {n}: {a} -> {b}" for n, a, b in drift["moved"]] or ["- none"]
    lines += [f"- new: {n}=={v}" for n, v in drift["added"]] + [f"- gone: {n}=={v}" for n, v in drift["removed"]]

    status = 0
    if not args.no_tests:
        venv = work / "venv"
        if not (venv / "bin/python").exists():
            run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        py = str(venv / "bin/python")
        run([uv, "pip", "sync", "-q", "--python", py, str(resolved)], check=True)
        run([uv, "pip", "install", "-q", "--python", py, "--no-deps", "-e", str(ROOT)], check=True)
        pytest_args = args.pytest_args or ["-m", "not slow"]
        env = {**os.environ, "COLUMNS": "300"}  # pytest's summary lines are cut at the terminal width
        tests = run([py, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *pytest_args], cwd=ROOT,
                    capture_output=True, env=env)
        tail = tests.stdout.strip().splitlines()[-1:] or ["(no output)"]
        broken = broken_tests(tests.stdout)
        lines += ["", "## Fast tests on the newest versions", "", f"pytest: {tail[0]}", ""]
        lines += [f"- {b}" for b in broken] or ["- nothing broke"]
        if broken:
            lines += ["", "Most frequent errors:", *[f"- {e}" for e in top_errors(tests.stdout)]]
        if tests.returncode not in (0, 5):
            status = 1
            if not broken:  # collection/import errors print no FAILED line: show the end of the log
                lines += ["", "```", *tests.stdout.strip().splitlines()[-25:], "```"]

    report = "\n".join(lines) + "\n"
    print("\n" + report)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(report)
    print(f"written: {args.report}")
    return status


if __name__ == "__main__":
    sys.exit(main())
