"""Pocket TTS data: manifests, text normalisation, same-speaker voice prompts and the collator.

Rows come from `data_prep.loading.load_prepared_dataset` (schema columns) or from a JSON manifest
`[{"audio_path", "text", "language", "duration", optional "speaker"/"client_id"}]`.
Every training target gets its voice prompt from ANOTHER clip of the same speaker (Common Voice:
the same `client_id`), so prompt and target never overlap; clips whose speaker has no other clip
are skipped and counted.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data_prep.speakers import other_clips_of_same_speaker

logger = logging.getLogger(__name__)

SAMPLING_RATE = 24_000
MANIFEST_KEYS = ("audio_path", "text", "language", "duration")


# --- text ------------------------------------------------------------------------------------------

def language_tag(language: str) -> str:
    """The piece a shared multilingual model reads first: Pocket has no language id of its own."""
    return f"<{language}>"


def text_options(config) -> dict:
    """The text settings of a pocket_tts `Config` that `generate_audio` applies before tokenising (the
    released configs replace e.g. curly apostrophes); training must apply the same ones."""
    return {"replace_characters": dict(config.replace_characters or {}),
            "remove_semicolons": bool(config.remove_semicolons),
            "append_terminal_punctuation": bool(config.append_terminal_punctuation),
            "capitalize_first_letter": bool(config.capitalize_first_letter)}


def normalize_text(text: str, language: str | None = None, use_language_tag: bool = False,
                   options: dict | None = None) -> str:
    """The text exactly as `pocket_tts` will present it at inference (capital first letter, final
    punctuation, the model config's character replacements given as `options`, see `text_options`),
    so training and generation see the same strings; optionally language-tagged."""
    from pocket_tts.models.text_chunking import prepare_text_prompt

    options = {"remove_semicolons": False, **(options or {})}
    prepared, _ = prepare_text_prompt(text, pad_with_spaces_for_short_inputs=False, **options)
    if use_language_tag:
        if not language:
            raise ValueError(f"use_language_tag needs a language for text {text!r}")
        return f"{language_tag(language)} {prepared}"
    return prepared


def split_sentences(text: str) -> list[str]:
    """Sentences, so that each generation chunk can carry its own language tag."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?\u2026])\s+", text.strip())]
    return [p for p in parts if p]


# --- manifests (import / export) -------------------------------------------------------------------

def read_manifest_dataset(path: str, sampling_rate: int = SAMPLING_RATE):
    """A schema `Dataset` from a JSON (list) or JSON-lines manifest; relative paths are resolved
    against the manifest's folder. Missing keys / files fail naming the row and the fix."""
    from datasets import Dataset

    from data_prep.schema import schema_features

    base = Path(path).parent
    with open(path, encoding="utf-8") as f:
        content = f.read()
    rows = json.loads(content) if content.lstrip().startswith("[") else [json.loads(x) for x in content.splitlines() if x.strip()]
    columns: dict[str, list] = defaultdict(list)
    for number, row in enumerate(rows):
        missing = [k for k in MANIFEST_KEYS if k not in row]
        if missing:
            raise ValueError(f"{path}: row {number} lacks {missing} (has {sorted(row)}); every row needs {list(MANIFEST_KEYS)}.")
        audio_path = Path(row["audio_path"])
        audio_path = audio_path if audio_path.is_absolute() else base / audio_path
        if not audio_path.exists():
            raise FileNotFoundError(f"{path}: row {number}: audio file {audio_path} does not exist; fix the path or drop the row.")
        speaker = row.get("speaker") or row.get("client_id") or f"{audio_path.stem}"
        columns["id"].append(str(row.get("id") or audio_path.stem))
        columns["audio"].append(str(audio_path))
        columns["text"].append(row["text"])
        columns["speaker"].append(str(speaker))
        columns["dialect"].append(str(row.get("dialect") or row["language"]).lower())
        columns["language"].append(str(row["language"]).lower())
        columns["duration"].append(float(row["duration"]))
    return Dataset.from_dict(dict(columns), features=schema_features(sampling_rate))


