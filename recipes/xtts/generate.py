"""Speak text in a reference speaker's voice with an adapted XTTS-v2 -> 24 kHz WAV.

    python recipes/xtts/generate.py --model_path outputs/xtts-pt/final --text "Bom dia a todos." \
        --reference speaker.wav --language pt --output_file bom_dia.wav

`model_path` is either the merged folder (model.pth + config.json + vocab.json, loaded exactly as
upstream XTTS inference loads it) or an adapter folder (adapter_config.json + adapter_model.safetensors;
the base comes from the adapter's `base_model_name_or_path` or `--base_model`, and the LoRA is merged
on load). `load_synthesizer` is the recipes-wide Synthesizer interface used by recipes/evaluate.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def _load_merged(model_dir: Path):
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    config = XttsConfig()
    config.load_json(str(model_dir / "config.json"))
    xtts = Xtts(config)
    xtts.load_checkpoint(config, checkpoint_dir=str(model_dir), eval=True)
    return config, xtts


def _load_adapter(adapter_dir: Path, base_model: str | None):
    from peft import PeftConfig, PeftModel

    from recipes.xtts import modeling

    base_model = base_model or PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path
    if not base_model:
        raise ValueError(f"{adapter_dir}: the adapter does not name its base model; pass --base_model")
    config, xtts = modeling.load_xtts(modeling.resolve_base_model(base_model))
    merged = PeftModel.from_pretrained(modeling.XttsAdapterModel(xtts), str(adapter_dir)).merge_and_unload()
    xtts = merged.xtts
    xtts.eval()  # upstream's eval() also attaches the generation model
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

    def _language(self, requested: str | None) -> str:
        from recipes.xtts.train_adapter import SUPPORTED_LANGUAGES

        for candidate in (requested, self.language):
            if candidate and candidate.split("-")[0] in SUPPORTED_LANGUAGES:
                if candidate != requested and requested:
                    logger.warning("XTTS has no '%s'; speaking it with the '%s' tag", requested, candidate)
                return candidate.split("-")[0]
        raise ValueError(f"no XTTS language for '{requested}' and no default language; pass language= "
                         f"(one of {SUPPORTED_LANGUAGES})")

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
            language = self._language(languages[index] if languages else None)
            with torch.inference_mode():
                out = self.xtts.inference(text, language, latents, speaker, **self.generation, **extra)
            outputs.append(np.asarray(out["wav"], dtype=np.float32).reshape(-1))
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
    if language is None and info_file.is_file():
        language = json.loads(info_file.read_text()).get("language")
    xtts.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return XttsSynthesizer(xtts, config, language=language, **options)


@dataclass
class GenerateArguments:
    model_path: str = field(metadata={"help": "Merged folder (model.pth...) or adapter folder."})
    text: str = field(metadata={"help": "Text to speak."})
    reference: str = field(metadata={"help": "WAV/FLAC of the target speaker (3-30 s)."})
    output_file: str = field(default="xtts.wav", metadata={"help": "Where to write the 24 kHz WAV."})
    language: str | None = field(default=None, metadata={"help": "XTTS language tag; default: the training one."})
    base_model: str | None = field(default=None, metadata={"help": "Base for an adapter folder."})
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = field(default=None, metadata={"help": "Cap on generated audio codes (~21.5/s)."})
    device: str | None = None


def main(args: GenerateArguments) -> Path:
    from data_prep.audio import decode_audio, write_audio

    synthesizer = load_synthesizer(args.model_path, args.device, base_model=args.base_model, language=args.language,
                                   temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                   repetition_penalty=args.repetition_penalty, max_new_tokens=args.max_new_tokens)
    reference = decode_audio(args.reference)
    wave = synthesizer.synthesize([args.text], languages=[args.language], reference_audio=[reference])[0]
    write_audio(args.output_file, wave, synthesizer.sampling_rate)
    print(f"{args.output_file}: {len(wave) / synthesizer.sampling_rate:.2f} s at {synthesizer.sampling_rate} Hz")
    return Path(args.output_file)


if __name__ == "__main__":
    from recipes.common import parse_recipe_args

    logging.basicConfig(level=logging.INFO)
    main(*parse_recipe_args(GenerateArguments))
