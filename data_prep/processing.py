"""Processing: raw source rows -> schema dataset, with every rejected row counted in a skip report.

Per row (in resumable shards, in worker processes, with a progress bar): text checks, decode, channel check,
truncation check (header-declared or source-declared length vs decoded length), duration window,
silence, text/audio plausibility, then mono, resample, optional peak/loudness normalisation and a
FLAC re-encode at the target rate. Then speaker balancing per dialect and the train/validation split.
"""

from __future__ import annotations

import gc
import io
import math
import os
import re
import struct
import threading
import unicodedata
from dataclasses import asdict, dataclass, field

import numpy as np

from data_prep.audio import AudioDecodeError, decode_audio, peak_normalize, resample, rms_dbfs, to_mono
from data_prep.schema import (DEFAULT_SAMPLING_RATE, grouped_rows, label_codes, read_columns, release_arrow_memory,
                              schema_features)
from data_prep.skips import SkipReport
from data_prep.sources import PRE_SKIP_COLUMN, PRE_SKIP_DETAIL_COLUMN, SourceResult

NORMALIZATIONS = ("none", "peak", "loudness")


@dataclass
class ProcessingConfig:
    """Everything `prepare` does to a source, in one place (also written to the dataset card)."""

    sampling_rate: int = DEFAULT_SAMPLING_RATE
    min_duration: float = 1.0
    max_duration: float = 15.0
    normalize: str = "none"  # none | peak | loudness (RMS level, see loudness_dbfs)
    peak_dbfs: float = -1.0
    loudness_dbfs: float = -23.0
    silence_dbfs: float = -50.0  # whole-clip RMS below this is "silence"
    allowed_channels: tuple[int, ...] = (1, 2)
    max_chars_per_second: float = 30.0  # more text than anyone can say in the clip: wrong transcript
    min_per_speaker: int = 5
    max_per_speaker: int | None = 50
    validation_fraction: float = 0.1
    speaker_disjoint_validation: bool = False
    seed: int = 0
    num_proc: int | None = None
    truncation_tolerance_s: float = 0.25
    # where decoded clips are written while processing; None keeps them in memory (fine for small corpora,
    # set a folder for anything large: re-encoded audio of hundreds of hours does not fit in RAM)
    cache_dir: str | None = None
    # trim leading/trailing non-speech with a VAD (data_prep/trim.py), keeping trim_keep_after_s after the
    # last speech (the EOS point) and trim_keep_before_s before the first
    trim_silence: bool = False
    trim_keep_before_s: float = 0.1
    trim_keep_after_s: float = 0.2
    # rows per resumable shard: each finished shard is on disk (kept rows + skips) and a rerun after a crash
    # or kill -9 starts at the first unfinished one
    shard_size: int = 1000

    def __post_init__(self):
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if not 0 <= self.min_duration < self.max_duration:
            raise ValueError(f"need 0 <= min_duration < max_duration, got {self.min_duration}, {self.max_duration}")
        if self.max_per_speaker is not None and self.max_per_speaker < max(1, self.min_per_speaker):
            raise ValueError(f"max_per_speaker ({self.max_per_speaker}) must be >= min_per_speaker ({self.min_per_speaker})")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        self.allowed_channels = tuple(int(c) for c in self.allowed_channels)
        if self.num_proc is not None and self.num_proc < 2:
            self.num_proc = None  # datasets runs in-process for None
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PreparedData:
    dataset: object  # DatasetDict(train, validation)
    skips: SkipReport
    config: ProcessingConfig
    sources: list[dict] = field(default_factory=list)
    trimming: dict | None = None  # data_prep.trim.trimming_summary of the kept rows when trim_silence is on


# ----------------------------------------------------------------------------------------------
# Row checks
# ----------------------------------------------------------------------------------------------

_MARKUP = re.compile(r"<[^>]{1,40}>|https?://|\{\{|\[\[")


def clean_text(text: str | None) -> str:
    """NFC, single spaces, no control characters."""
    text = unicodedata.normalize("NFC", text or "")
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return " ".join(text.split())


def text_problem(text: str) -> tuple[str, str] | None:
    """(reason, detail) when a transcript is unusable for TTS, else None."""
    if not text:
        return "empty_text", "transcript is empty"
    if "\ufffd" in text:
        return "garbage_text", "transcript contains U+FFFD (broken encoding)"
    visible = [ch for ch in text if not ch.isspace()]
    letters = sum(ch.isalpha() for ch in visible)
    if letters == 0:
        return "garbage_text", f"no letters in {text[:60]!r}"
    if letters / len(visible) < 0.5:
        return "garbage_text", f"mostly symbols/digits: {text[:60]!r}"
    if _MARKUP.search(text):
        return "garbage_text", f"markup or URL in {text[:60]!r}"
    return None


