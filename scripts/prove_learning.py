"""Proof that each recipe learns: overfit a few clips of one demo speaker with the recipe's own training
script, then regenerate them with the recipe's own inference entry point (`load_synthesizer` /
`generate.py` code, the path recipes/evaluate.py uses).

    python scripts/prove_learning.py                       # all parts, CPU, offline (`make prove-learning`)
    python scripts/prove_learning.py --only orpheus pocket  # some parts (results.json keeps the others)

Writes outputs/prove_learning/{results.json, results.md, loss_curves.png} and per-part folders. A failed
reproduction is a recipe bug to fix, not a threshold to loosen (issue 19). Each part returns its figures;
tests/test_prove_learning.py asserts the thresholds below on the same functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "outputs" / "prove_learning"
logger = logging.getLogger("prove_learning")

# Pass marks from issue 19 (do not loosen: a miss is a recipe bug).
THRESHOLDS = {
    "orpheus": {"token_accuracy": (">=", 0.9), "eos_frame_error": ("<=", 1), "dialect_selection_ok": ("==", True)},
    "orpheus_lora": {"token_accuracy": (">=", 0.9), "eos_frame_error": ("<=", 1),
                     "dialect_selection_ok": ("==", True)},
    "xtts": {"token_accuracy": (">=", 0.9), "upstream_token_accuracy": (">=", 0.9),
             # not in the issue: the stop code within 5 codes (0.23 s) of the clip's end, on both paths
             "stop_code_error": ("<=", 5), "upstream_stop_code_error": ("<=", 5)},
    "pocket": {"latent_rel_error": ("<=", 0.3), "eos_frame_error": ("<=", 2)},
    "f5": {"griffin_lim_wer": ("<=", 0.5)},
}


def check(part: str, figures: dict) -> list[str]:
    """Human-readable failures of `figures` against THRESHOLDS[part] (empty: passed)."""
    failures = []
    for key, (op, bound) in THRESHOLDS[part].items():
        value = figures.get(key)
        ok = value is not None and {">=": lambda: value >= bound, "<=": lambda: abs(value) <= bound,
                                    "==": lambda: value == bound}[op]()
        if not ok:
            failures.append(f"{part}.{key} = {value!r}, needs {op} {bound}")
    return failures


def _demo_subset(ids: list[str], out: Path, sampling_rate: int = 24000) -> str:
    """A data_prep-schema dataset of exactly these demo-corpus clips, saved as train and validation."""
    from datasets import Audio, DatasetDict

    from data_prep.demo_corpus import load_demo_dataset

    data = load_demo_dataset(sampling_rate=sampling_rate)
    order = {clip: i for i, clip in enumerate(ids)}
    rows = data.filter(lambda i: i in order, input_columns="id")
    missing = set(ids) - set(rows["id"])
    if missing:
        raise ValueError(f"demo corpus has no clips {sorted(missing)}")
    rows = rows.cast_column("audio", Audio(sampling_rate=sampling_rate))
    DatasetDict({"train": rows, "validation": rows}).save_to_disk(str(out))
    return str(out)


def _losses(log_history: list[dict]) -> list[tuple[int, float]]:
    return [(h["step"], float(h["loss"])) for h in log_history if "loss" in h and "step" in h]


def _position_accuracy(generated, reference) -> float:
    """Fraction of reference positions where the generation has the same token (missing = wrong)."""
    reference = np.asarray(reference).reshape(-1)
    generated = np.asarray(generated).reshape(-1)[:len(reference)]
    return float((generated == reference[:len(generated)]).sum() / len(reference))


# ---- Orpheus ------------------------------------------------------------------------------------------
# Two clips of one text in two dialects (central_f2 / valencia_f4) plus more clips of the central speaker;
# the LoRA adapts the trained model to a new voice (balear_m4) whose clip shares a text with a valencia clip
# the base memorised, so its voice prompt must pick its own clip.
ORPHEUS_CLIPS = ["central_f2_001", "central_f2_003", "valencia_f4_003", "valencia_f4_004"]
ORPHEUS_SAME_TEXT = {"central": "central_f2_003", "valencia": "valencia_f4_003"}
LORA_CLIPS = ["balear_m4_000", "balear_m4_001", "balear_m4_004"]
ORPHEUS_STEPS, ORPHEUS_LORA_STEPS = "120", "50"
LORA_SAME_TEXT = ("balear_m4_004", "valencia_f4_004")  # (its clip, the other dialect's clip of that text)


def _orpheus_reference(rows, clip_id: str) -> tuple[str, str, list[int]]:
    row = rows[rows["id"].index(clip_id)]
    audio = row["input_ids"][row["audio_start"]:row["audio_start"] + row["n_audio_tokens"]]
    return row["text"], row["dialect"], [int(t) for t in audio]


def _orpheus_scores(synthesizer, rows, clips: list[str], label_of) -> dict:
    from recipes.orpheus import layout

    accuracies, eos_errors, generated = [], [], {}
    for clip in clips:
        text, dialect, reference = _orpheus_reference(rows, clip)
        prompt = layout.format_prompt(synthesizer.label(label_of(dialect), None), text)
        tokens = synthesizer.generate_audio_tokens([prompt])[0]
        generated[clip] = tokens
        accuracies.append(_position_accuracy(tokens, reference))
        eos_errors.append(len(tokens) // layout.TOKENS_PER_FRAME - len(reference) // layout.TOKENS_PER_FRAME)
    return {"token_accuracy": min(accuracies), "eos_frame_error": max(eos_errors, key=abs),
            "per_clip_accuracy": dict(zip(clips, accuracies)), "generated": generated}


def prove_orpheus(out: Path) -> dict:
    """Dialect pretraining recipe on 5 clips, then greedy decoding through `load_synthesizer`."""
    from recipes.orpheus import pretrain_dialects
    from recipes.orpheus.build_tiny import build_tiny_orpheus
    from recipes.orpheus.generate import load_synthesizer

    start = time.time()
    tiny = build_tiny_orpheus(out / "tiny")
    dataset = _demo_subset(ORPHEUS_CLIPS, out / "dataset")
    run_dir = out / "pretrain"
    shutil.rmtree(run_dir, ignore_errors=True)  # a leftover checkpoint would be resumed
    trainer = pretrain_dialects.main(*pretrain_dialects.make_parser_args([
        "--config", str(REPO / "recipes/orpheus/configs/demo.yaml"), "--model_name_or_path", tiny["model"],
        "--build_tiny_model", "false", "--snac_model", tiny["snac"], "--dataset", dataset, "--dialects", "central",
        "valencia", "--output_dir", str(run_dir), "--max_steps", ORPHEUS_STEPS,
        "--per_device_train_batch_size", "4", "--learning_rate", "5e-3", "--lr_scheduler_type", "constant_with_warmup",
        "--warmup_steps", "10", "--weight_decay", "0", "--logging_steps", "5", "--eval_strategy", "no",
        "--save_strategy", "no", "--report_to", "none", "--sample_every_n_steps", "0",
        "--sample_max_new_tokens", "14", "--sample_min_new_tokens", "0"]))
    losses = _losses(trainer.state.log_history)
    rows = trainer.train_dataset
    del trainer
    (out / "reference_tokens.json").write_text(json.dumps({c: _orpheus_reference(rows, c)[2] for c in ORPHEUS_CLIPS}))
    # Greedy (temperature 0) and no repetition penalty: the "greedy decoding"; a penalty would
    # push the decoder off a memorised sequence that repeats codes.
    synthesizer = load_synthesizer(str(run_dir), device="cpu", temperature=0.0, repetition_penalty=1.0,
                                   max_new_tokens=7 * 60)
    scores = _orpheus_scores(synthesizer, rows, ORPHEUS_CLIPS, lambda dialect: dialect)
    central = scores["generated"][ORPHEUS_SAME_TEXT["central"]]
    valencia = scores["generated"][ORPHEUS_SAME_TEXT["valencia"]]
    refs = {d: _orpheus_reference(rows, c)[2] for d, c in ORPHEUS_SAME_TEXT.items()}
    selection = {"central_prompt_vs_central": _position_accuracy(central, refs["central"]),
                 "central_prompt_vs_valencia": _position_accuracy(central, refs["valencia"]),
                 "valencia_prompt_vs_valencia": _position_accuracy(valencia, refs["valencia"]),
                 "valencia_prompt_vs_central": _position_accuracy(valencia, refs["central"])}
    ok = (selection["central_prompt_vs_central"] > selection["central_prompt_vs_valencia"]
          and selection["valencia_prompt_vs_valencia"] > selection["valencia_prompt_vs_central"])
    return {"steps": losses[-1][0], "loss_final": losses[-1][1], "losses": losses,
            "token_accuracy": scores["token_accuracy"], "eos_frame_error": scores["eos_frame_error"],
            "dialect_selection_ok": bool(ok), "dialect_selection": selection,
            "per_clip_accuracy": scores["per_clip_accuracy"], "clips": ORPHEUS_CLIPS,
            "seconds": round(time.time() - start, 1)}



def prove_orpheus_lora(out: Path) -> dict:
    """finetune_voice_lora.py on 3 clips of a new voice (balear_m4), on top of the dialect model trained by
    `prove_orpheus` (run it first), as a real voice LoRA adapts a dialect model; then greedy decoding through
    `load_synthesizer` on the adapter folder (reported) and on the merged model (in details)."""
    from recipes.orpheus import finetune_voice_lora
    from recipes.orpheus.generate import load_synthesizer

    start = time.time()
    base = out.parent / "orpheus"
    if not (base / "pretrain" / "config.json").exists():
        raise FileNotFoundError(f"{base}/pretrain has no model: run the orpheus part first")
    dataset = _demo_subset(LORA_CLIPS, out / "dataset")
    run_dir = out / "lora"
    shutil.rmtree(run_dir, ignore_errors=True)
    trainer = finetune_voice_lora.main(*finetune_voice_lora.make_parser_args([
        "--config", str(REPO / "recipes/orpheus/configs/voice_lora_demo.yaml"),
        "--model_name_or_path", str(base / "pretrain"), "--snac_model", str(base / "tiny" / "snac"),
        "--dataset", dataset, "--speakers", "balear_m4", "--voice", "balear_m4", "--output_dir", str(run_dir),
        # voice_lora_demo.yaml's rate: rsLoRA (r 32, alpha 64) scales updates by alpha/sqrt(r) = 11.3, and 1e-2 (tuned for
        # plain LoRA) made the loss jump from 1.3 to 4.4 after warm-up and stall at 2.8 (token_accuracy 0.87).
        "--max_steps", ORPHEUS_LORA_STEPS, "--per_device_train_batch_size", "3", "--learning_rate", "2e-3",
        "--lr_scheduler_type", "constant_with_warmup", "--warmup_steps", "5", "--lora_dropout", "0",
        "--logging_steps", "5", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
        "--sample_max_new_tokens", "14", "--sample_min_new_tokens", "0"]))
    losses = _losses(trainer.state.log_history)
    rows = trainer.train_dataset
    del trainer
    figures = {}
    for form, path in (("adapter", run_dir), ("merged", run_dir / "merged")):
        synthesizer = load_synthesizer(str(path), device="cpu", temperature=0.0, repetition_penalty=1.0,
                                       max_new_tokens=7 * 60)
        scores = _orpheus_scores(synthesizer, rows, LORA_CLIPS, lambda dialect: None)
        own_clip, other_clip = LORA_SAME_TEXT
        generated = scores["generated"][own_clip]
        other_reference = json.loads((base / "reference_tokens.json").read_text())[other_clip]
        own = _position_accuracy(generated, _orpheus_reference(rows, own_clip)[2])
        other = _position_accuracy(generated, other_reference)
        figures[form] = {"token_accuracy": scores["token_accuracy"], "eos_frame_error": scores["eos_frame_error"],
                         "dialect_selection_ok": bool(own > other),
                         "dialect_selection": {"voice_prompt_vs_own_clip": own, "voice_prompt_vs_valencia_clip": other},
                         "per_clip_accuracy": scores["per_clip_accuracy"]}
    return {"steps": losses[-1][0], "loss_final": losses[-1][1], "losses": losses, **figures["adapter"],
            "merged": figures["merged"], "clips": LORA_CLIPS, "seconds": round(time.time() - start, 1)}


# ---- Pocket -------------------------------------------------------------------------------------------
# Generation at temperature 0 is ONE step of the LSD head, x = v(s=0, t=1, x=0 | z): the flow MAP, which only the
# self-distillation term teaches. With the recipe's defaults (distillation on 25 % of steps, (s, t) from a
# logit-normal with std 1, so a gap s~0 -> t~1 is almost never drawn) 200 steps taught the flow itself (an 8-step
# ODE from 0 reproduced the teacher-forced frames at rel. error 0.23-0.31) but not the one-step map (0.96-1.0):
# the free-running latents were noise and EOS never or wrongly fired. Hence, for this overfit only: distillation on
# every step, std 2 (wide gaps and the corners get drawn), equal diagonal/distillation weights, and 16 noise draws
# per frame (the head is cheap next to the backbone pass and Mimi encoding). Measured (same settings): 300 steps
# latent error 0.415 and EOS never fired; 600 steps 0.229 but one clip stopped 23 frames late; 800 steps 0.122
# (teacher-forced 0.118) and EOS on the exact frame for all three clips.
POCKET_TRAIN_ARGS = ["--max_steps", "800", "--per_device_train_batch_size", "3",
                     "--learning_rate", "3e-3", "--lr_scheduler_type", "constant_with_warmup", "--warmup_steps", "20",
                     "--weight_decay", "0", "--text_dropout", "0", "--voice_dropout", "0", "--ema_decay", "0.9",
                     "--lsd_distill_prob", "1.0", "--time_std", "2.0", "--lsd_p_equal", "0.5",
                     "--flow_batch_multiplier", "16"]
POCKET_CLIPS = ["fr_f2_000", "fr_f2_001", "fr_f2_002"]  # one speaker: each clip's voice prompt is another


def _pocket_generate(tts_model, state, text: str, language: str, use_language_tag: bool):
    """Run the recipe's `speak` (what generate.py and evaluation call) and record, per generated step,
    pocket_tts' latent (normalised, as fed back to the backbone) and its EOS flag."""
    from recipes.pocket.generate import speak

    steps, text_tokens = [], []
    run_step = tts_model._run_flow_lm_and_increment_step

    def recording(*args, **kwargs):
        latent, is_eos = run_step(*args, **kwargs)
        if kwargs.get("backbone_input_latents") is not None:  # a generation step (not the text/voice prompt)
            steps.append((latent.reshape(-1).clone(), bool(is_eos.reshape(-1)[0])))
        elif kwargs.get("text_tokens") is not None:
            text_tokens.append(kwargs["text_tokens"])
        return latent, is_eos

    tts_model._run_flow_lm_and_increment_step = recording
    try:
        wave = speak(tts_model, state, text, language, use_language_tag)
    finally:
        del tts_model._run_flow_lm_and_increment_step
    return wave, steps, text_tokens


