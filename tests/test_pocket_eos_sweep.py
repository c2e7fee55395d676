"""Pocket EOS-threshold sweep (recipes/pocket/eos_sweep.py): counts from known traces, and one real trace."""

import numpy as np
import torch

from recipes.pocket.eos_sweep import eos_trace, format_table, stop_frame, sweep

FRAME = 1920


def test_sweep_counts_no_eos_and_silent_per_threshold_and_language():
    loud = np.full(10 * FRAME, 0.1, dtype=np.float32)
    quiet = np.zeros(10 * FRAME, dtype=np.float32)
    traces = [
        ("fr", np.array([-9, -8, -7, -5, -3.5, -1, 2, 3, 4, 5.0]), loud),  # crosses -4 at frame 4
        ("fr", np.array([-9.0] * 10), loud),  # never stops
        ("es", np.array([-3.0] + [-9.0] * 9), loud),  # stops at once for thresholds < -3
        ("es", np.array([-9, -9, -9, -9, -2, -9, -9, -9, -9, -9.0]), quiet),  # stops on silence
    ]
    assert stop_frame(traces[0][1], -4.0) == 4 and stop_frame(traces[1][1], -4.0) is None
    table = sweep(traces, [-6.0, -4.0, 0.0], FRAME, 24000)
    assert table[-4.0]["fr"] == {"texts": 2, "no_eos": 1, "silent": 0, "mean_s": round((4 + 10) * FRAME / 24000 / 2, 3)}
    assert table[-4.0]["es"]["no_eos"] == 0 and table[-4.0]["es"]["silent"] == 2  # EOS at frame 0; quiet audio
    assert table[0.0]["fr"]["no_eos"] == 1 and table[0.0]["es"]["no_eos"] == 2
    assert table[-6.0]["fr"]["no_eos"] == 1
    # pocket_tts ignores EOS before its minimum frame count: an early crossing then does not stop it
    assert stop_frame(traces[2][1], -4.0, min_frames=2) is None and stop_frame(traces[0][1], -4.0, min_frames=2) == 4
    assert "no_eos" in format_table(table) and "-4.00" in format_table(table)


def test_eos_trace_records_one_logit_per_generated_frame(tmp_path):
    import sentencepiece

    from recipes.pocket import modeling
    from recipes.pocket.train_tokenizer import train_tokenizer

    tok = str(train_tokenizer(["bonjour tout le monde", "hola a todos", "guten tag"] * 3, str(tmp_path / "tok"),
                              vocab_size=40))
    n_bins = sentencepiece.SentencePieceProcessor(model_file=tok).vocab_size()
    config = modeling.with_tokenizer(modeling.load_base_config(modeling.TINY_MODEL_CONFIG), tok, n_bins)
    torch.manual_seed(0)
    model = modeling.inference_model(modeling.PocketTTSForTraining(modeling.build_tts_model(config, pretrained_weights=None)))
    state = model.get_state_for_audio_prompt(torch.zeros(1, 24000))
    threshold = model.eos_threshold
    logits, audio = eos_trace(model, state, "Bonjour tout le monde.")
    assert model.eos_threshold == threshold  # restored
    assert len(logits) >= 5 and len(audio) == len(logits) * model.mimi.frame_size and np.isfinite(logits).all()
