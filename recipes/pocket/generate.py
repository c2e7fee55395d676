"""Speak with a Pocket TTS model exported by `finetune_multilingual.py`, through upstream `pocket_tts`.

    python recipes/pocket/generate.py --model outputs/pocket-demo/pocket_tts \
        --text "Bonjour tout le monde." --language fr --voice prompt.wav --out bonjour.wav

`--model` is an export folder (config.yaml + model.safetensors + tokenizer.model), a config YAML,
or a Hub repo id pushed by the recipe. Pocket clones the voice of `--voice` (a clip of the target
speaker, a few seconds; its transcript is not needed). A shared multilingual model reads a
`<lang>` tag before each sentence; this script (and `load_synthesizer`) adds it.

`load_synthesizer(model_path)` implements the `recipes.common.Synthesizer` protocol
(needs_reference=True) used by `recipes/evaluate.py`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def _resolve(model_path: str) -> tuple[str, dict]:
    """(config path loadable from any working directory, tts_recipes.json metadata)."""
    import yaml

    path = Path(model_path)
    if path.is_file():
        folder = path.parent
        config_path = path
    elif path.is_dir():
        folder, config_path = path, path / "config.yaml"
    else:  # a Hub repo id: the pushed config.yaml points at hf:// files
        from huggingface_hub import hf_hub_download

        from recipes.common import explain_hub_errors

        with explain_hub_errors(f"Pocket model {model_path}", "make pocket-demo"):
            meta_file = hf_hub_download(model_path, "tts_recipes.json")
        return f"hf://{model_path}/config.yaml", json.loads(Path(meta_file).read_text())
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found: pass an export folder written by finetune_multilingual.py")
    meta_file = folder / "tts_recipes.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {"language_tag": False}
    config = yaml.safe_load(config_path.read_text())
    # Exported configs hold absolute paths; re-point them at this folder in case it was moved.
    if (folder / "model.safetensors").exists():
        config["weights_path"] = str((folder / "model.safetensors").resolve())
    if (folder / "tokenizer.model").exists():
        config["flow_lm"]["lookup_table"]["tokenizer_path"] = str((folder / "tokenizer.model").resolve())
    local = Path(tempfile.mkdtemp(prefix="pocket-config-")) / "config.yaml"
    local.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return str(local), meta


def speak(tts_model, voice_state, text: str, language: str | None, use_language_tag: bool) -> np.ndarray:
    """Generate one text, sentence by sentence when the model expects a language tag per chunk."""
    from recipes.pocket.data import normalize_text, split_sentences

    if not use_language_tag:
        return tts_model.generate_audio(voice_state, text).numpy()
    if not language:
        raise ValueError("this Pocket model is multilingual and reads a language tag: pass a language")
    from pocket_tts.default_parameters import MAX_TOKEN_PER_CHUNK
    from pocket_tts.models.text_chunking import split_into_best_sentences

    from recipes.pocket.data import language_tag

    # pocket_tts cuts a text longer than MAX_TOKEN_PER_CHUNK pieces into chunks and generates each alone;
    # only the first would keep a tag put in front of the whole text. So cut first (leaving room for the
    # tag) and tag every chunk.
    tokenizer = tts_model.flow_lm.conditioner.tokenizer
    room = MAX_TOKEN_PER_CHUNK - len(tokenizer(language_tag(language))[0].tolist())
    chunks = [chunk for sentence in split_sentences(text)
              for chunk in split_into_best_sentences(
                  tokenizer, sentence, room, False, tts_model.remove_semicolons, tts_model.append_terminal_punctuation,
                  tts_model.capitalize_first_letter, tts_model.replace_characters)]
    pieces = [tts_model.generate_audio(voice_state, normalize_text(chunk, language, True),
                                       max_tokens=MAX_TOKEN_PER_CHUNK).numpy()
              for chunk in chunks]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def voice_state_from_wave(tts_model, wave: np.ndarray, sr: int):
    import torch

    from data_prep.audio import resample

    wave = resample(np.asarray(wave, dtype=np.float32), sr, tts_model.sample_rate)
    return tts_model.get_state_for_audio_prompt(torch.from_numpy(wave)[None])


class PocketSynthesizer:
    needs_reference = True

    def __init__(self, model_path: str, device: str | None = None, temperature: float | None = None,
                 eos_threshold: float | None = None, seed: int | None = 0):
        import torch
        from pocket_tts import TTSModel

        threads = torch.get_num_threads()
        config, meta = _resolve(model_path)
        self.model = TTSModel.load_model(config=config, temp=temperature, eos_threshold=eos_threshold)
        self.model.has_custom_weights = True
        torch.set_num_threads(threads)  # `import pocket_tts` pins torch to one thread
        if device:
            self.model.to(device)
        self.sampling_rate = self.model.sample_rate
        self.use_language_tag = bool(meta.get("language_tag"))
        self.languages = meta.get("languages") or []
        self.seed = seed

    def synthesize(self, texts, *, speakers=None, dialects=None, languages=None, reference_audio=None,
                   reference_texts=None) -> list[np.ndarray]:
        import torch

        if reference_audio is None or any(r is None for r in reference_audio):
            raise ValueError("Pocket TTS clones a voice: pass reference_audio=[(wave, sr), ...], one per text")
        languages = languages or dialects or [None] * len(texts)
        outputs = []
        for text, (wave, sr), language in zip(texts, reference_audio, languages):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            state = voice_state_from_wave(self.model, wave, sr)
            outputs.append(speak(self.model, state, text, language, self.use_language_tag).astype(np.float32))
        return outputs


def load_synthesizer(model_path: str, device: str | None = None, **options) -> PocketSynthesizer:
    return PocketSynthesizer(model_path, device=device, **options)


def main(argv=None):
    from recipes.common import add_generate_arguments, output_wav_paths

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generate_arguments(parser, model_help="export folder, config.yaml or Hub repo id",
                           voice_help="voice prompt audio file (any format FFmpeg reads); its transcript is not needed",
                           voice_required=True, default_out="pocket.wav")
    parser.add_argument("--temperature", type=float, default=None, help="default: the model config's (0.3)")
    parser.add_argument("--eos_threshold", type=float, default=None, help="default: the model config's (-4.0)")
    args = parser.parse_args(argv)

    from data_prep.audio import decode_audio, write_audio

    synthesizer = load_synthesizer(args.model, device=args.device, temperature=args.temperature,
                                   eos_threshold=args.eos_threshold, seed=args.seed)
    wave, sr = decode_audio(args.voice)
    language = args.language or args.dialect
    audios = synthesizer.synthesize(args.text, languages=[language] * len(args.text),
                                    reference_audio=[(wave, sr)] * len(args.text))
    for path, audio in zip(output_wav_paths(args.out, len(args.text)), audios):
        write_audio(str(path), audio, synthesizer.sampling_rate)
        print(f"wrote {path} ({len(audio) / synthesizer.sampling_rate:.2f} s)")


if __name__ == "__main__":
    main()
