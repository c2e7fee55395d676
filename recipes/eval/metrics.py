"""Metric functions on plain Python/numpy inputs, so each can be checked on known inputs.

- WER/CER: jiwer on texts that went through `TextNormalizer` (corpus-level: total edits / total
  reference words or characters, so long sentences weigh more than short ones).
- MCD (mel-cepstral distortion), our documented MFCC variant: both signals are resampled to
  `sampling_rate`, turned into a log-power mel spectrogram (librosa, `n_mels` bands, Hann window
  `n_fft`, hop `hop_length`, power floored at `power_floor` = 1e-6, i.e. -60 dB, so the digital
  silence of synthetic corpora does not dominate the score), then a type-II orthonormal DCT gives the
  cepstrum; coefficients 1..`num_coefficients` are kept (c0, the frame energy, is dropped so loudness
  does not count). The log is natural and of the amplitude (log power / 2), as in the usual MCD
  definition, so per aligned frame pair the distortion in dB is (10 / ln 10) * sqrt(2 * sum_d (a_d - b_d)^2);
  MCD is the mean over the alignment path. Alignment is DTW (librosa.sequence.dtw, Euclidean cost) by
  default; `align="truncate"` compares frame i with frame i (used to show what DTW buys). Values are
  comparable between runs of this code, not with SPTK mel-cepstrum MCDs from papers.
- Speaker similarity: cosine of two embedding vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)


def word_and_char_errors(references: list[str], hypotheses: list[str]) -> dict:
    """Corpus-level WER and CER plus the raw counts (so groups can be pooled later).

    Empty references are scored against a hypothesis by insertions only, which jiwer refuses, so
    they are counted here by hand.
    """
    import jiwer

    counts = {"word_errors": 0, "words": 0, "char_errors": 0, "chars": 0}
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_words, hyp_words = ref.split(), hyp.split()
        if ref_words:
            out = jiwer.process_words(ref, hyp if hyp_words else "")
            counts["word_errors"] += out.substitutions + out.deletions + out.insertions
        else:
            counts["word_errors"] += len(hyp_words)
        counts["words"] += len(ref_words)
        if ref:
            out = jiwer.process_characters(ref, hyp)
            counts["char_errors"] += out.substitutions + out.deletions + out.insertions
        else:
            counts["char_errors"] += len(hyp)
        counts["chars"] += len(ref)
    return {**counts, **rates_from_counts(counts)}


def rates_from_counts(counts: dict) -> dict:
    return {
        "wer": counts["word_errors"] / counts["words"] if counts["words"] else float("nan"),
        "cer": counts["char_errors"] / counts["chars"] if counts["chars"] else float("nan"),
    }


@dataclass(frozen=True)
class MCDSettings:
    sampling_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    num_coefficients: int = 24
    power_floor: float = 1e-6


def mel_cepstrum(wave: np.ndarray, sampling_rate: int, settings: MCDSettings = MCDSettings()) -> np.ndarray:
    """(frames, num_coefficients) cepstral coefficients 1..K of the log-mel spectrogram (see module doc)."""
    import librosa
    from scipy.fft import dct

    from data_prep.audio import resample

    wave = resample(np.asarray(wave, dtype=np.float32), sampling_rate, settings.sampling_rate)
    if wave.size < settings.n_fft:
        wave = np.pad(wave, (0, settings.n_fft - wave.size))
    mel = librosa.feature.melspectrogram(y=wave, sr=settings.sampling_rate, n_fft=settings.n_fft,
                                         hop_length=settings.hop_length, n_mels=settings.n_mels, power=2.0)
    # Natural-log power; MCD_SCALE turns the Euclidean distance of these cepstra into dB.
    log_mel = np.log(np.maximum(mel, settings.power_floor)) / 2.0
    cepstrum = dct(log_mel, type=2, axis=0, norm="ortho")
    return cepstrum[1:settings.num_coefficients + 1].T.astype(np.float64)


def mel_cepstral_distortion(generated: np.ndarray, reference: np.ndarray, sampling_rate: int,
                            settings: MCDSettings = MCDSettings(), align: str = "dtw") -> float:
    """MCD in dB between two waveforms at `sampling_rate` (0 for identical signals)."""
    a = mel_cepstrum(generated, sampling_rate, settings)
    b = mel_cepstrum(reference, sampling_rate, settings)
    return cepstral_distance(a, b, align)


def cepstral_distance(a: np.ndarray, b: np.ndarray, align: str = "dtw") -> float:
    if align == "dtw":
        import librosa

        _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
        a, b = a[path[:, 0]], b[path[:, 1]]
    elif align == "truncate":
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
    else:
        raise ValueError(f"align must be 'dtw' or 'truncate', got {align!r}")
    return float(MCD_SCALE * np.mean(np.sqrt(np.sum((a - b) ** 2, axis=1))))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0


def is_silent(wave: np.ndarray, threshold: float = 1e-4) -> bool:
    """Empty or digitally near-silent output (a failed generation, scored as such)."""
    return wave.size == 0 or float(np.max(np.abs(wave))) < threshold
