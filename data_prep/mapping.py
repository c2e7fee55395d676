"""Dialect label mappings: many user spellings -> one normalised dataset label.

A mapping file (YAML or JSON) is either `canonical: [spelling, ...]` or a flat
`spelling: canonical`. Lookups ignore case, accents, hyphens/underscores and repeated spaces,
so a mapping lists each spelling once and "Valencià", "valencia" and "VALENCIÀ" all match.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
CATALAN_DIALECTS = MAPPINGS_DIR / "catalan_dialects.yaml"


def label_key(label: str) -> str:
    """The comparison key of a label: case-folded, accents stripped, separators collapsed."""
    decomposed = unicodedata.normalize("NFKD", str(label).casefold())
    no_accents = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"[\s_\-·.]+", " ", no_accents).strip()


class DialectMapping:
    """Normalises free-form dialect labels; `None` means the label is not in the mapping."""

    def __init__(self, table: dict[str, str] | None = None, keep_unmapped: bool = False):
        self.keep_unmapped = keep_unmapped
        self._by_key: dict[str, str] = {}
        for spelling, canonical in (table or {}).items():
            self.add(spelling, canonical)

    def add(self, spelling: str, canonical: str) -> None:
        key = label_key(spelling)
        previous = self._by_key.get(key)
        if previous is not None and previous != canonical:
            raise ValueError(f"dialect mapping is ambiguous: {spelling!r} maps to both {previous!r} and {canonical!r}")
        self._by_key[key] = canonical

    @property
    def labels(self) -> list[str]:
        return sorted(set(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)

    def normalize(self, label: str | None) -> str | None:
        """Canonical label for `label`; unknown labels give None (or their lower-cased form with keep_unmapped)."""
        if label is None or not str(label).strip():
            return None
        key = label_key(label)
        if key in self._by_key:
            return self._by_key[key]
        if not self._by_key or self.keep_unmapped:
            # no mapping at all: labels are used as they are, lower-cased and trimmed
            return " ".join(str(label).split()).lower()
        return None

    def first_match(self, labels: list[str]) -> str | None:
        """The first label of `labels` that maps (Common Voice `accents` may hold several)."""
        for label in labels:
            mapped = self.normalize(label)
            if mapped is not None:
                return mapped
        return None

    def to_dict(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for key, canonical in sorted(self._by_key.items()):
            grouped.setdefault(canonical, []).append(key)
        return grouped


def load_mapping(source: str | os.PathLike | dict | None, keep_unmapped: bool = False) -> DialectMapping:
    """Read a mapping from a YAML/JSON file (or take a dict). `None` gives the identity mapping."""
    if source is None:
        return DialectMapping(keep_unmapped=keep_unmapped)
    if isinstance(source, dict):
        raw = source
        where = "mapping dict"
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"dialect mapping file not found: {path} (example: {CATALAN_DIALECTS})")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
        where = str(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of canonical label -> [spellings] or spelling -> label")
    mapping = DialectMapping(keep_unmapped=keep_unmapped)
    for key, value in raw.items():
        if isinstance(value, (list, tuple)):
            mapping.add(str(key), str(key))
            for spelling in value:
                mapping.add(str(spelling), str(key))
        elif isinstance(value, str):
            mapping.add(str(key), value)
            mapping.add(value, value)
        else:
            raise ValueError(f"{where}: entry {key!r} must be a list of spellings or a label, got {type(value).__name__}")
    return mapping
