"""The on-disk layout F5-TTS users already have, in both directions.

F5 layout folder:
    metadata.csv   `audio_file|text` header + absolute paths (upstream prepare_csv_wavs.py input), or the
                   finetune GUI's headerless `name|text` with names relative to wavs/
    duration.json  {"duration": [seconds, ...]} in metadata order (optional on import; recomputed if absent)
    vocab.txt      the vocab the checkpoint uses
    wavs/          the audio
    raw/           (written on export) upstream's prepared dataset {audio_path, text: symbols, duration}, so
                   upstream's trainer can train on the same folder

Import an F5 folder into the shared schema (then any recipe reads it through data_prep.loading):
    python -m recipes.f5.layout import --f5_dir data/my_voice --out_dir data/my_voice_schema
Export a schema dataset (demo | save_to_disk folder | Hub id) to the F5 layout:
    python -m recipes.f5.layout export --dataset demo --languages pt-br --out_dir outputs/f5_layout
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

HEADER_NAMES = {"audio_file", "audio_path", "file", "path", "name"}


def _resolve_audio(folder: Path, entry: str) -> Path | None:
    candidate = Path(entry).expanduser()
    options = [candidate] if candidate.is_absolute() else [folder / "wavs" / candidate, folder / candidate]
    options += [p.with_name(p.name + ".wav") for p in options if not p.suffix]
    return next((p for p in options if p.is_file()), None)


def read_f5_layout(f5_dir: str | Path, *, speaker: str | None = None, dialect: str = "unknown",
                   language: str | None = None, sampling_rate: int = 24_000):
    """An F5 layout folder as a schema `Dataset` (one speaker unless told otherwise: the layout has none)."""
    import soundfile as sf
    from datasets import Audio, Dataset
    from tqdm.auto import tqdm

    folder = Path(f5_dir)
    metadata = folder / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{folder}: no metadata.csv (expected `audio_file|text` lines); is this an F5 folder?")
    with open(metadata, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE))
    start = 1 if rows and rows[0] and rows[0][0].strip().lower() in HEADER_NAMES else 0

    entries, problems = [], []
    for line_no, row in enumerate(rows[start:], start=start + 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[1].strip():
            problems.append(f"metadata.csv line {line_no}: expected `audio|text`, got {'|'.join(row)[:80]!r}")
            continue
        path = _resolve_audio(folder, row[0].strip())
        if path is None:
            problems.append(f"metadata.csv line {line_no}: audio {row[0].strip()!r} not found (absolute, under wavs/, "
                            "or relative to the folder)")
            continue
        entries.append((line_no, path, "|".join(row[1:]).strip()))
    if problems:
        raise ValueError(f"{folder}: {len(problems)} bad row(s); fix or delete them:\n  " + "\n  ".join(problems[:20]))
    if not entries:
        raise ValueError(f"{metadata}: no rows")

    durations = None
    duration_file = folder / "duration.json"
    if duration_file.is_file():
        durations = json.loads(duration_file.read_text()).get("duration")
        if durations is not None and len(durations) != len(entries):
            logger.warning("%s has %d durations for %d rows; measuring the audio instead.", duration_file,
                           len(durations), len(entries))
            durations = None
    if durations is None:
        durations = [sf.info(str(p)).duration for _, p, _ in tqdm(entries, desc="Measuring clip durations")]

    speaker = speaker or folder.name
    columns = {
        "id": [f"{folder.name}_{p.stem}" for _, p, _ in entries],
        "audio": [str(p) for _, p, _ in entries],
        "text": [t for _, _, t in entries],
        "speaker": [speaker] * len(entries),
        "dialect": [dialect] * len(entries),
        "duration": [float(d) for d in durations],
    }
    if language:
        columns["language"] = [language] * len(entries)
    return Dataset.from_dict(columns).cast_column("audio", Audio(sampling_rate=sampling_rate))


def export_f5_layout(dataset, out_dir: str | Path, vocab_file: str | Path | None = None) -> Path:
    """Write wavs/ (24 kHz), metadata.csv, duration.json, vocab.txt and raw/ for a schema `Dataset`."""
    from datasets import Dataset
    from tqdm.auto import tqdm

    from data_prep.audio import decode_audio, write_audio
    from recipes.f5.data import SAMPLING_RATE, missing_symbols, read_vocab, text_to_symbols, upstream_vocab_path, write_vocab

    out = Path(out_dir).absolute()
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    bad = [f"row {i} ({row_id}): text contains '|' or a newline" for i, (row_id, text)
           in enumerate(zip(dataset["id"], dataset["text"])) if "|" in text or "\n" in text]
    if bad:
        raise ValueError(f"cannot write metadata.csv: {len(bad)} text(s) would break the `|` format; clean them:\n  "
                         + "\n  ".join(bad[:20]))
    paths, durations, texts = [], [], []
    for row in tqdm(dataset, total=len(dataset), desc=f"Writing {out}/wavs"):
        wave, sr = decode_audio(row["audio"], target_sr=SAMPLING_RATE)
        path = out / "wavs" / f"{row['id']}.wav"
        write_audio(path, wave, sr)
        paths.append(str(path))
        durations.append(round(len(wave) / sr, 4))
        texts.append(row["text"])
    with open(out / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        handle.write("audio_file|text\n")
        handle.writelines(f"{p}|{t}\n" for p, t in zip(paths, texts))
    (out / "duration.json").write_text(json.dumps({"duration": durations}, ensure_ascii=False))
    vocab = read_vocab(vocab_file or upstream_vocab_path())
    write_vocab(vocab, out / "vocab.txt")
    missing = missing_symbols(texts, vocab)
    if missing:
        logger.warning("Symbols absent from vocab.txt (upstream maps them to space; finetune.py extends the vocab): %s",
                       dict(missing))
    Dataset.from_dict({"audio_path": paths, "text": text_to_symbols(texts), "duration": durations}).save_to_disk(
        str(out / "raw"))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="F5 layout folder -> schema dataset (save_to_disk)")
    imp.add_argument("--f5_dir", required=True)
    imp.add_argument("--out_dir", required=True)
    imp.add_argument("--speaker", default=None, help="speaker label (default: the folder name)")
    imp.add_argument("--dialect", default="unknown")
    imp.add_argument("--language", default=None)
    exp = sub.add_parser("export", help="schema dataset -> F5 layout folder")
    exp.add_argument("--dataset", required=True, help="demo | a save_to_disk folder | a Hub dataset id")
    exp.add_argument("--out_dir", required=True)
    exp.add_argument("--languages", nargs="*", default=None)
    exp.add_argument("--dialects", nargs="*", default=None)
    exp.add_argument("--vocab_file", default=None, help="default: upstream's Emilia vocab")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.command == "import":
        dataset = read_f5_layout(args.f5_dir, speaker=args.speaker, dialect=args.dialect, language=args.language)
        dataset.save_to_disk(args.out_dir)
        print(f"wrote {len(dataset)} rows to {args.out_dir}")
    else:
        from datasets import concatenate_datasets

        from data_prep.loading import load_prepared_dataset

        splits = load_prepared_dataset(args.dataset, languages=args.languages, dialects=args.dialects)
        dataset = concatenate_datasets([splits["train"], splits["validation"]])
        print(f"wrote {len(dataset)} clips to {export_f5_layout(dataset, args.out_dir, args.vocab_file)}")


if __name__ == "__main__":
    main()