def _riff_declared_frames(head: bytes) -> int | None:
    """Frames a WAV header declares (its data chunk size), which survives truncation of the file."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, block_align = 12, None
    while offset + 8 <= len(head):
        chunk_id, size = head[offset:offset + 4], struct.unpack("<I", head[offset + 4:offset + 8])[0]
        if chunk_id == b"fmt " and offset + 22 <= len(head):
            channels = struct.unpack("<H", head[offset + 10:offset + 12])[0]
            bits = struct.unpack("<H", head[offset + 22:offset + 24])[0] if offset + 24 <= len(head) else 16
            block_align = max(1, channels * bits // 8)
        if chunk_id == b"data":
            return size // block_align if block_align and size < 0xFFFFFFF0 else None
        offset += 8 + size + (size & 1)
    return None


def declared_length(source) -> tuple[int, int] | None:
    """(frames, sampling_rate) that the file's header declares, or None when it declares nothing reliable.

    FLAC STREAMINFO and MP3 Xing/LAME headers hold the total length (read through soundfile); for WAV the
    data chunk size is parsed directly because libsndfile reports what is actually present.
    """
    import soundfile as sf

    try:
        if isinstance(source, (bytes, bytearray)):
            head, handle = bytes(source[:4096]), io.BytesIO(source)
        else:
            with open(source, "rb") as f:
                head = f.read(4096)
            handle = source
        info = sf.info(handle)
    except Exception:
        return None
    wav_frames = _riff_declared_frames(head)
    if wav_frames is not None:
        return wav_frames, int(info.samplerate)
    if info.format == "MPEG" and not any(tag in head for tag in (b"Xing", b"Info", b"VBRI")):
        return None  # without a Xing/Info/VBRI header libsndfile only estimates an MP3's length from its size
    if info.frames and info.frames > 0 and info.format in ("FLAC", "MPEG"):
        return int(info.frames), int(info.samplerate)
    return None


def _cell_source(cell):
    """What decode/inspect should read: a path or bytes (None for in-memory arrays)."""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, dict):
        return cell.get("bytes") or cell.get("path")
    return None


def _cell_name(cell) -> str:
    if cell is None:
        return "<array>"
    if isinstance(cell, str):
        return cell
    if isinstance(cell, dict):
        return str(cell.get("path") or "<bytes>")
    return "<array>"


def check_and_process_audio(cell, cfg: ProcessingConfig, expected_duration: float | None = None):
    """Decode and check one clip. Returns (samples at cfg.sampling_rate, None) or (None, (reason, detail))."""
    if cell is None:
        return None, ("missing", "the row has no audio")
    source = _cell_source(cell)
    if isinstance(source, str) and not os.path.exists(source):
        return None, ("missing", f"audio file not found: {source}")
    header = declared_length(source) if source is not None else None
    try:
        channels_first, sr = decode_audio(cell, mono=False)
    except AudioDecodeError as err:
        if header is not None:
            return None, ("truncated", f"header declares {header[0] / header[1]:.2f} s but the audio data cannot be "
                                       f"decoded (cut short or corrupt): {err}")
        return None, ("unreadable", str(err))
    except Exception as err:  # any decoder failure is this file's problem, not the run's
        return None, ("unreadable", f"{type(err).__name__}: {err}")
    n_channels, n_frames = channels_first.shape
    if n_frames == 0:
        return None, ("unreadable", "decoded zero samples")
    if n_channels not in cfg.allowed_channels:
        return None, ("wrong_channels", f"{n_channels} channels; allowed: {list(cfg.allowed_channels)}")
    duration = n_frames / sr
    if header is not None:
        declared_s = header[0] / header[1]
        if declared_s - duration > max(cfg.truncation_tolerance_s, 0.02 * declared_s):
            return None, ("truncated", f"header declares {declared_s:.2f} s, only {duration:.2f} s decodes")
    if expected_duration is not None and not math.isnan(expected_duration) and expected_duration > 0:
        if expected_duration - duration > max(cfg.truncation_tolerance_s, 0.02 * expected_duration):
            return None, ("truncated", f"source declares {expected_duration:.2f} s, only {duration:.2f} s decodes")
    if duration < cfg.min_duration:
        return None, ("too_short", f"{duration:.2f} s < min_duration {cfg.min_duration} s")
    if duration > cfg.max_duration:
        return None, ("too_long", f"{duration:.2f} s > max_duration {cfg.max_duration} s")
    samples = to_mono(channels_first)
    level = rms_dbfs(samples)
    if level < cfg.silence_dbfs:
        return None, ("silence", f"RMS {level:.1f} dBFS < silence threshold {cfg.silence_dbfs} dBFS")
    samples = resample(samples, sr, cfg.sampling_rate)
    if cfg.normalize == "peak":
        samples = peak_normalize(samples, cfg.peak_dbfs)
    elif cfg.normalize == "loudness":
        samples = loudness_normalize(samples, cfg.loudness_dbfs, cfg.peak_dbfs)
    return samples, None


def loudness_normalize(samples: np.ndarray, target_dbfs: float = -23.0, peak_ceiling_dbfs: float = -1.0) -> np.ndarray:
    """Scale to an RMS level of `target_dbfs`, then pull the gain back if the peak would pass the ceiling."""
    level = rms_dbfs(samples)
    if not np.isfinite(level):
        return samples
    gain = 10 ** ((target_dbfs - level) / 20)
    peak = float(np.max(np.abs(samples))) * gain
    ceiling = 10 ** (peak_ceiling_dbfs / 20)
    if peak > ceiling:
        gain *= ceiling / peak
    return (samples * gain).astype(np.float32)


def encode_flac(samples: np.ndarray, sampling_rate: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sampling_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _trim(samples: np.ndarray, cfg: ProcessingConfig, out: dict) -> np.ndarray:
    """VAD trim of both ends (data_prep.trim); what was cut goes into `out` for the report."""
    from data_prep.trim import trim_silence

    samples, result = trim_silence(samples, cfg.sampling_rate, keep_before_s=cfg.trim_keep_before_s,
                                   keep_after_s=cfg.trim_keep_after_s)
    out.update(trim_start_s=result.start_cut_s, trim_end_s=result.end_cut_s, trim_speech=result.speech)
    return samples


def _process_example(example: dict, cfg: ProcessingConfig) -> dict:
    out = {"processed_audio": None, "duration": 0.0, "skip_reason": "", "skip_detail": "",
           "trim_start_s": 0.0, "trim_end_s": 0.0, "trim_speech": True}
    text = clean_text(example["text"])
    out["text"] = text
    if example.get(PRE_SKIP_COLUMN):
        out["skip_reason"], out["skip_detail"] = example[PRE_SKIP_COLUMN], example.get(PRE_SKIP_DETAIL_COLUMN) or ""
        return out
    problem = text_problem(text)
    if problem is None and not (example.get("speaker") or "").strip():
        problem = ("no_speaker", "empty speaker label")
    if problem is None and not (example.get("dialect") or "").strip():
        problem = ("no_dialect_label", "empty dialect label")
    if problem is not None:
        out["skip_reason"], out["skip_detail"] = problem
        return out
    samples, problem = check_and_process_audio(example["audio"], cfg, example.get("expected_duration"))
    if problem is not None:
        out["skip_reason"], out["skip_detail"] = problem
        return out
    if cfg.trim_silence:
        samples = _trim(samples, cfg, out)
    duration = len(samples) / cfg.sampling_rate
    if len(text) / duration > cfg.max_chars_per_second:
        out["skip_reason"] = "text_audio_mismatch"
        out["skip_detail"] = f"{len(text)} characters in {duration:.2f} s (> {cfg.max_chars_per_second}/s)"
        return out
    out["processed_audio"] = encode_flac(samples, cfg.sampling_rate)
    out["duration"] = round(duration, 4)
    return out


# ----------------------------------------------------------------------------------------------
# Balancing
# ----------------------------------------------------------------------------------------------

def balance_speakers(dataset, min_per_speaker: int = 5, max_per_speaker: int | None = 50, seed: int = 0):
    """Per dialect, drop speakers with fewer than `min_per_speaker` clips and subsample (seeded) those over
    `max_per_speaker`. Returns (dataset, SkipReport of the removed rows, stage "balance").

    Groups are formed from integer label codes (4 bytes a row, see `label_codes`), visited in sorted
    (dialect, speaker) order; only the removed rows' ids are read back as strings, for the skip report."""
    rng = np.random.default_rng(seed)
    dialects, dialect_codes = label_codes(dataset, "dialect")
    speakers, speaker_codes = label_codes(dataset, "speaker")
    keep = np.ones(len(dataset), dtype=bool)
    removed: list[tuple[np.ndarray, str, str]] = []  # (rows, reason, detail): one detail string per group
    for d, s, indices in grouped_rows(dialect_codes, speaker_codes, len(speakers)):
        dialect, speaker = dialects[d], speakers[s]
        if len(indices) < min_per_speaker:
            removed.append((indices, "speaker_below_min_clips",
                            f"speaker {speaker} ({dialect}) has {len(indices)} clip(s) < min_per_speaker {min_per_speaker}"))
        elif max_per_speaker is not None and len(indices) > max_per_speaker:
            chosen = rng.choice(len(indices), size=max_per_speaker, replace=False)
            removed.append((np.delete(indices, chosen), "speaker_over_max_clips",
                            f"speaker {speaker} ({dialect}) subsampled to max_per_speaker {max_per_speaker}"))
    skips = SkipReport()
    if removed:
        rows = np.concatenate([indices for indices, _, _ in removed])
        keep[rows] = False
        names = ["id"] + (["source"] if "source" in dataset.column_names else [])
        columns = read_columns(dataset.select(rows), names)
        ids = columns["id"]
        sources = columns.get("source", ids)
        position = 0
        for indices, reason, detail in removed:
            for k in range(position, position + len(indices)):
                skips.add(ids[k], sources[k], reason, detail, "balance")
            position += len(indices)
    return dataset.select(np.flatnonzero(keep)), skips


