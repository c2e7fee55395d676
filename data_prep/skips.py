"""Counted skips: every row that does not make it into the dataset, with its file and the reason."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field

# stage -> what it means, in the order rows meet them
STAGES = {
    "source": "rejected while reading the source (missing file, vote filter, unmapped dialect, ...)",
    "filter": "rejected by the quality filters (unreadable, truncated, duration, silence, text, ...)",
    "balance": "removed by speaker balancing (too few clips, or over the per-speaker cap)",
}


@dataclass
class Skip:
    id: str
    file: str
    reason: str
    detail: str = ""
    stage: str = "filter"


@dataclass
class SkipReport:
    skips: list[Skip] = field(default_factory=list)

    def add(self, id: str, file: str, reason: str, detail: str = "", stage: str = "filter") -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown skip stage {stage!r}; one of {list(STAGES)}")
        self.skips.append(Skip(str(id), str(file), reason, detail, stage))

    def extend(self, other: "SkipReport | list[Skip]") -> None:
        self.skips.extend(other.skips if isinstance(other, SkipReport) else other)

    def __len__(self) -> int:
        return len(self.skips)

    def counts(self, stage: str | None = None) -> dict[str, int]:
        """Skips per reason (optionally only one stage), most common first."""
        return dict(Counter(s.reason for s in self.skips if stage is None or s.stage == stage).most_common())

    def by_id(self) -> dict[str, Skip]:
        return {s.id: s for s in self.skips}

    def to_dict(self) -> dict:
        return {
            "total": len(self.skips),
            "counts": self.counts(),
            "counts_by_stage": {stage: self.counts(stage) for stage in STAGES if self.counts(stage)},
            "skips": [asdict(s) for s in self.skips],
        }

    def summary(self, max_listed: int = 10) -> str:
        if not self.skips:
            return "Skipped: nothing."
        lines = [f"Skipped {len(self.skips)} row(s):"]
        for stage, meaning in STAGES.items():
            counts = self.counts(stage)
            if not counts:
                continue
            lines.append(f"  [{stage}] {meaning}")
            for reason, n in counts.items():
                examples = [s for s in self.skips if s.stage == stage and s.reason == reason]
                names = ", ".join(os.path.basename(s.file) or s.id for s in examples[:max_listed])
                more = f", ... (+{n - max_listed})" if n > max_listed else ""
                lines.append(f"    {reason:<26} {n:>6}  {names}{more}")
        return "\n".join(lines)

    def write(self, path: str | os.PathLike) -> None:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False, indent=2)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "SkipReport":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return cls([Skip(**s) for s in data.get("skips", [])])
