"""Turn an `EvaluationResult` into files a person reads: results.json, results.md, charts, WAV pages.

Layout of `output_dir`:
    results.json            meta, overall, ground_truth (ceiling), groups (dialect/language/speaker), rows
    results.md              the same as Markdown tables
    charts/by_<group>.png   WER, CER, speaker similarity and MCD per group, model next to ground truth
    wavs/<dialect>/<id>.wav and <id>.ground_truth.wav, plus wavs/index.html (players, text, transcript, WER)
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

NOT_MEANINGFUL = ("NOT MEANINGFUL: the ASR and/or speaker models are tiny random ones built offline "
                  "(`tiny-random`); these numbers only show that the evaluation path runs.")
EOS_COLUMNS = (("n", "n", "{:d}"), ("no_eos", "no EOS (hit cap)", "{:d}"), ("silent", "silent", "{:d}"),
               ("duration_ratio", "duration gen/ref", "{:.2f}"), ("duration_ratio_median", "median gen/ref", "{:.2f}"))


def meaningful_columns(meta: dict) -> tuple[list[str], list[str]]:
    """(columns from real measurements or real models, columns from tiny random evaluation models)."""
    asr_ok = meta.get("asr_meaningful", meta["meaningful"])
    speaker_ok = meta.get("speaker_meaningful", meta["meaningful"])
    real = ["MCD", "RTF", "EOS health (no EOS, silent, durations)"]  # signal measurements: no model involved
    random = []
    (real if asr_ok else random).extend(["WER", "CER"])
    (real if speaker_ok else random).append("spk sim")
    return real, random


def meaningful_note(meta: dict) -> str:
    real, random = meaningful_columns(meta)
    note = f"Real: {', '.join(real)} (ASR `{meta['asr_model']}`, speaker model `{meta['speaker_model']}`)."
    if random:
        note += (f" NOT MEANINGFUL: {', '.join(random)}: they come from tiny random models (`tiny-random`) and only "
                 "show that the evaluation path runs.")
    return note


CARD_BEGIN = "<!-- tts-recipes eval results: begin -->"
CARD_END = "<!-- tts-recipes eval results: end -->"
COLUMNS = (("n", "n", "{:d}"), ("wer", "WER", "{:.3f}"), ("cer", "CER", "{:.3f}"),
           ("similarity", "spk sim", "{:.3f}"), ("mcd", "MCD (dB)", "{:.2f}"), ("rtf", "RTF", "{:.3f}"))


def _clean(value):
    """JSON has no NaN/inf: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def _cell(stats: dict | None, key: str, fmt: str) -> str:
    value = (stats or {}).get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def _row(label: str, stats: dict | None) -> str:
    return "| " + " | ".join([label] + [_cell(stats, key, fmt) for key, _, fmt in COLUMNS]) + " |"


