"""F5-TTS data path: vocab, text tokens, log-mel, frame-budget batches and the collator.

Everything here must produce exactly what upstream `f5-tts` inference feeds the model, otherwise a
fine-tune learns a front end it never sees at inference:
- text goes through upstream's `convert_char_to_pinyin` (it also splits Latin words at accented letters,
  "rápida" -> "rá pida"; released checkpoints learned that) and then a per-character vocab lookup where
  unknown symbols become id 0 (space) and padding is -1;
- the mel is the 24 kHz / 100-bin / hop 256 log-mel of the vocoder the checkpoint was trained for.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

SAMPLING_RATE = 24_000
N_MELS = 100
HOP_LENGTH = 256
WIN_LENGTH = 1024
N_FFT = 1024
MEL_SPEC_TYPES = ("vocos", "bigvgan")


# --- vocab -------------------------------------------------------------------------------------------

def upstream_vocab_path() -> Path:
    """The 2545-symbol Emilia vocab bundled with f5-tts (LF line endings), used by every release."""
    return Path(str(files("f5_tts").joinpath("infer/examples/vocab.txt")))


def read_vocab(path: str | Path) -> list[str]:
    """One symbol per line; the line index is the id. Only the newline is stripped: " " is a symbol."""
    with open(path, encoding="utf-8") as handle:  # text mode folds CRLF copies of the vocab into LF
        symbols = [line[:-1] if line.endswith("\n") else line for line in handle]
    if len(set(symbols)) != len(symbols):
        dupes = [s for s, n in Counter(symbols).items() if n > 1]
        raise ValueError(f"{path}: duplicate symbols {dupes[:10]!r}; every line must hold a distinct symbol.")
    check_vocab(symbols, path)
    return symbols


def check_vocab(symbols: list[str], source: str | Path = "vocab") -> None:
    """Upstream's char/pinyin tokenizers assert that " " is id 0: unknown symbols map to 0, so with another
    symbol there every unknown character would be read as that symbol instead of a space."""
    if not symbols or symbols[0] != " ":
        first = repr(symbols[0]) if symbols else "nothing (empty file)"
        raise ValueError(f"{source}: id 0 (the first line) must be a single space, found {first}. F5-TTS maps unknown "
                         "symbols to id 0; use the vocab.txt the checkpoint was trained with (the Emilia vocab "
                         "starts with a line holding one space), and do not strip or sort it.")


def initial_rows(new_symbols: list[str], vocab: list[str]) -> list[int | None]:
    """For each new symbol, the vocab id of the symbol its embedding row starts from: the lower-case letter
    ("Ô" -> "ô"), else the letter without its accents ("Ő" -> "O", "ő" -> "o"), else None (random init).
    The new row then reads like a sound the model already says, instead of noise that only training can fix."""
    import unicodedata

    index = {symbol: i for i, symbol in enumerate(vocab)}

    def strip_accents(symbol: str) -> str:
        return "".join(ch for ch in unicodedata.normalize("NFD", symbol) if not unicodedata.combining(ch))

    rows = []
    for symbol in new_symbols:
        candidates = (symbol.lower(), strip_accents(symbol), strip_accents(symbol.lower()))
        rows.append(next((index[c] for c in candidates if c != symbol and c in index), None))
    return rows


def write_vocab(symbols: list[str], path: str | Path) -> Path:
    # Upstream drops the last character of every line, so the final line needs its newline too.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(symbol + "\n" for symbol in symbols)
    return path


def text_to_symbols(texts: list[str]) -> list[list[str]]:
    """Upstream's text processing (rjieba segmentation, `;`->`,`, curly quotes, pinyin for Chinese)."""
    from f5_tts.model.utils import convert_char_to_pinyin

    return convert_char_to_pinyin(list(texts))


