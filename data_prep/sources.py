"""Sources: each reads one kind of corpus into raw rows for `data_prep.processing.prepare`.

Raw rows have the schema's columns, but `audio` still points at the original file (a path, or an
undecoded `{"bytes", "path"}` cell for HF datasets) and `expected_duration` carries a duration
declared by the source (Common Voice `clip_durations.tsv`, a manifest's `duration`), used to catch
truncated files. Rows a source rejects by itself (vote filter, unmapped dialect, transcript without
audio, ...) are counted in `SourceResult.skips` with stage "source"; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

from data_prep.mapping import DialectMapping, load_mapping
from data_prep.schema import SchemaError, require_columns
from data_prep.skips import SkipReport

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm")
RAW_COLUMNS = ("id", "audio", "text", "speaker", "dialect", "language", "source", "expected_duration")
CV_REQUIRED_COLUMNS = ("client_id", "path", "sentence")
# Raw rows may carry a rejection decided while reading (HF datasets are mapped, not looped in Python).
PRE_SKIP_COLUMN, PRE_SKIP_DETAIL_COLUMN = "pre_skip", "pre_skip_detail"


@dataclass
class SourceResult:
    """Raw rows (a `datasets.Dataset`) plus what the source already rejected and how it was read."""

    dataset: Any
    skips: SkipReport = field(default_factory=SkipReport)
    description: dict = field(default_factory=dict)


RAW_FEATURES_SPEC = {"id": "string", "audio": "string", "text": "string", "speaker": "string", "dialect": "string",
                     "language": "string", "source": "string", "expected_duration": "float64"}


def records_to_dataset(records: Iterable[dict]):
    """Raw rows -> `datasets.Dataset` with fixed column types (works for zero rows too).

    Rows are streamed into an Arrow file in a scratch folder and memory-mapped back, so a source of millions
    of clips never holds them as Python objects (the folder goes when the dataset is garbage-collected).
    """
    import tempfile
    import weakref

    from datasets import Dataset, Features, Value
    from datasets.arrow_writer import ArrowWriter

    features = Features({name: Value(kind) for name, kind in RAW_FEATURES_SPEC.items()})
    scratch = tempfile.TemporaryDirectory(prefix="data_prep_raw_")
    path = os.path.join(scratch.name, "raw.arrow")
    with ArrowWriter(features=features, path=path, writer_batch_size=10_000) as writer:
        for record in records:
            writer.write({name: record.get(name) for name in RAW_COLUMNS})
        writer.finalize()
    dataset = Dataset.from_file(path)
    weakref.finalize(dataset, scratch.cleanup)
    return dataset


def _as_mapping(mapping: DialectMapping | str | os.PathLike | dict | None, keep_unmapped: bool) -> DialectMapping:
    if isinstance(mapping, DialectMapping):
        return mapping
    return load_mapping(mapping, keep_unmapped=keep_unmapped)


# ----------------------------------------------------------------------------------------------
# Common Voice
# ----------------------------------------------------------------------------------------------

def _iter_tsv(path: Path) -> Iterator[dict]:
    """Rows of a Common Voice TSV, one at a time (validated.tsv of a big locale has millions).

    Common Voice writes TSVs without quoting; sentences may contain quote characters. Bytes that are not
    UTF-8 become U+FFFD, which the text check turns into a counted `garbage_text` skip for that row only.
    """
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        yield from csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)


def _read_tsv(path: Path) -> list[dict]:
    return list(_iter_tsv(path))


def _find_locale_dir(path: Path, locale: str | None) -> Path:
    if (path / "clips").is_dir():
        return path
    if locale and (path / locale / "clips").is_dir():
        return path / locale
    candidates = sorted(p.name for p in path.iterdir() if (p / "clips").is_dir()) if path.is_dir() else []
    if len(candidates) == 1 and not locale:
        return path / candidates[0]
    raise FileNotFoundError(
        f"{path} is not a Common Voice locale folder (expected clips/ and validated.tsv or train/dev/test.tsv). "
        + (f"Pass --locale, one of {candidates}." if candidates else "Point --path at e.g. cv-corpus-XX/ca.")
    )


def from_common_voice(
    path: str | os.PathLike,
    *,
    locale: str | None = None,
    splits: list[str] | None = None,
    mapping: DialectMapping | str | os.PathLike | dict | None = None,
    keep_unmapped: bool = False,
    default_dialect: str | None = None,
    vote_filter: bool = False,
) -> SourceResult:
    """Read a Common Voice release (a locale folder, or the release root with `locale`).

    speaker = `client_id`; dialect = `variant`, falling back to `accents` (first label that maps), through
    `mapping` (YAML/JSON file, dict, or DialectMapping). Rows with neither label get `default_dialect`
    (the locale when None; pass "" to skip them). `vote_filter` keeps only rows with up_votes > down_votes.
    `splits` names the TSVs to read; by default `validated.tsv`, else train/dev/test.
    """
    locale_dir = _find_locale_dir(Path(path), locale)
    locale = locale or locale_dir.name
    dialect_mapping = _as_mapping(mapping, keep_unmapped)
    if splits is None:
        splits = ["validated"] if (locale_dir / "validated.tsv").exists() else [
            s for s in ("train", "dev", "test") if (locale_dir / f"{s}.tsv").exists()]
    if not splits:
        raise FileNotFoundError(f"{locale_dir}: no validated.tsv or train/dev/test.tsv found")
    durations: dict[str, float] = {}
    if (locale_dir / "clip_durations.tsv").exists():
        for row in _iter_tsv(locale_dir / "clip_durations.tsv"):
            try:
                durations[row["clip"]] = float(row["duration[ms]"]) / 1000.0
            except (KeyError, TypeError, ValueError):
                continue
    fallback_dialect = locale if default_dialect is None else default_dialect

    skips = SkipReport()
    # Nothing per row is kept here: clips listed twice (a repeated line, validated.tsv and train.tsv both asked
    # for) are caught by processing's column-wise duplicate-id check, which names the first row; a dict of every
    # clip seen cost ~200 bytes a row (0.4 GB at Common Voice Catalan's 2 M clips). Paths are plain string joins:
    # a Path per row parses and interns every part.
    clips_dir = os.path.join(str(locale_dir), "clips")

    def records():
        for split in splits:
            tsv = locale_dir / f"{split}.tsv"
            if not tsv.exists():
                raise FileNotFoundError(f"{tsv} not found; available: {sorted(p.name for p in locale_dir.glob('*.tsv'))}")
            for line_number, row in enumerate(tqdm(_iter_tsv(tsv), desc=f"reading {tsv.name}", unit="row",
                                                   mininterval=1.0), start=2):
                if line_number == 2:
                    require_columns(row.keys(), CV_REQUIRED_COLUMNS, what=str(tsv))
                record = _common_voice_record(row, f"{tsv.name}:{line_number}")
                if record is not None:
                    yield record

    def _common_voice_record(row: dict, where: str) -> dict | None:
        clip = row.get("path")
        audio_path = os.path.join(clips_dir, clip or "")
        clip_id = os.path.splitext(os.path.basename(clip))[0] if clip else where
        if not clip or None in row or row.get("sentence") is None or row.get("client_id") is None:
            # a line with too few or too many tab-separated fields (e.g. a sentence with a tab or newline)
            extra = f" and {len(row[None])} extra field(s)" if None in row else ""
            skips.add(clip_id, audio_path, "bad_tsv_row",
                      f"{where}: {sum(v is not None for k, v in row.items() if k is not None)} of {len(row) - (None in row)} "
                      f"fields{extra}; fix the line (tabs or line breaks inside the sentence?)", "source")
            return None
        if vote_filter:
            up, down = _int(row.get("up_votes")), _int(row.get("down_votes"))
            if not up > down:
                skips.add(clip_id, audio_path, "votes", f"{where}: up_votes={up} <= down_votes={down}", "source")
                return None
        variant = (row.get("variant") or "").strip()
        accents = [a.strip() for a in (row.get("accents") or "").replace("|", ",").split(",") if a.strip()]
        labels = ([variant] if variant else []) + accents
        if labels:
            dialect = dialect_mapping.first_match(labels)
            if dialect is None:
                skips.add(clip_id, audio_path, "unmapped_dialect",
                          f"{where}: labels {labels} are not in the dialect mapping; add them to the mapping file "
                          "or pass --keep_unmapped", "source")
                return None
        elif fallback_dialect:
            dialect = fallback_dialect
        else:
            skips.add(clip_id, audio_path, "no_dialect_label", f"{where}: empty variant and accents", "source")
            return None
        return {
            "id": clip_id, "audio": audio_path, "text": row["sentence"], "speaker": row["client_id"],
            "dialect": dialect, "language": (row.get("locale") or locale).strip(), "source": f"common_voice:{where}",
            "expected_duration": durations.get(clip),
        }

    dataset = records_to_dataset(records())
    description = {"kind": "common_voice", "path": str(locale_dir), "locale": locale, "splits": splits,
                   "vote_filter": vote_filter, "dialect_labels": dialect_mapping.labels}
    return SourceResult(dataset, skips, description)


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


# ----------------------------------------------------------------------------------------------
# LJSpeech
# ----------------------------------------------------------------------------------------------

def from_ljspeech(
    path: str | os.PathLike,
    *,
    dialect: str,
    speaker: str | None = None,
    language: str | None = None,
    use_normalized_text: bool = True,
) -> SourceResult:
    """Read an LJSpeech-style folder: `metadata.csv` (`id|text` or `id|text|normalized_text`) + `wavs/`.

    One speaker (`speaker`, default the folder name) and one `dialect`. The normalized text column
    is used when present unless `use_normalized_text=False`.
    """
    root = Path(path)
    metadata = root / "metadata.csv"
    if not metadata.exists():
        raise FileNotFoundError(f"{metadata} not found: an LJSpeech folder has metadata.csv (id|text[|normalized]) and wavs/")
    if not dialect:
        raise ValueError("from_ljspeech needs a dialect label (--dialect), e.g. the language code")
    speaker = speaker or root.name
    wav_dir = root / "wavs" if (root / "wavs").is_dir() else root
    records, skips = [], SkipReport()
    with open(metadata, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) < 2:
                skips.add(fields[0], str(metadata), "bad_metadata_line",
                          f"metadata.csv:{line_number}: expected id|text[|normalized], got {line[:80]!r}", "source")
                continue
            clip_id = fields[0].strip()
            text = fields[2] if use_normalized_text and len(fields) >= 3 and fields[2].strip() else fields[1]
            audio_path = next((wav_dir / f"{clip_id}{ext}" for ext in AUDIO_EXTENSIONS
                               if (wav_dir / f"{clip_id}{ext}").exists()), wav_dir / f"{clip_id}.wav")
            records.append({"id": clip_id, "audio": str(audio_path), "text": text, "speaker": speaker,
                            "dialect": dialect, "language": language or "", "expected_duration": None,
                            "source": f"ljspeech:metadata.csv:{line_number}"})
    description = {"kind": "ljspeech", "path": str(root), "speaker": speaker, "dialect": dialect}
    return SourceResult(records_to_dataset(records), skips, description)


# ----------------------------------------------------------------------------------------------
# Folder of audio files with sidecar transcripts
# ----------------------------------------------------------------------------------------------

def from_folder(
    path: str | os.PathLike,
    *,
    speaker: str | None = None,
    dialect: str | None = None,
    language: str | None = None,
    label_levels: str | None = None,
    transcript_extensions: tuple[str, ...] = (".txt", ".lab"),
) -> SourceResult:
    """Read every audio file under `path` whose transcript sits beside it (`clip.flac` + `clip.txt`).

    `label_levels` names the sub-folder levels, e.g. "dialect/speaker" for `<root>/<dialect>/<speaker>/x.wav`;
    otherwise `speaker` and `dialect` apply to every file (speaker defaults to the parent folder name).
    Audio without a transcript and transcripts without audio are counted skips.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    levels = [lvl for lvl in (label_levels or "").split("/") if lvl]
    unknown = [lvl for lvl in levels if lvl not in ("dialect", "speaker", "language", "_")]
    if unknown:
        raise ValueError(f"label_levels {label_levels!r}: unknown level(s) {unknown}; use dialect, speaker, language or _")
    if not dialect and "dialect" not in levels:
        raise ValueError("from_folder needs --dialect or --label_levels containing 'dialect'")

    skips = SkipReport()

    def records():
        # One folder at a time (sorted, so the row order is the same on every run): a corpus of millions of
        # files is never listed, or held, at once.
        progress = tqdm(desc=f"scanning {root.name}", unit="file", mininterval=1.0)
        for folder, dirnames, filenames in os.walk(root):
            dirnames.sort()
            folder = Path(folder)
            names = set(filenames)
            audio_stems = {Path(n).stem for n in filenames if Path(n).suffix.lower() in AUDIO_EXTENSIONS}
            for name in sorted(filenames):
                progress.update()
                file = folder / name
                suffix = file.suffix.lower()
                clip_id = str(file.relative_to(root).with_suffix("")).replace(os.sep, "__")
                if suffix in transcript_extensions and file.stem not in audio_stems:
                    skips.add(clip_id, str(file), "missing",
                              f"transcript without an audio file ({', '.join(AUDIO_EXTENSIONS)})", "source")
                    continue
                if suffix not in AUDIO_EXTENSIONS or not file.is_file():
                    continue
                labels = _labels_from_path(file.relative_to(root), levels)
                transcript = next((file.with_suffix(ext) for ext in transcript_extensions
                                   if file.with_suffix(ext).name in names), None)
                if transcript is None:
                    skips.add(clip_id, str(file), "missing_transcript",
                              f"no {' or '.join(transcript_extensions)} file beside it", "source")
                    continue
                yield {
                    "id": clip_id, "audio": str(file), "text": _read_transcript(transcript),
                    "speaker": labels.get("speaker") or speaker or file.parent.name,
                    "dialect": labels.get("dialect") or dialect, "language": labels.get("language") or language or "",
                    "source": f"folder:{file.relative_to(root)}", "expected_duration": None,
                }
        progress.close()

    dataset = records_to_dataset(records())
    description = {"kind": "folder", "path": str(root), "label_levels": label_levels, "speaker": speaker,
                   "dialect": dialect}
    return SourceResult(dataset, skips, description)


