"""Metric code on known inputs: normaliser, WER/CER, MCD with and without DTW, similarity, eval models."""

import numpy as np
import pytest

from data_prep.audio import decode_audio
from data_prep.demo_corpus import load_demo_dataset
from recipes.eval.metrics import (MCDSettings, cosine_similarity, is_silent, mel_cepstral_distortion,
                                  word_and_char_errors)
from recipes.eval.text import TextNormalizer


@pytest.fixture(scope="module")
def clip():
    dataset = load_demo_dataset(dialects=["central"], speakers=["central_m3"])
    return decode_audio(dataset[0]["audio"])


# --- text normaliser -------------------------------------------------------------------------------

def test_catalan_normaliser_keeps_middle_dot_and_splits_elisions():
    normalizer = TextNormalizer()
    assert normalizer.normalize("S'al·lot ha anat a s'escola, de bon matí!", "ca") == "s al·lot ha anat a s escola de bon matí"
    # The legacy one-character ŀ is rewritten to the same two-letter spelling.
    assert normalizer.normalize("Co\u0140legi", "ca") == "col·legi"


def test_numbers_become_words_in_the_row_language():
    normalizer = TextNormalizer()
    assert normalizer.normalize("Tinc 21 anys.", "ca") == "tinc vint i un anys"
    assert normalizer.normalize("Eu quero 2 copos", "pt-br") == "eu quero dois copos"
    assert normalizer.normalize("Ich habe 3 Katzen", "de") == "ich habe drei katzen"


def test_normaliser_is_configured_by_data_not_code():
    normalizer = TextNormalizer({"default": {"numbers": "keep", "punctuation": "keep", "lowercase": False},
                                 "languages": {"xx": {"numbers": "remove", "asr_language": "en"}}})
    assert normalizer.normalize("Room 12, please.", None) == "Room 12, please."
    assert normalizer.normalize("Room 12, please.", "xx") == "Room , please."
    assert normalizer.asr_language("xx") == "en"
    with pytest.raises(ValueError, match="unknown normaliser keys"):
        TextNormalizer({"default": {"lowercaes": True}})


def test_asr_language_comes_from_config_or_the_language_code():
    normalizer = TextNormalizer()
    assert normalizer.asr_language("pt-br") == "pt"
    assert normalizer.asr_language("ca") == "ca"
    assert normalizer.asr_language("gl") == "gl"  # not listed: the code itself
    assert normalizer.asr_language(None) is None


# --- WER / CER ---------------------------------------------------------------------------------------

def test_identical_text_scores_zero():
    scores = word_and_char_errors(["el noi ha anat a l escola"], ["el noi ha anat a l escola"])
    assert scores["wer"] == 0.0 and scores["cer"] == 0.0


def test_known_edit_gives_known_wer_and_cer():
    # One substituted word out of 7; "noi" -> "nen" is 2 character substitutions out of 25 characters.
    scores = word_and_char_errors(["el noi ha anat a l escola"], ["el nen ha anat a l escola"])
    assert scores["word_errors"] == 1 and scores["words"] == 7
    assert scores["wer"] == pytest.approx(1 / 7)
    assert scores["char_errors"] == 2 and scores["chars"] == 25
    assert scores["cer"] == pytest.approx(2 / 25)


def test_wer_is_pooled_over_sentences_and_counts_deletions_and_insertions():
    scores = word_and_char_errors(["a b c d", "e f"], ["a b c", "e f g h"])
    # 1 deletion + 2 insertions over 6 reference words; per-sentence mean would be (1/4 + 2/2) / 2.
    assert scores["wer"] == pytest.approx(3 / 6)
    assert word_and_char_errors(["a b"], [""])["wer"] == 1.0


# --- MCD ----------------------------------------------------------------------------------------------

def test_identical_audio_has_zero_mcd(clip):
    wave, sr = clip
    assert mel_cepstral_distortion(wave, wave, sr) == pytest.approx(0.0, abs=1e-9)


def test_dtw_absorbs_a_time_shift_that_frame_by_frame_comparison_cannot(clip):
    wave, sr = clip
    shifted = np.concatenate([np.zeros(int(0.3 * sr), dtype=np.float32), wave])
    with_dtw = mel_cepstral_distortion(shifted, wave, sr)
    without = mel_cepstral_distortion(shifted, wave, sr, align="truncate")
    assert 0 < with_dtw < 0.25 * without


def test_dtw_handles_a_time_stretch(clip):
    import librosa

    wave, sr = clip
    stretched = librosa.effects.time_stretch(wave, rate=0.85)
    with_dtw = mel_cepstral_distortion(stretched, wave, sr)
    assert with_dtw < 0.5 * mel_cepstral_distortion(stretched, wave, sr, align="truncate")
    # A time-stretched copy is still far closer than silence.
    assert with_dtw < 0.5 * mel_cepstral_distortion(np.zeros_like(wave), wave, sr)