# ----------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------

# Clips a worker process decodes before a fresh fork replaces it (see process_rows).
WORKER_CLIPS = 8000

# Shards: the unit of work and of resume. A shard is finished when its skips file exists; its kept rows are
# renamed into place before that, so a kill -9 at any point leaves whole shards or nothing of a shard.
_RESULT_COLUMNS = ("id", "text", "speaker", "dialect", "language", "duration", "source")


def _work_key(raw, cfg: ProcessingConfig) -> str:
    """Identity of (rows, settings): a rerun with the same arguments finds its finished shards, any other
    source content or setting starts a fresh folder. Audio is identified by its path (or byte count)."""
    import hashlib
    import json

    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("num_proc", "cache_dir")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    columns = [c for c in ("id", "audio", "text", "speaker", "dialect", "language", "source", "expected_duration",
                           PRE_SKIP_COLUMN) if c in raw.column_names]
    for batch in raw.select_columns(columns).iter(batch_size=10_000):
        for name in columns:
            values = batch[name]
            if name == "audio":
                values = [v if isinstance(v, str) else
                          (v.get("path"), len(v.get("bytes") or b"")) if isinstance(v, dict) else repr(v)
                          for v in values]
            digest.update(json.dumps(values, default=str).encode())
    return digest.hexdigest()[:16]


