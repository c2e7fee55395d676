"""Turn requirements.lock into a plain `pkg==version` constraints file for an environment you already have.

A cluster's own CUDA torch stays: leave it (and what is built against it) out of the constraints:

    python scripts/lock_constraints.py --exclude torch torchaudio torchcodec triton 'nvidia-*' 'cuda-*' > constraints.txt
    pip install -r requirements.txt -c constraints.txt        # or: uv pip install -r requirements.txt -c constraints.txt

pip switches to hash-checking mode when a constraints file carries hashes, which an existing environment
cannot satisfy; this file has none (the lock keeps them for `make install`).
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upgrade_check import normalise, read_pins  # noqa: E402


def constraints(lock_text: str, exclude: list[str]) -> str:
    patterns = [normalise(p) for p in exclude]
    pins = read_pins(lock_text)
    keep = [f"{n}=={v}" for n, v in sorted(pins.items()) if not any(fnmatch.fnmatch(n, p) for p in patterns)]
    return "\n".join(keep) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lock", default=str(Path(__file__).resolve().parents[1] / "requirements.lock"))
    parser.add_argument("--exclude", nargs="*", default=[], help="package names or globs to leave unconstrained")
    args = parser.parse_args()
    sys.stdout.write(constraints(Path(args.lock).read_text(), args.exclude))


if __name__ == "__main__":
    main()
