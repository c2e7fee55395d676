"""Fine-tune Kyutai's Pocket TTS (flow LM over continuous Mimi latents) to new languages.

    accelerate launch recipes/pocket/finetune_multilingual.py --config recipes/pocket/configs/fr.yaml
    # several GPUs:  accelerate launch --multi_gpu --num_processes 8 recipes/pocket/finetune_multilingual.py --config ...
    # CPU demo (tiny random model, embedded espeak corpus, ~minutes):
    python recipes/pocket/finetune_multilingual.py --config recipes/pocket/configs/demo.yaml

One model per language (fr.yaml, ...) or one shared model (multilingual.yaml, a `<lang>` tag before
the text). The model classes are upstream `pocket_tts` ones; the training is ours
(shared/notes/pocket.md): LSD flow loss with learned time weighting and several noise draws per
backbone pass, EOS BCE, text/voice prefix dropout for CFG, frozen Mimi encoder, latent statistics
EMA, weight EMA (exported). Voice prompts come from another clip of the same speaker.
Output: `<output_dir>/pocket_tts/` (config.yaml + model.safetensors + tokenizer.model + card) that
`pocket_tts.TTSModel.load_model(config=...)` and `recipes/pocket/generate.py` load.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

logger = logging.getLogger("pocket")


# ----------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------

@dataclass
class PocketArguments:
    dataset: str = field(default="demo", metadata={"help": "demo | save_to_disk folder | Hub id | manifest .json"})
    languages: list[str] = field(default_factory=list, metadata={"help": "language codes to keep (all if empty)"})
    base_model: str | None = field(default="english_2026-04_24l", metadata={
        "help": "pocket_tts config to start from: a released name (english_2026-04_24l) or a YAML path"})
    pretrained_weights: str | None = field(default="base", metadata={
        "help": "'base' = the base config's weights_path (gated kyutai/pocket-tts), a safetensors path, "
                "or null to train from scratch"})
    tokenizer_path: str | None = field(default=None, metadata={
        "help": "SentencePiece .model; unset = train one on the training text (recipes/pocket/train_tokenizer.py)"})
    vocab_size: int = field(default=4000, metadata={"help": "target vocabulary when training the tokenizer"})
    character_coverage: float = 1.0
    use_language_tag: bool = field(default=False, metadata={"help": "prefix texts with <lang> (shared model)"})
    max_duration_sec: float = 30.0
    max_prompt_seconds: float = field(default=5.0, metadata={"help": "voice prompt window (s); <= 0: the whole clip"})
    trim: str = field(default="vad", metadata={
        "help": "vad: silero-vad cuts both ends of targets/prompts, keeping 0.2 s after the last speech (the EOS "
                "point; survives noise) | energy: trailing cut relative to the peak (clean audio only) | none"})
    flow_batch_multiplier: int = field(default=4, metadata={"help": "noise/time draws per backbone pass"})
    eos_weight: float = 0.1
    text_dropout: float = 0.2
    voice_dropout: float = 0.2
    lsd_p_equal: float = 0.75
    lsd_distill_prob: float = 0.25
    time_mean: float = 0.4
    time_weighting_init: str = field(default="official", metadata={
        "help": "official: every layer of w(s,t) zero-initialised, so w is one learned constant (Kyutai's validated "
                "setup) | output_only: only the output layer zeroed, w depends on (s,t) (unvalidated)"})
    time_std: float = 1.0
    stats_ema_decay: float = 0.999
    stats_ema_steps: int = field(default=1000, metadata={"help": "steps the latent stats follow an EMA; 0 keeps loaded"})
    ema_decay: float = field(default=0.999, metadata={"help": "weight EMA; the export holds the EMA weights"})
    eval_num_samples: int = field(default=1, metadata={"help": "held-out sentences synthesised per language per eval"})
    temperature: float = 0.3
    hub_license: str = "cc-by-4.0"

    def __post_init__(self):
        if self.base_model is None:
            raise ValueError("base_model is required (a released pocket_tts name or a config YAML)")
        if self.pretrained_weights in ("none", "null", ""):
            self.pretrained_weights = None
        if self.flow_batch_multiplier < 1:
            raise ValueError("flow_batch_multiplier must be >= 1")
        if not 0 < self.lsd_distill_prob <= 1 or not 0 <= self.lsd_p_equal <= 1:
            raise ValueError("lsd_distill_prob must be in (0, 1] and lsd_p_equal in [0, 1]")
        for name in ("text_dropout", "voice_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        from recipes.pocket.data import TRIM_MODES
        from recipes.pocket.losses import TIME_WEIGHTING_INITS

        if self.time_weighting_init not in TIME_WEIGHTING_INITS:
            raise ValueError(f"time_weighting_init must be one of {TIME_WEIGHTING_INITS}, got {self.time_weighting_init!r}")

        if self.trim not in TRIM_MODES:
            raise ValueError(f"trim must be one of {TRIM_MODES}, got {self.trim!r}")
        if self.tokenizer_path and not os.path.isfile(self.tokenizer_path):
            raise FileNotFoundError(f"tokenizer_path {self.tokenizer_path} does not exist")


@dataclass
class PocketTrainingArguments(TrainingArguments):
    """TrainingArguments with the notes' optimiser defaults: AdamW (0.9, 0.95), eps 1e-8, wd 0.1, clip 1,
    lr 2e-4 with warmup, bf16 on GPU."""

    output_dir: str = "outputs/pocket"
    learning_rate: float = 2e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    warmup_steps: float = 1000
    lr_scheduler_type: str = "cosine"
    remove_unused_columns: bool = False
    report_to: list[str] | str | None = "tensorboard"
    logging_steps: float = 10
    save_total_limit: int | None = 3
    dataloader_num_workers: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub needs hub_model_id (e.g. your-name/pocket-tts-fr)")


# ----------------------------------------------------------------------------------------------------
# Trainer + callbacks
# ----------------------------------------------------------------------------------------------------

def make_trainer_class():
    import torch
    from transformers import Trainer

    class PocketTrainer(Trainer):
        """compute_loss = the model's LSD + EOS loss (self-normalised: num_items_in_batch unused)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False
            self._metric_sums: dict[str, float] = {}
            self._metric_count = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, metrics = model(**inputs)
            if model.training:
                for k, v in metrics.items():
                    self._metric_sums[k] = self._metric_sums.get(k, 0.0) + float(v)
                self._metric_count += 1
            return (loss, metrics) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                loss, _ = model(**inputs)
            return loss.detach(), None, None

        def log(self, logs, *args, **kwargs):
            if self._metric_count and "loss" in logs:
                logs.update({f"train/{k}": round(v / self._metric_count, 5) for k, v in self._metric_sums.items()})
                self._metric_sums, self._metric_count = {}, 0
            super().log(logs, *args, **kwargs)

    return PocketTrainer


