"""Pocket TTS: real-time factor on CPU of the 24-layer teacher vs the 6-layer distilled student, and their sizes.

    python benchmarks/pocket_distill_rtf.py [--threads 2] [--repeats 2] [--base english_2026-04_24l]

Both models are built from the released `english_2026-04_24l` architecture with random weights (the real
weights are gated; speed does not depend on their values): the student is `recipes/pocket/distill.py`'s
`make_student` with teacher layers [0, 1, 2, 21, 22, 23]. EOS is disabled so both generate the same number of
frames for the same text; RTF = wall time / seconds of audio, end to end through pocket_tts' `generate_audio`
(flow LM + Mimi decoder), best of `--repeats`. The text LUT uses a small local tokenizer; the parameter
counts are also given at the released 4000-piece vocabulary.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="english_2026-04_24l")
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 1, 2, 21, 22, 23])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--text", default="Bonjour tout le monde, il fait beau aujourd'hui et nous allons marcher.")
    args = parser.parse_args(argv)

    import sentencepiece
    import torch
    from pocket_tts.models.tts_model import TTSModel

    from recipes.pocket import modeling
    from recipes.pocket.distill import make_student
    from recipes.pocket.train_tokenizer import train_tokenizer

    tokenizer = str(train_tokenizer([args.text, "hola amigos del mundo", "guten tag alle zusammen"] * 3,
                                    tempfile.mkdtemp() + "/tok", vocab_size=64))
    n_bins = sentencepiece.SentencePieceProcessor(model_file=tokenizer).vocab_size()
    config = modeling.with_tokenizer(modeling.load_base_config(args.base), tokenizer, n_bins)
    torch.manual_seed(0)
    teacher = TTSModel._from_pydantic_config(config, 0.3, 1, None, float("inf"), origin=None)
    teacher.flow_lm.speaker_proj_weight = torch.nn.Parameter(
        0.01 * torch.randn(config.flow_lm.transformer.d_model, config.mimi.inner_dim or config.mimi.seanet.dimension))
    from pocket_tts.models.mimi import build_mimi
    from pocket_tts.models.tts_model import stamp_state_names

    teacher.mimi = build_mimi(config.mimi)
    stamp_state_names(teacher)
    teacher.has_custom_weights = True
    student = make_student(teacher, args.layers, eos_threshold=float("inf"))
    torch.set_num_threads(args.threads)

    def params(model):
        return sum(p.numel() for p in model.flow_lm.parameters())

    d = config.flow_lm.lookup_table.dim
    released_lut = (4000 - n_bins) * d  # the released vocabulary's extra rows

    def rtf(model):
        prompt = 0.1 * torch.randn(1, 3 * model.sample_rate)
        best, seconds = float("inf"), 0.0
        for _ in range(args.repeats):
            torch.manual_seed(0)
            start = time.perf_counter()
            state = model.get_state_for_audio_prompt(prompt)
            audio = model.generate_audio(state, args.text)
            best = min(best, time.perf_counter() - start)
            seconds = audio.numel() / model.sample_rate
        return best / seconds, seconds

    with torch.no_grad():
        teacher_rtf, teacher_s = rtf(teacher)
        student_rtf, student_s = rtf(student)
    tp, sp = params(teacher), params(student)
    print(f"Pocket TTS CPU ({args.threads} threads), {args.base} architecture, random weights, EOS off")
    print(f"  teacher  {config.flow_lm.transformer.num_layers:2d} layers  flow_lm {tp / 1e6:7.2f} M params "
          f"({(tp + released_lut) / 1e6:.2f} M at 4000 pieces)  RTF {teacher_rtf:.3f}  ({teacher_s:.2f} s of audio)")
    print(f"  student  {len(args.layers):2d} layers  flow_lm {sp / 1e6:7.2f} M params "
          f"({(sp + released_lut) / 1e6:.2f} M at 4000 pieces)  RTF {student_rtf:.3f}  ({student_s:.2f} s of audio)")
    print(f"  ratio teacher/student: params {tp / sp:.2f}x, RTF {teacher_rtf / student_rtf:.2f}x "
          f"(student speed {1 / student_rtf:.2f}x real time, teacher {1 / teacher_rtf:.2f}x)")
    return {"teacher_rtf": teacher_rtf, "student_rtf": student_rtf, "teacher_params": tp, "student_params": sp}


if __name__ == "__main__":
    main()
