"""Data for XTTS adapter training: sources, up-front length/token filtering, DVAE codes, batches.

Upstream's XTTSDataset ignores the index it is given, draws a random row with replacement and
silently replaces rows it cannot use. Here every limit is applied once, before training, with a
counted skip report, and `__getitem__(i)` always returns row i.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data_prep.speakers import other_clips_of_same_speaker
from recipes.xtts.modeling import GPT_SAMPLE_RATE

logger = logging.getLogger(__name__)

LJSPEECH_METADATA = "metadata.csv"


def is_ljspeech_folder(path: str) -> bool:
    return (Path(path) / LJSPEECH_METADATA).is_file() and (Path(path) / "wavs").is_dir()


def read_ljspeech(folder: str, language: str, speaker: str | None = None):
    """An LJSpeech folder (`metadata.csv` with `id|text` or `id|text|normalized`, audio in `wavs/<id>.wav`)
    as a schema-like Dataset. The normalized column is used when present, as the ljspeech formatter does."""
    import soundfile as sf
    from datasets import Audio, Dataset

    folder_path = Path(folder)
    speaker = speaker or folder_path.name
    rows = {"id": [], "audio": [], "text": [], "speaker": [], "dialect": [], "language": [], "duration": []}
    with open(folder_path / LJSPEECH_METADATA, encoding="utf-8", newline="") as handle:
        for line_number, fields in enumerate(csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE), start=1):
            if not fields or not "".join(fields).strip():
                continue
            if len(fields) not in (2, 3):
                raise ValueError(f"{folder_path / LJSPEECH_METADATA}:{line_number}: expected `id|text` or "
                                 f"`id|text|normalized`, got {len(fields)} fields: {'|'.join(fields)[:80]!r}")
            clip_id, text = fields[0].strip(), (fields[2] if len(fields) == 3 and fields[2].strip() else fields[1])
            wav = folder_path / "wavs" / f"{clip_id}.wav"
            if not wav.is_file():
                raise FileNotFoundError(f"{folder_path / LJSPEECH_METADATA}:{line_number}: no audio file {wav}; "
                                        "fix the id or remove the line")
            rows["id"].append(clip_id)
            rows["audio"].append(str(wav))
            rows["text"].append(text.strip())
            rows["speaker"].append(speaker)
            rows["dialect"].append(language)
            rows["language"].append(language)
            rows["duration"].append(sf.info(str(wav)).duration)
    if not rows["id"]:
        raise ValueError(f"{folder_path / LJSPEECH_METADATA}: no rows")
    return Dataset.from_dict(rows).cast_column("audio", Audio(sampling_rate=GPT_SAMPLE_RATE))


def load_splits(dataset: str, *, language: str, dataset_config: str | None = None, languages=None, dialects=None,
                speakers=None, validation_fraction: float = 0.1, seed: int = 0, ljspeech_speaker: str | None = None):
    """train/validation at 22.05 kHz from the shared loader, or from an LJSpeech folder."""
    from datasets import Audio, DatasetDict

    from data_prep.loading import load_prepared_dataset, split_train_validation

    if is_ljspeech_folder(dataset):
        data = split_train_validation(read_ljspeech(dataset, language, ljspeech_speaker), validation_fraction, seed)
    else:
        data = load_prepared_dataset(dataset, config_name=dataset_config, sampling_rate=GPT_SAMPLE_RATE,
                                     languages=languages, dialects=dialects, speakers=speakers,
                                     validation_fraction=validation_fraction, seed=seed)
    return DatasetDict({k: v.cast_column("audio", Audio(sampling_rate=GPT_SAMPLE_RATE)) for k, v in data.items()})


@dataclass
class Limits:
    max_audio_samples: int = 255_995  # upstream max_wav_length (~11.6 s at 22.05 kHz)
    min_audio_samples: int = 11_025  # upstream drops clips under 0.5 s
    max_text_tokens: int = 200


@dataclass
class SkipReport:
    split: str
    total: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=lambda: defaultdict(list))

    def skip(self, reason: str, row_id: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(row_id)

    def summary(self) -> str:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.skipped.items())) or "none"
        return f"[{self.split}] kept {self.kept}/{self.total}; skipped {sum(self.skipped.values())} ({reasons})"

    def as_dict(self) -> dict:
        return {"split": self.split, "total": self.total, "kept": self.kept, "skipped": dict(self.skipped),
                "examples": dict(self.examples)}


def tokenize_and_filter(split, tokenizer, language: str, limits: Limits, name: str, dialect_tags=()):
    """Tokenise each row with ITS language tag and drop (counted) rows with unknown tokens, too many
    tokens or audio outside the limits (from the `duration` column; exact sample counts are rechecked
    in `add_audio_codes`). The tag comes from the row's `language` column ("pt-br" -> "pt"; with a
    dialect tag in `dialect_tags`, "ca" + dialect "balear" -> "ca_balear"), so original-language rows
    can be mixed in against forgetting; `language` is only the fallback for a dataset without that
    column. Returns (dataset with `text_ids` and `xtts_language`, SkipReport)."""
    from recipes.xtts.text import xtts_tag

    report = SkipReport(name, total=len(split))
    bad_ids = {tokenizer.tokenizer.token_to_id("[UNK]"), tokenizer.tokenizer.token_to_id("[STOP]")}
    row_languages = split["language"] if "language" in split.column_names else [language] * len(split)
    row_dialects = split["dialect"] if "dialect" in split.column_names else [None] * len(split)
    tags = [xtts_tag(lang or language, dialect, dialect_tags) for lang, dialect in zip(row_languages, row_dialects)]
    unknown = Counter(t for t in tags if tokenizer.tokenizer.token_to_id(f"[{'zh-cn' if t == 'zh' else t}]") is None)
    if unknown:
        raise ValueError(f"[{name}] rows in languages the model has no tag for: {dict(unknown)} (it knows "
                         f"{tokenizer.languages}); keep only known ones with `languages:` or teach a new one with "
                         "`new_language:`")
    keep, text_ids, kept_tags = [], [], []
    from tqdm.auto import tqdm

    rows = zip(split["id"], split["text"], split["duration"], tags)
    for index, (row_id, text, duration, tag) in enumerate(tqdm(rows, total=len(split), desc=f"tokenise ({name})")):
        ids = tokenizer.encode(text, tag) if text and text.strip() else []
        samples = duration * GPT_SAMPLE_RATE
        if not ids:
            report.skip("empty_text", row_id)
        elif bad_ids & set(ids):
            report.skip("unknown_tokens", row_id)
        elif len(ids) > limits.max_text_tokens:
            report.skip("text_too_long", row_id)
        elif samples > limits.max_audio_samples + GPT_SAMPLE_RATE * 0.05:  # margin: rechecked exactly later
            report.skip("audio_too_long", row_id)
        elif samples < limits.min_audio_samples - GPT_SAMPLE_RATE * 0.05:
            report.skip("audio_too_short", row_id)
        else:
            keep.append(index)
            text_ids.append(ids)
            kept_tags.append(tag)
    split = split.select(keep).add_column("text_ids", text_ids).add_column("xtts_language", kept_tags)
    return split, report


def add_audio_codes(split, coder, limits: Limits, report: SkipReport, device="cpu", cache_key: str = ""):
    """DVAE codes for every clip (the DVAE is deterministic, so once), exact length check, counted.

    `cache_key` (the DVAE file's identity) makes the `map` fingerprint deterministic, so other ranks
    and later runs reuse the cached codes instead of hashing the DVAE weights.
    """
    from datasets.fingerprint import Hasher

    from data_prep.audio import decode_audio

    coder = coder.to(device)

    def encode(audio):
        wave, _ = decode_audio(audio, target_sr=GPT_SAMPLE_RATE)
        n = len(wave)
        if n > limits.max_audio_samples or n < limits.min_audio_samples:
            return {"audio_codes": np.zeros(0, np.int16), "num_samples": n}
        codes = coder.encode(torch.from_numpy(wave).to(device))
        return {"audio_codes": codes.cpu().numpy().astype(np.int16), "num_samples": n}

    fingerprint = Hasher.hash((split._fingerprint, cache_key, limits.max_audio_samples, limits.min_audio_samples))
    split = split.map(encode, input_columns=["audio"], desc=f"DVAE codes ({report.split})",
                      new_fingerprint=fingerprint)
    lengths = split["num_samples"]
    keep = []
    for index, (row_id, n) in enumerate(zip(split["id"], lengths)):
        if n > limits.max_audio_samples:
            report.skip("audio_too_long", row_id)
        elif n < limits.min_audio_samples:
            report.skip("audio_too_short", row_id)
        else:
            keep.append(index)
    split = split.select(keep)
    report.kept = len(split)
    return split


def write_skip_reports(reports: list[SkipReport], output_dir: str) -> Path:
    path = Path(output_dir) / "skip_report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_dict() for r in reports], indent=2))
    return path


class XttsTrainingDataset(torch.utils.data.Dataset):
    """Row i -> text ids, DVAE codes and a 3-6 s conditioning slice of the same speaker.

    The slice comes from a different clip of that speaker when there is one (nothing to mask), else
    from the target clip itself (at most half of it), and then its sample span is returned so the
    loss can mask those codes. Validation is deterministic: mid-length slice, from the start.
    """

    def __init__(self, split, min_cond_samples: int, max_cond_samples: int, is_eval: bool = False):
        self.meta = split.remove_columns(["audio"])
        self.audio = split.select_columns(["audio"])
        self.min_cond, self.max_cond = min_cond_samples, max_cond_samples
        self.is_eval = is_eval
        self.other_clips = other_clips_of_same_speaker(self.meta)

    def __len__(self):
        return len(self.meta)

    def _wave(self, index: int) -> np.ndarray:
        from data_prep.audio import decode_audio

        return decode_audio(self.audio[index]["audio"], target_sr=GPT_SAMPLE_RATE)[0]

    def __getitem__(self, index: int) -> dict:
        row = self.meta[index]
        others = self.other_clips[index]
        length = (self.min_cond + self.max_cond) // 2 if self.is_eval else random.randint(self.min_cond, self.max_cond)
        if others:
            source = others[0] if self.is_eval else random.choice(others)
            wave = self._wave(source)
            length = min(length, len(wave))
        else:
            wave = self._wave(index)
            length = min(length, len(wave) // 2)  # leave at least half of the target unmasked
        start = 0 if self.is_eval else random.randint(0, len(wave) - length)
        span = (-1, -1) if others else (start, start + length)
        return {
            "text_ids": torch.tensor(row["text_ids"], dtype=torch.long),
            "audio_codes": torch.tensor(row["audio_codes"], dtype=torch.long),
            "cond_wave": torch.from_numpy(np.ascontiguousarray(wave[start : start + length], dtype=np.float32)),
            "prompt_span": torch.tensor(span, dtype=torch.long),
        }


@dataclass
class XttsCollator:
    """Right-pads text ids, codes and conditioning waves; lengths travel alongside (the loss masks)."""

    text_pad_id: int = 0

    def __call__(self, items: list[dict]) -> dict:
        from torch.nn.utils.rnn import pad_sequence

        return {
            "text_ids": pad_sequence([x["text_ids"] for x in items], batch_first=True, padding_value=self.text_pad_id),
            "text_lengths": torch.tensor([len(x["text_ids"]) for x in items]),
            "audio_codes": pad_sequence([x["audio_codes"] for x in items], batch_first=True),
            "code_lengths": torch.tensor([len(x["audio_codes"]) for x in items]),
            "cond_waves": pad_sequence([x["cond_wave"] for x in items], batch_first=True),
            "cond_lengths": torch.tensor([len(x["cond_wave"]) for x in items]),
            "prompt_spans": torch.stack([x["prompt_span"] for x in items]),
        }
