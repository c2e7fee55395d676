"""The evaluation models: an ASR for WER/CER and a speaker encoder for similarity.

Both are plain callables so a test (or a user with another ASR) can inject their own:

    asr(waves: list[np.ndarray], sampling_rate: int, languages: list[str | None]) -> list[str]
    speaker_encoder(waves: list[np.ndarray], sampling_rate: int) -> np.ndarray  # (n, dim)

Defaults: Whisper through transformers (language token set per row) and WavLM x-vectors
(`WavLMForXVector`). The id `tiny-random` builds a tiny randomly initialised model from its config,
fully offline, for demos and tests: it exercises the whole path but its numbers mean nothing, which the
reports say (`meaningful = False`). `load_eval_models` caches by settings, so an eval step that runs every
N training steps loads them once.
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


# --- Loading once ------------------------------------------------------------------------------------

@dataclass
class EvalModels:
    asr: object
    speaker_encoder: object

    @property
    def meaningful(self) -> bool:
        return all(getattr(m, "meaningful", True) for m in (self.asr, self.speaker_encoder))


@functools.lru_cache(maxsize=4)
def load_eval_models(asr_model: str, speaker_model: str, device: str | None = None, asr_batch_size: int = 16,
                     asr_max_new_tokens: int = 128) -> EvalModels:
    """Load (or return the already loaded) ASR and speaker models for these settings."""
    logger.info("Loading evaluation models: ASR %s, speaker %s", asr_model, speaker_model)
    return EvalModels(asr=WhisperASR(asr_model, device, asr_batch_size, asr_max_new_tokens),
                      speaker_encoder=SpeakerEncoder(speaker_model, device))
