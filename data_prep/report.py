"""Dataset report: hours, clips and speakers per dialect and per speaker, plots, skips, rule-of-thumb warnings.

Reads only the cheap columns (dialect, speaker, duration): no audio is decoded.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from data_prep.schema import read_columns
from data_prep.skips import SkipReport

# Rules of thumb from the field (see README): below these a recipe will train but the model will be weak.
PRETRAIN_MIN_SPEAKERS_PER_DIALECT = 100
PRETRAIN_MIN_HOURS_PER_DIALECT = 100.0
SINGLE_VOICE_MIN_CLIPS = 300
PURPOSES = ("auto", "pretraining", "single_voice")


def _splits(dataset) -> dict:
    from datasets import DatasetDict

    return dict(dataset.items()) if isinstance(dataset, DatasetDict) else {"all": dataset}


def compute_stats(dataset) -> dict:
    """Counts per split, per dialect and per speaker (durations in seconds, totals in hours)."""
    per_dialect: dict[str, dict] = defaultdict(lambda: {"clips": 0, "seconds": 0.0, "speakers": set()})
    per_speaker: dict[str, dict] = defaultdict(lambda: {"clips": 0, "seconds": 0.0, "dialects": set()})
    splits, durations = {}, []
    for split, ds in _splits(dataset).items():
        columns = read_columns(ds, ("dialect", "speaker", "duration"))
        d, s, dur = columns["dialect"], columns["speaker"], columns["duration"]
        splits[split] = {"clips": len(ds), "hours": round(sum(dur) / 3600, 4), "speakers": len(set(s)),
                         "dialects": sorted(set(d))}
        durations.extend(dur)
        for dialect, speaker, seconds in zip(d, s, dur):
            per_dialect[dialect]["clips"] += 1
            per_dialect[dialect]["seconds"] += seconds
            per_dialect[dialect]["speakers"].add(speaker)
            per_speaker[speaker]["clips"] += 1
            per_speaker[speaker]["seconds"] += seconds
            per_speaker[speaker]["dialects"].add(dialect)
    return {
        "clips": len(durations),
        "hours": round(sum(durations) / 3600, 4),
        "speakers": len(per_speaker),
        "dialects": len(per_dialect),
        "duration_seconds": {"min": min(durations, default=0.0), "max": max(durations, default=0.0),
                             "mean": sum(durations) / len(durations) if durations else 0.0},
        "splits": splits,
        "per_dialect": {k: {"clips": v["clips"], "hours": round(v["seconds"] / 3600, 4), "speakers": len(v["speakers"])}
                        for k, v in sorted(per_dialect.items())},
        "per_speaker": {k: {"clips": v["clips"], "minutes": round(v["seconds"] / 60, 3), "dialects": sorted(v["dialects"])}
                        for k, v in sorted(per_speaker.items())},
        "durations": durations,
    }


def rule_of_thumb_warnings(stats: dict, purpose: str = "auto") -> list[str]:
    """Warnings when the data is below what the field finds necessary for the purpose.

    `auto`: one speaker means a single-voice fine-tune, several mean (dialect) pretraining.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    if purpose == "auto":
        purpose = "single_voice" if stats["speakers"] == 1 else "pretraining"
    warnings = []
    if purpose == "single_voice":
        if stats["clips"] < SINGLE_VOICE_MIN_CLIPS:
            warnings.append(f"single voice: {stats['clips']} clips < {SINGLE_VOICE_MIN_CLIPS}; expect an unstable voice "
                            "clone (aim for 300+ clips, about 30+ minutes)")
        return warnings
    for dialect, d in stats["per_dialect"].items():
        short = []
        if d["speakers"] < PRETRAIN_MIN_SPEAKERS_PER_DIALECT:
            short.append(f"{d['speakers']} speakers < {PRETRAIN_MIN_SPEAKERS_PER_DIALECT} (it may learn voices, not the dialect)")
        if d["hours"] < PRETRAIN_MIN_HOURS_PER_DIALECT:
            short.append(f"{d['hours']:.2f} h < {PRETRAIN_MIN_HOURS_PER_DIALECT:.0f} h")
        if short:
            warnings.append(f"pretraining: dialect {dialect!r} has " + " and ".join(short))
    validation = stats["splits"].get("validation")
    if validation and validation["speakers"] < 2 and stats["speakers"] > 1:
        warnings.append("validation set holds a single speaker")
    return warnings


