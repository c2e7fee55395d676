"""Long recordings -> VAD segments -> Whisper transcripts -> schema dataset and/or LJSpeech folder.

    python -m data_prep from-recordings --inputs podcasts/ --work_dir work --output_dir out \
        --language ca --dialect central --model_name_or_path openai/whisper-large-v3

runs the steps below in order; each is also its own command and resumes where it stopped:

- `download`  (optional) best audio from URLs/playlists with yt-dlp, capped in duration; skipped with a
              clear message when yt-dlp is missing or the network is unreachable.
- `segment`   silero-vad (its model ships in the pip package: offline) finds speech; consecutive speech is
              merged into clips of --min_segment_s..--max_segment_s cut at pauses, padded so no word is
              clipped, with short fades; speech running past the maximum is cut at its quietest point.
              Writes WORK/clips/*.wav (mono, 24 kHz), WORK/segments.jsonl, WORK/segment_report.json.
- `transcribe` Whisper through transformers (`--asr transformers`, batched) or faster-whisper (`--asr
              faster-whisper`, CTranslate2; `--model_name_or_path wheel:whisper-base` is the multilingual
              Whisper base shipped in PyPI wheels, so this runs fully offline), on every process of `accelerate launch` (each writes
              its own WORK/transcripts*.jsonl, appended batch by batch, so a rerun skips what is done);
              keeps avg log-prob, no-speech probability and compression ratio, filters on them, and cleans
              text with per-language rules (data_prep/mappings/text_normalization.yaml).
- `build`     joins segments and accepted transcripts into an LJSpeech folder (OUT/ljspeech) and/or the
              schema dataset (OUT/dataset, report, card; the same filters, balancing and split as every
              other source; optional Hub push). Speaker per source recording or a rule you set.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_prep.audio import decode_audio, resample, write_audio
from data_prep.schema import DEFAULT_SAMPLING_RATE
from data_prep.skips import SkipReport
from data_prep.sources import AUDIO_EXTENSIONS

VAD_SAMPLING_RATE = 16_000
WHISPER_SAMPLING_RATE = 16_000
WHISPER_MAX_SECONDS = 30.0
NO_LOGPROB = -99.0  # stands for "no usable token scores"; plain JSON has no -Infinity
TEXT_RULES = Path(__file__).resolve().parent / "mappings" / "text_normalization.yaml"


class RecordingsError(RuntimeError):
    """A step of the recordings pipeline cannot run; the message says why and what to do."""


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by an interrupted run: that item is simply redone
    return rows


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ==============================================================================================
# download
# ==============================================================================================

def download(urls: list[str], out_dir: str | os.PathLike, *, max_duration_s: float | None = None,
             audio_format: str = "wav") -> tuple[list[Path], list[tuple[str, str]]]:
    """Fetch best audio of each URL (videos or playlists) into `out_dir` with yt-dlp.

    Returns (downloaded files, [(url, error)]). Items longer than `max_duration_s` are skipped by yt-dlp's
    match filter. Already downloaded items are skipped (yt-dlp download archive), so reruns resume.
    Raises RecordingsError when yt-dlp is not installed.
    """
    try:
        import yt_dlp
    except ImportError as err:
        raise RecordingsError(
            "yt-dlp is not installed, so URLs cannot be downloaded (`pip install yt-dlp`). Local files and folders "
            "need no download: pass them to `segment`/`from-recordings --inputs`.") from err
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    before = {p for p in out.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS}
    options = {
        "format": "bestaudio/best",
        "outtmpl": str(out / "%(extractor)s_%(id)s.%(ext)s"),
        "download_archive": str(out / "downloaded.txt"),
        "ignoreerrors": False,
        "noplaylist": False,
        "quiet": True,
        "no_warnings": True,
        "postprocessors": [{"key": "FFmpegExtractAudio", "preferredcodec": audio_format}],
    }
    if max_duration_s:
        options["match_filter"] = yt_dlp.utils.match_filter_func(f"duration <= {float(max_duration_s)}")
    failures: list[tuple[str, str]] = []
    infos = []
    with yt_dlp.YoutubeDL(options) as ydl:
        for url in urls:
            try:
                info = ydl.extract_info(url, download=True)
                if info is not None:
                    infos.append({"url": url, "title": info.get("title"), "uploader": info.get("uploader"),
                                  "id": info.get("id"), "duration": info.get("duration")})
            except Exception as err:  # yt-dlp wraps network/extractor failures in DownloadError
                failures.append((url, str(err).splitlines()[0] if str(err) else type(err).__name__))
    if infos:
        _append_jsonl(out / "downloads.jsonl", infos)
    files = sorted(p for p in out.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p not in before)
    return files, failures


# ==============================================================================================
# segment
# ==============================================================================================

@dataclass
class SegmentConfig:
    sampling_rate: int = DEFAULT_SAMPLING_RATE
    min_segment_s: float = 5.0
    max_segment_s: float = 15.0
    max_pause_s: float = 1.5  # a longer pause always ends a clip
    pad_s: float = 0.2  # kept around speech so word edges are not clipped (never into neighbouring speech)
    fade_s: float = 0.01
    vad_threshold: float = 0.5
    vad_min_silence_s: float = 0.3  # pauses shorter than this do not split speech regions
    vad_min_speech_s: float = 0.25

    def __post_init__(self):
        if not 0 < self.min_segment_s < self.max_segment_s:
            raise ValueError(f"need 0 < min_segment_s < max_segment_s, got {self.min_segment_s}, {self.max_segment_s}")
        if self.max_segment_s < 2 * self.min_segment_s:
            # the quietest-point split needs room to leave both halves at least min_segment_s long
            raise ValueError(f"max_segment_s ({self.max_segment_s}) must be >= 2 * min_segment_s ({self.min_segment_s})")


_VAD_MODEL = None


def _vad_model():
    global _VAD_MODEL
    if _VAD_MODEL is None:
        from silero_vad import load_silero_vad

        _VAD_MODEL = load_silero_vad()
    return _VAD_MODEL


def speech_regions(samples_16k: np.ndarray, cfg: SegmentConfig) -> list[tuple[float, float]]:
    """(start, end) seconds of speech found by silero-vad."""
    import torch
    from silero_vad import get_speech_timestamps

    timestamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(samples_16k, dtype=np.float32)), _vad_model(),
        threshold=cfg.vad_threshold, sampling_rate=VAD_SAMPLING_RATE,
        min_speech_duration_ms=int(cfg.vad_min_speech_s * 1000), min_silence_duration_ms=int(cfg.vad_min_silence_s * 1000),
        speech_pad_ms=0,
    )
    return [(t["start"] / VAD_SAMPLING_RATE, t["end"] / VAD_SAMPLING_RATE) for t in timestamps]


def quietest_point(samples: np.ndarray, sr: int, start_s: float, end_s: float, frame_s: float = 0.02) -> float:
    """Time (s) of the lowest-energy frame between start_s and end_s."""
    frame = max(1, int(frame_s * sr))
    lo, hi = int(start_s * sr), min(len(samples), int(end_s * sr))
    window = samples[lo:hi]
    n = len(window) // frame
    if n == 0:
        return (start_s + end_s) / 2
    energy = np.square(window[: n * frame].reshape(n, frame), dtype=np.float64).mean(axis=1)
    # smooth over ~100 ms so a single quiet frame inside a word does not win against a real pause
    kernel = np.ones(5) / 5
    smooth = np.convolve(energy, kernel, mode="same") if n >= 5 else energy
    return start_s + (int(np.argmin(smooth)) + 0.5) * frame / sr


def split_long_regions(regions, samples, sr, cfg: SegmentConfig):
    """Regions longer than max_segment_s (speech with no VAD pause) cut at their quietest points."""
    limit = cfg.max_segment_s - 2 * cfg.pad_s
    pieces = []
    for start, end in regions:
        while end - start > limit:
            cut = quietest_point(samples, sr, start + cfg.min_segment_s, min(start + limit, end - cfg.min_segment_s))
            pieces.append((start, cut, "split"))
            start = cut
        pieces.append((start, end, "vad"))
    return pieces


def plan_segments(regions, duration_s: float, samples, sr, cfg: SegmentConfig):
    """Merge speech pieces into clips. Returns (kept [(start, end)], dropped [(start, end, reason)]).

    A clip grows over pauses up to max_pause_s while its padded length stays within max_segment_s; its
    padding reaches at most halfway into the neighbouring pauses.
    """
    pieces = split_long_regions(regions, samples, sr, cfg)
    groups: list[list[tuple[float, float, str]]] = []
    for piece in pieces:
        if groups:
            current = groups[-1]
            gap = piece[0] - current[-1][1]
            # a quietest-point cut has no pause: the two sides must be separate clips
            joined = piece[1] - current[0][0] + 2 * cfg.pad_s
            if current[-1][2] != "split" and gap <= cfg.max_pause_s and joined <= cfg.max_segment_s:
                current.append(piece)
                continue
        groups.append([piece])
    kept, dropped = [], []
    for i, group in enumerate(groups):
        start, end = group[0][0], group[-1][1]
        previous_end = groups[i - 1][-1][1] if i > 0 else 0.0
        next_start = groups[i + 1][0][0] if i + 1 < len(groups) else duration_s
        # a quietest-point cut has no pause to pad into
        pad_before = 0.0 if i > 0 and groups[i - 1][-1][2] == "split" else min(cfg.pad_s, (start - previous_end) / 2)
        pad_after = 0.0 if group[-1][2] == "split" else min(cfg.pad_s, (next_start - end) / 2)
        if i == 0:
            pad_before = min(cfg.pad_s, start)
        if i == len(groups) - 1 and group[-1][2] != "split":
            pad_after = min(cfg.pad_s, duration_s - end)
        clip = (max(0.0, start - pad_before), min(duration_s, end + pad_after))
        length = clip[1] - clip[0]
        if length < cfg.min_segment_s:
            dropped.append((*clip, "too_short"))
        elif length > cfg.max_segment_s + 1e-6:
            dropped.append((*clip, "too_long"))
        else:
            kept.append(clip)
    return kept, dropped


def _fade(samples: np.ndarray, sr: int, fade_s: float) -> np.ndarray:
    n = min(int(fade_s * sr), len(samples) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        samples = samples.copy()
        samples[:n] *= ramp
        samples[-n:] *= ramp[::-1]
    return samples


def find_recordings(inputs: list[str | os.PathLike]) -> list[Path]:
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"recording input not found: {path}")
    return files


def _recording_key(path: Path) -> str:
    """A stable, file-name-safe id for a recording (stem + short hash of its full path)."""
    import hashlib

    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return re.sub(r"[^\w\-]+", "_", path.stem)[:60] + "_" + digest


def segment(inputs: list[str | os.PathLike], work_dir: str | os.PathLike, cfg: SegmentConfig | None = None) -> dict:
    """VAD-segment every recording under `inputs` into WORK/clips; resumable (done recordings are skipped).

    Returns the segment report: per recording, kept/dropped seconds and clips.
    """
    from tqdm.auto import tqdm

    cfg = cfg or SegmentConfig()
    work = Path(work_dir)
    (work / "clips").mkdir(parents=True, exist_ok=True)
    recordings_log, segments_log = work / "recordings.jsonl", work / "segments.jsonl"
    done = {row["recording"] for row in _read_jsonl(recordings_log)}
    files = find_recordings(inputs)
    for path in tqdm(files, desc="segment (VAD)", unit="recording"):
        if str(path.resolve()) in done:
            continue
        key = _recording_key(path)
        entry = {"recording": str(path.resolve()), "key": key}
        try:
            samples, sr = decode_audio(str(path), target_sr=cfg.sampling_rate)
        except Exception as err:
            entry.update(status="unreadable", error=str(err), duration_s=0.0, kept_s=0.0, clips=0, dropped=[])
            _append_jsonl(recordings_log, [entry])
            continue
        duration = len(samples) / sr
        regions = speech_regions(resample(samples, sr, VAD_SAMPLING_RATE), cfg)
        kept, dropped = plan_segments(regions, duration, samples, sr, cfg)
        rows = []
        for k, (start, end) in enumerate(kept):
            clip_id = f"{key}_{k:05d}"
            clip = _fade(samples[int(round(start * sr)):int(round(end * sr))], sr, cfg.fade_s)
            rel = f"clips/{clip_id}.wav"
            write_audio(work / rel, clip, sr)
            rows.append({"id": clip_id, "audio_path": rel, "recording": str(path.resolve()),
                         "start": round(start, 3), "end": round(end, 3), "duration": round(len(clip) / sr, 3)})
        _append_jsonl(segments_log, rows)
        speech = sum(e - s for s, e in regions)
        entry.update(status="ok", duration_s=round(duration, 3), speech_s=round(speech, 3), clips=len(rows),
                     kept_s=round(sum(e - s for s, e in kept), 3),
                     dropped=[{"start": round(s, 3), "end": round(e, 3), "reason": r} for s, e, r in dropped])
        # the recording is marked done only after its clips are on disk: an interrupted run redoes it
        _append_jsonl(recordings_log, [entry])
    return segment_report(work)


def segment_report(work_dir) -> dict:
    work = Path(work_dir)
    recordings = {}
    for row in _read_jsonl(work / "recordings.jsonl"):
        recordings[row["recording"]] = row  # a redone recording's last entry wins
    dropped_s: dict[str, float] = {}
    for row in recordings.values():
        for d in row.get("dropped", []):
            dropped_s[d["reason"]] = dropped_s.get(d["reason"], 0.0) + d["end"] - d["start"]
    report = {
        "recordings": len(recordings),
        "unreadable": [r["recording"] for r in recordings.values() if r["status"] != "ok"],
        "audio_hours": round(sum(r.get("duration_s", 0) for r in recordings.values()) / 3600, 4),
        "speech_hours": round(sum(r.get("speech_s", 0) for r in recordings.values()) / 3600, 4),
        "kept_hours": round(sum(r.get("kept_s", 0) for r in recordings.values()) / 3600, 4),
        "clips": sum(r.get("clips", 0) for r in recordings.values()),
        "dropped_seconds": {k: round(v, 2) for k, v in dropped_s.items()},
        "per_recording": list(recordings.values()),
    }
    with open(work / "segment_report.json", "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    return report


# ==============================================================================================
# transcribe
# ==============================================================================================

ASR_BACKENDS = ("transformers", "faster-whisper")
# What each backend loads when no model is named: Whisper large-v3 in the backend's own format.
DEFAULT_ASR_MODELS = {"transformers": "openai/whisper-large-v3", "faster-whisper": "large-v3"}


@dataclass
class TranscribeConfig:
    model_name_or_path: str = "openai/whisper-large-v3"
    asr: str = "transformers"  # transformers | faster-whisper
    language: str | None = None  # None: Whisper detects it per clip
    task: str = "transcribe"
    batch_size: int = 16
    max_new_tokens: int = 200
    num_beams: int = 1
    dtype: str = "auto"  # auto: float16 on GPU, float32 on CPU
    min_avg_logprob: float = -1.0  # Whisper's own fallback threshold
    max_no_speech_prob: float = 0.6
    max_compression_ratio: float = 2.4  # repetitive text: a hallucination loop
    normalization_rules: str | None = None  # YAML file; default data_prep/mappings/text_normalization.yaml
    compute_type: str | None = None  # faster-whisper: default int8 on CPU, float16 on CUDA

    def __post_init__(self):
        if self.asr not in ASR_BACKENDS:
            raise ValueError(f"asr must be one of {ASR_BACKENDS}, got {self.asr!r}")


_RULES_CACHE: dict[str, dict] = {}


def load_text_rules(path: str | os.PathLike | None = None) -> dict[str, list[tuple[re.Pattern, str]]]:
    import yaml

    path = str(path or TEXT_RULES)
    if path not in _RULES_CACHE:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        _RULES_CACHE[path] = {lang: [(re.compile(p), r) for p, r in rules] for lang, rules in raw.items()}
    return _RULES_CACHE[path]


def normalize_text(text: str, language: str | None = None, rules_path: str | os.PathLike | None = None) -> str:
    """Clean an ASR transcript with the shared rules, then the language's own (config, not code)."""
    import unicodedata

    rules = load_text_rules(rules_path)
    text = unicodedata.normalize("NFC", text or "")
    language_rules = rules.get((language or "").lower(), []) or rules.get((language or "").split("-")[0].lower(), [])
    for pattern, replacement in rules.get("*", []) + language_rules:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(gzip.compress(data))) if data else 0.0


