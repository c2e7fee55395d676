"""CFG + depth distillation of a fine-tuned Pocket TTS teacher (24 layers) into the 6-layer model one ships.

    accelerate launch recipes/pocket/distill.py --config recipes/pocket/configs/distill_fr.yaml
    # CPU demo, after the teacher demo (make pocket-demo runs both):
    python recipes/pocket/distill.py --config recipes/pocket/configs/distill_demo.yaml

Why: `pocket_tts` has no classifier-free guidance at inference, so the fine-tuned 24-layer export speaks
unguided and ~3x slower than the released 6-layer models, which have CFG baked in. This is the official
`depth_distill` stage (shared/notes/pocket.md §5):
- the student is the teacher with only `student_layers` of its transformer ([0, 1, 2, 21, 22, 23] of 24);
  every other tensor (text LUT, voice projection, input/output norms, latent statistics) is copied;
- its flow head (`flow_net`) and EOS head (`out_eos`) are frozen copies of the teacher's, so the student
  only has to reproduce the per-frame conditioning z the heads read;
- target: the teacher's guided conditioning z_null + coef * (z_cond - z_null), coef = distill_cfg_coef (2.0),
  where z_cond sees the voice prompt and text and z_null the bare `bos_before_voice` prefix; MSE on the
  valid frames; the student always sees the full prefix (no dropout: guidance is in the target);
- full-length voice prompts (students trained on 5 s prompts stop early with prompts over ~12 s);
- lr 4e-4 cosine, weight EMA 0.9999 (exported).
Output: `<output_dir>/pocket_tts/`, the same pocket_tts-loadable export as finetune_multilingual.py.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from recipes.pocket.finetune_multilingual import PocketTrainingArguments

logger = logging.getLogger("pocket.distill")

OFFICIAL_STUDENT_LAYERS = [0, 1, 2, 21, 22, 23]


# ----------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------

@dataclass
class DistillArguments:
    teacher: str = field(default="outputs/pocket-fr/pocket_tts", metadata={
        "help": "the teacher: an export folder written by finetune_multilingual.py (config.yaml, model.safetensors, "
                "tokenizer.model, tts_recipes.json)"})
    dataset: str = field(default="demo", metadata={"help": "demo | save_to_disk folder | Hub id | manifest .json"})
    languages: list[str] = field(default_factory=list, metadata={"help": "language codes to keep (all if empty)"})
    student_layers: list[int] = field(default_factory=lambda: list(OFFICIAL_STUDENT_LAYERS), metadata={
        "help": "teacher transformer layers the student starts from, in order (official: 0 1 2 21 22 23 of 24)"})
    distill_cfg_coef: float = field(default=2.0, metadata={
        "help": "guidance baked into the target: z_null + coef * (z_cond - z_null)"})
    max_duration_sec: float = 30.0
    max_prompt_seconds: float = field(default=0.0, metadata={
        "help": "voice prompt window (s); 0 = full-length prompts (official: short prompts teach early stops)"})
    trim: str = field(default="vad", metadata={"help": "vad | energy | none (see finetune_multilingual.py)"})
    ema_decay: float = 0.9999
    eval_num_samples: int = 1
    hub_license: str = "cc-by-4.0"

    def __post_init__(self):
        if not self.student_layers or len(set(self.student_layers)) != len(self.student_layers):
            raise ValueError(f"student_layers must be distinct teacher layer indices, got {self.student_layers}")
        if self.distill_cfg_coef < 1:
            raise ValueError("distill_cfg_coef < 1 would push away from the conditional prediction")


@dataclass
class DistillTrainingArguments(PocketTrainingArguments):
    """The official depth_distill optimiser: lr 4e-4 cosine (the rest as the teacher recipe)."""

    output_dir: str = "outputs/pocket-distill"
    learning_rate: float = 4e-4
    lr_scheduler_type: str = "cosine"


# ----------------------------------------------------------------------------------------------------
# Student + distillation model
# ----------------------------------------------------------------------------------------------------

def make_student(teacher_tts, layers: list[int], temp: float = 0.3, eos_threshold: float = -4.0):
    """A pocket_tts `TTSModel` with the teacher's transformer layers `layers` (renumbered 0..n-1) and a copy
    of every other flow_lm tensor; it shares the teacher's (frozen) Mimi."""
    import torch
    from pocket_tts.models.tts_model import TTSModel, stamp_state_names

    n_teacher = teacher_tts.config.flow_lm.transformer.num_layers
    if max(layers) >= n_teacher or min(layers) < 0:
        raise ValueError(f"student_layers {layers} out of range for a {n_teacher}-layer teacher")
    config = teacher_tts.config.model_copy(deep=True)
    config.flow_lm.transformer.num_layers = len(layers)
    threads = torch.get_num_threads()
    student = TTSModel._from_pydantic_config(config, temp, 1, None, eos_threshold, origin=None)
    torch.set_num_threads(threads)
    student.flow_lm.speaker_proj_weight = torch.nn.Parameter(teacher_tts.flow_lm.speaker_proj_weight.detach().clone())
    source = {**teacher_tts.flow_lm.state_dict()}
    state = {}
    for key, value in source.items():
        if key.startswith("transformer.layers."):
            index, rest = key[len("transformer.layers."):].split(".", 1)
            if int(index) in layers:
                state[f"transformer.layers.{layers.index(int(index))}.{rest}"] = value.clone()
        else:
            state[key] = value.clone()
    student.flow_lm.load_state_dict(state, strict=True)
    student.mimi = teacher_tts.mimi
    student.has_custom_weights = True
    stamp_state_names(student)
    return student