def plot_durations(stats: dict, path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(stats["durations"], bins=min(40, max(5, len(stats["durations"]) // 3)), color="#4477aa")
    ax.set_xlabel("clip duration (s)")
    ax.set_ylabel("clips")
    ax.set_title(f"{stats['clips']} clips, {stats['hours']:.2f} h")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_dialects(stats: dict, path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats["per_dialect"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, key, label in zip(axes, ("hours", "clips", "speakers"), ("hours", "clips", "speakers")):
        ax.bar(names, [stats["per_dialect"][n][key] for n in names], color="#66aa55")
        ax.set_title(f"{label} per dialect")
        if key != "hours":
            ax.yaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_text(stats: dict, warnings: list[str], skips: SkipReport | None = None, max_speakers: int = 20) -> str:
    lines = [f"Dataset: {stats['clips']} clips, {stats['hours']:.3f} h, {stats['speakers']} speakers, "
             f"{stats['dialects']} dialects; clip length {stats['duration_seconds']['min']:.1f}-"
             f"{stats['duration_seconds']['max']:.1f} s (mean {stats['duration_seconds']['mean']:.1f} s)"]
    for split, s in stats["splits"].items():
        lines.append(f"  {split:<11} {s['clips']:>7} clips {s['hours']:>9.3f} h {s['speakers']:>6} speakers "
                     f"{len(s['dialects']):>3} dialects")
    lines.append("Per dialect:")
    for dialect, d in stats["per_dialect"].items():
        lines.append(f"  {dialect:<18} {d['clips']:>7} clips {d['hours']:>9.3f} h {d['speakers']:>6} speakers")
    lines.append("Per speaker:")
    for i, (speaker, s) in enumerate(stats["per_speaker"].items()):
        if i == max_speakers:
            lines.append(f"  ... {len(stats['per_speaker']) - max_speakers} more in report.json")
            break
        name = speaker if len(speaker) <= 24 else speaker[:21] + "..."
        lines.append(f"  {name:<24} {s['clips']:>6} clips {s['minutes']:>8.2f} min  {','.join(s['dialects'])}")
    if skips is not None:
        lines.append(skips.summary())
    if warnings:
        lines.append("Warnings (rules of thumb):")
        lines.extend(f"  ! {w}" for w in warnings)
    return "\n".join(lines)


def write_samples(dataset, out_dir: str | os.PathLike, per_dialect: int = 1) -> list[str]:
    """A few processed clips per dialect as WAVs (samples/<dialect>_<id>.wav), to listen to what was kept."""
    from data_prep.audio import decode_audio, write_audio

    data = _splits(dataset)
    ds = data.get("train") or next(iter(data.values()))
    taken: dict[str, int] = {}
    rows = []
    for index, dialect in enumerate(read_columns(ds, ["dialect"])["dialect"]):
        if taken.get(dialect, 0) < per_dialect:
            taken[dialect] = taken.get(dialect, 0) + 1
            rows.append(index)
    written = []
    for row in ds.select(rows):
        samples, sr = decode_audio(row["audio"])
        path = Path(out_dir) / "samples" / f"{row['dialect']}_{row['id']}.wav"
        write_audio(path, samples, sr)
        written.append(str(path))
    return written


def write_report(dataset, out_dir: str | os.PathLike, skips: SkipReport | None = None, purpose: str = "auto",
                 extra: dict | None = None, samples_per_dialect: int = 1) -> dict:
    """Write report.json, report.txt, skips.json, durations.png, dialects.png and samples/*.wav into `out_dir`.

    Returns the report dict (with `summary`, the human-readable text, and `files`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = compute_stats(dataset)
    warnings = rule_of_thumb_warnings(stats, purpose)
    text = summary_text(stats, warnings, skips)
    files = {"summary": out / "report.txt", "json": out / "report.json", "durations_png": out / "durations.png",
             "dialects_png": out / "dialects.png"}
    plot_durations(stats, files["durations_png"])
    plot_dialects(stats, files["dialects_png"])
    if skips is not None:
        files["skips"] = out / "skips.json"
        skips.write(files["skips"])
    samples = write_samples(dataset, out, samples_per_dialect) if samples_per_dialect > 0 and stats["clips"] else []
    report = {k: v for k, v in stats.items() if k != "durations"}
    report["samples"] = samples
    report["warnings"] = warnings
    report["skips"] = skips.to_dict() if skips is not None else None
    report.update(extra or {})
    files["summary"].write_text(text + "\n", encoding="utf-8")
    with open(files["json"], "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2, default=str)
    report["summary"] = text
    report["files"] = {k: str(v) for k, v in files.items()}
    return report