def _rejection(row: dict, cfg: TranscribeConfig) -> str:
    if not row["text"]:
        return "empty_transcript"
    if row["no_speech_prob"] > cfg.max_no_speech_prob:
        return "no_speech"
    if row["avg_logprob"] < cfg.min_avg_logprob:
        return "low_confidence"
    if row["compression_ratio"] > cfg.max_compression_ratio:
        return "repetitive"
    return ""


def load_whisper(cfg: TranscribeConfig, device):
    """Whisper model + processor from the Hub or a local folder (tests inject tiny ones instead)."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    dtype = {"auto": torch.float16 if str(device).startswith("cuda") else torch.float32, "float16": torch.float16,
             "bfloat16": torch.bfloat16, "float32": torch.float32}[cfg.dtype]
    from recipes.common import explain_hub_errors

    with explain_hub_errors(f"Whisper model {cfg.model_name_or_path!r}",
                            "segment and build run offline; give --model_name_or_path a local Whisper folder"):
        processor = WhisperProcessor.from_pretrained(cfg.model_name_or_path)
        model = WhisperForConditionalGeneration.from_pretrained(cfg.model_name_or_path, dtype=dtype)
    return model.to(device).eval(), processor


def _no_speech_token_id(tokenizer) -> int | None:
    for token in ("<|nospeech|>", "<|nocaptions|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            return token_id
    return None


def transcribe_batch(model, processor, audios: list[np.ndarray], cfg: TranscribeConfig) -> list[dict]:
    """Transcribe 16 kHz clips. Returns per clip: raw text, avg_logprob, no_speech_prob."""
    import torch

    device, dtype = model.device, next(model.parameters()).dtype
    features = processor.feature_extractor(audios, sampling_rate=WHISPER_SAMPLING_RATE, return_tensors="pt")
    input_features = features.input_features.to(device=device, dtype=dtype)
    tokenizer = processor.tokenizer
    with torch.no_grad():
        # run the encoder once: it serves both the no-speech probe and generation
        encoder_outputs = model.get_encoder()(input_features)
        start_id = model.generation_config.decoder_start_token_id
        probe = model(encoder_outputs=encoder_outputs,
                      decoder_input_ids=torch.full((len(audios), 1), start_id, device=device, dtype=torch.long))
        no_speech_id = _no_speech_token_id(tokenizer)
        first_step = probe.logits[:, 0].float().softmax(-1)
        no_speech = first_step[:, no_speech_id] if no_speech_id is not None else torch.zeros(len(audios))
        generate_kwargs = {"task": cfg.task, "max_new_tokens": cfg.max_new_tokens, "num_beams": cfg.num_beams,
                           "return_dict_in_generate": True, "output_scores": True}
        if cfg.language:
            generate_kwargs["language"] = cfg.language
        out = model.generate(encoder_outputs=encoder_outputs, **generate_kwargs)
        step_logprobs = model.compute_transition_scores(out.sequences, out.scores,
                                                        beam_indices=getattr(out, "beam_indices", None),
                                                        normalize_logits=True)
    generated = out.sequences[:, -step_logprobs.shape[1]:]
    eos_id = model.generation_config.eos_token_id
    eos_ids = set(eos_id if isinstance(eos_id, list) else [eos_id])
    results = []
    for row, (tokens, logprobs) in enumerate(zip(generated.tolist(), step_logprobs.float().tolist())):
        counted = []
        for token, logprob in zip(tokens, logprobs):
            counted.append(logprob)
            if token in eos_ids:
                break  # tokens after the end are padding
        finite = [lp for lp in counted if math.isfinite(lp)]
        results.append({
            "raw_text": tokenizer.decode(tokens, skip_special_tokens=True),
            "avg_logprob": float(sum(finite) / len(finite)) if finite else NO_LOGPROB,
            "no_speech_prob": float(no_speech[row]),
        })
    return results


def faster_whisper_batch(model, audios: list[np.ndarray], cfg: TranscribeConfig) -> list[dict]:
    """The faster-whisper counterpart of `transcribe_batch` (one clip at a time; same result keys).

    Beam 5 unless --num_beams asks for more, temperature 0, no previous-text prompt, no repeated 3-grams.
    """
    from data_prep.offline_models import faster_whisper_transcribe

    results = []
    for audio in audios:
        out = faster_whisper_transcribe(model, audio, cfg.language, beam_size=max(5, cfg.num_beams))
        results.append({"raw_text": out["text"], "avg_logprob": out["avg_logprob"],
                        "no_speech_prob": out["no_speech_prob"]})
    return results


def transcribe(work_dir: str | os.PathLike, cfg: TranscribeConfig | None = None, *, model=None, processor=None) -> dict:
    """Transcribe every segment in WORK/segments.jsonl not yet transcribed; returns counts.

    Runs on every process when started with `accelerate launch` (segments are shared out, each process
    appends to its own WORK/transcripts.rank<k>.jsonl); a plain run writes WORK/transcripts.jsonl.
    Results are appended after each batch, so an interrupted run resumes where it stopped.
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    cfg = cfg or TranscribeConfig()
    work = Path(work_dir)
    segments = _read_jsonl(work / "segments.jsonl")
    if not segments:
        raise RecordingsError(f"{work}/segments.jsonl is empty or missing: run `python -m data_prep segment` first")
    done = {row["id"] for path in sorted(work.glob("transcripts*.jsonl")) for row in _read_jsonl(path)}
    todo = [s for s in segments if s["id"] not in done]
    state = PartialState()
    out_path = work / ("transcripts.jsonl" if state.num_processes == 1 else f"transcripts.rank{state.process_index}.jsonl")
    written = 0
    # Whisper (transformers, one window) hears 30 s at most: a longer clip would be transcribed only in part, so
    # it is rejected instead; faster-whisper decodes long clips window by window.
    too_long = [s for s in todo if s["duration"] > WHISPER_MAX_SECONDS] if cfg.asr == "transformers" else []
    if too_long and state.is_main_process:
        _append_jsonl(work / "transcripts.jsonl", [
            {"id": s["id"], "text": "", "raw_text": "", "avg_logprob": NO_LOGPROB, "no_speech_prob": 0.0,
             "compression_ratio": 0.0, "language": cfg.language or "", "model": cfg.model_name_or_path,
             "rejected": "too_long_for_whisper"} for s in too_long])
    todo = [s for s in todo if s["duration"] <= WHISPER_MAX_SECONDS]
    with state.split_between_processes(todo) as mine:
        if mine:
            if cfg.asr == "faster-whisper":
                if model is None:
                    from data_prep.offline_models import load_faster_whisper

                    model = load_faster_whisper(cfg.model_name_or_path, str(state.device), cfg.compute_type)
                processor = None
            elif model is None or processor is None:
                model, processor = load_whisper(cfg, state.device)
            for i in tqdm(range(0, len(mine), cfg.batch_size), desc=f"transcribe [{state.process_index}]",
                          disable=not state.is_local_main_process):
                batch = mine[i:i + cfg.batch_size]
                audios = [decode_audio(str(work / s["audio_path"]), target_sr=WHISPER_SAMPLING_RATE)[0] for s in batch]
                rows = []
                results = (transcribe_batch(model, processor, audios, cfg) if cfg.asr == "transformers"
                           else faster_whisper_batch(model, audios, cfg))
                for segment_row, result in zip(batch, results):
                    text = normalize_text(result["raw_text"], cfg.language, cfg.normalization_rules)
                    row = {"id": segment_row["id"], "text": text, "raw_text": result["raw_text"],
                           "avg_logprob": round(result["avg_logprob"], 4),
                           "no_speech_prob": round(result["no_speech_prob"], 4),
                           "compression_ratio": round(compression_ratio(text), 3), "language": cfg.language or "",
                           "model": cfg.model_name_or_path}
                    row["rejected"] = _rejection(row, cfg)
                    rows.append(row)
                _append_jsonl(out_path, rows)
                written += len(rows)
    state.wait_for_everyone()
    return {"segments": len(segments), "already_done": len(done & {s["id"] for s in segments}),
            "transcribed_here": written, "output": str(out_path)}


