"""Voice-cloning synthesis with a fine-tuned F5-TTS: reference audio + its transcript + new text -> WAV.

Inference runs through upstream f5-tts code (`load_model`, `infer_batch_process`), so what works here works
in upstream's CLI/GUI too. `model_path` is a folder written by `recipes/f5/finetune.py` (model_*.safetensors,
vocab.txt, f5_config.yaml) or one checkpoint file with `--vocab_file`/`--model_config`.

    python recipes/f5/generate.py --model outputs/f5-pt-br \
        --voice ref.wav --ref_text "Transcrição exata da referência." \
        --text "Olá! A passagem custa R$ 4,50." --out hello.wav

The CLI is the one all generate.py scripts share (recipes.common.add_generate_arguments; the older
--model_path / --ref_audio / --output spellings still work): repeat --text for several, and --out is then a
folder. The text (and the reference transcript) goes through the same front end as the training text
(f5_config.yaml `text_front_end`: "R$ 4,50" -> "quatro reais e cinquenta centavos" for pt-br), in the
language of --language or the one the model was trained with.

Offline, with no vocoder weights: `--vocoder griffin-lim` inverts F5's own log-mel (mel -> linear magnitude ->
Griffin-Lim phase, torchaudio) into audible, if buzzy, speech; a Vocos built with `--vocoder_path random` only
gives noise-like audio (the plumbing is real, the weights are not):
    python recipes/f5/generate.py --model outputs/f5-demo --vocoder griffin-lim ...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

CONFIG_FILE = "f5_config.yaml"
VOCODERS = ("vocos", "griffin-lim")


class GriffinLimVocoder:
    """A weight-free stand-in for Vocos: F5's log-mel -> linear magnitude (least squares through the HTK
    filterbank) -> Griffin-Lim phase. Settings are F5's vocos mel front end (24 kHz, n_fft/win 1024, hop 256,
    100 HTK mels, no norm, magnitude, ln clamp 1e-5), so it inverts exactly what the model predicts.
    Upstream's inference calls `vocoder.decode(mel)` for mel_spec_type "vocos"; this answers that call.
    `last_mel` keeps the mel it was given (the generated frames, reference part removed)."""

    def __init__(self, n_iter: int = 64, device: str = "cpu", seed: int = 0):
        import torchaudio

        self.inverse_mel = torchaudio.transforms.InverseMelScale(n_stft=1024 // 2 + 1, n_mels=100, sample_rate=24_000,
                                                                 f_min=0.0, f_max=None, norm=None, mel_scale="htk")
        self.griffin_lim = torchaudio.transforms.GriffinLim(n_fft=1024, n_iter=n_iter, win_length=1024,
                                                            hop_length=256, power=1.0)
        self.seed = seed
        self.last_mel = None

    def decode(self, mel):
        import torch

        mel = mel.detach().float().cpu()  # (batch, 100, frames), natural-log magnitude
        self.last_mel = mel.clone()
        with torch.random.fork_rng(devices=[]):  # Griffin-Lim starts from random phase: same mel, same audio
            torch.manual_seed(self.seed)
            linear = self.inverse_mel(mel.exp()).clamp(min=0.0)
            return self.griffin_lim(linear)

    def to(self, device):  # the vocoder runs on the CPU whatever the model's device (it is cheap)
        return self

    def eval(self):
        return self


def find_checkpoint(model_path: str | Path, use_ema: bool = True) -> Path:
    """The EMA safetensors in an export folder (highest update), else the newest .pt; or the file itself.
    Online weights live only in the `.pt` training checkpoints (the safetensors export is EMA-only)."""
    path = Path(model_path)
    if path.is_file():
        return path
    if not use_ema:
        candidates = sorted(path.glob("model_*.pt"))
        if not candidates:
            raise FileNotFoundError(f"{path}: online weights need a training checkpoint (model_last.pt); the "
                                    "model_*.safetensors files hold the EMA weights only")
        return max(candidates, key=lambda p: (p.stem == "model_last", p.stat().st_mtime))
    candidates = sorted(path.glob("model_*.safetensors")) or sorted(path.glob("model_*.pt"))
    if not candidates:
        raise FileNotFoundError(f"{path}: no model_*.safetensors or model_*.pt; point --model_path at a checkpoint file")

    def update(p: Path) -> int:
        digits = "".join(ch for ch in p.stem if ch.isdigit())
        return int(digits) if digits else -1
    return max(candidates, key=update)


def finish_reference_text(text: str) -> str:
    """End the reference transcript with a full stop, so the generated text starts a new sentence.

    No trailing space: `infer_batch_process` itself appends one after a single-byte last character. Upstream's
    CLI adds ". " first and so feeds "ref.  gen" (two spaces), a text layout training never showed the model
    (found by scripts/prove_learning.py: an overfit model reads the extra space as one more character)."""
    text = text.strip()
    return text if text.endswith((".", "。")) else text + "."


def synthesize_with_reference(model, vocoder, ref_wave: np.ndarray, ref_sr: int, ref_text: str, text: str, *,
                              mel_spec_type: str = "vocos", nfe_step: int = 32, cfg_strength: float = 2.0,
                              sway_sampling_coef: float = -1.0, speed: float = 1.0, device: str = "cpu") -> np.ndarray:
    """Upstream's chunking and batch inference on an in-memory reference (no temp files)."""
    import torch
    from f5_tts.infer.utils_infer import chunk_text, infer_batch_process

    ref_text = finish_reference_text(ref_text)
    audio = torch.from_numpy(np.ascontiguousarray(ref_wave, dtype=np.float32)).reshape(1, -1)
    ref_seconds = audio.shape[-1] / ref_sr
    max_chars = int(len(ref_text.encode("utf-8")) / ref_seconds * (22 - ref_seconds) * speed)
    chunks = chunk_text(text, max_chars=max(max_chars, 1))
    if not chunks:
        raise ValueError(f"nothing to synthesise in {text!r}")
    wave, _, _ = next(infer_batch_process((audio, ref_sr), ref_text, chunks, model, vocoder,
                                          mel_spec_type=mel_spec_type, progress=None, nfe_step=nfe_step,
                                          cfg_strength=cfg_strength, sway_sampling_coef=sway_sampling_coef,
                                          speed=speed, device=device))
    return np.asarray(wave, dtype=np.float32).reshape(-1)