@dataclass(frozen=True)
class TextFrontEnd:
    """What text goes through before the vocab lookup, identical at training, evaluation samples and inference:
    the shared normaliser (data_prep.text_normalize: numbers, money, dates, abbreviations -> words) for rows in
    `languages`, nothing for others. A row's language comes from its `language` column; `default_language`
    covers rows without one, the sample texts, and generate.py without --language. Saved in f5_config.yaml."""

    languages: tuple = ()
    default_language: str | None = None

    def __post_init__(self):
        from data_prep.text_normalize import resolve_language

        object.__setattr__(self, "languages", tuple(self.languages or ()))
        for language in self.languages:
            resolve_language(language)  # unknown language: a clear error naming the rule file, before training
        object.__setattr__(self, "_resolved", frozenset(resolve_language(code) for code in self.languages))

    def applies(self, language: str | None) -> bool:
        from data_prep.text_normalize import resolve_language, supported

        language = language or self.default_language
        return bool(language) and supported(language) and resolve_language(language) in self._resolved

    def __call__(self, text: str, language: str | None = None) -> str:
        from data_prep.text_normalize import normalize_text

        language = language or self.default_language
        return normalize_text(text, language) if self.applies(language) else text

    def to_config(self) -> dict:
        return {"normalize_languages": list(self.languages), "default_language": self.default_language}

    @classmethod
    def from_config(cls, config: dict | None) -> "TextFrontEnd":
        config = config or {}
        return cls(tuple(config.get("normalize_languages") or ()), config.get("default_language"))


def row_languages(dataset) -> list[str | None]:
    return list(dataset["language"]) if "language" in dataset.column_names else [None] * len(dataset)


def missing_symbols(texts: list[str], vocab: list[str]) -> Counter:
    """Symbols the vocab lacks (upstream silently turns them into spaces), with their counts."""
    from tqdm.auto import tqdm

    known, texts, chunk = set(vocab), list(texts), 2000
    counts = Counter()
    for start in tqdm(range(0, len(texts), chunk), desc="Checking text symbols against the vocab",
                      disable=len(texts) < 10 * chunk):
        for symbols in text_to_symbols(texts[start:start + chunk]):
            counts.update(s for s in symbols if s not in known)
    return counts


def symbols_to_ids(batch: list[list[str]], vocab_map: dict[str, int]) -> torch.Tensor:
    """Pad with -1 (the text embedding adds 1, so padding lands on the filler row 0)."""
    longest = max(len(s) for s in batch)
    ids = torch.full((len(batch), longest), -1, dtype=torch.long)
    for row, symbols in enumerate(batch):
        ids[row, : len(symbols)] = torch.tensor([vocab_map.get(s, 0) for s in symbols], dtype=torch.long)
    return ids


# --- log-mel -----------------------------------------------------------------------------------------