# ==============================================================================================
# build
# ==============================================================================================

def speaker_for(recording: str, rule: str) -> str:
    """Diarisation-free speaker rules: `recording` (file stem), `folder` (parent folder), `constant:NAME`,
    `regex:PATTERN` (first group, else whole match, searched in the recording path)."""
    path = Path(recording)
    if rule == "recording":
        return path.stem
    if rule == "folder":
        return path.parent.name
    if rule.startswith("constant:"):
        return rule.split(":", 1)[1]
    if rule.startswith("regex:"):
        match = re.search(rule.split(":", 1)[1], str(path))
        if match is None:
            raise ValueError(f"speaker rule {rule!r} does not match recording {recording}")
        return match.group(1) if match.groups() else match.group(0)
    raise ValueError(f"unknown speaker rule {rule!r}: use recording, folder, constant:NAME or regex:PATTERN")


def build(work_dir: str | os.PathLike, output_dir: str | os.PathLike, *, dialect: str, language: str | None = None,
          speaker_rule: str = "recording", ljspeech: bool = True, dataset: bool = True, processing=None,
          transcribe_cfg: TranscribeConfig | None = None, **output_options) -> dict:
    """Segments + accepted transcripts -> OUT/ljspeech (metadata.csv, wavs/) and/or OUT/dataset (schema).

    Transcripts rejected by the confidence filters and segments without a transcript are counted skips.
    The schema dataset goes through `data_prep.processing.prepare` (filters, balancing, split) and
    `write_outputs` (report, card, optional push: pass repo_id=..., push_to_hub=True, license=...).
    """
    from data_prep.processing import ProcessingConfig, prepare
    from data_prep.sources import SourceResult, records_to_dataset

    if not (ljspeech or dataset):
        raise ValueError("build: nothing to write; enable ljspeech and/or dataset")
    work, out = Path(work_dir), Path(output_dir)
    segments = _read_jsonl(work / "segments.jsonl")
    transcripts = {}
    for path in sorted(work.glob("transcripts*.jsonl")):
        for row in _read_jsonl(path):
            transcripts[row["id"]] = row
    tcfg = transcribe_cfg
    skips = SkipReport()
    accepted = []
    for seg in segments:
        row = transcripts.get(seg["id"])
        audio = str(work / seg["audio_path"])
        if row is None:
            skips.add(seg["id"], audio, "not_transcribed", "no transcript yet: run `python -m data_prep transcribe`", "source")
            continue
        reason = _rejection(row, tcfg) if tcfg is not None else row.get("rejected", "")
        if reason:
            skips.add(seg["id"], audio, reason, f"avg_logprob={row['avg_logprob']} no_speech_prob={row['no_speech_prob']} "
                      f"compression_ratio={row['compression_ratio']} text={row['text'][:60]!r}", "source")
            continue
        accepted.append({"id": seg["id"], "audio": audio, "text": row["text"],
                         "speaker": speaker_for(seg["recording"], speaker_rule), "dialect": dialect,
                         "language": language or row.get("language") or "", "expected_duration": seg["duration"],
                         "source": f"recording:{seg['recording']}@{seg['start']}-{seg['end']}"})
    result = {"segments": len(segments), "accepted": len(accepted), "skips": skips.to_dict()["counts"]}
    if ljspeech:
        result["ljspeech"] = str(write_ljspeech(accepted, out / "ljspeech"))
    if dataset:
        description = {"kind": "recordings", "work_dir": str(work), "speaker_rule": speaker_rule,
                       "asr_model": next((t.get("model") for t in transcripts.values()), None),
                       "confidence_filters": asdict(tcfg) if tcfg else "as recorded by transcribe"}
        prepared = prepare(SourceResult(records_to_dataset(accepted), skips, description), processing or ProcessingConfig())
        from data_prep.outputs import write_outputs

        result["report"] = write_outputs(prepared, out, **output_options)
        result["dataset"] = str(out / "dataset")
    return result