def make_distillation_model_class():
    import torch

    from recipes.pocket.modeling import PocketTTSForTraining

    class PocketDistillationModel(PocketTTSForTraining):
        """Trains the student flow_lm (`self.flow_lm`, so EMA/export/checkpoint helpers apply unchanged) to
        reproduce the frozen teacher's CFG-combined conditioning z. The teacher is held outside the module
        tree: it is neither optimised nor written into every Trainer checkpoint."""

        def __init__(self, student_tts, teacher_tts, cfg_coef: float = 2.0):
            super().__init__(student_tts, text_dropout=0.0, voice_dropout=0.0, stats_ema_steps=0)
            del self.time_weighting  # no flow loss here: the heads are frozen
            self.cfg_coef = cfg_coef
            for head in (self.flow_lm.flow_net, self.flow_lm.out_eos):
                head.requires_grad_(False)
            self._teacher = [PocketTTSForTraining(teacher_tts).eval().requires_grad_(False)]

        def teacher(self, device) -> PocketTTSForTraining:
            teacher = self._teacher[0]
            if teacher.flow_lm.bos_emb.device != device:
                teacher.to(device)
            return teacher

        def train(self, mode: bool = True):
            super().train(mode)
            for module in (self.flow_lm.flow_net, self.flow_lm.out_eos):
                module.eval()
            return self

        def forward(self, audio, audio_lengths, prompt_audio, prompt_lengths, text_ids, text_lengths):
            teacher = self.teacher(audio.device)
            fl = self.flow_lm
            latents, target_frames = self.encode(audio, audio_lengths)
            voice, voice_frames = self.encode(prompt_audio, prompt_lengths)
            batch, frames, _ = latents.shape
            valid = torch.arange(frames, device=latents.device)[None] < target_frames[:, None]
            everything = torch.ones(batch, dtype=torch.bool)
            nothing = torch.zeros(batch, dtype=torch.bool)
            with torch.no_grad():
                tl = teacher.flow_lm
                normalized = (latents - tl.emb_mean) / tl.emb_std
                rows = [teacher.build_rows(normalized, voice, voice_frames, text_ids, text_lengths,
                                           keep_voice=keep, keep_text=keep) for keep in (everything, nothing)]
                z_cond, z_null = (teacher.backbone(inputs, prefix, frames) for inputs, prefix in rows)
                target = z_null + self.cfg_coef * (z_cond - z_null)
            inputs, prefix = self.build_rows((latents - fl.emb_mean) / fl.emb_std, voice, voice_frames, text_ids,
                                             text_lengths, keep_voice=everything, keep_text=everything)
            z = self.backbone(inputs, prefix, frames)
            loss = (z.float() - target.float())[valid].square().mean()
            with torch.no_grad():
                eos_agree = ((fl.out_eos(z) > 0) == (tl.out_eos(target) > 0)).squeeze(-1)[valid].float().mean()
                guidance = (z_cond - z_null)[valid].square().mean()
            return loss, {"distill_mse": loss.detach(), "eos_agreement": eos_agree, "cfg_delta": guidance}

    return PocketDistillationModel