def group_table(summary: dict, grouping: str) -> str:
    """One Markdown table: a model row and a ground-truth (ceiling) row per group value."""
    lines = [f"| {grouping} | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for key, stats in summary["groups"][grouping].items():
        lines.append(_row(f"{key}", stats["model"]))
        if stats.get("ground_truth"):
            lines.append(_row(f"{key} (recordings)", stats["ground_truth"]))
    return "\n".join(lines)


def eos_table(summary: dict, grouping: str) -> str:
    """Per group: rows that hit the length cap, silent outputs, generated/recorded duration."""
    lines = [f"| {grouping} | " + " | ".join(title for _, title, _ in EOS_COLUMNS) + " |",
             "|---" * (len(EOS_COLUMNS) + 1) + "|"]
    for key, stats in summary["groups"][grouping].items():
        model = stats["model"]
        cells = [_cell(model, k, fmt) if k != "no_eos" or model.get("no_eos") is not None else "not reported"
                 for k, _, fmt in EOS_COLUMNS]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(summary: dict) -> str:
    meta = summary["meta"]
    parts = [f"# Evaluation: {meta['model']}", ""]
    if not meta["meaningful"]:
        parts += [f"> **{NOT_MEANINGFUL}**", ""]
    parts += [f"> {meaningful_note(meta)}", ""]
    parts += [
        f"Dataset `{meta['dataset']}` split `{meta['split']}`, {meta['rows']} clips. ASR `{meta['asr_model']}`, "
        f"speaker model `{meta['speaker_model']}`, normaliser `{Path(meta['language_config']).name}`.",
        "WER/CER are pooled (total edits / total reference words or characters) after normalisation; "
        "speaker similarity is the cosine of speaker embeddings against a different clip of the same speaker; "
        "MCD is the DTW-aligned mel-cepstral distortion against the recording of the same text; RTF is synthesis "
        "time / generated audio time. Rows marked (recordings) score the ground-truth recordings: the ceiling.",
        "",
        "## Overall", "",
        "| | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
        _row("model", summary["overall"]),
    ]
    if summary.get("ground_truth"):
        parts.append(_row("recordings (ceiling)", summary["ground_truth"]))
    notes = []
    if meta.get("peak_gpu_memory_gb") is not None:
        notes.append(f"peak GPU memory during synthesis: {meta['peak_gpu_memory_gb']:.2f} GiB")
    for key, text in (("no_eos_outputs", "generations hit the length cap without an end-of-speech (no EOS)"),
                      ("silent_outputs", "silent/empty outputs (scored: similarity 0, ASR as transcribed)"),
                      ("non_finite_outputs", "outputs with NaN/inf samples (scored as silence)"),
                      ("reference_is_target", "rows whose speaker had no other clip, so the prompt was the target itself")):
        if meta.get(key):
            notes.append(f"{meta[key]} {text}")
    if notes:
        parts += [""] + [f"- {n}" for n in notes]
    for grouping in summary["groups"]:
        parts += ["", f"## Per {grouping}", "", group_table(summary, grouping)]
    eos_groupings = [g for g in ("dialect", "language") if g in summary["groups"]]
    if eos_groupings:
        parts += ["", "## EOS health", "",
                  "no EOS: generations that ran to the length cap instead of ending (\"not reported\": the "
                  "recipe does not say); silent: empty or near-silent outputs; duration gen/ref: generated over recorded "
                  "audio time (pooled, and the per-clip median)."]
        for grouping in eos_groupings:
            parts += ["", eos_table(summary, grouping)]
    return "\n".join(parts) + "\n"


def write_charts(summary: dict, charts_dir: Path) -> list[Path]:
    """One PNG per grouping: WER, CER, similarity and MCD bars, model beside recordings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    charts_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for grouping, groups in summary["groups"].items():
        labels = list(groups)
        fig, axes = plt.subplots(2, 2, figsize=(max(8.0, 0.5 * len(labels) * 2 + 3), 7.5))
        axes = axes.ravel()
        for ax, (key, title) in zip(axes, (("wer", "WER"), ("cer", "CER"), ("similarity", "speaker similarity"),
                                           ("mcd", "MCD (dB)"))):
            x = np.arange(len(labels))
            model = [_nan(groups[g]["model"].get(key)) for g in labels]
            truth = [_nan((groups[g].get("ground_truth") or {}).get(key)) for g in labels]
            has_truth = key != "mcd" and any(not math.isnan(v) for v in truth)
            width = 0.4 if has_truth else 0.7
            ax.bar(x - (width / 2 if has_truth else 0), model, width, label="model")
            if has_truth:
                ax.bar(x + width / 2, truth, width, label="recordings")
            ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
            ax.set_title(title)
        axes[0].legend(fontsize=8)
        title = f"{summary['meta']['model']}: per {grouping}"
        real, random = meaningful_columns(summary["meta"])
        if random:
            title += f"  [NOT MEANINGFUL ({', '.join(random)}): tiny-random eval models]"
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = charts_dir / f"by_{grouping}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name)) or "_"


def write_wavs(result, wavs_dir: Path) -> Path:
    """wavs/<dialect>/<id>.wav (+ .ground_truth.wav) and an index.html with players and scores."""
    from data_prep.audio import write_audio

    meta = result.summary["meta"]
    rows_html = []
    for record in result.summary["rows"]:
        folder = wavs_dir / _safe(record["dialect"])
        generated_path = folder / f"{_safe(record['id'])}.wav"
        truth_path = folder / f"{_safe(record['id'])}.ground_truth.wav"
        write_audio(generated_path, *result.generated[record["id"]])
        write_audio(truth_path, *result.ground_truth[record["id"]])
        relative = lambda p: html.escape(str(p.relative_to(wavs_dir)))  # noqa: E731
        rows_html.append(
            "<tr>" + "".join(f"<td>{c}</td>" for c in (
                html.escape(record["dialect"]), html.escape(record["speaker"]), html.escape(record["id"]),
                html.escape(record["text"]), html.escape(record["transcript"]),
                f"{record['wer']:.2f}" if record["words"] else "–",
                f"{record['similarity']:.3f}", f"{record['mcd']:.1f}",
                f'<audio controls preload="none" src="{relative(generated_path)}"></audio>',
                f'<audio controls preload="none" src="{relative(truth_path)}"></audio>',
            )) + "</tr>")
    banner = f'<p style="color:#b00"><b>{html.escape(NOT_MEANINGFUL)}</b></p>' if not meta["meaningful"] else ""
    banner += f"<p>{html.escape(meaningful_note(meta))}</p>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(meta['model'])}: generated audio</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}</style>
</head><body>
<h1>{html.escape(meta['model'])}: generated audio</h1>{banner}
<p>Dataset {html.escape(str(meta['dataset']))} / {html.escape(str(meta['split']))}; ASR {html.escape(meta['asr_model'])}.
Files: <code>&lt;dialect&gt;/&lt;id&gt;.wav</code> (generated) and <code>.ground_truth.wav</code> (recording).</p>
<table><tr><th>dialect</th><th>speaker</th><th>id</th><th>text</th><th>ASR transcript</th><th>WER</th><th>spk sim</th><th>MCD</th><th>generated</th><th>recording</th></tr>
{chr(10).join(rows_html)}
</table></body></html>
"""
    index = wavs_dir / "index.html"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(page, encoding="utf-8")
    return index


def write_report(result, output_dir: str | Path, *, wavs: bool = True) -> dict[str, Path]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(_clean(result.summary), indent=2, ensure_ascii=False), encoding="utf-8")
    paths["markdown"].write_text(markdown_report(result.summary), encoding="utf-8")
    for chart in write_charts(result.summary, out / "charts"):
        paths[chart.stem] = chart
    if wavs:
        paths["wavs_index"] = write_wavs(result, out / "wavs")
    return paths