def write_ljspeech(rows: list[dict], out_dir: Path) -> Path:
    """LJSpeech folder: wavs/<id>.wav (the clip as cut) and metadata.csv `id|text|text`; speakers.csv maps ids
    to speakers because the LJSpeech format itself has none."""
    import shutil

    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    with open(out_dir / "metadata.csv", "w", encoding="utf-8") as meta, \
            open(out_dir / "speakers.csv", "w", encoding="utf-8") as speakers:
        for row in rows:
            shutil.copyfile(row["audio"], out_dir / "wavs" / f"{row['id']}.wav")
            text = row["text"].replace("|", " ").replace("\n", " ")
            meta.write(f"{row['id']}|{text}|{text}\n")
            speakers.write(f"{row['id']}|{row['speaker']}\n")
    return out_dir


# ==============================================================================================
# command line (registered by data_prep/__main__.py)
# ==============================================================================================

def _add_segment_args(p):
    g = p.add_argument_group("segmentation")
    g.add_argument("--min_segment_s", type=float, default=5.0)
    g.add_argument("--max_segment_s", type=float, default=15.0)
    g.add_argument("--max_pause_s", type=float, default=1.5, help="a longer pause always ends a clip")
    g.add_argument("--pad_s", type=float, default=0.2, help="silence kept around speech (s)")
    g.add_argument("--fade_s", type=float, default=0.01)
    g.add_argument("--vad_threshold", type=float, default=0.5)
    g.add_argument("--vad_min_silence_s", type=float, default=0.3)
    g.add_argument("--segment_sampling_rate", type=int, default=DEFAULT_SAMPLING_RATE)


