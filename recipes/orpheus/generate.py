"""Orpheus text -> 24 kHz speech, from a trained model, a LoRA adapter, or a merged model.

    python recipes/orpheus/generate.py --model outputs/orpheus/demo --dialect balear \
        --text "Bon dia a tothom." --out outputs/orpheus/bon_dia.wav   # .wav: that file; else a folder
    python recipes/orpheus/generate.py --model outputs/orpheus/voice_lora_demo --text "Bon dia."  # adapter (voice saved)
    python recipes/orpheus/generate.py --model outputs/orpheus/voice_lora_demo/merged --text "Bon dia."
    python recipes/orpheus/generate.py --model <base> --adapter outputs/orpheus/voice_lora_demo --text "Bon dia."

Prompt `[SOH] <|begin_of_text|>{label}: {text} [EOT EOH SOA SOS]`, left-padded batches, sampling stops
at end-of-speech (128258). Decoding keeps every frame, code 0 included (upstream's streaming decoder
filters `> 0` and loses the first frame). With `constrain_to_audio` (default) the sampler may only
emit the audio id range of the next position (or end-of-speech at a frame boundary), so every
output decodes; a well-trained model puts all its mass there anyway.
Long text is split into sentences (merged up to `max_chunk_chars`; `--no_split_sentences` turns it off), each
chunk is generated on its own and the audio joined with `pause_s` of silence: Orpheus drifts or stops early
on long prompts (Orpheus-TTS #48, #114, #289). A chunk that reaches `max_new_tokens` without end-of-speech
is logged as a warning with its text and the cap (its audio is cut there).
Under FSDP/ZeRO-3 with more than one rank, generation passes `synced_gpus=True`, so a rank that stops early
keeps joining the sharded forward passes of the others instead of leaving them waiting.
`load_synthesizer` implements the `recipes.common.Synthesizer` protocol for recipes/evaluate.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import numpy as np

from recipes.orpheus import layout

logger = logging.getLogger(__name__)
RECIPE_FILE = "orpheus_recipe.json"  # written next to trained weights: codec, prompt label, voice


class AudioLayoutLogitsProcessor:
    """Masks everything but the audio ids valid at the next frame position (and end-of-speech at a boundary)."""

    def __init__(self, prompt_length: int):
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores):
        import torch

        position = (input_ids.shape[1] - self.prompt_length) % layout.TOKENS_PER_FRAME
        first = layout.AUDIO_OFFSET + layout.CODEBOOK_SIZE * position
        mask = torch.full_like(scores, float("-inf"))
        mask[:, first:first + layout.CODEBOOK_SIZE] = 0
        if position == 0:
            mask[:, layout.END_OF_SPEECH] = 0
        return scores + mask


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Sentences of `text` (split after . ! ? ; : and their closing quotes/brackets), neighbours merged while
    the chunk stays within `max_chars`; a single longer sentence is cut at commas, then at spaces."""
    text = " ".join(str(text).split())
    if max_chars <= 0 or len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[.!?;:…][\"'»”)\]])\s+|(?<=[.!?;:…])\s+", text):
        while len(sentence) > max_chars:
            cut = sentence.rfind(", ", 0, max_chars)
            cut = cut + 1 if cut > 0 else sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= max_chars:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    return chunks