class F5Synthesizer:
    """The `recipes.common.Synthesizer` interface for F5-TTS (voice cloning: needs reference audio + text)."""

    needs_reference = True

    def __init__(self, model_path: str, device: str | None = None, *, vocab_file: str | None = None,
                 model_config: str | None = None, vocoder_path: str | None = None, vocoder: str = "vocos",
                 use_ema: bool = True, nfe_step: int = 32, cfg_strength: float = 2.0,
                 sway_sampling_coef: float = -1.0, speed: float = 1.0, normalize_text: bool = True):
        import torch
        import yaml
        from f5_tts.infer.utils_infer import load_model
        from f5_tts.model import DiT

        from recipes.f5.checkpoints import load_vocoder, resolve_model_config
        from recipes.f5.data import TextFrontEnd, read_vocab

        folder = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
        saved = yaml.safe_load((folder / CONFIG_FILE).read_text()) if (folder / CONFIG_FILE).is_file() else {}
        arch = saved.get("arch") if model_config is None else resolve_model_config(model_config)
        if arch is None:
            raise ValueError(f"{folder} has no {CONFIG_FILE}; pass model_config (e.g. F5TTS_Base for v0-era weights)")
        vocab_file = vocab_file or (str(folder / "vocab.txt") if (folder / "vocab.txt").is_file() else "")
        if vocab_file:
            read_vocab(vocab_file)  # a clear error for a vocab whose id 0 is not " " (upstream asserts it)
        # The training text's front end, so "R$ 4,50" reaches the model as the words it was trained on.
        self.text_front_end = TextFrontEnd.from_config(saved.get("text_front_end") if normalize_text else None)
        self.mel_spec_type = saved.get("mel_spec_type", "vocos")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.sampling_rate = 24_000
        self.options = dict(nfe_step=nfe_step, cfg_strength=cfg_strength, sway_sampling_coef=sway_sampling_coef,
                            speed=speed)
        self.checkpoint = find_checkpoint(model_path, use_ema)
        self.model = load_model(DiT, arch, str(self.checkpoint), mel_spec_type=self.mel_spec_type,
                                vocab_file=vocab_file, use_ema=use_ema, device=self.device)
        if vocoder not in VOCODERS:
            raise ValueError(f"vocoder must be one of {VOCODERS}, got {vocoder!r}")
        if vocoder == "griffin-lim":
            if self.mel_spec_type != "vocos":
                raise ValueError(f"--vocoder griffin-lim inverts the vocos mel front end; this model uses "
                                 f"{self.mel_spec_type!r} mels (use its own vocoder)")
            self.vocoder = GriffinLimVocoder()
        else:
            self.vocoder = load_vocoder(vocoder_path, self.mel_spec_type, self.device, scratch_dir=folder)

    def synthesize(self, texts, *, speakers=None, dialects=None, languages=None, reference_audio=None,
                   reference_texts=None) -> list[np.ndarray]:
        if not reference_audio or not reference_texts or len(reference_audio) != len(texts) \
                or len(reference_texts) != len(texts):
            raise ValueError("F5-TTS clones a voice: pass one reference_audio (wave, sr) and one reference_text per text")
        waves = []
        languages = languages or [None] * len(texts)
        for text, reference, ref_text, language in zip(texts, reference_audio, reference_texts, languages):
            if reference is None or not ref_text:
                raise ValueError(f"missing reference audio or transcript for {text!r}")
            ref_wave, ref_sr = reference
            text, ref_text = self.text_front_end(text, language), self.text_front_end(ref_text, language)
            waves.append(synthesize_with_reference(self.model, self.vocoder, ref_wave, ref_sr, ref_text, text,
                                                   mel_spec_type=self.mel_spec_type, device=self.device,
                                                   **self.options))
        return waves