def _segment_cfg(args) -> SegmentConfig:
    return SegmentConfig(sampling_rate=args.segment_sampling_rate, min_segment_s=args.min_segment_s,
                         max_segment_s=args.max_segment_s, max_pause_s=args.max_pause_s, pad_s=args.pad_s,
                         fade_s=args.fade_s, vad_threshold=args.vad_threshold, vad_min_silence_s=args.vad_min_silence_s)


def _add_transcribe_args(p):
    g = p.add_argument_group("transcription (Whisper)")
    g.add_argument("--asr", choices=ASR_BACKENDS, default="transformers",
                   help="transformers (batched) | faster-whisper (CTranslate2; int8 on CPU)")
    g.add_argument("--model_name_or_path", default=None,
                   help="default: openai/whisper-large-v3 (transformers) or large-v3 (faster-whisper); "
                        "wheel:whisper-base with faster-whisper = the Whisper base from PyPI wheels (offline)")
    g.add_argument("--compute_type", default=None, help="faster-whisper compute type (default int8 CPU, float16 CUDA)")
    g.add_argument("--language", default=None, help="e.g. ca; also picks the text normalisation rules")
    g.add_argument("--batch_size", type=int, default=16)
    g.add_argument("--max_new_tokens", type=int, default=200)
    g.add_argument("--num_beams", type=int, default=1)
    g.add_argument("--dtype", choices=("auto", "float16", "bfloat16", "float32"), default="auto")
    g.add_argument("--min_avg_logprob", type=float, default=-1.0)
    g.add_argument("--max_no_speech_prob", type=float, default=0.6)
    g.add_argument("--max_compression_ratio", type=float, default=2.4)
    g.add_argument("--normalization_rules", default=None, help="YAML of per-language regex rules")