def needs_synced_gpus(model) -> bool:
    """True when the model's weights are sharded across ranks (FSDP 1/2, DeepSpeed ZeRO-3) and world size > 1:
    every rank must then run each forward pass until all have finished generating."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    from torch.distributed.fsdp import FullyShardedDataParallel

    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6: FSDP1 only
        FSDPModule = FullyShardedDataParallel
    if any(isinstance(m, (FSDPModule, FullyShardedDataParallel)) for m in model.modules()):
        return True
    return any(hasattr(p, "ds_id") for p in model.parameters())  # ZeRO-3 partitioned parameters


class OrpheusSynthesizer:
    sampling_rate = layout.SAMPLING_RATE
    needs_reference = False

    def __init__(self, model, tokenizer, audio_tokenizer, *, prompt_label: str = "dialect", voice: str | None = None,
                 temperature: float = 0.6, top_p: float = 0.95, repetition_penalty: float = 1.1,
                 max_new_tokens: int = 1200, min_new_tokens: int = 0, constrain_to_audio: bool = True,
                 batch_size: int = 8, seed: int | None = None, split_sentences: bool = True,
                 max_chunk_chars: int = 200, pause_s: float = 0.2):
        self.model, self.tokenizer, self.audio_tokenizer = model, tokenizer, audio_tokenizer
        self.prompt_label, self.voice = prompt_label, voice
        self.temperature, self.top_p, self.repetition_penalty = temperature, top_p, repetition_penalty
        self.max_new_tokens, self.constrain_to_audio = max_new_tokens, constrain_to_audio
        # > 0 suppresses end-of-speech until that many tokens: for barely trained demo models that stop at once.
        self.min_new_tokens = min_new_tokens
        self.batch_size, self.seed = batch_size, seed
        # ~200 characters is ~12-15 s of speech, inside the 1200-token (~14.6 s) default budget
        self.split_sentences, self.max_chunk_chars, self.pause_s = split_sentences, max_chunk_chars, pause_s
        self.last_discarded_tokens: list[int] = []
        self.last_capped: list[bool] = []  # per prompt: max_new_tokens reached without end-of-speech
        # recipes.common.Synthesizer (EOS health in evaluation): per text, True when any of its chunks hit the cap
        self.last_hit_length_cap: list[bool] | None = None

    def label(self, dialect: str | None, speaker: str | None) -> str | None:
        if self.voice is not None:
            return self.voice
        if self.prompt_label == "none":
            return None
        return layout.prompt_label(self.prompt_label, dialect=dialect, speaker=speaker)

    def generate_audio_tokens(self, prompts: list[str]) -> list[np.ndarray]:
        """Sample audio ids for already formatted prompts (`{label}: {text}`)."""
        import torch
        from transformers import LogitsProcessorList

        device = next(self.model.parameters()).device
        results: list[np.ndarray] = []
        self.last_discarded_tokens, self.last_capped = [], []
        synced_gpus = needs_synced_gpus(self.model)
        if self.seed is not None:
            torch.manual_seed(self.seed)
        for start in range(0, len(prompts), self.batch_size):
            rows = [layout.inference_prompt(layout.text_ids(self.tokenizer, p))
                    for p in prompts[start:start + self.batch_size]]
            longest = max(len(r) for r in rows)
            input_ids = torch.tensor([[layout.PAD] * (longest - len(r)) + r for r in rows], device=device)
            attention_mask = torch.tensor([[0] * (longest - len(r)) + [1] * len(r) for r in rows], device=device)
            processors = LogitsProcessorList([AudioLayoutLogitsProcessor(longest)] if self.constrain_to_audio else [])
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=self.max_new_tokens,
                    min_new_tokens=self.min_new_tokens or None,
                    do_sample=self.temperature > 0, temperature=self.temperature if self.temperature > 0 else None,
                    top_p=self.top_p if self.temperature > 0 else None, repetition_penalty=self.repetition_penalty,
                    eos_token_id=layout.END_OF_SPEECH, pad_token_id=layout.PAD, logits_processor=processors,
                    use_cache=True, synced_gpus=synced_gpus)
            for prompt, row in zip(prompts[start:start + self.batch_size], output[:, longest:].cpu().numpy()):
                tokens, discarded = layout.audio_tokens_from_generation(row)
                results.append(tokens)
                self.last_discarded_tokens.append(discarded)
                capped = not (row == layout.END_OF_SPEECH).any()
                self.last_capped.append(bool(capped))
                if capped:
                    logger.warning("no end-of-speech within max_new_tokens=%d (%.1f s of audio) for %r: the audio is "
                                   "cut there. Raise max_new_tokens or split the text into shorter sentences.",
                                   self.max_new_tokens, len(tokens) / layout.AUDIO_TOKENS_PER_SECOND, prompt)
        if any(self.last_discarded_tokens):
            logger.warning("discarded %s non-audio/misplaced generated tokens per text", self.last_discarded_tokens)
        return results

    def synthesize(self, texts, *, speakers=None, dialects=None, languages=None, reference_audio=None,
                   reference_texts=None) -> list[np.ndarray]:
        speakers = speakers or [None] * len(texts)
        dialects = dialects or [None] * len(texts)
        # every text becomes one or more chunks, all generated in one batched pass, then joined per text
        chunks = [split_sentences(t, self.max_chunk_chars) if self.split_sentences else [t] for t in texts]
        chunks = [c or [""] for c in chunks]
        prompts = [layout.format_prompt(self.label(d, s), chunk) for c, d, s in zip(chunks, dialects, speakers)
                   for chunk in c]
        waves = [self.audio_tokenizer.decode(tokens) for tokens in self.generate_audio_tokens(prompts)]
        pause = np.zeros(int(round(self.pause_s * self.sampling_rate)), dtype=np.float32)
        joined, k = [], 0
        self.last_hit_length_cap = []
        for c in chunks:
            parts = waves[k:k + len(c)]
            self.last_hit_length_cap.append(any(self.last_capped[k:k + len(c)]))
            k += len(c)
            with_pauses = [p for i, w in enumerate(parts) for p in ((pause, w) if i else (w,))]
            joined.append(np.concatenate(with_pauses).astype(np.float32) if len(parts) > 1 else parts[0])
        return joined


def _read_recipe_file(model: str) -> dict:
    """The recipe file of a local folder or, for a Hub id, of that repo (pushed with the weights); {} if none."""
    path = Path(model) / RECIPE_FILE
    if path.exists():
        return json.loads(path.read_text())
    if Path(model).is_dir():
        return {}
    # A pushed adapter is only usable with its voice label (and a dialect model with its prompt label).
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model, RECIPE_FILE)).read_text())
    except Exception as err:  # offline, not a repo id, or a model not trained by these recipes
        logger.info("no %s for %s (%s: %s); using the defaults or the options given", RECIPE_FILE, model,
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return {}


def load_model_and_tokenizer(model_path: str, adapter: str | None = None, device: str | None = None,
                             dtype=None):
    """A causal LM from a full/merged model folder, an adapter folder (base read from adapter_config.json),
    or `model_path` as base plus `adapter`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recipes.common import explain_hub_errors

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
    if adapter is None and (Path(model_path) / "adapter_config.json").exists():
        adapter = model_path
        model_path = json.loads((Path(adapter) / "adapter_config.json").read_text())["base_model_name_or_path"]
    demo = "python recipes/orpheus/pretrain_dialects.py --config recipes/orpheus/configs/demo.yaml"
    with explain_hub_errors(f"Orpheus model '{model_path}'", demo):
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(adapter if adapter and _has_tokenizer(adapter) else model_path)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    layout.check_tokenizer(tokenizer, model.config.vocab_size, where=f"tokenizer of {adapter or model_path}")
    return model.to(device).eval(), tokenizer, adapter