def write_manifest(dataset, out_dir: str, audio_subdir: str = "clips") -> Path:
    """Export a schema dataset as WAV files + `manifest.json` in the manifest format."""
    from tqdm.auto import tqdm

    from data_prep.audio import decode_audio, write_audio

    out = Path(out_dir)
    (out / audio_subdir).mkdir(parents=True, exist_ok=True)
    rows = []
    for row in tqdm(dataset, desc="exporting manifest", total=len(dataset)):
        wave, sr = decode_audio(row["audio"])
        relative = f"{audio_subdir}/{row['id']}.wav"
        write_audio(out / relative, wave, sr)
        rows.append({"audio_path": relative, "text": row["text"], "language": row.get("language") or row["dialect"],
                     "duration": round(len(wave) / sr, 3), "speaker": row["speaker"], "id": row["id"]})
    path = out / "manifest.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def load_recipe_dataset(dataset: str, *, languages=None, validation_fraction=0.1, seed=0, sampling_rate=SAMPLING_RATE):
    """`demo` | a save_to_disk folder | a Hub id (data_prep.loading) | a `.json`/`.jsonl` manifest."""
    from datasets import Audio, DatasetDict

    from data_prep.loading import load_prepared_dataset, split_train_validation

    if dataset.endswith((".json", ".jsonl")) and os.path.isfile(dataset):
        data = read_manifest_dataset(dataset, sampling_rate)
        if languages:
            keep = set(languages)
            data = data.filter(lambda lang: lang in keep, input_columns=["language"])
        split = split_train_validation(data, validation_fraction, seed)
        return DatasetDict({k: v.cast_column("audio", Audio(sampling_rate=sampling_rate)) for k, v in split.items()})
    return load_prepared_dataset(dataset, sampling_rate=sampling_rate, languages=languages,
                                 validation_fraction=validation_fraction, seed=seed)


def row_language(row: dict) -> str:
    return row.get("language") or row["dialect"]


# --- voice prompts ---------------------------------------------------------------------------------

def attach_prompt_candidates(dataset, max_duration: float, min_duration: float = 0.3, what: str = "train",
                             pool=None):
    """Add `row_index` and `prompt_candidates` (indices into `pool`, default `dataset` itself, of the
    speaker's OTHER clips) and drop rows that cannot train: empty text, too long/short, or a speaker
    with no other clip in the pool. Validation rows take prompts from the train split (pass it as
    `pool`, already processed). Returns (dataset, Counter of skip reasons); the counts are logged."""
    skipped: Counter = Counter()
    n_rows = len(dataset)
    usable = []
    for i, (text, duration) in enumerate(zip(dataset["text"], dataset["duration"])):
        if not text or not text.strip():
            skipped["empty text"] += 1
        elif duration > max_duration:
            skipped[f"longer than max_duration_sec={max_duration}"] += 1
        elif duration < min_duration:
            skipped[f"shorter than {min_duration}s"] += 1
        else:
            usable.append(i)
    dataset = dataset.select(usable)
    candidates = other_clips_of_same_speaker(dataset, pool)
    keep = [i for i, others in enumerate(candidates) if others]
    if len(keep) < len(dataset):
        skipped["speaker has no other clip for a voice prompt"] += len(dataset) - len(keep)
    if skipped:
        logger.warning("%s: skipped %d of %d rows: %s", what, sum(skipped.values()), n_rows, dict(skipped))
    if not keep:
        raise ValueError(f"{what}: no usable rows left ({dict(skipped)}). Pocket needs >= 2 clips per speaker "
                         "(voice prompt from another clip of the same speaker); manifests need a \"speaker\" or "
                         "\"client_id\" per row.")
    dataset = dataset.select(keep)
    # Within one split, dropping rows shifts the indices the candidates point at; the dropped rows were their
    # speakers' only clips, so recomputing on the kept rows loses no prompt.
    candidates = other_clips_of_same_speaker(dataset) if pool is None else [candidates[i] for i in keep]
    dataset = dataset.add_column("row_index", list(range(len(dataset))))
    dataset = dataset.add_column("prompt_candidates", candidates)
    return dataset, skipped


TRIM_MODES = ("vad", "energy", "none")