def _transcribe_cfg(args) -> TranscribeConfig:
    return TranscribeConfig(model_name_or_path=args.model_name_or_path or DEFAULT_ASR_MODELS[args.asr],
                            asr=args.asr, compute_type=args.compute_type, language=args.language,
                            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                            dtype=args.dtype, min_avg_logprob=args.min_avg_logprob,
                            max_no_speech_prob=args.max_no_speech_prob, max_compression_ratio=args.max_compression_ratio,
                            normalization_rules=args.normalization_rules)


def _add_build_args(p):
    g = p.add_argument_group("build")
    g.add_argument("--dialect", required=True, help="dialect/language label of the dataset")
    g.add_argument("--speaker_rule", default="recording",
                   help="recording | folder | constant:NAME | regex:PATTERN (speaker per source recording by default)")
    g.add_argument("--no_ljspeech", action="store_true", help="do not write OUT/ljspeech")
    g.add_argument("--no_dataset", action="store_true", help="do not write the schema dataset")


def _run_build(args, tcfg=None):
    from data_prep.__main__ import _remove_default_cache, processing_config

    try:
        return _build_from_args(args, tcfg, processing_config(args))
    finally:
        _remove_default_cache(args)


def _build_from_args(args, tcfg, processing):
    return build(args.work_dir, args.output_dir, dialect=args.dialect, language=args.language,
                 speaker_rule=args.speaker_rule, ljspeech=not args.no_ljspeech, dataset=not args.no_dataset,
                 processing=processing, transcribe_cfg=tcfg, purpose=args.purpose, license=args.license,
                 pretty_name=args.pretty_name, repo_id=args.repo_id, push_to_hub=args.push_to_hub,
                 private=args.private, hub_config_name=args.hub_config_name)


