"""The lock is the environment the tests pass on: complete, hashed, within our ranges, and installed as is."""
from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from lock_constraints import constraints  # noqa: E402
from upgrade_check import broken_tests, diff_pins, lift_known_breaks, normalise, read_pins  # noqa: E402

LOCK = (ROOT / "requirements.lock").read_text()
GPU_LOCK = (ROOT / "requirements-gpu.lock").read_text()


def requirements(*names: str) -> list[Requirement]:
    reqs = []
    for name in names:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                reqs.append(Requirement(line))
    return reqs


def lock_blocks(text: str) -> dict[str, str]:
    """package -> its whole block (pin line + hash lines)."""
    blocks, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if match:
            current = normalise(match.group(1))
            blocks[current] = line
        elif current and line.startswith("    --hash"):
            blocks[current] += "\n" + line
    return blocks


def test_lock_satisfies_every_range():
    pins = read_pins(LOCK)
    for req in requirements("requirements.txt", "requirements-offline-models.txt"):
        name = normalise(req.name)
        assert name in pins, f"{req.name} is in the ranges but not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={pins[name]}, outside {req.specifier}: run `make lock`"


def test_every_pin_has_a_hash():
    for name, block in lock_blocks(LOCK).items():
        assert "--hash=sha256:" in block, f"{name} has no hash in requirements.lock"
    for name, block in lock_blocks(GPU_LOCK).items():
        assert "--hash=sha256:" in block, f"{name} has no hash in requirements-gpu.lock"


def test_torch_stack_is_one_abi_matching_set():
    pins = read_pins(LOCK)
    # torchaudio/torchcodec wheels are built against one torch release: 2.11.0 <-> 2.11.0 <-> 0.17.x.
    assert (pins["torch"], pins["torchaudio"]) == ("2.11.0", "2.11.0")
    assert pins["torchcodec"].startswith("0.17.")


def test_gpu_lock_agrees_with_main_lock():
    main, gpu = read_pins(LOCK), read_pins(GPU_LOCK)
    clashes = {n: (main[n], gpu[n]) for n in main.keys() & gpu.keys() if main[n] != gpu[n]}
    assert not clashes, f"requirements-gpu.lock disagrees with requirements.lock: {clashes} (run `make lock`)"
    for extra in ("bitsandbytes", "deepspeed", "flash-attn"):
        assert extra in gpu


def test_installed_environment_equals_the_lock():
    if not (Path(sys.prefix) / ".installed").exists():
        pytest.skip("not the venv `make install` builds from the lock")
    pins = read_pins(LOCK)
    installed = {normalise(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    installed.pop("tts-recipes", None)
    # a CUDA build of torch reports 2.11.0+cu130 for the lock's 2.11.0
    installed = {n: v.split("+")[0] if n in ("torch", "torchaudio") else v for n, v in installed.items()}
    assert diff_pins(pins, installed) == {"moved": [], "added": [], "removed": []}


def test_upgrade_check_lifts_only_tagged_bounds():
    text = ("torchaudio>=2.11,<2.11.1   # known break (supported <2.12): ABI\n"
            "transformers>=5.0,<5.24   # known break (supported <6): coqui\n"
            "datasets>=5.0,<6\n")
    lifted, changes = lift_known_breaks(text)
    assert lifted.splitlines() == ["torchaudio>=2.11,<2.12", "transformers>=5.0,<6", "datasets>=5.0,<6"]
    assert len(changes) == 2
    one, changes = lift_known_breaks(text, only={"transformers"})
    assert one.splitlines()[0].startswith("torchaudio>=2.11,<2.11.1") and one.splitlines()[1] == "transformers>=5.0,<6"
    # our own requirements.txt carries the two known breaks of 2026-12-01
    _, ours = lift_known_breaks((ROOT / "requirements.txt").read_text())
    assert {c.split(">=")[0] for c in ours} >= {"torchaudio", "transformers"}


def test_upgrade_check_reports_moves_and_failures():
    drift = diff_pins({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "2.1", "d": "4"})
    assert drift == {"moved": [("b", "2", "2.1")], "added": [("d", "4")], "removed": [("c", "3")]}
    out = "....\nFAILED tests/test_x.py::test_y - AttributeError: boom\nERROR tests/test_z.py - ImportError\n1 failed"
    assert broken_tests(out) == ["FAILED tests/test_x.py::test_y - AttributeError: boom",
                                 "ERROR tests/test_z.py - ImportError"]


def test_constraints_file_drops_hashes_and_excluded_packages():
    text = constraints(LOCK, ["torch", "nvidia-*"])
    assert "--hash" not in text and "\\" not in text
    names = {line.split("==")[0] for line in text.splitlines()}
    assert "torch" not in names and not any(n.startswith("nvidia-") for n in names)
    assert "transformers" in names and "torchaudio" in names


def test_upgrade_check_names_the_root_cause():
    from upgrade_check import top_errors
    out = "\n".join(["E   OSError: libtorchaudio.so: undefined symbol: torch_exception_get_what"] * 3
                    + ["E   AttributeError: 'NoneType' object has no attribute 'get_seq_length'", "E   assert 1 == 2"])
    assert top_errors(out) == ["3x OSError: libtorchaudio.so: undefined symbol: torch_exception_get_what",
                               "1x AttributeError: 'NoneType' object has no attribute 'get_seq_length'"]
