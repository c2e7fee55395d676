"""Dataset report: hours, clips and speakers per dialect and per speaker, plots, skips, rule-of-thumb warnings.

Reads only the cheap columns (dialect, speaker, duration): no audio is decoded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    """Counts per split, per dialect and per speaker (durations in seconds, totals in hours).

    Columnar: labels become integer codes (`label_codes`) and sums are `np.bincount`s, so a corpus of millions
    of clips costs a few bytes a row here, not a Python string per label per row. Sums run in row order in
    float64, as the plain Python loop would add them."""
    import numpy as np

    from data_prep.schema import label_codes, numeric_column

    splits, parts = {}, []
    for split, ds in _splits(dataset).items():
        dialects, dialect_codes = label_codes(ds, "dialect")
        speakers, speaker_codes = label_codes(ds, "speaker")
        durations = numeric_column(ds, "duration")
        splits[split] = {"clips": len(ds), "hours": round(float(np.cumsum(durations)[-1]) / 3600 if len(ds) else 0.0, 4),
                         "speakers": len(speakers), "dialects": sorted(dialects)}
        parts.append((dialects, dialect_codes, speakers, speaker_codes, durations))
    # one label space over all splits: the codes of each split mapped onto the sorted union of its labels
    all_dialects = sorted({label for part in parts for label in part[0]})
    all_speakers = sorted({label for part in parts for label in part[2]})

    def remapped(labels, codes, union):
        where = {label: i for i, label in enumerate(union)}
        return np.asarray([where[label] for label in labels], dtype=np.int64)[codes] if len(codes) else codes

    dialect = np.concatenate([remapped(p[0], p[1], all_dialects) for p in parts] or [np.zeros(0, np.int64)])
    speaker = np.concatenate([remapped(p[2], p[3], all_speakers) for p in parts] or [np.zeros(0, np.int64)])
    durations = np.concatenate([p[4] for p in parts] or [np.zeros(0)])
    n_d, n_s = len(all_dialects), len(all_speakers)
    width = max(n_s, 1)
    pairs = np.unique(dialect * width + speaker)  # the (dialect, speaker) pairs present
    pair_dialect, pair_speaker = pairs // width, pairs % width
    dialect_clips, dialect_seconds = np.bincount(dialect, minlength=n_d), np.bincount(dialect, durations, n_d)
    speaker_clips, speaker_seconds = np.bincount(speaker, minlength=n_s), np.bincount(speaker, durations, n_s)
    dialect_speakers = np.bincount(pair_dialect, minlength=n_d)
    dialects_of: list[list[str]] = [[] for _ in range(n_s)]
    for d, s in zip(pair_dialect.tolist(), pair_speaker.tolist()):  # ascending d: each list comes out sorted
        dialects_of[s].append(all_dialects[d])
    total_seconds = float(np.cumsum(durations)[-1]) if len(durations) else 0.0
    return {
        "clips": len(durations),
        "hours": round(total_seconds / 3600, 4),
        "speakers": n_s,
        "dialects": n_d,
        "duration_seconds": {"min": float(durations.min()) if len(durations) else 0.0,
                             "max": float(durations.max()) if len(durations) else 0.0,
                             "mean": total_seconds / len(durations) if len(durations) else 0.0},
        "splits": splits,
        "per_dialect": {name: {"clips": int(dialect_clips[i]), "hours": round(float(dialect_seconds[i]) / 3600, 4),
                               "speakers": int(dialect_speakers[i])} for i, name in enumerate(all_dialects)},
        "per_speaker": {name: {"clips": int(speaker_clips[i]), "minutes": round(float(speaker_seconds[i]) / 60, 3),
                               "dialects": dialects_of[i]} for i, name in enumerate(all_speakers)},
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
    import numpy as np

    from data_prep.audio import decode_audio, write_audio
    from data_prep.schema import grouped_rows, label_codes

    data = _splits(dataset)
    ds = data.get("train") or next(iter(data.values()))
    _, codes = label_codes(ds, "dialect")
    rows = sorted(i for _, _, indices in grouped_rows(codes, np.zeros_like(codes), 1) for i in indices[:per_dialect].tolist())
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