def trim_trailing_silence(wave: np.ndarray, sr: int, floor_db: float = 35.0, keep_after_s: float = 0.2) -> np.ndarray:
    """Energy trim (the `energy` mode): cut trailing audio more than `floor_db` below the loudest 20 ms frame,
    keeping `keep_after_s`. Clean audio only: with noise at SNR <= 35 dB the noisy tail counts as "loud" and
    nothing is cut; the default `vad` mode (data_prep.trim) survives noise."""
    frame = int(0.02 * sr)
    n = len(wave) // frame
    if n == 0:
        return wave
    rms = np.sqrt(np.mean(wave[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-12
    db = 20 * np.log10(rms)
    last_loud = int(np.nonzero(db > db.max() - floor_db)[0][-1])
    end = min(len(wave), (last_loud + 1) * frame + int(keep_after_s * sr))
    return wave[:end]


def trim_clip(wave: np.ndarray, sr: int, mode: str = "vad", keep_after_s: float = 0.2) -> tuple[int, int]:
    """(start, end) sample bounds of `wave` after trimming: `vad` cuts both ends with silero-vad (keeping
    0.1 s before the first speech and `keep_after_s` after the last: the EOS point), `energy` only the end,
    `none` nothing."""
    if mode == "none":
        return 0, len(wave)
    if mode == "energy":
        return 0, len(trim_trailing_silence(wave, sr, keep_after_s=keep_after_s))
    if mode != "vad":
        raise ValueError(f"trim mode must be one of {TRIM_MODES}, got {mode!r}")
    from data_prep.trim import trim_silence

    trimmed, result = trim_silence(wave, sr, keep_after_s=keep_after_s)
    start = int(round(result.start_cut_s * sr))
    return start, start + len(trimmed)


def prepare_prompt(wave: np.ndarray, sr: int, max_seconds: float, rng: random.Random) -> np.ndarray:
    """A <= max_seconds window of another clip (already trimmed), ending on a short pause as at inference
    (pocket_tts' own `end_on_pause`, which `get_state_for_audio_prompt` applies). `max_seconds` <= 0 keeps
    the whole clip (the distillation stage trains on full-length prompts)."""
    from pocket_tts.data.audio_utils import end_on_pause

    limit = int(max_seconds * sr)
    if limit > 0 and len(wave) > limit:
        start = rng.randint(0, len(wave) - limit)
        wave = wave[start: start + limit]
    return end_on_pause(torch.from_numpy(np.ascontiguousarray(wave))[None], sr)[0].numpy()


# --- collator --------------------------------------------------------------------------------------

def _pad_waves(waves: list[np.ndarray], multiple: int, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves])
    width = int(-(-int(lengths.max()) // multiple) * multiple) + extra
    out = torch.zeros(len(waves), 1, width)
    for i, w in enumerate(waves):
        out[i, 0, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return out, lengths


@dataclass
class PocketCollator:
    """Decodes target + prompt audio, trims, tokenises; Mimi encoding happens on the device.

    Targets are padded to whole Mimi frames plus `frame_size` so that every clip, the longest
    included, has at least one frame after its speech where EOS is the target.
    """

    prompt_pool: object  # the split `prompt_candidates` index into (the train split)
    tokenizer_path: str
    frame_size: int = 1920
    sampling_rate: int = SAMPLING_RATE
    max_prompt_seconds: float = 5.0
    use_language_tag: bool = False
    seed: int = 0
    text_options: dict = field(default_factory=dict)  # `text_options(model config)`: as at inference
    trim: str = "vad"  # vad | energy | none: how target and prompt silences are cut (see trim_clip)
    _bounds: dict = field(default_factory=dict, init=False, repr=False)  # clip id -> trim bounds (VAD once per clip)
    _sp: object = field(default=None, init=False, repr=False)

    def _tokenizer(self):
        if self._sp is None:
            import sentencepiece

            self._sp = sentencepiece.SentencePieceProcessor(model_file=self.tokenizer_path)
        return self._sp

    def _batch_rng(self, features: list[dict]) -> random.Random:
        """Prompt choice and crop for this batch, from the seed and the batch's rows only.

        Not a generator carried across batches: that state lives in the collator (in a dataloader worker, with
        several of them), is not in any checkpoint, and a resumed run would draw other prompts than the
        uninterrupted one. Shuffled epochs give other batches, hence other prompt choices, each epoch.
        """
        import hashlib

        key = "\x1f".join(str(row.get("id", row.get("text"))) for row in features)
        return random.Random(int.from_bytes(hashlib.sha256(f"{self.seed}\x1e{key}".encode()).digest()[:8], "big"))

    def _trimmed(self, row: dict, keep_after_s: float) -> np.ndarray:
        from data_prep.audio import decode_audio

        wave, _ = decode_audio(row["audio"], target_sr=self.sampling_rate)
        key = (row.get("id"), keep_after_s, len(wave))
        if key not in self._bounds:
            self._bounds[key] = trim_clip(wave, self.sampling_rate, self.trim, keep_after_s)
        start, end = self._bounds[key]
        return wave[start:end]

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        sp = self._tokenizer()
        rng = self._batch_rng(features)
        targets, prompts, token_ids = [], [], []
        for row in features:
            targets.append(self._trimmed(row, keep_after_s=0.2))  # EOS 0.2 s after the last speech
            other = self.prompt_pool[rng.choice(row["prompt_candidates"])]
            prompts.append(prepare_prompt(self._trimmed(other, keep_after_s=0.0), self.sampling_rate,
                                          self.max_prompt_seconds, rng))
            text = normalize_text(row["text"], row_language(row), self.use_language_tag, self.text_options)
            ids = sp.encode(text, out_type=int)
            if not ids:
                raise ValueError(f"row {row.get('id')}: text {row['text']!r} tokenises to nothing")
            token_ids.append(ids)
        audio, audio_lengths = _pad_waves(targets, self.frame_size, extra=self.frame_size)
        prompt_audio, prompt_lengths = _pad_waves(prompts, self.frame_size)
        text_lengths = torch.tensor([len(t) for t in token_ids])
        text = torch.zeros(len(token_ids), int(text_lengths.max()), dtype=torch.long)
        for i, ids in enumerate(token_ids):
            text[i, : len(ids)] = torch.tensor(ids)
        return {"audio": audio, "audio_lengths": audio_lengths, "prompt_audio": prompt_audio,
                "prompt_lengths": prompt_lengths, "text_ids": text, "text_lengths": text_lengths}