def _pocket_target_wave(row: dict, sampling_rate: int, trim: str) -> np.ndarray:
    """A clip's samples exactly as PocketCollator trains on them (its `trim_clip` mode, 0.2 s kept after the
    speech: the EOS point)."""
    from data_prep.audio import decode_audio
    from recipes.pocket.data import trim_clip

    wave, _ = decode_audio(row["audio"], target_sr=sampling_rate)
    start, end = trim_clip(wave, sampling_rate, trim, keep_after_s=0.2)
    return wave[start:end]


def _pocket_teacher_forced(tts_model, state, text_tokens, reference):
    """pocket_tts' own streaming step (KV cache, NaN = BOS, temperature as loaded) fed the REFERENCE latents
    instead of its own: per-frame predictions [T, D] and the first EOS step. Separates "the model did not learn
    the clip" (high error here too) from "generation drifts / the inference path differs" (low error here,
    high in free running)."""
    import copy

    import torch

    state = copy.deepcopy(state)
    tts_model._expand_kv_cache(state, tts_model._flow_lm_current_end(state) + text_tokens.shape[1] + len(reference) + 1)
    predictions, eos_step = [], None
    with torch.no_grad():
        tts_model._run_flow_lm_and_increment_step(model_state=state, text_tokens=text_tokens)
        previous = torch.full((1, 1, reference.shape[-1]), float("nan"))
        for t in range(len(reference) + 1):  # one step past the clip: where EOS must fire
            latent, is_eos = tts_model._run_flow_lm_and_increment_step(model_state=state,
                                                                        backbone_input_latents=previous)
            if bool(is_eos.reshape(-1)[0]) and eos_step is None and t >= tts_model._MIN_FRAMES_BEFORE_EOS:
                eos_step = t
            if t < len(reference):
                predictions.append(latent.reshape(-1))
                previous = reference[t].reshape(1, 1, -1)
    return torch.stack(predictions), len(reference) + 1 if eos_step is None else eos_step