# --- Hub ---------------------------------------------------------------------------------------------

def card_section(summary: dict, files_path: str) -> str:
    """The eval-results block for a model card (between markers so a re-run replaces it)."""
    meta = summary["meta"]
    lines = [CARD_BEGIN, f"## Evaluation results ({meta['model']})", ""]
    if not meta["meaningful"]:
        lines += [f"> **{NOT_MEANINGFUL}**", ""]
    lines += [f"> {meaningful_note(meta)}", ""]
    lines += [f"Held-out `{meta['dataset']}` / `{meta['split']}` ({meta['rows']} clips), ASR `{meta['asr_model']}`, "
              f"speaker model `{meta['speaker_model']}`. Full results, charts: [`{files_path}/`]({files_path}/results.md).",
              "", "| | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|",
              _row("model", summary["overall"])]
    if summary.get("ground_truth"):
        lines.append(_row("recordings (ceiling)", summary["ground_truth"]))
    if "dialect" in summary["groups"]:
        lines += ["", group_table(summary, "dialect")]
    lines.append(CARD_END)
    return "\n".join(lines)


def merge_card_section(card_text: str, section: str) -> str:
    """Replace an earlier eval section, or append one, leaving the rest of the card untouched."""
    if CARD_BEGIN in card_text and CARD_END in card_text:
        before = card_text.split(CARD_BEGIN, 1)[0]
        after = card_text.split(CARD_END, 1)[1]
        return before + section + after
    return card_text.rstrip("\n") + "\n\n" + section + "\n"


def push_results_to_hub(output_dir: str | Path, repo_id: str, summary: dict, run_name: str, api=None) -> str:
    """Upload results.json/.md and charts to `eval/<run_name>/` and update the card's eval section."""
    from huggingface_hub import HfApi, errors

    # A repo without a card: huggingface_hub >= 1.0 raises RemoteEntryNotFoundError, which is not an
    # EntryNotFoundError subclass, older releases the latter.
    no_card = tuple(getattr(errors, name) for name in ("EntryNotFoundError", "RemoteEntryNotFoundError")
                    if hasattr(errors, name))
    api = api or HfApi()
    files_path = f"eval/{_safe(run_name)}"
    try:
        card_text = Path(api.hf_hub_download(repo_id=repo_id, filename="README.md")).read_text(encoding="utf-8")
    except no_card:
        card_text = f"# {repo_id}\n"
    merged = merge_card_section(card_text, card_section(summary, files_path))
    api.upload_folder(folder_path=str(output_dir), repo_id=repo_id, path_in_repo=files_path,
                      allow_patterns=["results.json", "results.md", "charts/*.png"],
                      commit_message=f"Evaluation results: {run_name}")
    api.upload_file(path_or_fileobj=merged.encode("utf-8"), path_in_repo="README.md", repo_id=repo_id,
                    commit_message=f"Model card: evaluation results for {run_name}")
    return f"https://huggingface.co/{repo_id}"


def summary_scalars(summary: dict, prefix: str = "eval") -> dict[str, float]:
    """Flat {name: value} for `trainer.log` / TensorBoard from a recipe's eval step.

    e.g. eval/wer, eval/similarity, eval/dialect/balear/wer; missing or NaN values are left out.
    """
    scalars = {}

    def add(name: str, stats: dict | None):
        for key in ("wer", "cer", "similarity", "mcd", "rtf"):
            value = (stats or {}).get(key)
            if value is not None and math.isfinite(value):
                scalars[f"{name}/{key}"] = float(value)

    add(prefix, summary["overall"])
    for key, stats in summary["groups"].get("dialect", {}).items():
        add(f"{prefix}/dialect/{key}", stats["model"])
    return scalars