class _RankSeed:
    """Seed each DDP rank with seed + rank when training starts: the Trainer seeds every rank alike, which
    would give all ranks the same noise/time draws and prefix dropout (correlated, wasted batch). The LSD
    branch generator keeps one seed on purpose (all ranks take the distillation branch together), the
    sampler keeps its shared seed, and on resume the Trainer restores each rank's saved RNG state afterwards."""

    def on_train_begin(self, args, state, control, **kwargs):
        from transformers import set_seed

        set_seed(args.seed + args.process_index)


def make_callbacks(ema, sample_fn, tokenizer_path: str | None = None):
    import safetensors.torch
    from transformers import TrainerCallback

    class RankSeedCallback(_RankSeed, TrainerCallback):
        pass

    class EMACallback(TrainerCallback):
        """Weight EMA after every optimiser step; saved beside each checkpoint so resume restores it, with a
        pocket_tts.pt + config.yaml that pocket-tts' --checkpoint loads (modeling.write_training_checkpoint)."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            ema.update(model.flow_lm)
            if control.should_save:
                # Before the Trainer's own save (trainer_state.json last): a kill -9 mid-save leaves a
                # checkpoint that resume_checkpoint skips, never one with trainer state but no EMA.
                self.save(args, state, model)

        def on_save(self, args, state, control, model=None, **kwargs):
            if not (Path(args.output_dir) / f"checkpoint-{state.global_step}" / "ema.safetensors").is_file():
                self.save(args, state, model)  # saves decided at an epoch end did not pass through on_step_end

        def save(self, args, state, model):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                folder.mkdir(parents=True, exist_ok=True)
                safetensors.torch.save_file(ema.state_dict(), str(folder / "ema.safetensors.tmp"))
                os.replace(folder / "ema.safetensors.tmp", folder / "ema.safetensors")
                if tokenizer_path is not None:
                    from recipes.pocket.modeling import write_training_checkpoint

                    write_training_checkpoint(model, ema, str(folder), tokenizer_path)

    class SampleCallback(TrainerCallback):
        def on_evaluate(self, args, state, control, model=None, **kwargs):
            if state.is_world_process_zero:
                sample_fn(model, state.global_step)

    return [RankSeedCallback(), EMACallback(), SampleCallback()]


# ----------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------

def main(script_args: PocketArguments, training_args: PocketTrainingArguments):
    import random

    import safetensors.torch
    import sentencepiece
    import torch
    from datasets import concatenate_datasets

    from data_prep.audio import decode_audio
    from recipes.common import (AudioSampleLogger, explain_hub_errors, library_versions, log_trainable_parameters,
                                resume_checkpoint, write_model_card)
    from recipes.pocket import modeling
    from recipes.pocket.data import (PocketCollator, attach_prompt_candidates, language_tag, load_recipe_dataset,
                                     normalize_text, row_language, text_options)
    from recipes.pocket.generate import speak, voice_state_from_wave
    from recipes.pocket.train_tokenizer import tokenizer_texts, train_tokenizer

    from transformers import set_seed

    # The model (re-initialised text embedding, w(s,t) net...) is built before the Trainer seeds torch: seed
    # now, or two runs of the same command (and a resumed run against its uninterrupted twin) start apart.
    set_seed(training_args.seed)
    threads = torch.get_num_threads()
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pocket_tts").setLevel(logging.WARNING)  # per-chunk timing lines at every eval
    out = Path(training_args.output_dir)

    # --- data: schema rows, same-speaker prompts ------------------------------------------------
    with training_args.main_process_first(desc="loading data"):
        data = load_recipe_dataset(script_args.dataset, languages=script_args.languages or None,
                                   seed=training_args.seed)
    train_set, train_skipped = attach_prompt_candidates(data["train"], script_args.max_duration_sec, what="train")
    # Prompts are read from one pool: the train clips first (train indices stay valid), then the validation
    # clips, so a validation speaker absent from train can still be prompted with another of its clips.
    pool_columns = [c for c in train_set.column_names if c not in ("row_index", "prompt_candidates")]
    prompt_pool = concatenate_datasets([train_set.select_columns(pool_columns),
                                        data["validation"].select_columns(pool_columns)])
    try:
        eval_set, eval_skipped = attach_prompt_candidates(data["validation"], script_args.max_duration_sec,
                                                          what="validation", pool=prompt_pool)
    except ValueError as err:
        if training_args.eval_strategy != "no":
            raise ValueError(f"{err} Set eval_strategy: 'no' or give the validation split usable rows.") from err
        eval_set, eval_skipped = None, {"unusable": len(data["validation"])}
    languages = sorted({row_language(r) for r in train_set.remove_columns("audio")})
    logger.info("train %d clips, validation %d clips, languages %s", len(train_set),
                len(eval_set) if eval_set is not None else 0, languages)

    # --- tokenizer: ours, trained on the training text as pocket_tts will present it -----------
    base = modeling.load_base_config(script_args.base_model)
    text_settings = text_options(base)
    tokenizer_path = script_args.tokenizer_path
    if tokenizer_path is None:
        tokenizer_path = str(out / "tokenizer" / "tokenizer.model")
        with training_args.main_process_first(desc="training the tokenizer"):
            if training_args.process_index == 0 and not os.path.isfile(tokenizer_path):
                symbols = [language_tag(lang) for lang in languages] if script_args.use_language_tag else None
                train_tokenizer(tokenizer_texts(train_set, script_args.use_language_tag, text_settings), tokenizer_path[:-len(".model")],
                                vocab_size=script_args.vocab_size, character_coverage=script_args.character_coverage,
                                user_symbols=symbols)
    n_bins = sentencepiece.SentencePieceProcessor(model_file=tokenizer_path).vocab_size()
    sp = sentencepiece.SentencePieceProcessor(model_file=tokenizer_path)
    unknown = sum(sp.encode(normalize_text(t, options=text_settings), out_type=int).count(sp.unk_id()) for t in train_set["text"][:2000])
    if unknown:
        logger.warning("%d unknown pieces in the first 2000 training texts: the tokenizer does not cover them", unknown)
    logger.info("tokenizer %s: %d pieces (the text embedding table is re-initialised to this size)", tokenizer_path, n_bins)

    # --- model: upstream pocket_tts modules, new text LUT ---------------------------------------
    weights = base.weights_path if script_args.pretrained_weights == "base" else script_args.pretrained_weights
    config = modeling.with_tokenizer(base, tokenizer_path, n_bins)
    with explain_hub_errors(f"Pocket TTS weights {weights}",
                            "python recipes/pocket/finetune_multilingual.py --config recipes/pocket/configs/demo.yaml"):
        tts = modeling.build_tts_model(config, pretrained_weights=weights, temp=script_args.temperature)
    torch.set_num_threads(threads)
    model = modeling.PocketTTSForTraining(
        tts, flow_batch_multiplier=script_args.flow_batch_multiplier, eos_weight=script_args.eos_weight,
        text_dropout=script_args.text_dropout, voice_dropout=script_args.voice_dropout,
        p_equal=script_args.lsd_p_equal, distill_prob=script_args.lsd_distill_prob,
        time_mean=script_args.time_mean, time_std=script_args.time_std,
        stats_ema_decay=script_args.stats_ema_decay, stats_ema_steps=script_args.stats_ema_steps,
        seed=training_args.seed, time_weighting_init=script_args.time_weighting_init)
    log_trainable_parameters(model, logger.info)
    ema = modeling.WeightEMA(model.flow_lm, script_args.ema_decay)

    # --- eval hook: held-out sentences per language, EMA weights, logged as audio --------------
    sample_logger = AudioSampleLogger(os.environ.get("TENSORBOARD_LOGGING_DIR") or str(out / "runs" / "samples"), str(out),
                                      training_args.report_to)
    by_language: dict[str, list[int]] = {}
    for i, row in enumerate(eval_set.remove_columns("audio") if eval_set is not None else []):
        by_language.setdefault(row_language(row), []).append(i)

    def synthesize_samples(trained_model, step: int):
        # On a forked RNG: the seeded sampling below must not reset the training RNG (a resumed run would
        # otherwise draw differently from the uninterrupted one after each evaluation).
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
            _synthesize_samples(trained_model, step)

    def _synthesize_samples(trained_model, step: int):
        was_training = trained_model.training
        trained_model.eval()
        backup = ema.copy_to(trained_model.flow_lm)
        try:
            tts_model = modeling.inference_model(trained_model, temp=script_args.temperature)
            rng = random.Random(step)
            samples = {}
            for language, rows in sorted(by_language.items()):
                for n, i in enumerate(rows[: script_args.eval_num_samples]):
                    row = eval_set[i]
                    prompt_wave, sr = decode_audio(prompt_pool[rng.choice(row["prompt_candidates"])]["audio"])
                    torch.manual_seed(step)
                    state = voice_state_from_wave(tts_model, prompt_wave, sr)
                    wave = speak(tts_model, state, row["text"], language, script_args.use_language_tag)
                    samples[f"samples/{language}_{n}"] = (wave, tts_model.sample_rate)
            sample_logger.log(samples, step)
        finally:
            ema.restore(trained_model.flow_lm, backup)
            torch.set_num_threads(threads)
            trained_model.train(was_training)

    # --- train ------------------------------------------------------------------------------------
    # The Trainer would push its training wrapper on every save; the Hub gets the pocket_tts export instead.
    push_export, training_args.push_to_hub = training_args.push_to_hub, False
    collator = PocketCollator(prompt_pool, tokenizer_path, frame_size=model.frame_size,
                              max_prompt_seconds=script_args.max_prompt_seconds,
                              use_language_tag=script_args.use_language_tag, seed=training_args.seed,
                              text_options=text_settings, trim=script_args.trim)
    trainer = make_trainer_class()(
        model=model, args=training_args, train_dataset=train_set,
        eval_dataset=eval_set if training_args.eval_strategy != "no" else None,
        data_collator=collator, callbacks=make_callbacks(ema, synthesize_samples, tokenizer_path))
    checkpoint = resume_checkpoint(training_args, required_files=["ema.safetensors"])
    if checkpoint:
        ema.load_state_dict(safetensors.torch.load_file(str(Path(checkpoint) / "ema.safetensors")))
        logger.info("restored the weight EMA from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    eval_metrics = {}
    if training_args.eval_strategy != "no":
        # Reuse an evaluation that ran on the final step rather than synthesising the samples twice.
        last = [e for e in trainer.state.log_history if "eval_loss" in e and e.get("step") == trainer.state.global_step]
        eval_metrics = {k: v for k, v in last[-1].items() if k.startswith("eval_")} if last else trainer.evaluate()

    # --- export: weights + config + tokenizer that pocket_tts loads; card; Hub -----------------
    if trainer.is_world_process_zero():
        export_dir = modeling.export_pocket_model(
            model, ema, str(out / "pocket_tts"), tokenizer_path, languages=languages,
            use_language_tag=script_args.use_language_tag,
            hub_repo_id=training_args.hub_model_id if push_export else None)
        tag_note = (f"Multilingual: start every sentence with its language tag, e.g. `<{languages[0]}> Bonjour.` "
                    "(`recipes/pocket/generate.py --language` adds it)." if script_args.use_language_tag else
                    "Monolingual: plain text.")
        write_model_card(
            str(export_dir), title=f"Pocket TTS fine-tuned for {', '.join(languages)}",
            base_model=None if weights is None else "kyutai/pocket-tts", license=script_args.hub_license,
            language=[lang.split("-")[0] for lang in languages],
            summary=(f"A Pocket TTS flow LM (base config `{script_args.base_model}`) fine-tuned with "
                     f"tts-recipes' `recipes/pocket/finetune_multilingual.py` on `{script_args.dataset}` "
                     f"with a new {n_bins}-piece SentencePiece tokenizer (re-initialised text embedding)."),
            sections={
                "Usage": ("```python\nfrom pocket_tts import TTSModel\n"
                          "model = TTSModel.load_model(config=\"config.yaml\")  # hf://<repo>/config.yaml on the Hub\n"
                          "state = model.get_state_for_audio_prompt(\"voice.wav\")  # a clip of the voice to clone\n"
                          "audio = model.generate_audio(state, \"...\")\n```\n" + tag_note),
                "Training": (f"LSD flow loss (p_equal {script_args.lsd_p_equal}, distill_prob {script_args.lsd_distill_prob}, "
                             f"{script_args.flow_batch_multiplier} noise draws per frame), EOS weight {script_args.eos_weight}, "
                             f"text/voice prefix dropout {script_args.text_dropout}/{script_args.voice_dropout}, "
                             f"weight EMA {script_args.ema_decay} (exported), {result.global_step} steps, "
                             f"lr {training_args.learning_rate}. Skipped rows: train {dict(train_skipped)}, "
                             f"validation {dict(eval_skipped)}. Versions: {library_versions()}."),
                "Licence": "Pocket TTS code is MIT; the kyutai/pocket-tts weights this may start from are CC-BY-4.0.",
            },
            library_name="pocket-tts", tags=["pocket-tts", *languages], datasets=[] if script_args.dataset == "demo" or os.path.exists(script_args.dataset) else [script_args.dataset],
            metrics={k: float(v) for k, v in eval_metrics.items() if isinstance(v, (int, float))})
        logger.info("exported %s  (TTSModel.load_model(config='%s/config.yaml'))", export_dir, export_dir)
        if push_export:
            url = modeling.push_export(export_dir, training_args.hub_model_id,
                                       private=bool(training_args.hub_private_repo))
            logger.info("pushed to %s", url)
    return trainer


def make_parser_types():
    return PocketArguments, PocketTrainingArguments


if __name__ == "__main__":
    from recipes.common import finish_distributed, parse_recipe_args

    script_args, training_args = parse_recipe_args(*make_parser_types())
    main(script_args, training_args)
    finish_distributed()