class LogMel(torch.nn.Module):
    """The log-mel F5-TTS trains on. `vocos`: centred reflect-padded STFT magnitude, HTK filterbank without
    norm; `bigvgan`: manual reflect pad of (n_fft-hop)/2, uncentred STFT, sqrt(re²+im²+1e-9), Slaney
    filterbank. Both take ln(max(x, 1e-5)). Input (b, samples) -> (b, n_mels, frames)."""

    def __init__(self, mel_spec_type: str = "vocos", sampling_rate: int = SAMPLING_RATE, n_mels: int = N_MELS,
                 n_fft: int = N_FFT, win_length: int = WIN_LENGTH, hop_length: int = HOP_LENGTH):
        super().__init__()
        if mel_spec_type not in MEL_SPEC_TYPES:
            raise ValueError(f"mel_spec_type must be one of {MEL_SPEC_TYPES}, got {mel_spec_type!r}")
        import torchaudio.functional as AF

        self.mel_spec_type, self.n_fft, self.win_length, self.hop_length = mel_spec_type, n_fft, win_length, hop_length
        scale = "htk" if mel_spec_type == "vocos" else "slaney"
        filterbank = AF.melscale_fbanks(n_freqs=n_fft // 2 + 1, f_min=0.0, f_max=sampling_rate / 2, n_mels=n_mels,
                                        sample_rate=sampling_rate, norm=None if scale == "htk" else "slaney",
                                        mel_scale=scale)
        self.register_buffer("filterbank", filterbank, persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.mel_spec_type == "vocos":
            spec = torch.stft(wave, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                              window=self.window, center=True, pad_mode="reflect", normalized=False,
                              onesided=True, return_complex=True).abs()
        else:
            pad = (self.n_fft - self.hop_length) // 2
            wave = torch.nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
            spec = torch.stft(wave, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                              window=self.window, center=False, normalized=False, onesided=True, return_complex=True)
            spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
        mel = torch.matmul(spec.transpose(-1, -2), self.filterbank).transpose(-1, -2)
        return mel.clamp(min=1e-5).log()


def frames_for_duration(seconds: float) -> float:
    """Frames upstream budgets a clip at (93.75 per second)."""
    return seconds * SAMPLING_RATE / HOP_LENGTH


# --- batching by frame budget ------------------------------------------------------------------------

class FrameBudgetBatchSampler(Sampler[list[int]]):
    """Batches of similar-length clips whose frames sum to at most `frames_per_batch` (per GPU: accelerate
    hands whole batches to ranks), at most `max_samples` clips each (0 = no cap). Batches are built once
    from the length-sorted order; only their order is shuffled, with `seed + epoch`, so every epoch differs
    yet a resumed run replays the same order. Clips longer than the budget cannot fit any batch: they are
    counted and listed in `skipped` (and logged), never dropped silently."""

    def __init__(self, frame_lengths: list[float], frames_per_batch: int, max_samples: int = 0, seed: int = 0,
                 shuffle: bool = True):
        if frames_per_batch <= 0:
            raise ValueError(f"frames_per_batch must be positive, got {frames_per_batch}")
        self.frames_per_batch, self.max_samples, self.seed, self.shuffle = frames_per_batch, max_samples, seed, shuffle
        self.epoch = 0
        order = sorted(range(len(frame_lengths)), key=lambda i: frame_lengths[i])
        self.skipped = [i for i in order if frame_lengths[i] > frames_per_batch]
        if self.skipped:
            logger.warning("%d clip(s) are longer than frames_per_batch=%d and are skipped (indices %s); raise the "
                           "budget or lower max_duration.", len(self.skipped), frames_per_batch, self.skipped[:10])
        self.batches: list[list[int]] = []
        batch, batch_frames = [], 0.0
        for index in order:
            frames = frame_lengths[index]
            if frames > frames_per_batch:
                continue
            full = batch_frames + frames > frames_per_batch or (max_samples and len(batch) >= max_samples)
            if batch and full:
                self.batches.append(batch)
                batch, batch_frames = [], 0.0
            batch.append(index)
            batch_frames += frames
        if batch:
            self.batches.append(batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(self.batches)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter([self.batches[i] for i in torch.randperm(len(self.batches), generator=generator).tolist()])

    def __len__(self) -> int:
        return len(self.batches)


# --- collator ----------------------------------------------------------------------------------------

@dataclass
class F5Collator:
    """Schema rows -> {"mel": (b, frames, 100) zero-padded, "mel_lengths": (b,), "text": (b, symbols) -1-padded}.

    The mel is laid out as `CFM.forward` takes it (upstream's trainer permutes its (b, 100, frames) batch)."""

    vocab: list[str]
    mel_spec_type: str = "vocos"
    text_front_end: TextFrontEnd | None = None
    vocab_map: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.vocab_map = {symbol: i for i, symbol in enumerate(self.vocab)}
        self.mel = LogMel(self.mel_spec_type)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        from data_prep.audio import decode_audio

        mels = []
        for row in features:
            wave, _ = decode_audio(row["audio"], target_sr=SAMPLING_RATE)
            if wave.size < WIN_LENGTH:
                raise ValueError(f"clip {row.get('id', '?')!r} has {wave.size} samples, shorter than one STFT window; "
                                 "filter it out (min_duration).")
            with torch.no_grad():
                mels.append(self.mel(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None])[0].T)
        lengths = torch.tensor([m.shape[0] for m in mels], dtype=torch.long)
        padded = torch.zeros(len(mels), int(lengths.max()), mels[0].shape[1])
        for row, mel in enumerate(mels):
            padded[row, : mel.shape[0]] = mel
        front_end = self.text_front_end or TextFrontEnd()
        texts = [front_end(row["text"], row.get("language")) for row in features]
        text = symbols_to_ids(text_to_symbols(texts), self.vocab_map)
        return {"mel": padded, "mel_lengths": lengths, "text": text}


def duration_frames(dataset) -> list[float]:
    """Frame lengths from the schema's `duration` column (cheap: no audio decoding)."""
    return [frames_for_duration(float(d)) for d in dataset["duration"]]


def expected_frames(num_samples: int, mel_spec_type: str = "vocos") -> int:
    return 1 + num_samples // HOP_LENGTH if mel_spec_type == "vocos" else math.floor(num_samples / HOP_LENGTH)
