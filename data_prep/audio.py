"""Audio decoding helpers shared by data_prep and every recipe.

`datasets` >= 4 hands out torchcodec `AudioDecoder` objects for `Audio` columns (older releases
gave `{"array", "sampling_rate"}` dicts). `decode_audio` accepts any of those, a path, raw bytes or
an array, and returns mono float32 samples at the rate asked for.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


class AudioDecodeError(RuntimeError):
    """Audio could not be read; the message names the file."""


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(channels, n) or (n,) -> (n,) float32 by averaging channels."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise ValueError(f"expected 1-D or 2-D audio, got shape {samples.shape}")
    if samples.shape[0] == 1:  # most corpora are mono: a view, not a mean over one channel
        return samples[0]
    return samples.mean(axis=0)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling (soxr VHQ). No-op when the rates match."""
    if orig_sr == target_sr:
        return np.asarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(samples, dtype=np.float32), orig_sr, target_sr, quality="VHQ").astype(np.float32)


def warm_up_decoder() -> None:
    """Import the decoder stack (torchcodec pulls in much of torch): before forking workers, so they share it."""
    import soxr  # noqa: F401
    from torchcodec.decoders import AudioDecoder  # noqa: F401


def _decode_file_or_bytes(source: str | bytes) -> tuple[np.ndarray, int]:
    """Decode with torchcodec (FFmpeg: mp3, flac, wav, ogg, ...). Returns (channels, n) and rate."""
    from torchcodec.decoders import AudioDecoder

    try:
        decoder = AudioDecoder(source)
        samples = decoder.get_all_samples()
    except Exception as err:  # torchcodec raises RuntimeError/ValueError depending on the failure
        name = source if isinstance(source, str) else f"<{len(source)} bytes>"
        raise AudioDecodeError(f"cannot decode audio {name}: {err}") from err
    return samples.data.numpy(), int(samples.sample_rate)


def decode_audio(cell: Any, target_sr: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Turn any audio cell into `(samples, sampling_rate)`.

    Accepts a torchcodec `AudioDecoder` (datasets >= 4), a `{"array", "sampling_rate"}` dict,
    a `{"path", "bytes"}` dict (undecoded Audio column), a file path, raw bytes, or a
    `(array, sr)` tuple. Output is float32, mono unless `mono=False` (then (channels, n)),
    resampled to `target_sr` when given.
    """
    channels_first: np.ndarray
    if hasattr(cell, "get_all_samples"):
        samples = cell.get_all_samples()
        channels_first, sr = samples.data.numpy(), int(samples.sample_rate)
    elif isinstance(cell, dict) and cell.get("array") is not None:
        channels_first, sr = np.asarray(cell["array"], dtype=np.float32), int(cell["sampling_rate"])
    elif isinstance(cell, dict) and (cell.get("bytes") or cell.get("path")):
        source = cell["bytes"] if cell.get("bytes") else cell["path"]
        channels_first, sr = _decode_file_or_bytes(source)
    elif isinstance(cell, (str, os.PathLike)):
        path = os.fspath(cell)
        if not os.path.exists(path):
            raise AudioDecodeError(f"audio file not found: {path}")
        channels_first, sr = _decode_file_or_bytes(path)
    elif isinstance(cell, (bytes, bytearray)):
        channels_first, sr = _decode_file_or_bytes(bytes(cell))
    elif isinstance(cell, tuple) and len(cell) == 2:
        channels_first, sr = np.asarray(cell[0], dtype=np.float32), int(cell[1])
    else:
        raise TypeError(f"don't know how to decode audio from {type(cell).__name__}")

    channels_first = np.asarray(channels_first, dtype=np.float32)
    if mono:
        out = to_mono(channels_first)
        if target_sr is not None:
            out = resample(out, sr, target_sr)
            sr = target_sr
        return out, sr
    if channels_first.ndim == 1:
        channels_first = channels_first[None, :]
    if target_sr is not None and target_sr != sr:
        channels_first = np.stack([resample(c, sr, target_sr) for c in channels_first])
        sr = target_sr
    return channels_first, sr


def write_audio(path: str | os.PathLike, samples: np.ndarray, sampling_rate: int) -> None:
    """Write mono float samples as 16-bit PCM (format from the extension: .wav, .flac)."""
    import soundfile as sf

    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    sf.write(os.fspath(path), np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), sampling_rate, subtype="PCM_16")


def peak_normalize(samples: np.ndarray, peak_dbfs: float = -1.0) -> np.ndarray:
    """Scale so the absolute peak sits at `peak_dbfs`; silence is returned unchanged."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak <= 1e-8:
        return samples
    return (samples * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dBFS (-inf for digital silence)."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