def load_synthesizer(model_path: str, device: str | None = None, **options) -> F5Synthesizer:
    return F5Synthesizer(model_path, device, **options)


def main(argv=None):
    from recipes.common import add_generate_arguments, output_wav_paths

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generate_arguments(parser, model_help="export folder of recipes/f5/finetune.py, or a checkpoint file",
                           voice_help="reference audio whose voice is cloned (with its transcript in --ref_text)",
                           voice_required=True, default_out="f5_output.wav")
    parser.add_argument("--ref_text", required=True, help="exact transcript of --voice")
    parser.add_argument("--no_text_normalization", action="store_true",
                        help="skip the training text front end saved in f5_config.yaml (text used as written)")
    parser.add_argument("--vocab_file", default=None)
    parser.add_argument("--model_config", default=None, help="only when model_path has no f5_config.yaml")
    parser.add_argument("--vocoder", default="vocos", choices=VOCODERS,
                        help="griffin-lim: weight-free inversion of the mel (offline, audible); vocos: a neural vocoder")
    parser.add_argument("--vocoder_path", default=None, help="vocos: local folder, 'random' (noise-like) or unset (Hub)")
    parser.add_argument("--use_online_weights", action="store_true", help="use model_state_dict instead of EMA (.pt)")
    parser.add_argument("--nfe_step", type=int, default=32)
    parser.add_argument("--cfg_strength", type=float, default=2.0)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args(argv)
    paths = output_wav_paths(args.out, len(args.text))
    os.environ.setdefault("MPLCONFIGDIR", str(paths[0].absolute().parent / ".mplconfig"))
    if args.dialect:
        print(f"note: F5-TTS has no dialect conditioning; --dialect {args.dialect} is ignored (the reference voice "
              "carries the accent)")

    import torch

    from data_prep.audio import decode_audio, write_audio

    torch.manual_seed(args.seed)
    synthesizer = load_synthesizer(args.model, args.device, vocab_file=args.vocab_file,
                                   model_config=args.model_config, vocoder=args.vocoder, vocoder_path=args.vocoder_path,
                                   use_ema=not args.use_online_weights, nfe_step=args.nfe_step,
                                   cfg_strength=args.cfg_strength, speed=args.speed,
                                   normalize_text=not args.no_text_normalization)
    ref_wave, ref_sr = decode_audio(args.voice)
    n = len(args.text)
    waves = synthesizer.synthesize(args.text, languages=[args.language] * n, reference_audio=[(ref_wave, ref_sr)] * n,
                                   reference_texts=[args.ref_text] * n)
    for path, wave in zip(paths, waves):
        write_audio(path, wave, synthesizer.sampling_rate)
        print(f"wrote {path} ({len(wave) / synthesizer.sampling_rate:.2f} s) from {synthesizer.checkpoint}")


if __name__ == "__main__":
    main()
