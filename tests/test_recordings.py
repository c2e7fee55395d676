"""Long recordings -> segments (real silero VAD) -> transcripts (tiny random Whisper built from a config and a
locally built WhisperTokenizer) -> LJSpeech folder + schema dataset."""

import json
import sys
import types

import numpy as np
import pytest

from data_prep.audio import decode_audio, write_audio
from data_prep.recordings import (RecordingsError, SegmentConfig, TranscribeConfig, build, compression_ratio, download,
                                  normalize_text, segment, speaker_for, transcribe)

SR = 24000
# central clips without commas: a comma's pause inside a sentence would be a legitimate cut point too
CLIPS = ["central_m3_000", "central_m3_001", "central_m3_003", "central_m3_004",
         "central_f2_000", "central_f2_001", "central_f2_002", "central_f2_003"]


def _speech(demo_corpus_dir, clip_id):
    samples, _ = decode_audio(demo_corpus_dir / "clips" / f"{clip_id}.flac", target_sr=SR)
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    return samples[loud[0]:loud[-1] + 1]  # speech only: the clip's own leading/trailing silence removed


def make_recording(demo_corpus_dir, gaps, path, clips=CLIPS):
    """Speech of `clips` joined by `gaps` seconds of (faint noise) silence; returns speech intervals in seconds."""
    rng = np.random.default_rng(0)
    parts, intervals, t = [np.zeros(int(0.7 * SR), np.float32)], [], 0.7
    for i, clip_id in enumerate(clips):
        speech = _speech(demo_corpus_dir, clip_id)
        intervals.append((t, t + len(speech) / SR))
        t += len(speech) / SR
        gap = gaps[i] if i < len(gaps) else 0.8
        parts += [speech, np.zeros(int(gap * SR), np.float32)]
        t += int(gap * SR) / SR
    audio = np.concatenate(parts)
    audio += (3e-4 * rng.standard_normal(len(audio))).astype(np.float32)
    write_audio(path, audio, SR)
    return intervals


def _segments(work):
    return [json.loads(line) for line in (work / "segments.jsonl").read_text().splitlines()]


def test_vad_cuts_in_the_known_silences(demo_corpus_dir, tmp_path):
    gaps = [0.6, 2.5, 1.0, 3.0, 0.8, 1.8, 0.7]
    intervals = make_recording(demo_corpus_dir, gaps, tmp_path / "rec" / "long.wav")
    # every pause ends a clip: one clip per sentence, boundaries at the sentence edges (+ padding)
    cfg = SegmentConfig(min_segment_s=1.0, max_segment_s=15.0, max_pause_s=0.4, pad_s=0.2)
    report = segment([tmp_path / "rec"], tmp_path / "work", cfg)
    rows = _segments(tmp_path / "work")
    assert report["clips"] == len(rows) == len(intervals)
    tolerance = 0.2
    for row, (start, end) in zip(rows, intervals):
        assert start - cfg.pad_s - tolerance <= row["start"] <= start + tolerance, (row, start)
        assert end - tolerance <= row["end"] <= end + cfg.pad_s + tolerance, (row, end)
        audio, sr = decode_audio(tmp_path / "work" / row["audio_path"])
        assert sr == SR and abs(len(audio) / sr - row["duration"]) < 0.01
        assert abs(audio[0]) < 1e-3 and abs(audio[-1]) < 1e-3  # faded edges


def test_default_segmentation_merges_sentences_and_cuts_at_long_pauses(demo_corpus_dir, tmp_path):
    # short pauses join sentences into 5-15 s clips; the 2.5 s and 3.0 s pauses (> max_pause_s 1.5) end clips
    gaps = [0.6, 0.9, 2.5, 0.5, 1.0, 3.0, 0.7]
    intervals = make_recording(demo_corpus_dir, gaps, tmp_path / "rec" / "long.wav")
    report = segment([tmp_path / "rec"], tmp_path / "work", SegmentConfig())
    rows = _segments(tmp_path / "work")
    assert report["clips"] == len(rows) == 3
    tolerance = 0.2
    for row, members in zip(rows, ([0, 1, 2], [3, 4, 5], [6, 7])):
        assert 5.0 <= row["duration"] <= 15.0
        first, last = intervals[members[0]], intervals[members[-1]]
        assert first[0] - 0.2 - tolerance <= row["start"] <= first[0] + tolerance
        assert last[1] - tolerance <= row["end"] <= last[1] + 0.2 + tolerance
    # the kept/dropped audio is reported per recording
    saved = json.loads((tmp_path / "work" / "segment_report.json").read_text())
    assert saved["recordings"] == 1 and saved["clips"] == 3
    assert 0 < saved["kept_hours"] <= saved["audio_hours"]