def _read_transcript(path: Path) -> str:
    """The transcript text; bytes that are not UTF-8 become U+FFFD (a counted `garbage_text` skip later)."""
    return path.read_bytes().decode("utf-8", errors="replace").strip()


def _labels_from_path(relative: Path, levels: list[str]) -> dict[str, str]:
    parents = list(relative.parent.parts)
    return {level: value for level, value in zip(levels, parents) if level != "_"}


# ----------------------------------------------------------------------------------------------
# Manifest (csv / json / jsonl)
# ----------------------------------------------------------------------------------------------

MANIFEST_AUDIO_KEYS = ("audio_path", "audio", "path", "file", "filename", "wav")


def iter_manifest_rows(path: str | os.PathLike) -> Iterator[dict]:
    """Rows of a csv/tsv/json/jsonl manifest; csv, tsv and jsonl are read a line at a time."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".json", ".jsonl"):
        raise ValueError(f"{path}: manifest must be .csv, .tsv, .json or .jsonl")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        if suffix == ".jsonl":
            for n, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{n}: not valid JSON ({err}); fix or delete the line") from err
        elif suffix == ".json":
            data = json.load(f)
            if isinstance(data, dict):  # {"data": [...]} or {"rows": [...]}
                data = next((v for v in data.values() if isinstance(v, list)), None)
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON list of objects like "
                                 '[{"audio_path": ..., "text": ..., "language": ..., "duration": ...}]')
            yield from data
        else:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            for row in reader:
                # An unbalanced quote makes csv read the following lines into one field: rows would vanish.
                if any(isinstance(v, str) and "\n" in v for v in row.values()):
                    raise ValueError(f"{path}: the record ending at line {reader.line_num} spans several lines: an "
                                     "unbalanced quote (\") in it swallows the lines after it. Fix or escape the quote.")
                yield row


def read_manifest_rows(path: str | os.PathLike) -> list[dict]:
    return list(iter_manifest_rows(path))


def from_manifest(
    path: str | os.PathLike,
    *,
    speaker: str | None = None,
    dialect: str | None = None,
    language: str | None = None,
    column_map: dict[str, str] | None = None,
) -> SourceResult:
    """Read a csv/tsv/json/jsonl manifest of `{"audio_path", "text", ...}` rows (paths relative to the manifest).

    Optional per-row `speaker`, `dialect`, `language`, `duration`, `id`; `speaker`/`dialect`/`language`
    arguments fill rows that lack them (dialect falls back to the row's language). `column_map` renames
    manifest keys onto those names, e.g. {"text": "transcript"}.
    """
    path = Path(path)
    column_map = dict(column_map or {})
    skips, count = SkipReport(), 0

    def records():
        nonlocal count
        for n, row in enumerate(iter_manifest_rows(path), start=1):
            count = n
            where = f"{path.name} row {n}"
            if not isinstance(row, dict):
                skips.add(where, str(path), "bad_manifest_row", f"{where}: not an object: {str(row)[:80]!r}", "source")
                continue
            row = {**row, **{schema: row[col] for schema, col in column_map.items() if col in row}}
            audio_key = next((k for k in MANIFEST_AUDIO_KEYS if row.get(k)), None)
            if audio_key is None or "text" not in row:
                raise SchemaError(f"{where}: needs an audio path ({' / '.join(MANIFEST_AUDIO_KEYS)}) and 'text'; "
                                  f"it has {sorted(k for k in row if k is not None)}. Rename with --column_map "
                                  "text=<key>,audio_path=<key>.")
            if None in row:  # a csv line with more fields than the header (a broken quote, a stray comma)
                skips.add(str(row.get("id") or Path(str(row[audio_key])).stem), str(row[audio_key]),
                          "bad_manifest_row", f"{where}: {len(row[None])} field(s) more than the header; fix the "
                          "quoting of that line", "source")
                continue
            audio = Path(str(row[audio_key]))
            audio = audio if audio.is_absolute() else path.parent / audio
            row_language = row.get("language") or language or ""
            row_dialect = row.get("dialect") or dialect or row_language
            row_speaker = row.get("speaker") or speaker
            if not row_dialect or not row_speaker:
                raise SchemaError(f"{where}: no {'dialect' if not row_dialect else 'speaker'} (row keys {sorted(row)}); "
                                  "add it to the manifest or pass --dialect/--speaker for all rows.")
            try:
                expected = float(row["duration"]) if row.get("duration") not in (None, "") else None
            except (TypeError, ValueError):
                expected = None
            yield {
                "id": str(row.get("id") or audio.stem), "audio": str(audio), "text": str(row.get("text") or ""),
                "speaker": str(row_speaker), "dialect": str(row_dialect), "language": str(row_language),
                "source": f"manifest:{where}", "expected_duration": expected,
            }

    dataset = records_to_dataset(records())
    description = {"kind": "manifest", "path": str(path), "rows": count}
    return SourceResult(dataset, skips, description)


# ----------------------------------------------------------------------------------------------
# Any Hugging Face dataset (Hub id or local path)
# ----------------------------------------------------------------------------------------------

def from_hf(
    name_or_path: str,
    *,
    split: str = "train",
    config_name: str | None = None,
    column_map: dict[str, str] | None = None,
    speaker: str | None = None,
    dialect: str | None = None,
    language: str | None = None,
    mapping: DialectMapping | str | os.PathLike | dict | None = None,
    keep_unmapped: bool = False,
    revision: str | None = None,
) -> SourceResult:
    """Read any HF dataset: a Hub id, a `save_to_disk` folder, or a local data folder/file for `load_dataset`.

    `column_map` maps schema names to the dataset's columns, e.g.
    {"text": "sentence", "speaker": "client_id", "dialect": "accent"}; unmapped schema names use the column
    of the same name when it exists, else the `speaker`/`dialect`/`language` constants. A named column that
    does not exist fails at once, listing the available columns.
    """
    from datasets import Audio, DatasetDict, load_dataset, load_from_disk

    if os.path.isdir(name_or_path) and any(
            os.path.exists(os.path.join(name_or_path, f)) for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
        data = load_from_disk(name_or_path)
        if isinstance(data, DatasetDict):
            if split not in data:
                raise ValueError(f"{name_or_path}: no split {split!r}; available splits: {list(data)}")
            data = data[split]
    else:
        from recipes.common import explain_hub_errors

        with explain_hub_errors(f"dataset {name_or_path!r}", "python -m data_prep demo --out outputs/demo"):
            data = load_dataset(name_or_path, config_name, split=split, revision=revision)

    column_map = dict(column_map or {})
    available = list(data.column_names)
    wrong = {schema: col for schema, col in column_map.items() if col not in available}
    if wrong:
        raise SchemaError(f"{name_or_path}: column(s) {wrong} named in the column mapping do not exist. "
                          f"Available columns: {available}")
    unknown = [k for k in column_map if k not in RAW_COLUMNS or k in ("source", "expected_duration")]
    if unknown:
        raise ValueError(f"column mapping keys {unknown} are not schema columns; use {['id', 'audio', 'text', 'speaker', 'dialect', 'language']}")
    for name in ("id", "audio", "text", "speaker", "dialect", "language"):
        if name not in column_map and name in available:
            column_map[name] = name
    require_columns(column_map, ["audio", "text"], what=f"{name_or_path} (after --column_map)")
    for name, constant in (("speaker", speaker), ("dialect", dialect)):
        if name not in column_map and not constant:
            raise SchemaError(f"{name_or_path}: no '{name}' column and no --{name} constant. Available columns: "
                              f"{available}. Map one with --column_map {name}=<column> or pass --{name}.")

    audio_column = column_map["audio"]
    if isinstance(data.features[audio_column], Audio):
        # keep the encoded bytes/path: decoding, resampling and checks happen in `prepare`
        data = data.cast_column(audio_column, Audio(decode=False))
    dialect_mapping = _as_mapping(mapping, keep_unmapped)
    keep = [c for c in dict.fromkeys(column_map.values())]
    data = data.select_columns(keep)

    def to_raw(example, index):
        def get(name, constant=None):
            return example[column_map[name]] if name in column_map else constant

        raw_dialect = get("dialect", dialect)
        mapped = dialect_mapping.normalize(raw_dialect)
        if "id" in column_map:
            row_id = str(get("id"))
        else:  # the audio file name when the cell has one (Hub datasets usually keep it), else the row number
            cell = example[audio_column]
            name = cell.get("path") if isinstance(cell, dict) else cell if isinstance(cell, str) else None
            row_id = Path(name).stem if name else f"{Path(name_or_path).name}_{split}_{index}"
        out = {
            "id": row_id,
            "text": str(get("text") or ""), "speaker": str(get("speaker", speaker) or ""),
            "dialect": mapped or "", "language": str(get("language", language) or ""),
            "source": f"hf:{name_or_path}:{split}:{index}", "expected_duration": None,
            PRE_SKIP_COLUMN: "", PRE_SKIP_DETAIL_COLUMN: "",
        }
        if mapped is None:
            out[PRE_SKIP_COLUMN] = "unmapped_dialect" if raw_dialect else "no_dialect_label"
            out[PRE_SKIP_DETAIL_COLUMN] = f"dialect label {raw_dialect!r} is not in the mapping"
        return out

    data = data.map(to_raw, with_indices=True, desc=f"reading {name_or_path}",
                    remove_columns=[c for c in keep if c != audio_column])
    if audio_column != "audio":
        data = data.rename_column(audio_column, "audio")
    description = {"kind": "hf", "name_or_path": name_or_path, "split": split, "config_name": config_name,
                   "column_map": column_map}
    return SourceResult(data, SkipReport(), description)