def cmd_download(args):
    try:
        files, failures = download(args.urls, args.out, max_duration_s=args.max_duration_s)
    except RecordingsError as err:
        raise SystemExit(f"download skipped: {err}") from None
    for url, error in failures:
        print(f"could not download {url}: {error} (offline or unreachable? local files work without download)")
    print(f"{len(files)} new file(s) in {args.out}")
    return files


def cmd_segment(args):
    report = segment(args.inputs, args.work_dir, _segment_cfg(args))
    print(json.dumps({k: v for k, v in report.items() if k != "per_recording"}, indent=2))


def _transcribe_or_explain(work_dir, cfg: TranscribeConfig) -> dict:
    from data_prep.offline_models import OfflineModelError

    try:
        return transcribe(work_dir, cfg)
    except OfflineModelError as err:
        raise SystemExit(f"transcribe --asr {cfg.asr}: {err}") from None


def cmd_transcribe(args):
    print(json.dumps(_transcribe_or_explain(args.work_dir, _transcribe_cfg(args)), indent=2))


def cmd_build(args):
    result = _run_build(args)
    print(json.dumps({k: v for k, v in result.items() if k != "report"}, indent=2, ensure_ascii=False))


def cmd_from_recordings(args):
    inputs = list(args.inputs or [])
    if args.urls:
        try:
            files, failures = download(args.urls, Path(args.work_dir) / "downloads", max_duration_s=args.max_duration_s)
            inputs.append(str(Path(args.work_dir) / "downloads"))
            for url, error in failures:
                print(f"could not download {url}: {error}")
        except RecordingsError as err:
            print(f"download skipped: {err}")
    if not inputs:
        raise SystemExit("nothing to segment: pass --inputs (files/folders) or reachable --urls")
    print(json.dumps({k: v for k, v in segment(inputs, args.work_dir, _segment_cfg(args)).items()
                      if k != "per_recording"}, indent=2))
    tcfg = _transcribe_cfg(args)
    print(json.dumps(_transcribe_or_explain(args.work_dir, tcfg), indent=2))
    result = _run_build(args, tcfg)
    print(json.dumps({k: v for k, v in result.items() if k != "report"}, indent=2, ensure_ascii=False))