def test_mcd_settings_change_the_cepstrum_size(clip):
    from recipes.eval.metrics import mel_cepstrum

    wave, sr = clip
    assert mel_cepstrum(wave, sr, MCDSettings(num_coefficients=13)).shape[1] == 13
    assert mel_cepstrum(wave, sr).shape[1] == 24


def test_cosine_similarity_and_silence():
    vector = np.array([0.3, -1.0, 2.0])
    assert cosine_similarity(vector, vector) == pytest.approx(1.0)
    assert cosine_similarity(vector, -vector) == pytest.approx(-1.0)
    assert cosine_similarity([1, 0], [0, 1]) == pytest.approx(0.0)
    assert is_silent(np.zeros(100)) and is_silent(np.zeros(0)) and not is_silent(np.ones(10) * 0.1)


# --- evaluation models (tiny random, built from configs) ----------------------------------------------

def test_tiny_whisper_transcribes_each_row_with_its_language_token(clip):
    from recipes.eval.models import WhisperASR

    asr = WhisperASR("tiny-random", "cpu", batch_size=2, max_new_tokens=8)
    assert not asr.meaningful
    lang_to_id = asr.model.generation_config.lang_to_id
    tokenizer = asr.processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<|ca|>") == lang_to_id["<|ca|>"]
    assert tokenizer.decode(tokenizer("l'escola de bon matí", add_special_tokens=False).input_ids) == "l'escola de bon matí"

    prompts = []
    original_generate = asr.model.generate

    def spying_generate(*args, **kwargs):
        prompts.append((kwargs["language"], kwargs["input_features"].shape[0]))
        return original_generate(*args, **kwargs)

    asr.model.generate = spying_generate
    wave, sr = clip
    texts = asr([wave, wave[: sr // 2], wave], sr, ["ca", "pt", "ca"])
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert texts[0] == texts[2]  # deterministic, and batching does not change a transcript
    assert sorted(prompts) == [("ca", 2), ("pt", 1)]
    # A failed generation (empty array) still gets a transcript instead of crashing the feature extractor.
    assert isinstance(asr([np.zeros(0, dtype=np.float32)], sr, [None])[0], str)


def test_tiny_speaker_encoder_identical_audio_has_similarity_one(clip):
    from recipes.eval.models import SpeakerEncoder

    encoder = SpeakerEncoder("tiny-random", "cpu")
    wave, sr = clip
    other = np.random.default_rng(0).normal(scale=0.1, size=sr).astype(np.float32)
    embeddings = encoder([wave, other, wave], sr)
    assert embeddings.shape[0] == 3
    assert np.linalg.norm(embeddings, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    assert cosine_similarity(embeddings[0], embeddings[2]) == pytest.approx(1.0, abs=1e-5)
    assert cosine_similarity(embeddings[0], embeddings[1]) < 0.999999


def test_eval_models_are_loaded_once():
    from recipes.eval.models import load_eval_models

    first = load_eval_models("tiny-random", "tiny-random", "cpu")
    assert load_eval_models("tiny-random", "tiny-random", "cpu") is first
    assert not first.meaningful


def test_max_samples_spreads_over_dialects():
    from recipes.eval.runner import spread_over_dialects

    dialects = ["a", "a", "a", "b", "b", "c"]
    assert spread_over_dialects(dialects, 3) == [0, 3, 5]
    assert spread_over_dialects(dialects, 5) == [0, 1, 3, 4, 5]
    assert spread_over_dialects(dialects, 6) == spread_over_dialects(dialects, 60) == list(range(6))


def test_checkpoint_folders_load_through_from_pretrained_and_missing_ones_explain(tmp_path, clip):
    """The real-model path (from_pretrained of processor + model) on saved tiny models; offline Hub ids fail clearly."""
    from recipes.eval.models import (SpeakerEncoder, WhisperASR, build_tiny_random_wavlm_xvector,
                                     build_tiny_random_whisper)

    model, processor = build_tiny_random_whisper()
    model.save_pretrained(tmp_path / "whisper")
    processor.save_pretrained(tmp_path / "whisper")
    speaker_model, extractor = build_tiny_random_wavlm_xvector()
    speaker_model.save_pretrained(tmp_path / "wavlm")
    extractor.save_pretrained(tmp_path / "wavlm")

    wave, sr = clip
    asr = WhisperASR(str(tmp_path / "whisper"), "cpu", max_new_tokens=6)
    reference = WhisperASR("tiny-random", "cpu", max_new_tokens=6)
    assert asr.meaningful and asr([wave], sr, ["ca"]) == reference([wave], sr, ["ca"])
    encoder = SpeakerEncoder(str(tmp_path / "wavlm"), "cpu")
    assert encoder([wave], sr) == pytest.approx(SpeakerEncoder("tiny-random", "cpu")([wave], sr), abs=1e-5)

    with pytest.raises(SystemExit, match="recipes/eval/configs/demo.yaml"):
        WhisperASR("openai/whisper-large-v3", "cpu")