def _duplicate_rows(raw) -> dict[int, str]:
    """Rows whose id an earlier row already has (they would collide in the dataset and in LJSpeech exports),
    each with the source of that first row, for the skip report.

    Columnar (ids as integer codes, see `label_codes`): a set of millions of id strings would cost ~100 bytes
    a row in the main process, which every forked decode worker then maps too."""
    _, codes = label_codes(raw, "id")
    _, first = np.unique(codes, return_index=True)  # codes cover 0..n_distinct-1: first[c] = first row of id c
    first_of_row = first[codes]
    rows = np.flatnonzero(first_of_row != np.arange(len(codes)))
    if not len(rows):
        return {}
    firsts = first_of_row[rows]
    sources = read_columns(raw.select(firsts), ["source"])["source"] if "source" in raw.column_names else firsts.tolist()
    return {int(row): f"row {int(f)} ({source})" for row, f, source in zip(rows, firsts, sources)}


def _shard_paths(folder: str, index: int) -> tuple[str, str]:
    return os.path.join(folder, f"kept-{index:06d}.arrow"), os.path.join(folder, f"skips-{index:06d}.json")


def _process_shard(task) -> int:
    """Process one shard of raw rows and write its kept rows and its skips (in a worker process)."""
    import json

    from datasets.arrow_writer import ArrowWriter

    folder, index, rows, duplicates, cfg, features = task
    kept_path, skips_path = _shard_paths(folder, index)
    tmp = f".tmp-{os.getpid()}"
    skipped, trims = [], []
    with ArrowWriter(features=features, path=kept_path + tmp, writer_batch_size=64) as writer:
        for i, example in enumerate(rows):
            if i in duplicates:
                skipped.append(asdict_skip(example["id"], example["source"], "duplicate_id",
                                           f"another row already has this id: {duplicates[i]}"))
                continue
            try:
                out = _process_example(example, cfg)
            except Exception as err:  # one bad row must never stop a run of millions: count it, with the cause
                out = {"skip_reason": "processing_error", "skip_detail": f"{type(err).__name__}: {err}"}
            if out["skip_reason"]:
                name = _cell_name(example.get("audio"))
                skipped.append(asdict_skip(example["id"], name if name not in ("<array>", "<bytes>") else
                                           example["source"], out["skip_reason"], out["skip_detail"]))
                continue
            if cfg.trim_silence:
                trims.append((float(out["trim_start_s"]), float(out["trim_end_s"]), bool(out["trim_speech"])))
            row = {name: example.get(name) for name in _RESULT_COLUMNS}
            row.update(text=out["text"], duration=out["duration"],
                       audio={"bytes": out["processed_audio"], "path": None})
            writer.write(features.encode_example(row))
        writer.finalize()
    os.replace(kept_path + tmp, kept_path)
    with open(skips_path + tmp, "w", encoding="utf-8") as f:
        json.dump({"skips": skipped, "trim": trims}, f, ensure_ascii=False)
    os.replace(skips_path + tmp, skips_path)  # last: marks the shard finished
    return index


