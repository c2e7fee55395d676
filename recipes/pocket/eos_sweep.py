"""EOS-threshold sweep for a Pocket TTS export: how many held-out texts never stop or come out silent per threshold.

    python recipes/pocket/eos_sweep.py --model outputs/pocket-fr-6l/pocket_tts --dataset data/common_voice_fr \
        --thresholds -6 -5 -4 -3 -2 -1 0 --max_texts 50

pocket_tts stops generating once the EOS logit exceeds a threshold (-4.0, inherited from English). A new
language or a distilled student can need another one. Each text is generated ONCE with EOS disabled up to
pocket_tts' own length cap while the EOS logit of every frame is recorded; since sampling does not depend on
the threshold, the frame where each threshold would stop is read off exactly, with no regeneration.
Per threshold and language:
- `no_eos`: the logit never crossed it, so generation ran into the length cap;
- `silent`: it stopped before any speech (EOS on the first frame, or the audio up to there is below
  -50 dBFS RMS);
- `mean_s`: mean duration of the generated audio.
Pick a threshold with few of both and write it as `default_eos_threshold` in the export's config.yaml.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict

import numpy as np

SILENT_DBFS = -50.0
DEFAULT_THRESHOLDS = (-6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0)


def eos_trace(tts_model, voice_state, text: str):
    """(per-frame EOS logits [n], audio [n * frame_size]) of one generation with EOS disabled."""
    import torch

    logits: list[float] = []
    hook = tts_model.flow_lm.out_eos.register_forward_hook(
        lambda module, inputs, output: logits.append(float(output.reshape(-1)[-1])))
    threshold, tts_model.eos_threshold = tts_model.eos_threshold, float("inf")
    try:
        with torch.no_grad():
            audio = tts_model.generate_audio(voice_state, text, frames_after_eos=0)
    finally:
        tts_model.eos_threshold = threshold
        hook.remove()
    # The first call is the text prefill (pocket_tts samples after every flow-LM step, the prefill too); the
    # rest are the generated frames. A text pocket_tts cuts into several chunks would add one per chunk.
    return np.asarray(logits[1:], dtype=np.float64), audio.numpy()


def stop_frame(logits: np.ndarray, threshold: float, min_frames: int = 0) -> int | None:
    """Index of the first frame (from `min_frames` on, as pocket_tts ignores EOS before that) whose EOS logit
    exceeds `threshold`, or None (generation runs into the length cap)."""
    crossed = np.nonzero(logits[min_frames:] > threshold)[0] + min_frames
    return int(crossed[0]) if len(crossed) else None


def sweep(traces: list[tuple[str, np.ndarray, np.ndarray]], thresholds, frame_size: int, sample_rate: int,
          min_frames: int = 0) -> dict:
    """{threshold: {language: {"texts", "no_eos", "silent", "mean_s"}}} from (language, logits, audio) traces."""
    table: dict = {}
    for threshold in thresholds:
        rows: dict = defaultdict(lambda: {"texts": 0, "no_eos": 0, "silent": 0, "seconds": 0.0})
        for language, logits, audio in traces:
            row = rows[language]
            row["texts"] += 1
            frame = stop_frame(logits, threshold, min_frames)
            if frame is None:
                row["no_eos"] += 1
                end = len(audio)
            else:
                end = min(len(audio), frame * frame_size)  # pocket_tts drops the EOS frame (frames_after_eos=0)
            spoken = audio[:end]
            level = 20 * np.log10(np.sqrt(np.mean(spoken.astype(np.float64) ** 2)) + 1e-12) if len(spoken) else -np.inf
            if frame is not None and (frame == 0 or level < SILENT_DBFS):
                row["silent"] += 1
            row["seconds"] += end / sample_rate
        table[threshold] = {lang: {"texts": r["texts"], "no_eos": r["no_eos"], "silent": r["silent"],
                                   "mean_s": round(r["seconds"] / r["texts"], 3)} for lang, r in sorted(rows.items())}
    return table


def format_table(table: dict) -> str:
    lines = [f"{'threshold':>9}  {'language':<8} {'texts':>5} {'no_eos':>6} {'silent':>6} {'mean_s':>7}"]
    for threshold, per_language in table.items():
        for language, r in per_language.items():
            lines.append(f"{threshold:>9.2f}  {language:<8} {r['texts']:>5} {r['no_eos']:>6} {r['silent']:>6} "
                         f"{r['mean_s']:>7.2f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="export folder or config.yaml (recipes/pocket/generate.py)")
    parser.add_argument("--dataset", default="demo", help="demo | save_to_disk folder | manifest: validation texts")
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    parser.add_argument("--max_texts", type=int, default=20, help="per language")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the table here")
    args = parser.parse_args(argv)

    import torch

    from data_prep.audio import decode_audio
    from recipes.pocket.data import attach_prompt_candidates, load_recipe_dataset, row_language
    from recipes.pocket.generate import load_synthesizer, voice_state_from_wave

    synth = load_synthesizer(args.model, seed=args.seed)
    model = synth.model
    data = load_recipe_dataset(args.dataset, languages=args.languages, seed=args.seed)
    pool = data["train"]
    rows, _ = attach_prompt_candidates(data["validation"], 30.0, what="validation", pool=pool)
    rng = random.Random(args.seed)
    per_language: dict = defaultdict(int)
    traces = []
    for row in rows:
        language = row_language(row)
        if per_language[language] >= args.max_texts:
            continue
        per_language[language] += 1
        wave, sr = decode_audio(pool[rng.choice(row["prompt_candidates"])]["audio"])
        torch.manual_seed(args.seed)
        state = voice_state_from_wave(model, wave, sr)
        logits, audio = eos_trace_text(model, state, row["text"], language, synth.use_language_tag)
        traces.append((language, logits, audio))
    table = sweep(traces, args.thresholds, model.mimi.frame_size, model.sample_rate,
                  min_frames=getattr(model, "_MIN_FRAMES_BEFORE_EOS", 0))
    print(format_table(table))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({str(k): v for k, v in table.items()}, f, indent=1)
    return table


def eos_trace_text(model, state, text, language, use_language_tag):
    """`eos_trace` of a text as generate.py would present it (the language tag for a multilingual model)."""
    from recipes.pocket.data import normalize_text

    if use_language_tag:
        text = normalize_text(text, language, True)
    return eos_trace(model, state, text)


if __name__ == "__main__":
    main()
