"""A tiny random XTTS base folder, built offline, for the demo config and the tests.

It has the same files and layout as `coqui/XTTS-v2` (config.json, model.pth, vocab.json, dvae.pth,
mel_stats.pth), so the whole recipe runs unchanged on it; only the sizes differ: a 2-layer, 64-wide
GPT, a small DVAE (its arguments in dvae_args.json) and a BPE vocabulary trained on the corpus text.
The HiFi-GAN decoder is always full size upstream (no argument shrinks it). Its speech is noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Every language tag upstream's VoiceBpeTokenizer can emit, so any supported `language` works.
XTTS_LANGUAGE_TAGS = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko",
                      "ja", "hi")
# VoiceBpeTokenizer / Xtts.init_models need [STOP] = 0 (also text padding), [UNK] = 1, [SPACE] and [START].
SPECIAL_TOKENS = ("[STOP]", "[UNK]", "[SPACE]") + tuple(f"[{tag}]" for tag in XTTS_LANGUAGE_TAGS) + ("[START]",)
TINY_DVAE_ARGS = dict(codebook_dim=64, hidden_dim=64, num_resnet_blocks=1)


def train_tiny_vocab(texts: list[tuple[str, str]], path: Path, vocab_size: int = 400, clean=None) -> Path:
    """BPE vocab.json over (text, language) pairs, cleaned exactly as training will clean them
    (`clean(text, language)`; default: upstream VoiceBpeTokenizer's cleaners)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    clean = clean or VoiceBpeTokenizer().preprocess_text
    cleaned = [clean(text, language.split("-")[0]) for text, language in texts]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(cleaned, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def spread_codebook_over(coder, waves, seed: int = 0) -> int:
    """Set a DVAE's codebook to encoder frames of `waves` (22.05 kHz), picked farthest-point first.

    A random DVAE maps nearly every frame of speech to one code (measured on the demo corpus: 45 of a clip's 46
    codes were the same), so a model trained on its codes can score 96 % by repeating that code and has no cue
    for where an utterance ends. Codebook vectors taken from the speech itself give codes that change with the
    sound, as the real DVAE's do. Returns the number of distinct codes the waves then get."""
    import numpy as np

    dvae = coder.dvae
    with torch.no_grad():
        frames = []
        for wave in waves:
            mel = coder.mel(torch.as_tensor(np.asarray(wave, dtype=np.float32))[None])
            frames.append(dvae.encoder(dvae.norm(mel))[0].T)  # (frames, codebook_dim)
        pool = torch.cat(frames)
        n_codes = dvae.codebook.embed.shape[1]
        generator = torch.Generator().manual_seed(seed)
        chosen = [int(torch.randint(len(pool), (1,), generator=generator))]
        distance = (pool - pool[chosen[0]]).pow(2).sum(1)
        for _ in range(min(n_codes, len(pool)) - 1):
            chosen.append(int(distance.argmax()))
            distance = torch.minimum(distance, (pool - pool[chosen[-1]]).pow(2).sum(1))
        picked = pool[chosen]
        if len(picked) < n_codes:  # fewer frames than codes: the rest near them, never nearest to a frame first
            extra = picked[torch.randint(len(picked), (n_codes - len(picked),), generator=generator)]
            picked = torch.cat([picked, extra + 10 * picked.std() * torch.randn(extra.shape, generator=generator)])
        dvae.codebook.embed.copy_(picked.T)
        dvae.codebook.embed_avg.copy_(picked.T)
        return len({int(c) for wave in waves for c in coder.encode(torch.as_tensor(np.asarray(wave, np.float32)))})


def build_tiny_base(out_dir: str | Path, texts: list[tuple[str, str]], seed: int = 0, layers: int = 2,
                    model_dim: int = 64, heads: int = 4, clean=None, waves=None) -> Path:
    """Write a random tiny XTTS folder whose vocabulary covers `texts` ((text, language) pairs).

    With `waves` (speech at 22.05 kHz) the DVAE's codebook is spread over their encoder frames
    (`spread_codebook_over`), so its codes follow the sound."""
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    from recipes.xtts.modeling import DVAE_ARGS, set_text_token_args

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab = train_tiny_vocab(texts, out / "vocab.json", clean=clean)
    args = XttsArgs(gpt_layers=layers, gpt_n_model_channels=model_dim, gpt_n_heads=heads,
                    gpt_max_audio_tokens=300, gpt_max_text_tokens=210, gpt_max_prompt_tokens=70,
                    gpt_num_audio_tokens=258, gpt_start_audio_token=256, gpt_stop_audio_token=257,
                    gpt_use_perceiver_resampler=True, gpt_code_stride_len=1024, decoder_input_dim=model_dim,
                    d_vector_dim=512, tokenizer_file="vocab.json")
    config = XttsConfig(model_args=args, audio=XttsAudioConfig(), languages=list(XTTS_LANGUAGE_TAGS),
                        temperature=0.75, repetition_penalty=5.0, top_k=50, top_p=0.85)
    set_text_token_args(config, VoiceBpeTokenizer(vocab_file=str(vocab)))
    xtts = Xtts(config)
    torch.save({"model": xtts.state_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))
    dvae = DiscreteVAE(num_tokens=args.gpt_num_audio_tokens - 2, **{**DVAE_ARGS, **TINY_DVAE_ARGS})
    torch.save(dvae.state_dict(), out / "dvae.pth")
    (out / "dvae_args.json").write_text(json.dumps(TINY_DVAE_ARGS))
    torch.save(torch.ones(80), out / "mel_stats.pth")
    if waves:
        from recipes.xtts.modeling import DvaeCoder, load_xtts_config

        coder = DvaeCoder.from_base(out, load_xtts_config(out))
        spread_codebook_over(coder, waves, seed)
        torch.save(coder.dvae.state_dict(), out / "dvae.pth")
    return out
