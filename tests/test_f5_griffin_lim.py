"""`recipes/f5/generate.py --vocoder griffin-lim`: a weight-free inverse of F5's own mel front end."""

import numpy as np
import pytest


def _f5_mel(wave):
    import torch
    from f5_tts.model.modules import MelSpec

    mel = MelSpec(n_fft=1024, hop_length=256, win_length=1024, n_mel_channels=100, target_sample_rate=24_000,
                  mel_spec_type="vocos")
    return mel(torch.from_numpy(wave)[None].float())  # (1, 100, frames), upstream's own settings


def test_griffin_lim_inverts_the_f5_mel():
    from recipes.f5.generate import GriffinLimVocoder

    sr = 24_000
    t = np.arange(sr) / sr
    # A chirp-like mix: a wrong filterbank (Slaney vs HTK, other fmax) or log base puts energy in other bins.
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1800 * t)).astype(np.float32)
    mel = _f5_mel(wave)
    vocoder = GriffinLimVocoder(n_iter=32)
    audio = vocoder.decode(mel)[0].numpy()
    assert abs(len(audio) - len(wave)) <= 256
    energy = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / sr)
    near = {f: energy[np.abs(freqs - f) < 40].sum() / energy.sum() for f in (220, 1800)}
    # Both tones come back where they were (a wrong filterbank or log base moves or smears them).
    assert near[220] > 0.3 and near[1800] > 0.1 and near[220] + near[1800] > 0.7, near
    again = _f5_mel(audio.astype(np.float32))
    n = min(again.shape[-1], mel.shape[-1])
    # Re-analysed, the audio has the same log-mel picture (which bins carry energy, and how much).
    correlation = np.corrcoef(again[..., :n].flatten().numpy(), mel[..., :n].flatten().numpy())[0, 1]
    assert correlation > 0.9, correlation
    assert vocoder.last_mel.shape == mel.shape
    assert np.array_equal(vocoder.decode(mel)[0].numpy(), audio)  # fixed phase seed: same mel, same audio


def test_generate_cli_lists_the_vocoder_option():
    from recipes.f5 import generate

    with pytest.raises(SystemExit):
        generate.main(["--model_path", "x", "--ref_audio", "x", "--ref_text", "x", "--text", "x",
                       "--vocoder", "hifigan"])


def test_reference_and_generated_text_join_with_one_space():
    """What the model reads is `ref_text + gen_text` after upstream's own space; training rows have one space
    between sentences, so the join must too (upstream's CLI gives two)."""
    from recipes.f5.generate import finish_reference_text

    for ref in ("Good morning.", "Good morning", "  Good morning. "):
        ref_text = finish_reference_text(ref)
        if len(ref_text[-1].encode("utf-8")) == 1:  # f5_tts.infer.utils_infer.infer_batch_process
            ref_text = ref_text + " "
        assert ref_text + "The boy went." == "Good morning. The boy went."
    assert finish_reference_text("早上好。") == "早上好。"