def test_clips_shorter_than_the_minimum_are_dropped_and_reported(demo_corpus_dir, tmp_path):
    make_recording(demo_corpus_dir, [3.0], tmp_path / "rec" / "two.wav", clips=CLIPS[:2])
    report = segment([tmp_path / "rec"], tmp_path / "work", SegmentConfig())
    assert report["clips"] == 0
    assert report["dropped_seconds"]["too_short"] > 3.0


def test_long_speech_without_pauses_is_cut_at_its_quietest_point(demo_corpus_dir, tmp_path):
    intervals = make_recording(demo_corpus_dir, [0.45] * 7, tmp_path / "rec" / "dense.wav")
    # the VAD is told to ignore pauses under 1 s, so it sees one long stretch of speech
    cfg = SegmentConfig(min_segment_s=2.0, max_segment_s=6.0, vad_min_silence_s=1.0, pad_s=0.2)
    segment([tmp_path / "rec"], tmp_path / "work", cfg)
    rows = _segments(tmp_path / "work")
    assert len(rows) >= 3
    gaps = [(intervals[i][1], intervals[i + 1][0]) for i in range(len(intervals) - 1)]
    for previous, row in zip(rows, rows[1:]):
        cut = row["start"]
        assert any(lo - 0.05 <= cut <= hi + 0.05 for lo, hi in gaps), (cut, gaps)
        assert row["duration"] <= 6.0


def test_segment_resumes_and_skips_done_recordings(demo_corpus_dir, tmp_path, monkeypatch):
    make_recording(demo_corpus_dir, [1.0] * 3, tmp_path / "rec" / "a.wav", clips=CLIPS[:4])
    cfg = SegmentConfig(min_segment_s=1.0, max_segment_s=15.0, max_pause_s=0.4)
    from data_prep.__main__ import main

    main(["segment", "--inputs", str(tmp_path / "rec"), "--work_dir", str(tmp_path / "work"),
          "--min_segment_s", "1", "--max_segment_s", "15", "--max_pause_s", "0.4"])
    first = json.loads((tmp_path / "work" / "segment_report.json").read_text())
    import data_prep.recordings as recordings

    monkeypatch.setattr(recordings, "speech_regions", lambda *a, **k: pytest.fail("VAD ran on a done recording"))
    second = segment([tmp_path / "rec"], tmp_path / "work", cfg)
    assert second["clips"] == first["clips"] == 4
    assert len(_segments(tmp_path / "work")) == 4


# ------------------------------------------------------------------------------ transcription

LANGUAGES = ["en", "ca", "es", "fr"]