def _has_tokenizer(folder: str) -> bool:
    return any((Path(folder) / name).exists() for name in ("tokenizer.json", "tokenizer_config.json"))


def load_synthesizer(model_path: str, device: str | None = None, **options) -> OrpheusSynthesizer:
    """Synthesizer protocol entry point. Options: adapter, snac_model, prompt_label, voice, temperature,
    top_p, repetition_penalty, max_new_tokens, min_new_tokens, constrain_to_audio, batch_size, seed,
    split_sentences, max_chunk_chars, pause_s."""
    from recipes.orpheus.tokenize_dataset import SNAC_HUB_ID, SnacAudioTokenizer, load_snac

    adapter = options.pop("adapter", None)
    model, tokenizer, adapter = load_model_and_tokenizer(model_path, adapter, device)
    saved = {**_read_recipe_file(model_path), **(_read_recipe_file(adapter) if adapter else {})}
    snac_model = options.pop("snac_model", None) or saved.get("snac_model", SNAC_HUB_ID)
    options.setdefault("prompt_label", saved.get("prompt_label", "dialect"))
    if options.get("voice") is None and saved.get("voice") is not None:
        options["voice"] = saved["voice"]
    device = str(next(model.parameters()).device)
    audio_tokenizer = SnacAudioTokenizer(load_snac(snac_model, device), remove_duplicate_frames=False)
    return OrpheusSynthesizer(model, tokenizer, audio_tokenizer, **options)


def main(argv=None):
    from recipes.common import add_generate_arguments, output_wav_paths

    parser = argparse.ArgumentParser(description="Orpheus text-to-speech (24 kHz WAVs)")
    add_generate_arguments(
        parser, model_help="trained/merged model folder, LoRA adapter folder, or Hub id",
        voice_help="literal prompt label, e.g. a LoRA voice name (default: the voice saved with the model; "
                   "else the label built from --dialect/--speaker)",
        default_out="outputs/orpheus/generated.wav")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder applied on top of --model")
    parser.add_argument("--speaker", default=None, help="speaker label for the prompt (prompt_label speaker/both)")
    parser.add_argument("--prompt_label", default=None, choices=layout.PROMPT_LABELS)
    parser.add_argument("--snac_model", default=None, help="SNAC folder or Hub id (default: what training used)")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top_p", type=float, default=0.95)
    parser.add_argument("--repetition_penalty", type=float, default=1.1)
    parser.add_argument("--max_new_tokens", type=int, default=1200,
                        help="per sentence chunk; about 82 tokens per second of speech")
    parser.add_argument("--min_new_tokens", type=int, default=0, help="no end-of-speech before this many tokens")
    parser.add_argument("--no_constrain_to_audio", action="store_true", help="sample from the full vocabulary")
    parser.add_argument("--no_split_sentences", dest="split_sentences", action="store_false",
                        help="generate each text in one pass, however long")
    parser.add_argument("--max_chunk_chars", type=int, default=200,
                        help="sentences are merged into chunks of at most this many characters")
    parser.add_argument("--pause_s", type=float, default=0.2, help="silence between the chunks of one text")
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.language:
        logger.info("--language %s is not used: Orpheus is conditioned only by the prompt label", args.language)

    from data_prep.audio import write_audio

    paths = output_wav_paths(args.out, len(args.text))
    options = {k: getattr(args, k) for k in ("temperature", "top_p", "repetition_penalty", "max_new_tokens",
                                              "min_new_tokens", "batch_size", "seed", "voice", "snac_model", "adapter",
                                              "split_sentences", "max_chunk_chars", "pause_s")}
    if args.prompt_label:
        options["prompt_label"] = args.prompt_label
    synthesizer = load_synthesizer(args.model, args.device, constrain_to_audio=not args.no_constrain_to_audio,
                                   **options)
    waves = synthesizer.synthesize(args.text, dialects=[args.dialect] * len(args.text),
                                   speakers=[args.speaker] * len(args.text))
    for path, wave in zip(paths, waves):
        write_audio(path, wave, synthesizer.sampling_rate)
        print(f"{path}\t{len(wave) / synthesizer.sampling_rate:.2f} s")


if __name__ == "__main__":
    main()
