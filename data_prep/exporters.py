"""Write the demo corpus (good clips and the deliberately bad ones) in every format data_prep reads.

Each exporter takes a corpus folder (`manifest.jsonl` + `clips/`, by default the committed fixture) and a
target folder, and returns the path to hand to the matching source. The bad rows travel with every
format in that format's own way (a truncated MP3 in Common Voice, a truncated WAV in LJSpeech, a
transcript with no audio in a sidecar folder, ...), so each source's skip report can be checked.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from data_prep.audio import decode_audio, resample, write_audio
from data_prep.demo_corpus import FIXTURE_DIR, read_manifest

FORMATS = ("common_voice", "ljspeech", "folder", "manifest", "hf")

CV_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "variant",
              "locale", "segment")
# How real Common Voice users spell the demo's dialects: mixed case, Catalan/English, accents or not.
CV_DIALECT_SPELLINGS = {
    "central": ("Central", "central", "català central"),
    "balear": ("balear", "Balearic", "mallorquí"),
    "valencia": ("valencià", "Valencian", "Valencià"),
}
CV_SAMPLING_RATE = 48_000  # Common Voice ships 48 kHz MP3s; importing them exercises resampling
LJSPEECH_SAMPLING_RATE = 22_050
LJSPEECH_SPEAKER = "central_m3"


def _rows(corpus_dir) -> list[dict]:
    return read_manifest(corpus_dir)


def _good_template(rows: list[dict]) -> np.ndarray:
    """Audio of the clip the bad rows were made from (the truncated FLAC itself cannot be decoded)."""
    template = next(r for r in rows if r["defect"] is None and r["dialect"] == "central")
    return decode_audio(template["audio_path"])[0]


def _defect_audio(row: dict, template: np.ndarray, sr: int) -> np.ndarray | None:
    """The samples a bad row stands for (None for the missing file)."""
    if row["defect"] == "missing":
        return None
    if row["defect"] == "silence":
        return np.zeros(int(row["duration"] * sr), np.float32)
    if row["defect"] == "too_long":
        return np.concatenate([template, np.zeros(int(40 * sr) - len(template), np.float32)])
    if row["defect"] == "truncated":
        return template
    return decode_audio(row["audio_path"])[0]


def _truncate_file(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _encode_mp3(samples: np.ndarray, sr: int, path: Path, out_sr: int = CV_SAMPLING_RATE) -> None:
    import torch
    from torchcodec.encoders import AudioEncoder

    path.parent.mkdir(parents=True, exist_ok=True)
    audio = torch.from_numpy(np.ascontiguousarray(resample(samples, sr, out_sr)))[None]
    AudioEncoder(audio, sample_rate=out_sr).to_file(str(path), bit_rate=64_000)


def export_common_voice(corpus_dir=FIXTURE_DIR, out_dir="demo_cv", languages: list[str] | None = None) -> Path:
    """Common Voice release layout: `<out>/<locale>/{validated.tsv, clip_durations.tsv, clips/*.mp3}`.

    Catalan dialect labels go into `variant` (two rows in three) or `accents` (the rest, to exercise the
    fallback), spelled in varied ways. One good central clip is down-voted (up 0, down 2). Returns `<out>`.
    """
    rows = _rows(corpus_dir)
    template = _good_template(rows)
    sr = 24_000
    out = Path(out_dir)
    by_locale: dict[str, list[dict]] = {}
    for row in rows:
        if languages and row["language"] not in languages:
            continue
        by_locale.setdefault(row["language"], []).append(row)
    downvoted_id = [r["id"] for r in rows if r["dialect"] == "central" and r["defect"] is None][-1]
    for locale, locale_rows in by_locale.items():
        locale_dir = out / locale
        (locale_dir / "clips").mkdir(parents=True, exist_ok=True)
        tsv_rows, durations = [], []
        label_turn: dict[str, int] = {}
        for row in locale_rows:
            clip = f"common_voice_{locale}_{row['id']}.mp3"
            audio = _defect_audio(row, template, sr) if row["defect"] else decode_audio(row["audio_path"])[0]
            if audio is not None:
                _encode_mp3(audio, sr, locale_dir / "clips" / clip)
                if row["defect"] == "truncated":
                    _truncate_file(locale_dir / "clips" / clip)
                durations.append({"clip": clip, "duration[ms]": int(round(len(audio) / sr * 1000))})
            variant = accents = ""
            spellings = CV_DIALECT_SPELLINGS.get(row["dialect"]) if locale == "ca" else None
            if spellings:
                turn = label_turn[row["dialect"]] = label_turn.get(row["dialect"], -1) + 1
                label = spellings[turn % len(spellings)]
                variant, accents = (label, "") if turn % 3 != 2 else ("", label)
            downvoted = row["id"] == downvoted_id
            tsv_rows.append({
                "client_id": hashlib.sha256(row["speaker"].encode()).hexdigest(), "path": clip,
                "sentence": row["text"], "up_votes": 0 if downvoted else 2, "down_votes": 2 if downvoted else 0,
                "age": "", "gender": "", "accents": accents, "variant": variant, "locale": locale, "segment": "",
            })
        _write_tsv(locale_dir / "validated.tsv", CV_COLUMNS, tsv_rows)
        _write_tsv(locale_dir / "clip_durations.tsv", ("clip", "duration[ms]"), durations)
    return out


def _write_tsv(path: Path, columns, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), delimiter="\t", quoting=csv.QUOTE_NONE,
                                escapechar=None, quotechar=None, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def export_ljspeech(corpus_dir=FIXTURE_DIR, out_dir="demo_ljspeech", speaker: str = LJSPEECH_SPEAKER) -> Path:
    """LJSpeech layout for one speaker: `metadata.csv` (id|text|normalized) + `wavs/*.wav` at 22,050 Hz.

    The bad rows (all spoken by that speaker's template) come along: a WAV cut short (its header still
    declares the full length), an empty transcript, silence, 40 s, and a metadata line with no WAV.
    """
    rows = [r for r in _rows(corpus_dir) if r["speaker"] == speaker]
    if not rows:
        raise ValueError(f"no demo clips by speaker {speaker!r}")
    template = _good_template(_rows(corpus_dir))
    out = Path(out_dir)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for row in rows:
        audio = _defect_audio(row, template, 24_000) if row["defect"] else decode_audio(row["audio_path"])[0]
        wav = out / "wavs" / f"{row['id']}.wav"
        if audio is not None:
            write_audio(wav, resample(audio, 24_000, LJSPEECH_SAMPLING_RATE), LJSPEECH_SAMPLING_RATE)
            if row["defect"] == "truncated":
                _truncate_file(wav)
        lines.append(f"{row['id']}|{row['text']}|{row['text']}")
    (out / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def export_folder(corpus_dir=FIXTURE_DIR, out_dir="demo_folder") -> Path:
    """`<out>/<dialect>/<speaker>/<id>.flac` with `<id>.txt` beside it (read with label_levels "dialect/speaker").

    The missing clip is a transcript with no audio; the truncated one is the fixture's cut FLAC.
    """
    out = Path(out_dir)
    for row in _rows(corpus_dir):
        folder = out / row["dialect"] / row["speaker"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{row['id']}.txt").write_text(row["text"] + "\n", encoding="utf-8")
        if os.path.exists(row["audio_path"]):
            shutil.copyfile(row["audio_path"], folder / f"{row['id']}.flac")
    return out


def export_manifest(corpus_dir=FIXTURE_DIR, out_dir="demo_manifest", name: str = "manifest.json") -> Path:
    """`<out>/manifest.json` (a list of {"audio_path","text","language","duration","speaker","dialect"}) +
    `<out>/clips/`. Returns the manifest path. Durations are the ones the corpus declares, so the cut FLAC
    is caught even by a decoder that reads its head."""
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    entries = []
    for row in _rows(corpus_dir):
        relative = f"clips/{Path(row['audio_path']).name}"
        if os.path.exists(row["audio_path"]):
            shutil.copyfile(row["audio_path"], out / relative)
        entries.append({"audio_path": relative, "text": row["text"], "language": row["language"],
                        "duration": row["duration"], "speaker": row["speaker"], "dialect": row["dialect"]})
    path = out / name
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    else:
        path.write_text(json.dumps(entries, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def export_hf(corpus_dir=FIXTURE_DIR, out_dir="demo_hf") -> Path:
    """A `save_to_disk` dataset with its own column names (utt_id, file, sentence, client, accent, lang), as a
    Hub dataset would have them: read it with from_hf and a column map."""
    from datasets import Audio, Dataset, Features, Value

    rows = _rows(corpus_dir)
    # audio embedded as bytes, as in a Hub dataset; the missing clip is a null cell
    audio = [{"bytes": Path(r["audio_path"]).read_bytes(), "path": Path(r["audio_path"]).name}
             if os.path.exists(r["audio_path"]) else None for r in rows]
    data = Dataset.from_dict({
        "utt_id": [r["id"] for r in rows], "file": audio, "sentence": [r["text"] for r in rows],
        "client": [r["speaker"] for r in rows], "accent": [r["dialect"] for r in rows],
        "lang": [r["language"] for r in rows],
    }, features=Features({"utt_id": Value("string"), "file": Audio(decode=False), "sentence": Value("string"), "client": Value("string"),
                          "accent": Value("string"), "lang": Value("string")}))
    data.save_to_disk(str(out_dir))
    return Path(out_dir)


def export_all(corpus_dir=FIXTURE_DIR, out_dir="demo_formats", formats: list[str] | None = None) -> dict[str, Path]:
    """Every format (or those named) under `<out>/<format>`; returns {format: path for its source}."""
    exporters = {"common_voice": export_common_voice, "ljspeech": export_ljspeech, "folder": export_folder,
                 "manifest": export_manifest, "hf": export_hf}
    unknown = [f for f in (formats or []) if f not in exporters]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {list(exporters)}")
    return {name: exporters[name](corpus_dir, Path(out_dir) / name) for name in (formats or exporters)}
