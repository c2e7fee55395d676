"""Speak text in a reference speaker's voice with an adapted XTTS-v2 -> 24 kHz WAV.

    python recipes/xtts/generate.py --model outputs/xtts-pt/final --text "Bom dia a todos." \
        --voice speaker.wav --out bom_dia.wav
    python recipes/xtts/generate.py --model outputs/xtts-ca/final --text "Bon dia." --language ca \
        --dialect balear --voice speaker.wav --out bon_dia.wav       # a dialect tag ([ca_balear])

`--model` is either the merged folder (model.pth + config.json + vocab.json) or an adapter folder
(adapter_config.json + adapter_model.safetensors; the base comes from the adapter's
`base_model_name_or_path` or `--base_model`, and the LoRA is merged on load). Text goes through the
tokenizer the model was trained with (`recipes.xtts.text`: same normaliser, new languages), and text
longer than the language's character limit (pt: 203) is split at sentence ends, each part spoken in
turn, as upstream inference does. Old spellings (--model_path, --reference, --output_file) still work.
`load_synthesizer` is the recipes-wide Synthesizer interface used by recipes/evaluate.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def _load_merged(model_dir: Path):
    """Upstream `Xtts` with the folder's weights (read without writing to the folder: a Hub cache may be
    read-only) and the tokenizer it was trained with, set up for inference as `Xtts.load_checkpoint` does."""
    from recipes.xtts import modeling

    config, xtts = modeling.load_xtts(model_dir)
    xtts.eval()  # upstream's eval() also attaches the generation model
    return config, xtts


def _load_adapter(adapter_dir: Path, base_model: str | None):
    from peft import PeftConfig, PeftModel

    from recipes.xtts import modeling

    base_model = base_model or PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path
    if not base_model:
        raise ValueError(f"{adapter_dir}: the adapter does not name its base model; pass --base_model")
    config, xtts = modeling.load_xtts(modeling.resolve_base_model(base_model))
    modeling.prepare_for_adapter(xtts, config, adapter_dir)
    merged = PeftModel.from_pretrained(modeling.XttsAdapterModel(xtts), str(adapter_dir)).merge_and_unload()
    xtts = modeling.finalize_text_layers(merged.xtts)
    xtts.eval()
    return config, xtts


class XttsSynthesizer:
    """Synthesizer protocol (recipes.common): one reference clip per text, output at 24 kHz."""

    sampling_rate = 24_000
    needs_reference = True

    def __init__(self, xtts, config, language: str | None = None, max_new_tokens: int | None = None,
                 **generation):
        self.xtts, self.config = xtts, config
        self.language = language
        self.max_new_tokens = max_new_tokens
        # Upstream `Xtts.synthesize` takes its sampling settings from config.json; so do we, unless overridden.
        self.generation = {key: generation.get(key) if generation.get(key) is not None else getattr(config, key)
                           for key in ("temperature", "length_penalty", "repetition_penalty", "top_k", "top_p")}

    def _language(self, requested: str | None, dialect: str | None = None) -> str:
        """The XTTS tag to speak: the requested language (region dropped: pt-br -> pt) or the model's default,
        with `_<dialect>` when the vocabulary has that dialect tag."""
        from recipes.xtts.text import base_language

        known = set(self.xtts.tokenizer.languages)
        for candidate in (requested, self.language):
            if candidate and base_language(candidate) in {base_language(k) for k in known}:
                if candidate != requested and requested:
                    logger.warning("the model has no '%s'; speaking it with the '%s' tag", requested, candidate)
                base = base_language(candidate)
                if dialect:
                    if f"{base}_{dialect.lower()}" in known:
                        return f"{base}_{dialect.lower()}"
                    if any(k.startswith(f"{base}_") for k in known):  # the model has dialect tags, not this one
                        logger.warning("no dialect tag [%s_%s] in the vocabulary; speaking plain '%s'", base, dialect,
                                       base)
                return base
        raise ValueError(f"no language of this model for '{requested}' and no default language; pass language= "
                         f"(one of {sorted(known)})")

    def speak(self, text: str, language: str, latents, speaker, extra: dict) -> np.ndarray:
        """One text: normalised as in training, split at sentence ends to the language's character limit
        (upstream inference's `enable_text_splitting`), each part spoken, the parts concatenated."""
        import torch

        from recipes.xtts.text import base_language, split_text

        tokenizer = self.xtts.tokenizer
        spoken = tokenizer.normalize(text, language) if hasattr(tokenizer, "normalize") else text
        limit = tokenizer.char_limits.get(base_language(language), 250)
        waves = []
        for part in split_text(spoken, limit):
            with torch.inference_mode():
                out = self.xtts.inference(part, language, latents, speaker, **self.generation, **extra)
            waves.append(np.asarray(out["wav"], dtype=np.float32).reshape(-1))
        return np.concatenate(waves) if waves else np.zeros(0, np.float32)

    def synthesize(self, texts, *, speakers=None, dialects=None, languages=None, reference_audio=None,
                   reference_texts=None) -> list[np.ndarray]:
        import torch

        from data_prep.audio import resample

        if not reference_audio or len(reference_audio) != len(texts) or any(r is None for r in reference_audio):
            raise ValueError("XTTS clones a voice: pass reference_audio=[(waveform, sampling_rate)] for every text")
        outputs = []
        extra = {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens else {}
        for index, (text, (wave, sr)) in enumerate(zip(texts, reference_audio)):
            # Upstream get_conditioning_latents reads at most 30 s of reference.
            wave = resample(np.asarray(wave, dtype=np.float32).reshape(-1), sr, 22_050)[: 22_050 * 30]
            reference = torch.from_numpy(np.clip(wave, -1, 1))[None].to(self.xtts.device)
            latents = self.xtts.get_gpt_cond_latents(reference, 22_050, length=self.config.gpt_cond_len,
                                                     chunk_length=self.config.gpt_cond_chunk_len)
            speaker = self.xtts.get_speaker_embedding(reference, 22_050)
            language = self._language(languages[index] if languages else None, dialects[index] if dialects else None)
            outputs.append(self.speak(text, language, latents, speaker, extra))
        return outputs


def load_synthesizer(model_path: str, device: str | None = None, *, base_model: str | None = None,
                     language: str | None = None, **options) -> XttsSynthesizer:
    """A merged folder or an adapter folder -> XttsSynthesizer on `device` (default: CUDA when available)."""
    import torch

    from recipes.xtts.modeling import RECIPE_INFO

    path = Path(model_path)
    if (path / "adapter_config.json").is_file():
        config, xtts = _load_adapter(path, base_model)
        info_file = path.parent / RECIPE_INFO
    elif (path / "model.pth").is_file():
        config, xtts = _load_merged(path)
        info_file = path / RECIPE_INFO
    else:
        raise FileNotFoundError(f"{path}: neither a merged XTTS folder (model.pth, config.json, vocab.json) nor an "
                                "adapter folder (adapter_config.json)")
    if not info_file.is_file():
        info_file = path / RECIPE_INFO
    if language is None and info_file.is_file():
        language = json.loads(info_file.read_text()).get("language")
    xtts.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return XttsSynthesizer(xtts, config, language=language, **options)


def make_parser():
    import argparse

    from recipes.common import add_generate_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_generate_arguments(parser, model_help="merged folder (model.pth, config.json, vocab.json) or adapter folder",
                           voice_help="WAV/FLAC of the target speaker (3-30 s)", voice_required=True,
                           default_out="xtts.wav")
    parser.add_argument("--base_model", default=None, help="base for an adapter folder (default: the adapter's own)")
    for name, kind in (("temperature", float), ("top_p", float), ("top_k", int), ("repetition_penalty", float)):
        parser.add_argument(f"--{name}", type=kind, default=None, help="default: the model's config.json")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="cap on generated audio codes (~21.5/s)")
    return parser


def main(argv: list[str] | None = None) -> list[Path]:
    import torch

    from data_prep.audio import decode_audio, write_audio
    from recipes.common import output_wav_paths

    args = make_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    paths = output_wav_paths(args.out, len(args.text))
    synthesizer = load_synthesizer(args.model, args.device, base_model=args.base_model, language=args.language,
                                   temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                   repetition_penalty=args.repetition_penalty, max_new_tokens=args.max_new_tokens)
    reference = decode_audio(args.voice)
    n = len(args.text)
    waves = synthesizer.synthesize(args.text, languages=[args.language] * n, dialects=[args.dialect] * n,
                                   reference_audio=[reference] * n)
    for path, wave in zip(paths, waves):
        write_audio(path, wave, synthesizer.sampling_rate)
        print(f"{path}: {len(wave) / synthesizer.sampling_rate:.2f} s at {synthesizer.sampling_rate} Hz")
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