def tiny_whisper():
    """A random Whisper from a WhisperConfig with a real WhisperTokenizer over a byte-level alphabet."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = ["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{lang}|>" for lang in LANGUAGES] + [
        "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], additional_special_tokens=specials[1:])
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = WhisperConfig(vocab_size=len(vocab), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
                           pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, is_multilingual=True,
        lang_to_id={f"<|{lang}|>": vocab[f"<|{lang}|>"] for lang in LANGUAGES},
        task_to_id={"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]},
        no_timestamps_token_id=vocab["<|notimestamps|>"], max_length=64,
        # as in real Whisper configs: no special tokens inside the text, so random weights still spell bytes
        suppress_tokens=[vocab[t] for t in specials[1:]], begin_suppress_tokens=[eot],
    )
    return model, processor


class CountingModel:
    """Wraps the tiny model to count generate calls (resume must not call it again)."""

    def __init__(self, model):
        self.model, self.generate_calls = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        self.generate_calls += 1
        return self.model.generate(*args, **kwargs)


@pytest.fixture(scope="module")
def segmented(demo_corpus_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("recordings")
    for name, clips in (("speaker_a", CLIPS[:4]), ("speaker_b", CLIPS[4:])):
        make_recording(demo_corpus_dir, [1.0, 2.0, 1.2], root / "rec" / name / "episode1.wav", clips=clips)
    cfg = SegmentConfig(min_segment_s=1.0, max_segment_s=15.0, max_pause_s=0.4)
    segment([root / "rec"], root / "work", cfg)
    return root


def test_transcribe_with_tiny_random_whisper_is_resumable(segmented, tmp_path):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(segmented / "work", work)
    model, processor = tiny_whisper()
    counting = CountingModel(model)
    cfg = TranscribeConfig(model_name_or_path="tiny-random", language="ca", batch_size=3, max_new_tokens=6,
                           min_avg_logprob=-100.0, max_no_speech_prob=1.0, max_compression_ratio=100.0)
    summary = transcribe(work, cfg, model=counting, processor=processor)
    rows = [json.loads(line) for line in (work / "transcripts.jsonl").read_text().splitlines()]
    segments = _segments(work)
    assert summary["transcribed_here"] == len(rows) == len(segments) == 8
    assert counting.generate_calls == 3  # 8 clips in batches of 3
    for row in rows:
        assert row["raw_text"] and isinstance(row["text"], str)
        assert -100 < row["avg_logprob"] < 0 and 0 <= row["no_speech_prob"] <= 1
        assert row["rejected"] in ("", "empty_transcript")
    # resume: nothing left to do, the model is not called again
    again = transcribe(work, cfg, model=counting, processor=processor)
    assert again["transcribed_here"] == 0 and again["already_done"] == 8 and counting.generate_calls == 3
    # an interrupted run (last lines lost) redoes only the missing clips
    lines = (work / "transcripts.jsonl").read_text().splitlines()
    (work / "transcripts.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:10])
    resumed = transcribe(work, cfg, model=counting, processor=processor)
    assert resumed["transcribed_here"] == 3
    # the confidence filter: a random model is never confident
    strict = TranscribeConfig(language="ca", batch_size=8, max_new_tokens=6, min_avg_logprob=-0.5)
    shutil.rmtree(work / "strict", ignore_errors=True)
    shutil.copytree(segmented / "work", work / "strict")
    transcribe(work / "strict", strict, model=model, processor=processor)
    strict_rows = [json.loads(line) for line in (work / "strict" / "transcripts.jsonl").read_text().splitlines()]
    assert {r["rejected"] for r in strict_rows} <= {"low_confidence", "no_speech", "empty_transcript"}
    assert all(r["rejected"] for r in strict_rows)


def test_clips_longer_than_whisper_hears_are_rejected_not_cut(segmented, tmp_path):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(segmented / "work", work)
    rows = _segments(work)
    rows[0]["duration"] = 31.0  # as if segmented with --max_segment_s 40
    (work / "segments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model, processor = tiny_whisper()
    transcribe(work, TranscribeConfig(language="ca", batch_size=8, max_new_tokens=4), model=model, processor=processor)
    out = {r["id"]: r for r in map(json.loads, (work / "transcripts.jsonl").read_text().splitlines())}
    assert len(out) == len(rows) and out[rows[0]["id"]]["rejected"] == "too_long_for_whisper"


def test_transcribe_offline_without_weights_explains(segmented, tmp_path):
    import shutil

    shutil.copytree(segmented / "work", tmp_path / "work")
    from data_prep.__main__ import main

    with pytest.raises(SystemExit, match="Could not load Whisper model 'openai/whisper-tiny'"):
        main(["transcribe", "--work_dir", str(tmp_path / "work"), "--model_name_or_path", "openai/whisper-tiny"])


def test_text_normalisation_per_language():
    assert normalize_text("  L ’escola  és  gran .", "ca") == "L'escola és gran."
    assert normalize_text("la col.lecció [Música] ", "ca") == "la col·lecció"
    assert normalize_text("Tu viens?", "fr") == "Tu viens ?"
    assert normalize_text("¿Qué tal ?", "es") == "¿Qué tal?"
    assert normalize_text("vc vem?", "pt-br") == "você vem?"
    assert normalize_text("♪ hello !!!", None) == "hello!"
    assert compression_ratio("la la la " * 30) > 2.4 > compression_ratio("El noi ha anat a l'escola de bon matí.")


def test_build_writes_ljspeech_and_a_valid_schema_dataset(segmented, demo_corpus_dir, tmp_path):
    import shutil

    from datasets import load_from_disk

    from data_prep.processing import ProcessingConfig
    from data_prep.schema import validate_schema
    from data_prep.sources import from_ljspeech

    work = tmp_path / "work"
    shutil.copytree(segmented / "work", work)
    texts = {json.loads(line)["id"]: json.loads(line)["text"]
             for line in (demo_corpus_dir / "manifest.jsonl").read_text().splitlines()}
    segments = _segments(work)
    rows = []
    for i, seg in enumerate(segments):
        clip = (CLIPS[:4] if "speaker_a" in seg["recording"] else CLIPS[4:])[i % 4]
        rows.append({"id": seg["id"], "text": texts[clip], "raw_text": texts[clip], "avg_logprob": -0.2,
                     "no_speech_prob": 0.01, "compression_ratio": 1.1, "language": "ca", "rejected": "",
                     "model": "known transcripts"})
    rows[0].update(avg_logprob=-2.5, rejected="low_confidence")
    (work / "transcripts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:-1]))

    result = build(work, tmp_path / "out", dialect="central", language="ca", speaker_rule="folder",
                   processing=ProcessingConfig(min_per_speaker=3), license="cc-by-4.0", verbose=False)
    assert result["skips"] == {"low_confidence": 1, "not_transcribed": 1}
    data = load_from_disk(result["dataset"])
    validate_schema(data, 24000)
    assert set(data["train"]["speaker"]) | set(data["validation"]["speaker"]) == {"speaker_a", "speaker_b"}
    assert len(data["train"]) + len(data["validation"]) == 6
    assert "| low_confidence | 1 |" in (tmp_path / "out" / "README.md").read_text()
    # the LJSpeech folder reads back through data_prep's own LJSpeech source
    metadata = (tmp_path / "out" / "ljspeech" / "metadata.csv").read_text().splitlines()
    assert len(metadata) == 6 and all(len(line.split("|")) == 3 for line in metadata)
    source = from_ljspeech(tmp_path / "out" / "ljspeech", dialect="central")
    assert len(source.dataset) == 6


def test_speaker_rules():
    assert speaker_for("/data/ana/ep1.mp3", "folder") == "ana"
    assert speaker_for("/data/ana/ep1.mp3", "recording") == "ep1"
    assert speaker_for("/data/ana/ep1.mp3", "constant:host") == "host"
    assert speaker_for("/data/show-joan-12.mp3", r"regex:show-(\w+)-\d+") == "joan"
    with pytest.raises(ValueError, match="unknown speaker rule"):
        speaker_for("x.wav", "diarize")


# ------------------------------------------------------------------------------ download (yt-dlp)

def test_download_without_yt_dlp_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # import fails as if not installed
    with pytest.raises(RecordingsError, match="pip install yt-dlp"):
        download(["https://example.com/x"], tmp_path)
    from data_prep.__main__ import main

    with pytest.raises(SystemExit, match="download skipped"):
        main(["download", "--urls", "https://example.com/x", "--out", str(tmp_path)])


def test_download_options_and_offline_failures_with_a_stand_in_yt_dlp(tmp_path, monkeypatch):
    seen = {}

    class YoutubeDL:
        def __init__(self, options):
            seen["options"] = options

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def extract_info(self, url, download):
            if "offline" in url:
                raise RuntimeError("Unable to download webpage: <urlopen error [Errno -3] name resolution>")
            write_audio(tmp_path / "youtube_abc.wav", np.zeros(SR, np.float32), SR)
            return {"id": "abc", "title": "episode", "uploader": "someone", "duration": 1.0}

    fake = types.ModuleType("yt_dlp")
    fake.YoutubeDL = YoutubeDL
    fake.utils = types.SimpleNamespace(match_filter_func=lambda expr: ("filter", expr))
    monkeypatch.setitem(sys.modules, "yt_dlp", fake)
    files, failures = download(["https://ok/1", "https://offline/2"], tmp_path, max_duration_s=3600)
    assert [f.name for f in files] == ["youtube_abc.wav"]
    assert failures and failures[0][0] == "https://offline/2" and "name resolution" in failures[0][1]
    options = seen["options"]
    assert options["format"] == "bestaudio/best" and options["match_filter"] == ("filter", "duration <= 3600.0")
    assert options["download_archive"].endswith("downloaded.txt")  # reruns skip what is done
    assert json.loads((tmp_path / "downloads.jsonl").read_text().splitlines()[0])["title"] == "episode"


@pytest.mark.parametrize("command", ["download", "segment", "transcribe", "build", "from-recordings"])
def test_recordings_command_help(command, capsys):
    from data_prep.__main__ import make_parser

    with pytest.raises(SystemExit) as exit_info:
        make_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert f"python -m data_prep {command}" in capsys.readouterr().out


@pytest.mark.gpu
def test_transcribe_batch_in_float16_on_gpu(demo_corpus_dir):
    import torch

    from data_prep.recordings import WHISPER_SAMPLING_RATE, transcribe_batch

    model, processor = tiny_whisper()
    model = model.to("cuda", dtype=torch.float16)
    audios = [decode_audio(demo_corpus_dir / "clips" / f"{c}.flac", target_sr=WHISPER_SAMPLING_RATE)[0] for c in CLIPS[:4]]
    results = transcribe_batch(model, processor, audios, TranscribeConfig(language="ca", max_new_tokens=6))
    assert len(results) == 4
    assert all(np.isfinite(r["avg_logprob"]) and 0 <= r["no_speech_prob"] <= 1 for r in results)