_MAIN_THREAD_IDENT = threading.main_thread().ident  # a forked child's only thread keeps its forker's ident


def _die_with_parent() -> None:
    """Pool workers of a parent killed with kill -9 would wait on the task queue forever: make them die with it.

    Linux's PR_SET_PDEATHSIG fires when the *thread* that forked the worker ends, not the process. That is the
    main thread for the pool's first workers, but the replacements of recycled workers are forked by the pool's
    worker-handler thread, which ends at shutdown: killed then, one could hold the task queue's lock and hang
    the pool. Those poll their parent's pid instead (a rerun then starts clean either way)."""
    import ctypes
    import signal
    import sys
    import time

    parent = os.getppid()
    if sys.platform.startswith("linux") and threading.get_ident() == _MAIN_THREAD_IDENT:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            return
        except OSError:
            pass

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch_parent, name="die-with-parent", daemon=True).start()


def asdict_skip(row_id, file, reason, detail) -> dict:
    return {"id": str(row_id), "file": str(file), "reason": reason, "detail": detail, "stage": "filter"}


def process_rows(raw, cfg: ProcessingConfig, work_dir: str | None = None, figures: dict | None = None):
    """Decode/check/resample every raw row. Returns (schema Dataset of kept rows, SkipReport stage "filter").

    With `cfg.trim_silence`, `figures["trim"]` receives (start_cut_s, end_cut_s, speech_found) per kept row.

    Rows go through in shards of `cfg.shard_size` (in `cfg.num_proc` worker processes, recycled every
    `WORKER_CLIPS` clips), each written to
    `work_dir` as it finishes, so memory does not grow with the corpus and a rerun of the same command after a
    crash or kill -9 resumes at the first unfinished shard (same rows and settings: same folder, see
    `_work_key`). Without `work_dir` the shards go to a temporary folder and the result is loaded into memory.
    """
    import json
    import multiprocessing
    import shutil
    import tempfile
    from collections import deque

    from datasets import Dataset, Value, concatenate_datasets
    from tqdm.auto import tqdm

    features = schema_features(cfg.sampling_rate)
    features["source"] = Value("string")
    temporary = work_dir is None
    base = tempfile.mkdtemp(prefix="data_prep_shards_") if temporary else work_dir
    folder = os.path.join(base, f"shards-{_work_key(raw, cfg)}")
    os.makedirs(folder, exist_ok=True)
    duplicates_by_shard: dict[int, dict[int, str]] = {}  # shard -> {row in shard: the first row with its id}
    for row, first in _duplicate_rows(raw).items():
        duplicates_by_shard.setdefault(row // cfg.shard_size, {})[row % cfg.shard_size] = first
    n_shards = -(-len(raw) // cfg.shard_size)
    todo = [k for k in range(n_shards) if not os.path.exists(_shard_paths(folder, k)[1])]
    if len(todo) < n_shards:
        print(f"resuming: {n_shards - len(todo)} of {n_shards} shards already done in {folder}")

    def tasks():
        for k in todo:
            start, stop = k * cfg.shard_size, min((k + 1) * cfg.shard_size, len(raw))
            rows = raw.select(range(start, stop)).to_list()
            yield folder, k, rows, duplicates_by_shard.get(k, {}), cfg, features

    progress = tqdm(total=n_shards, initial=n_shards - len(todo), desc="decode, check, resample", unit="shard")
    if len(todo) > 1:
        # Shards run in worker processes (one without num_proc), each replaced by a fresh fork after
        # WORKER_CLIPS clips: a process that keeps decoding grows without bound as glibc's heap fragments under
        # the decoder's per-clip buffers (measured: decoding the same 34 mp3s in a loop held 0.37 GB for 18,000
        # clips, then grew ~45 KB per clip, 1.35 GB at 44,000; the 200,000-clip benchmark's workers reached
        # 1.9 GB each). Serving big blocks with mmap (M_MMAP_THRESHOLD) also stops it but cost 26 % in speed.
        from data_prep.audio import warm_up_decoder

        warm_up_decoder()  # imported once here: forked workers inherit it instead of importing torch(codec) again
        release_arrow_memory()  # what Arrow's allocator still caches would be mapped by every worker
        workers = cfg.num_proc or 1
        gc.freeze()  # the parent's objects: a worker's garbage collector leaves them (and their pages) alone
        try:
            with multiprocessing.get_context("fork").Pool(workers, initializer=_die_with_parent,
                                                          maxtasksperchild=max(1, WORKER_CLIPS // cfg.shard_size)) as pool:
                # At most two shards per worker in flight: Pool.imap would read every shard's rows up front.
                pending = deque()
                for task in tasks():
                    pending.append(pool.apply_async(_process_shard, (task,)))
                    while len(pending) >= 2 * workers:
                        pending.popleft().get()
                        progress.update()
                while pending:
                    pending.popleft().get()
                    progress.update()
                pool.close()  # let the last workers exit by themselves: terminate() can hang on a replaced worker
                pool.join()
        finally:
            gc.unfreeze()
    else:
        for task in tasks():
            _process_shard(task)
            progress.update()
    progress.close()

    skips = SkipReport()
    parts = []
    for k in range(n_shards):
        kept_path, skips_path = _shard_paths(folder, k)
        with open(skips_path, encoding="utf-8") as f:
            shard = json.load(f)
        for skip in shard["skips"]:
            skips.add(**skip)
        if cfg.trim_silence and figures is not None:
            figures.setdefault("trim", []).extend(tuple(x) for x in shard["trim"])
        part = Dataset.from_file(kept_path, in_memory=temporary)
        if len(part):
            parts.append(part)
    kept = concatenate_datasets(parts) if parts else Dataset.from_dict(
        {name: [] for name in features}, features=features)
    if temporary:
        shutil.rmtree(base, ignore_errors=True)
    return kept, skips


def prepare(sources: SourceResult | list[SourceResult], cfg: ProcessingConfig | None = None) -> PreparedData:
    """Sources -> DatasetDict(train, validation) in the schema, plus the full skip report."""
    from datasets import concatenate_datasets

    cfg = cfg or ProcessingConfig()
    sources = [sources] if isinstance(sources, SourceResult) else list(sources)
    skips = SkipReport()
    kept_parts = []
    figures: dict = {}
    for source in sources:
        skips.extend(source.skips)
        raw = source.dataset
        if len(raw) == 0:
            continue
        kept, filter_skips = process_rows(raw, cfg, work_dir=cfg.cache_dir, figures=figures)
        skips.extend(filter_skips)
        kept_parts.append(kept)
    if not kept_parts or sum(len(p) for p in kept_parts) == 0:
        raise ValueError("no usable rows: every row was skipped.\n" + skips.summary())
    dataset = concatenate_datasets(kept_parts) if len(kept_parts) > 1 else kept_parts[0]
    dataset, balance_skips = balance_speakers(dataset, cfg.min_per_speaker, cfg.max_per_speaker, cfg.seed)
    skips.extend(balance_skips)
    if len(dataset) == 0:
        raise ValueError(f"no rows left after speaker balancing (min_per_speaker={cfg.min_per_speaker}); "
                         "lower --min_per_speaker.\n" + skips.summary())
    from data_prep.split import split_train_validation

    splits = split_train_validation(dataset, cfg.validation_fraction, cfg.seed, cfg.speaker_disjoint_validation)
    trimming = None
    if cfg.trim_silence:
        from data_prep.trim import trimming_summary

        trimming = trimming_summary(figures.get("trim", []))  # before balancing: what the trim step did
    return PreparedData(splits, skips, cfg, [s.description for s in sources], trimming)