def prove_pocket(out: Path) -> dict:
    """finetune_multilingual.py on 3 clips of one French speaker, exported, then pocket_tts through the
    recipe's `load_synthesizer` at temperature 0 (the sampler's noise std is sqrt(temp): 0 is allowed)."""
    import torch

    from data_prep.audio import decode_audio
    from recipes.pocket import finetune_multilingual
    from recipes.pocket.generate import load_synthesizer, voice_state_from_wave
    from recipes.common import parse_recipe_args

    start = time.time()
    dataset = _demo_subset(POCKET_CLIPS, out / "dataset")
    run_dir = out / "train"
    shutil.rmtree(run_dir, ignore_errors=True)
    script_args, training_args = parse_recipe_args(*finetune_multilingual.make_parser_types(), argv=[
        "--config", str(REPO / "recipes/pocket/configs/demo.yaml"), "--dataset", dataset, "--languages", "fr",
        "--output_dir", str(run_dir), *POCKET_TRAIN_ARGS,
        "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--logging_steps", "10"])
    trainer = finetune_multilingual.main(script_args, training_args)
    losses = _losses(trainer.state.log_history)
    del trainer

    synthesizer = load_synthesizer(str(run_dir / "pocket_tts"), device="cpu", temperature=0.0)
    tts = synthesizer.model
    flow_lm = tts.flow_lm
    errors, eos_errors, tf_errors, tf_eos_errors, per_clip = [], [], [], [], {}
    from datasets import load_from_disk

    rows = load_from_disk(dataset)["train"]
    for i, clip in enumerate(POCKET_CLIPS):
        row = rows[rows["id"].index(clip)]
        # Reference: the clip as training saw it (trimmed by the collator's own `trim_clip` and mode, padded,
        # Mimi-encoded, normalised by the exported stats). Not another trim: the VAD mode also cuts the start,
        # which shifts the 1920-sample frame grid, and its end can differ from an energy trim by a frame.
        target = _pocket_target_wave(row, tts.sample_rate, script_args.trim)
        frames = -(-len(target) // tts.mimi.frame_size)
        padded = torch.zeros(1, 1, (frames + 1) * tts.mimi.frame_size)
        padded[0, 0, :len(target)] = torch.from_numpy(target)
        with torch.no_grad():
            latents = tts.mimi.encode_to_latent(padded).float()[0, :frames]
        reference = (latents - flow_lm.emb_mean) / flow_lm.emb_std
        voice_row = rows[rows["id"].index(POCKET_CLIPS[(i + 1) % len(POCKET_CLIPS)])]
        voice_wave, voice_sr = decode_audio(voice_row["audio"])
        torch.manual_seed(0)
        state = voice_state_from_wave(tts, voice_wave, voice_sr)
        audio, steps, text_tokens = _pocket_generate(tts, state, row["text"], "fr", synthesizer.use_language_tag)
        if len(text_tokens) != 1:
            raise AssertionError(f"{clip}: generation took {len(text_tokens)} text chunks, the proof expects one")
        forced, forced_eos = _pocket_teacher_forced(tts, state, text_tokens[0], reference)
        tf_errors.append(float((forced - reference).norm() / reference.norm()))
        tf_eos_errors.append(forced_eos - frames)
        generated = torch.stack([latent for latent, _ in steps])
        n = min(len(generated), frames)
        diff = torch.zeros_like(reference)
        diff[:n] = generated[:n] - reference[:n]
        diff[n:] = reference[n:]  # frames never generated count as fully wrong
        rel = float(diff.norm() / reference.norm())
        eos_step = next((t for t, (_, eos) in enumerate(steps) if eos and t >= tts._MIN_FRAMES_BEFORE_EOS), len(steps))
        errors.append(rel)
        eos_errors.append(eos_step - frames)
        per_clip[clip] = {"latent_rel_error": rel, "frames": frames, "eos_step": eos_step,
                          "generated_frames": len(steps), "teacher_forced_latent_rel_error": tf_errors[-1],
                          "teacher_forced_eos_frame_error": tf_eos_errors[-1]}
        _write_wav(out / f"{clip}.wav", audio, tts.sample_rate)
    return {"steps": losses[-1][0], "loss_final": losses[-1][1], "losses": losses,
            "latent_rel_error": max(errors), "eos_frame_error": max(eos_errors, key=abs),
            "teacher_forced_latent_rel_error": max(tf_errors), "teacher_forced_eos_frame_error": max(tf_eos_errors, key=abs),
            "per_clip": per_clip, "clips": POCKET_CLIPS, "seconds": round(time.time() - start, 1)}


def _write_wav(path: Path, wave, sr: int) -> None:
    from data_prep.audio import write_audio

    write_audio(str(path), np.asarray(wave, dtype=np.float32).reshape(-1), sr)

# ---- XTTS ---------------------------------------------------------------------------------------------
XTTS_CLIPS = ["pt-br_f2_000", "pt-br_f2_001", "pt-br_f2_002"]  # one speaker: conditioning from its other clips
# Greedy: top_k 1, and no repetition penalty (config.json's 5.0 would forbid repeating a memorised code).
# The tiny base's DVAE codebook is spread over the demo speech (recipes/xtts/tiny.py): with a random one,
# 45 of a clip's 46 codes were the same, so repeating one code scored 0.978 and the overfit GPT never found the
# clip's end (it ran to max_new_tokens). With real codes, LoRA r16 for 150-1,200 steps reached 0.92 but looped
# on the tail's repeated code; r64 for 900 steps stops within 4 codes on both paths.
XTTS_STEPS = "900"
XTTS_GREEDY = {"temperature": 1.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0}


def _recorded_codes(xtts, run):
    """Run `run()` and return the audio codes upstream `GPT.generate` produced (start/stop tokens removed)."""
    gpt = xtts.gpt
    generate = gpt.generate
    seen = []

    def recording(*args, **kwargs):
        codes = generate(*args, **kwargs)
        seen.append((codes[0] if not isinstance(codes, tuple) else codes[0][0]).cpu().numpy())
        return codes

    gpt.generate = recording
    try:
        run()
    finally:
        del gpt.generate
    codes = np.concatenate(seen)
    codes = codes[codes != gpt.start_audio_token]
    stops = np.nonzero(codes == gpt.stop_audio_token)[0]
    return codes[:stops[0]] if len(stops) else codes


def prove_xtts(out: Path) -> dict:
    """train_adapter.py (LoRA on a tiny random XTTS) on 3 clips of one speaker; then the clip's DVAE codes
    regenerated (a) through recipes/xtts/generate.py's `load_synthesizer` on the adapter folder and (b) by
    upstream `Xtts.load_checkpoint` + `Xtts.inference` on the merged export, with another clip as reference."""
    import torch

    from data_prep.audio import decode_audio
    from recipes.common import parse_recipe_args
    from recipes.xtts import modeling, train_adapter
    from recipes.xtts.generate import load_synthesizer

    start = time.time()
    dataset = _demo_subset(XTTS_CLIPS, out / "dataset", sampling_rate=22_050)
    run_dir = out / "train"
    shutil.rmtree(run_dir, ignore_errors=True)
    args, training_args = parse_recipe_args(train_adapter.XttsAdapterArguments, train_adapter.TrainingArguments, argv=[
        "--config", str(REPO / "recipes/xtts/configs/demo.yaml"), "--dataset", dataset, "--languages", "pt-br",
        "--output_dir", str(run_dir), "--max_steps", XTTS_STEPS, "--per_device_train_batch_size", "3",
        "--lora_r", "64", "--lora_alpha", "128", "--learning_rate", "3e-3", "--eval_strategy", "no",
        "--save_strategy", "no", "--report_to", "none", "--logging_steps", "5"])
    train_adapter.main(args, training_args)
    state = json.loads((run_dir / "trainer_state.json").read_text())
    losses = _losses(state["log_history"])
    final = run_dir / "final"
    torch.manual_seed(0)

    from datasets import load_from_disk
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    rows = load_from_disk(dataset)["train"]
    config = modeling.load_xtts_config(run_dir / "tiny-base")
    coder = modeling.DvaeCoder.from_base(run_dir / "tiny-base", config)
    ours = load_synthesizer(str(final / "adapter"), device="cpu", language="pt", max_new_tokens=120, **XTTS_GREEDY)
    upstream_config = XttsConfig()
    upstream_config.load_json(str(final / "config.json"))
    upstream = Xtts(upstream_config)
    upstream.load_checkpoint(upstream_config, checkpoint_dir=str(final), eval=True)

    per_clip = {}
    for i, clip in enumerate(XTTS_CLIPS):
        row = rows[rows["id"].index(clip)]
        wave, _ = decode_audio(row["audio"], target_sr=modeling.GPT_SAMPLE_RATE)
        reference = coder.encode(torch.from_numpy(wave)).numpy()
        voice_row = rows[rows["id"].index(XTTS_CLIPS[(i + 1) % len(XTTS_CLIPS)])]
        voice_wave, voice_sr = decode_audio(voice_row["audio"])
        ours_codes = _recorded_codes(ours.xtts, lambda: ours.synthesize(
            [row["text"]], languages=["pt"], reference_audio=[(voice_wave, voice_sr)]))
        voice_file = out / f"{voice_row['id']}.wav"
        _write_wav(voice_file, voice_wave, voice_sr)

        def run_upstream():
            latents, speaker = upstream.get_conditioning_latents(audio_path=[str(voice_file)])
            upstream.inference(row["text"], "pt", latents, speaker, max_new_tokens=120, **XTTS_GREEDY)

        upstream_codes = _recorded_codes(upstream, run_upstream)
        # generated codes come before the first stop code; a generation that never stops has max_new_tokens
        per_clip[clip] = {"token_accuracy": _position_accuracy(ours_codes, reference),
                          "upstream_token_accuracy": _position_accuracy(upstream_codes, reference),
                          "reference_codes": len(reference), "generated_codes": len(ours_codes),
                          "upstream_generated_codes": len(upstream_codes),
                          "stop_code_error": len(ours_codes) - len(reference),
                          "upstream_stop_code_error": len(upstream_codes) - len(reference),
                          # what repeating the clip's most frequent code would score: the bar to clear
                          "repeat_one_code_accuracy": float(np.bincount(reference).max() / len(reference))}
    return {"steps": losses[-1][0], "loss_final": losses[-1][1], "losses": losses,
            "token_accuracy": min(c["token_accuracy"] for c in per_clip.values()),
            "upstream_token_accuracy": min(c["upstream_token_accuracy"] for c in per_clip.values()),
            "stop_code_error": max((c["stop_code_error"] for c in per_clip.values()), key=abs),
            "upstream_stop_code_error": max((c["upstream_stop_code_error"] for c in per_clip.values()), key=abs),
            "repeat_one_code_accuracy": max(c["repeat_one_code_accuracy"] for c in per_clip.values()),
            "per_clip": per_clip, "clips": XTTS_CLIPS, "seconds": round(time.time() - start, 1)}

# ---- F5 -----------------------------------------------------------------------------------------------
# One English espeak-ng voice at a slow rate (offline-models.md: Whisper base scores this sentence 0 % WER).
# The overfit clip is a short prompt sentence followed by the scored sentence, synthesised separately and
# joined, so the prompt boundary is exact: inference gets the first sentence as reference (audio + text,
# upstream's "ref_text. gen_text" joins them back into the training transcript) and must rebuild the rest.
F5_VOICE, F5_RATE = "en", 140
F5_PROMPT = "Good morning."
F5_SENTENCE = "The boy went to school early this morning."
# finetune.py arguments over demo_base.yaml: its tiny DiT size from scratch, as the `tiny_overfit` preset (text
# spread evenly over the frames, no dropout). The plain `tiny` did not learn where the words go: 200 steps gave
# Griffin-Lim WER 1.62 and 1500 steps on the target clip alone still misplaced them (no train/inference mismatch:
# the flow-matching loss under the inference mask equals the training loss, EMA = online weights, and 64 ODE
# steps or no CFG do not help). All three clips share each batch (one step ~0.17 s on one core). Measured on one
# core: 1200 steps ~3.4 min of training, ~3.7 min for the part, mel rel L1 0.29 and WER <= 0.25 for each of 5
# sampling seeds; 900 steps (~2.6 min) passed seed 0 (WER 0.125) but not every seed (1 of 5 at 0.875).
F5_TRAIN = {"model_config": "tiny_overfit", "max_steps": "1200", "learning_rate": "3e-3", "warmup_steps": "20",
            "weight_decay": "0", "ema_beta": "0.9", "ema_update_after_step": "5", "ema_update_every": "1",
            "logging_steps": "10"}
F5_OTHER = ["She reads a book every night.", "It is cold and windy today."]


def _espeak(text: str, sr: int = 24_000) -> np.ndarray:
    import subprocess
    import tempfile

    from data_prep.audio import decode_audio, resample

    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", F5_VOICE, "-s", str(F5_RATE), "-w", tmp.name, text], check=True)
        wave, rate = decode_audio(tmp.name)
    return resample(wave, rate, sr)


def _f5_corpus(out: Path) -> tuple[str, dict]:
    """Three clips of one espeak voice as a schema dataset; loudness at RMS 0.15 (upstream inference raises
    a quieter reference to RMS 0.1, which would make the prompt louder than anything the model saw)."""
    from datasets import Dataset, DatasetDict

    from data_prep.audio import write_audio
    from data_prep.schema import schema_features

    sr = 24_000
    prompt, sentence = _espeak(F5_PROMPT), _espeak(F5_SENTENCE)
    waves = {"f5_target": np.concatenate([prompt, sentence]),
             **{f"f5_other_{i}": _espeak(t) for i, t in enumerate(F5_OTHER)}}
    texts = {"f5_target": f"{F5_PROMPT} {F5_SENTENCE}", **{f"f5_other_{i}": t for i, t in enumerate(F5_OTHER)}}
    scale = 0.15 / float(np.sqrt(np.mean(waves["f5_target"] ** 2)))
    (out / "clips").mkdir(parents=True, exist_ok=True)
    columns = {k: [] for k in ("id", "audio", "text", "speaker", "dialect", "duration", "language")}
    for clip, wave in waves.items():
        wave = np.clip(wave * scale, -1, 1)
        path = out / "clips" / f"{clip}.wav"
        write_audio(str(path), wave, sr)
        for key, value in (("id", clip), ("audio", str(path)), ("text", texts[clip]), ("speaker", "espeak_en"),
                           ("dialect", "en"), ("duration", len(wave) / sr), ("language", "en")):
            columns[key].append(value)
    _write_wav(out / "f5_sentence_recording.wav", sentence * scale, sr)
    rows = Dataset.from_dict(columns, features=schema_features(sr))
    DatasetDict({"train": rows, "validation": rows}).save_to_disk(str(out / "dataset"))
    return str(out / "dataset"), {"prompt_samples": len(prompt), "sentence_samples": len(sentence), "scale": scale}


def prove_f5(out: Path, train: dict | None = None) -> dict:
    """finetune.py (tiny DiT from scratch) on the three clips; then generate.py's `load_synthesizer` with
    `vocoder="griffin-lim"` rebuilds the sentence after the prompt; the mel is compared with the clip's and
    the Griffin-Lim audio is transcribed by the offline Whisper base."""
    import torch

    from recipes.eval.models import transcribe_wer
    from recipes.f5 import finetune
    from recipes.f5.generate import load_synthesizer
    from data_prep.audio import decode_audio

    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    dataset, info = _f5_corpus(out)
    run_dir = out / "train"
    shutil.rmtree(run_dir, ignore_errors=True)
    args, training_args = finetune.make_parser().parse_args_and_config(args=[
        "--config", str(REPO / "recipes/f5/configs/demo_base.yaml"), "--dataset", dataset, "--languages", "en",
        "--output_dir", str(run_dir), "--eval_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false", "--early_stopping_patience", "0", "--report_to", "none",
        "--sample_texts", F5_SENTENCE,
        *[arg for key, value in {**F5_TRAIN, **(train or {})}.items() for arg in (f"--{key}", str(value))]])
    if not args.early_stopping_patience:
        args.early_stopping_patience = None
    finetune.main(args, training_args)
    state = json.loads((run_dir / "trainer_state.json").read_text())
    losses = _losses(state["log_history"])

    synthesizer = load_synthesizer(str(run_dir), device="cpu", vocoder="griffin-lim")
    clip, sr = decode_audio(str(out / "clips" / "f5_target.wav"))
    prompt = clip[:info["prompt_samples"]]
    hop = 256
    with torch.no_grad():
        reference_mel = synthesizer.model.mel_spec(torch.from_numpy(clip)[None])[0]  # (100, frames)
    reference_rest = reference_mel[:, len(prompt) // hop:]
    # Reconstruction at the true duration, as F5's own reconstruction evaluation does: upstream estimates the
    # length from text bytes; `speed` rescales that estimate to the clip's real length.
    estimated = int(len(prompt) // hop / len((F5_PROMPT + " ").encode()) * len(F5_SENTENCE.encode()))
    synthesizer.options["speed"] = estimated / reference_rest.shape[1]
    torch.manual_seed(0)
    [wave] = synthesizer.synthesize([F5_SENTENCE], reference_audio=[(prompt, sr)], reference_texts=[F5_PROMPT])
    generated = synthesizer.vocoder.last_mel[0]
    n = min(generated.shape[1], reference_rest.shape[1])
    mel_rel_l1 = float((generated[:, :n] - reference_rest[:, :n]).abs().sum() / reference_rest[:, :n].abs().sum())
    _write_wav(out.parent / "f5_griffin_lim.wav", wave, synthesizer.sampling_rate)
    asr = transcribe_wer(out.parent / "f5_griffin_lim.wav", None, F5_SENTENCE, "en")
    recording = transcribe_wer(out / "f5_sentence_recording.wav", None, F5_SENTENCE, "en")
    # Griffin-Lim of the clip's own mel: the vocoder's ceiling, independent of training.
    ceiling_wave = synthesizer.vocoder.decode(reference_rest[None])[0].numpy()
    _write_wav(out / "griffin_lim_of_reference_mel.wav", ceiling_wave, sr)
    ceiling = transcribe_wer(out / "griffin_lim_of_reference_mel.wav", None, F5_SENTENCE, "en")
    return {"steps": losses[-1][0], "loss_final": losses[-1][1], "losses": losses, "mel_rel_l1": mel_rel_l1,
            "griffin_lim_wer": asr["wer"], "griffin_lim_transcript": asr["transcript"],
            "recording_wer": recording["wer"], "recording_transcript": recording["transcript"],
            "reference_mel_griffin_lim_wer": ceiling["wer"], "generated_frames": int(generated.shape[1]),
            "reference_frames": int(reference_rest.shape[1]), "sentence": F5_SENTENCE,
            "seconds": round(time.time() - start, 1)}

# ---- driver -------------------------------------------------------------------------------------------
PARTS = {"orpheus": prove_orpheus, "orpheus_lora": prove_orpheus_lora, "pocket": prove_pocket, "xtts": prove_xtts, "f5": prove_f5}


RESULT_KEYS = {"orpheus": ("token_accuracy", "eos_frame_error", "dialect_selection_ok"),
               "orpheus_lora": ("token_accuracy", "eos_frame_error", "dialect_selection_ok"),
               "xtts": ("token_accuracy", "upstream_token_accuracy", "stop_code_error", "upstream_stop_code_error",
                        "repeat_one_code_accuracy"),
               "pocket": ("latent_rel_error", "eos_frame_error", "teacher_forced_latent_rel_error",
                          "teacher_forced_eos_frame_error"),
               "f5": ("mel_rel_l1", "griffin_lim_wer")}


def write_results(out: Path, details: dict) -> dict:
    """results.json (the issue's keys + loss_final, steps, seconds), details.json, results.md, loss_curves.png."""
    results = {part: {**{k: details[part][k] for k in keys}, "steps": details[part]["steps"],
                      "loss_final": details[part]["loss_final"], "seconds": details[part]["seconds"]}
               for part, keys in RESULT_KEYS.items() if part in details}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "details.json").write_text(json.dumps(
        {p: {k: v for k, v in d.items() if k != "generated"} for p, d in details.items()}, indent=1, default=str))
    lines = ["# Proof that each recipe learns (issue 19)", "",
             "Each recipe's own training script overfits a few clips of one demo speaker; its own inference entry "
             "point then regenerates them. Thresholds: see `THRESHOLDS` in scripts/prove_learning.py.", "",
             "| recipe | steps | final loss | reproduction | seconds | pass |", "|---|---|---|---|---|---|"]
    for part, row in results.items():
        figures = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in row.items() if k in RESULT_KEYS[part])
        failures = check(part, row)
        lines.append(f"| {part} | {row['steps']} | {row['loss_final']:.4f} | {figures} | {row['seconds']:.0f} | "
                     f"{'yes' if not failures else 'NO: ' + '; '.join(failures)} |")
    if "f5" in details:
        f5 = details["f5"]
        lines += ["", f"F5 Griffin-Lim audio (`f5_griffin_lim.wav`) heard by Whisper base: \"{f5['griffin_lim_transcript']}\" "
                  f"(WER {f5['griffin_lim_wer']:.2f}); the espeak recording of the sentence: "
                  f"\"{f5['recording_transcript']}\" (WER {f5['recording_wer']:.2f}); Griffin-Lim of the clip's own mel: "
                  f"WER {f5['reference_mel_griffin_lim_wer']:.2f}."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_losses(details, out / "loss_curves.png")
    return results


def plot_losses(details: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in RESULT_KEYS if p in details]
    fig, axes = plt.subplots(1, len(parts), figsize=(3.2 * len(parts), 3), squeeze=False)
    for ax, part in zip(axes[0], parts):
        steps, losses = zip(*details[part]["losses"])
        ax.plot(steps, losses)
        ax.set_yscale("log" if min(losses) > 0 else "linear")
        ax.set_title(part)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--only", nargs="+", choices=list(PARTS), default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MPLCONFIGDIR", str(Path(args.out) / ".mplconfig"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    details_file = out / "details.json"
    details = json.loads(details_file.read_text()) if details_file.exists() and args.only else {}
    for part in args.only or list(PARTS):
        figures = PARTS[part](out / part)
        details[part] = figures
        write_results(out, details)  # after every part: a later failure keeps the earlier figures
    results = write_results(out, details)
    print((out / "results.md").read_text())
    failures = [f for part, row in results.items() for f in check(part, row)]
    if failures:
        raise SystemExit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