def add_recordings_commands(sub) -> None:
    from data_prep.__main__ import add_output_args, add_processing_args

    p = sub.add_parser("download", help="fetch audio from URLs/playlists with yt-dlp (optional)")
    p.add_argument("--urls", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max_duration_s", type=float, default=None, help="skip items longer than this")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("segment", help="cut long recordings into clips at pauses (silero-vad, offline)")
    p.add_argument("--inputs", nargs="+", required=True, help="audio files and/or folders")
    p.add_argument("--work_dir", required=True)
    _add_segment_args(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("transcribe", help="Whisper transcripts with confidence (resumable; accelerate launch for many GPUs)")
    p.add_argument("--work_dir", required=True)
    _add_transcribe_args(p)
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("build", help="segments + transcripts -> LJSpeech folder and/or schema dataset")
    p.add_argument("--work_dir", required=True)
    p.add_argument("--language", default=None)
    _add_build_args(p)
    add_processing_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("from-recordings", help="download (optional) -> segment -> transcribe -> build, in one go")
    p.add_argument("--inputs", nargs="*", default=None, help="audio files and/or folders")
    p.add_argument("--urls", nargs="*", default=None, help="optional URLs for yt-dlp")
    p.add_argument("--max_duration_s", type=float, default=None)
    p.add_argument("--work_dir", required=True)
    _add_segment_args(p)
    _add_transcribe_args(p)
    _add_build_args(p)
    add_processing_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_from_recordings)