def load_teacher(path: str, temp: float = 0.3):
    """(TTSModel, tts_recipes.json metadata, tokenizer path) of a teacher export."""
    import torch
    from pocket_tts import TTSModel

    from recipes.pocket.generate import _resolve

    threads = torch.get_num_threads()
    config_path, meta = _resolve(path)
    teacher = TTSModel.load_model(config=config_path, temp=temp)
    torch.set_num_threads(threads)
    teacher.has_custom_weights = True
    return teacher, meta, teacher.config.flow_lm.lookup_table.tokenizer_path


# ----------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------

def main(args: DistillArguments, training_args: DistillTrainingArguments):
    import random

    import safetensors.torch
    import torch

    from data_prep.audio import decode_audio
    from recipes.common import (AudioSampleLogger, count_parameters, library_versions, resume_checkpoint,
                                write_model_card)
    from recipes.pocket import modeling
    from recipes.pocket.data import (PocketCollator, attach_prompt_candidates, load_recipe_dataset, row_language,
                                     text_options)
    from recipes.pocket.finetune_multilingual import make_callbacks, make_trainer_class
    from recipes.pocket.generate import speak, voice_state_from_wave

    threads = torch.get_num_threads()
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pocket_tts").setLevel(logging.WARNING)
    out = Path(training_args.output_dir)

    # --- teacher and student ---------------------------------------------------------------------
    if not os.path.exists(args.teacher):
        raise FileNotFoundError(f"teacher {args.teacher} not found: run finetune_multilingual.py first (its "
                                "<output_dir>/pocket_tts export is the teacher), e.g. make pocket-demo")
    teacher, meta, tokenizer_path = load_teacher(args.teacher)
    use_language_tag = bool(meta.get("language_tag"))
    student = make_student(teacher, args.student_layers)
    model = make_distillation_model_class()(student, teacher, cfg_coef=args.distill_cfg_coef)
    torch.set_num_threads(threads)
    teacher_params, student_params = (sum(p.numel() for p in m.flow_lm.parameters()) for m in (teacher, student))
    trainable, _ = count_parameters(model)
    logger.info("teacher flow_lm %.2f M params (%d layers) -> student %.2f M (%d layers: teacher %s); %.2f M trained",
                teacher_params / 1e6, teacher.config.flow_lm.transformer.num_layers, student_params / 1e6,
                len(args.student_layers), args.student_layers, trainable / 1e6)
    ema = modeling.WeightEMA(model.flow_lm, args.ema_decay)

    # --- data: full-length same-speaker prompts ----------------------------------------------------
    with training_args.main_process_first(desc="loading data"):
        data = load_recipe_dataset(args.dataset, languages=args.languages or None, seed=training_args.seed)
    train_set, train_skipped = attach_prompt_candidates(data["train"], args.max_duration_sec, what="train")
    eval_set = None
    if training_args.eval_strategy != "no":
        eval_set, _ = attach_prompt_candidates(data["validation"], args.max_duration_sec, what="validation",
                                               pool=train_set.remove_columns(["row_index", "prompt_candidates"]))
    languages = sorted({row_language(r) for r in train_set.remove_columns("audio")})
    collator = PocketCollator(train_set, tokenizer_path, frame_size=model.frame_size,
                              max_prompt_seconds=args.max_prompt_seconds, use_language_tag=use_language_tag,
                              seed=training_args.seed, text_options=text_options(teacher.config), trim=args.trim)

    sample_logger = AudioSampleLogger(os.environ.get("TENSORBOARD_LOGGING_DIR") or str(out / "runs" / "samples"),
                                      str(out), training_args.report_to)

    def synthesize_samples(trained_model, step: int):
        if eval_set is None:
            return
        was_training = trained_model.training
        trained_model.eval()
        backup = ema.copy_to(trained_model.flow_lm)
        try:
            tts_model = modeling.inference_model(trained_model)
            rng, samples = random.Random(step), {}
            for n, row in enumerate(eval_set.select(range(min(args.eval_num_samples, len(eval_set))))):
                wave, sr = decode_audio(train_set[rng.choice(row["prompt_candidates"])]["audio"])
                torch.manual_seed(step)
                state = voice_state_from_wave(tts_model, wave, sr)
                samples[f"samples/{row_language(row)}_{n}"] = (
                    speak(tts_model, state, row["text"], row_language(row), use_language_tag), tts_model.sample_rate)
            sample_logger.log(samples, step)
        finally:
            ema.restore(trained_model.flow_lm, backup)
            torch.set_num_threads(threads)
            trained_model.train(was_training)

    # --- train -------------------------------------------------------------------------------------
    push_export, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = make_trainer_class()(
        model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set, data_collator=collator,
        callbacks=make_callbacks(ema, synthesize_samples, tokenizer_path))
    checkpoint = resume_checkpoint(training_args)
    if checkpoint and os.path.isfile(Path(checkpoint) / "ema.safetensors"):
        ema.load_state_dict(safetensors.torch.load_file(str(Path(checkpoint) / "ema.safetensors")))
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    # --- export: the 6-layer student, pocket_tts-loadable ---------------------------------------------
    if trainer.is_world_process_zero():
        export_dir = modeling.export_pocket_model(
            model, ema, str(out / "pocket_tts"), tokenizer_path, languages=meta.get("languages") or languages,
            use_language_tag=use_language_tag, hub_repo_id=training_args.hub_model_id if push_export else None)
        write_model_card(
            str(export_dir), title=f"Pocket TTS {len(args.student_layers)}-layer student ({', '.join(languages)})",
            base_model=None, license=args.hub_license, language=[lang.split("-")[0] for lang in languages],
            summary=(f"CFG + depth distillation (tts-recipes `recipes/pocket/distill.py`) of the "
                     f"{teacher.config.flow_lm.transformer.num_layers}-layer teacher `{args.teacher}` into "
                     f"{len(args.student_layers)} layers (teacher layers {args.student_layers}); guidance "
                     f"coefficient {args.distill_cfg_coef} baked in, so plain pocket_tts inference is guided."),
            sections={"Usage": "```python\nfrom pocket_tts import TTSModel\nmodel = TTSModel.load_model(config=\"config.yaml\")\n```",
                      "Training": (f"{result.global_step} steps, lr {training_args.learning_rate} "
                                   f"{training_args.lr_scheduler_type}, EMA {args.ema_decay} (exported); flow and EOS "
                                   f"heads frozen; full-length prompts: {args.max_prompt_seconds <= 0}; skipped "
                                   f"rows {dict(train_skipped)}. Parameters: teacher flow_lm {teacher_params:,}, "
                                   f"student {student_params:,}. Versions: {library_versions()}.")},
            library_name="pocket-tts", tags=["pocket-tts", "distillation", *languages])
        if push_export:
            url = modeling.push_export(export_dir, training_args.hub_model_id,
                                       private=bool(training_args.hub_private_repo))
            logger.info("pushed to %s", url)
        logger.info("exported the student to %s", export_dir)
    return trainer


def make_parser_types():
    return DistillArguments, DistillTrainingArguments


if __name__ == "__main__":
    from recipes.common import finish_distributed, parse_recipe_args

    script_args, training_args = parse_recipe_args(*make_parser_types())
    main(script_args, training_args)
    finish_distributed()
