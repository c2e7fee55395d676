"""Every command shown in README.md refers to things that exist: make targets, scripts, configs, subcommands.

The commands themselves are exercised by `make demo` and by each recipe's own tests; this test keeps
the README from drifting away from the code (renamed scripts, deleted configs, removed targets).
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z0-9_-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_readme_has_the_two_commands():
    commands = _readme_commands()
    assert "make demo" in commands and "make test" in commands


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_command_refers_to_existing_things(command):
    words = shlex.split(command)
    if words[0] == "make":
        assert set(words[1:]) <= _make_targets(), f"unknown make target in: {command}"
        return
    for i, word in enumerate(words):
        if word.endswith((".py", ".yaml", ".yml", ".sh")) and "<" not in word and "*" not in word:
            assert (ROOT / word).exists(), f"{word} (in `{command}`) does not exist"
        if word in ("--config", "--config_file") and i + 1 < len(words) and "<" not in words[i + 1]:
            assert (ROOT / words[i + 1]).exists(), f"{words[i + 1]} (in `{command}`) does not exist"


def test_readme_data_prep_subcommands_exist():
    used = {m for c in _readme_commands() for m in re.findall(r"python -m data_prep ([a-z][a-z-]*)", c)}
    if not used:
        pytest.skip("README shows no data_prep subcommand")
    help_text = subprocess.run([sys.executable, "-m", "data_prep", "--help"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout
    missing = sorted(sub for sub in used if sub not in help_text)
    assert not missing, f"README uses data_prep subcommands that do not exist: {missing}"
