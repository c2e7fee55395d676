"""Fine-tune F5-TTS (flow-matching DiT on log-mels) on your voice/language with the HF Trainer.

    accelerate launch recipes/f5/finetune.py --config recipes/f5/configs/pt_br.yaml
    python recipes/f5/finetune.py --config recipes/f5/configs/demo.yaml          # tiny, offline, CPU, minutes

The model classes (`CFM`, `DiT`) are upstream f5-tts's, so what this writes loads in upstream inference and
in upstream's trainer. What differs from `finetune_cli.py`, on purpose (see recipes/f5/README.md):
- any checkpoint form loads (full training `.pt`, EMA-only `.pt`, `.safetensors` with or without `ema_model.`/
  `module.`), weights come from the EMA, and training starts at step 0 (upstream resumes a full checkpoint at
  its saved update, e.g. 200000, and then may train zero steps);
- text of the listed languages goes through the shared normaliser (data_prep.text_normalize: "R$ 19,50" ->
  "dezenove reais e cinquenta centavos"), saved in f5_config.yaml so generate.py applies the same;
- symbols the vocab lacks (pt-BR: Ô, Õ, which upstream silently reads as spaces) extend the vocab and the text
  embedding when the *training* text has them at least `vocab_min_count` times; a new row starts from its base
  letter's row (Ô from ô); the EMA is created from the extended model, with its step counter at 0;
- frame-budget batches per GPU; eval loss at fixed noise, of the EMA weights (what ships), for early stopping
  and load_best_model_at_end; audio samples from the EMA and the online weights at each evaluation; warmup
  counted in optimizer updates.
Outputs in `output_dir`: `model_<update>.safetensors` (EMA, v1 release layout), `model_last.pt` (upstream's
five-key training checkpoint), `vocab.txt`, `f5_config.yaml`, README.md (model card); Trainer checkpoints
(`checkpoint-*`, each with `ema.pt`) for resuming. With load_best_model_at_end, <update> is the best
checkpoint's step and model_last.pt holds that checkpoint's weights, optimizer and schedule.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch.optim.lr_scheduler import LinearLR, SequentialLR
from torch.utils.data import DataLoader
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, set_seed

if __package__ in (None, ""):  # `python recipes/f5/finetune.py` / `accelerate launch` run it as a file
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.f5.data import FrameBudgetBatchSampler  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_TEXTS = ["Olá! Hoje o ônibus chega às três horas.", "Ônibus, avião ou trem: qual você prefere?"]


@dataclass
class F5Arguments:
    # data
    dataset: str = field(default="demo", metadata={"help": "demo | a save_to_disk schema folder | a Hub dataset id | "
                                                           "an F5 layout folder (metadata.csv, wavs/, duration.json)"})
    dataset_config_name: Optional[str] = None
    languages: Optional[list[str]] = None
    dialects: Optional[list[str]] = None
    speakers: Optional[list[str]] = None
    validation_fraction: float = 0.1
    min_duration: float = field(default=0.3, metadata={"help": "seconds; shorter clips are skipped (counted)"})
    max_duration: float = field(default=30.0, metadata={"help": "seconds; attention memory grows with length"})
    # model and checkpoint
    model_config: str = field(default="F5TTS_Base", metadata={"help": "tiny | tiny_overfit | an upstream config name "
                                                                      "(F5TTS_Base = v0, F5TTS_v1_Base = v1) | a YAML "
                                                                      "path"})
    init_checkpoint: Optional[str] = field(default=None, metadata={"help": "local file, or a path in init_checkpoint_repo"})
    init_checkpoint_repo: Optional[str] = None
    init_from: str = field(default="ema", metadata={"help": "ema | online: which weights of the checkpoint to start from"})
    vocab_file: Optional[str] = field(default=None, metadata={"help": "the checkpoint's vocab.txt; default: Emilia"})
    extend_vocab: bool = field(default=True, metadata={"help": "add symbols the vocab lacks (else they read as spaces)"})
    vocab_min_count: int = field(default=5, metadata={"help": "a missing symbol is added only if the training text "
                                                              "has it this many times (a row that never trains is noise)"})
    # text front end (the same at inference: saved in f5_config.yaml)
    normalize_text_languages: Optional[list[str]] = field(default=None, metadata={
        "help": "languages whose text goes through data_prep.text_normalize (numbers, money, dates, abbreviations "
                "-> words), per row by its language column; e.g. [pt-br]. Unset: text is used as written"})
    text_language: Optional[str] = field(default=None, metadata={
        "help": "language of rows without a language column, of sample_texts and of generate.py's text by "
                "default; unset: the single entry of `languages`, else of normalize_text_languages"})
    mel_spec_type: str = "vocos"
    # batching
    frames_per_gpu: int = field(default=3200, metadata={"help": "mel frames per batch per GPU (93.75 frames/s)"})
    max_samples: int = field(default=64, metadata={"help": "clips per batch at most (0: no cap)"})
    # EMA (ema_pytorch)
    ema_beta: float = 0.9999
    ema_update_after_step: int = 100
    ema_update_every: int = 10
    ema_power: float = 2 / 3
    # model selection: eval_loss (early stopping, load_best_model_at_end) of the weights that ship
    eval_weights: str = field(default="ema", metadata={"help": "ema | online: which weights the eval loss scores"})
    early_stopping_patience: Optional[int] = None
    early_stopping_threshold: float = 0.0
    # audio samples at evaluation
    sample_texts: list[str] = field(default_factory=lambda: list(DEFAULT_SAMPLE_TEXTS))
    sample_reference_audio: Optional[str] = field(default=None, metadata={"help": "default: first validation clip"})
    sample_reference_text: Optional[str] = None
    vocoder_path: Optional[str] = field(default=None, metadata={"help": "local vocos folder | random | unset: Hub"})
    sample_nfe_steps: int = 32
    # model card
    license: str = field(default="cc-by-nc-4.0", metadata={"help": "firstpixel/F5-TTS-pt-br is cc-by-nc-4.0"})
    card_language: Optional[list[str]] = None

    def __post_init__(self):
        if self.eval_weights not in ("ema", "online"):
            raise ValueError(f"eval_weights must be 'ema' or 'online', got {self.eval_weights!r}")
        if self.vocab_min_count < 1:
            raise ValueError(f"vocab_min_count must be >= 1, got {self.vocab_min_count}")
        if self.init_from not in ("ema", "online"):
            raise ValueError(f"init_from must be 'ema' or 'online', got {self.init_from!r}")
        if self.mel_spec_type not in ("vocos", "bigvgan"):
            raise ValueError(f"mel_spec_type must be vocos or bigvgan, got {self.mel_spec_type!r}")
        if self.frames_per_gpu < self.max_duration * 24000 / 256:
            raise ValueError(f"frames_per_gpu={self.frames_per_gpu} cannot hold a max_duration={self.max_duration} s clip "
                             f"({self.max_duration * 93.75:.0f} frames); raise it or lower max_duration")
        if not 0 < self.min_duration < self.max_duration:
            raise ValueError("need 0 < min_duration < max_duration")
        if self.init_checkpoint_repo and not self.init_checkpoint:
            raise ValueError("init_checkpoint_repo needs init_checkpoint (the file inside the repo)")
        if self.sample_reference_audio and not self.sample_reference_text:
            raise ValueError("sample_reference_audio needs sample_reference_text (its exact transcript)")


def make_parser():
    from trl import TrlParser

    return TrlParser((F5Arguments, TrainingArguments))


# ------------------------------------------------------------------------------------------------------
# Trainer: frame-budget batches, CFM loss, fixed-noise eval loss, upstream optimizer and schedule
# ------------------------------------------------------------------------------------------------------

class F5Trainer(Trainer):
    """HF Trainer over upstream's CFM: frame-budget batches, CFM loss, fixed-noise eval, upstream AdamW + schedule."""

    def __init__(self, *args, train_frame_lengths, frames_per_gpu, max_samples, ema_callback=None,
                 eval_weights: str = "ema", **kwargs):
        super().__init__(*args, **kwargs)
        # The export is the EMA, so model selection must score the EMA: the online weights' loss can keep
        # improving (or stall) while the EMA lags far behind, and load-best would then pick the wrong step.
        self.ema_callback, self.eval_weights = ema_callback, eval_weights
        # CFM.forward returns a mean over the masked span frames of its micro-batch; accumulation then
        # averages micro-batches (Trainer divides by the accumulation steps), as upstream's trainer does.
        self.model_accepts_loss_kwargs = False
        self.train_frame_lengths, self.frames_per_gpu, self.max_samples = train_frame_lengths, frames_per_gpu, max_samples
        self._eval_batch_index = 0

    def get_train_dataloader(self):
        sampler = FrameBudgetBatchSampler(self.train_frame_lengths, self.frames_per_gpu, self.max_samples,
                                          seed=self.args.seed)
        workers = self.args.dataloader_num_workers
        loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                            num_workers=workers, pin_memory=self.args.dataloader_pin_memory,
                            persistent_workers=self.args.dataloader_persistent_workers and workers > 0)
        # Accelerate shards whole batches across ranks, so the frame budget is per GPU.
        return self.accelerator.prepare(loader)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, _cond, pred = model(inputs["mel"], text=inputs["text"], lens=inputs["mel_lengths"])
        return (loss, {"pred": pred}) if return_outputs else loss

    def evaluate(self, *args, **kwargs):
        self._eval_batch_index = 0
        return super().evaluate(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # The training loss draws noise, time, span and CFG dropout at random; early stopping needs an eval
        # loss that moves only when the model does: same draws for the same batch at every evaluation, and
        # no CFG dropout (the conditional loss is what inference relies on).
        inputs = self._prepare_inputs(inputs)
        cfm = self.accelerator.unwrap_model(model)
        ema = self.ema_callback.ema if self.ema_callback is not None else None
        if self.eval_weights == "ema" and ema is not None:
            model = cfm = ema.ema_model
        was_training = cfm.training
        cfm.eval()  # dropout off (the Trainer only switches self.model)
        saved_drop, python_rng = (cfm.audio_drop_prob, cfm.cond_drop_prob), random.getstate()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.args.seed + self._eval_batch_index)
                cfm.audio_drop_prob = cfm.cond_drop_prob = 0.0
                with self.compute_loss_context_manager():
                    loss = self.compute_loss(model, inputs)
        finally:
            cfm.audio_drop_prob, cfm.cond_drop_prob = saved_drop
            cfm.train(was_training)
            random.setstate(python_rng)
        self._eval_batch_index += 1
        return loss.detach(), None, None

    def create_optimizer(self, model=None):
        # One parameter group, decay on everything (upstream's AdamW), so model_last.pt's optimizer state
        # loads into upstream's trainer.
        if self.optimizer is None:
            if self.args.optim not in ("adamw_torch", "adamw_torch_fused"):
                raise ValueError(f"optim={self.args.optim!r}: this recipe uses upstream's AdamW (adamw_torch[_fused])")
            params = [p for p in (model or self.model).parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=self.args.learning_rate, weight_decay=self.args.weight_decay,
                                               betas=(self.args.adam_beta1, self.args.adam_beta2),
                                               eps=self.args.adam_epsilon, fused=torch.cuda.is_available())
        return self.optimizer

    def create_scheduler(self, num_training_steps, optimizer=None):
        # Upstream's schedule: linear warmup from ~0, then linear decay to 1e-8 x lr, counted in updates.
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            warmup = self.args.get_warmup_steps(num_training_steps)
            decay = LinearLR(optimizer, start_factor=1.0, end_factor=1e-8, total_iters=max(num_training_steps - warmup, 1))
            if warmup > 0:
                ramp = LinearLR(optimizer, start_factor=1e-8, end_factor=1.0, total_iters=warmup)
                self.lr_scheduler = SequentialLR(optimizer, [ramp, decay], milestones=[warmup])
            else:
                self.lr_scheduler = decay
        return self.lr_scheduler


# ------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------

def load_splits(args: F5Arguments, seed: int):
    from datasets import DatasetDict

    from data_prep.loading import load_prepared_dataset, split_train_validation
    from recipes.f5.layout import read_f5_layout

    if args.dataset.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(args.dataset)):
        raise FileNotFoundError(f"dataset {args.dataset!r} does not exist: point it at a data_prep save_to_disk folder, "
                                "an F5 layout folder (metadata.csv + wavs/), a Hub dataset id, or 'demo'")
    if os.path.isfile(os.path.join(args.dataset, "metadata.csv")):
        language = args.languages[0] if args.languages and len(args.languages) == 1 else None
        splits = split_train_validation(read_f5_layout(args.dataset, language=language), args.validation_fraction, seed)
    else:
        splits = load_prepared_dataset(args.dataset, config_name=args.dataset_config_name, languages=args.languages,
                                       dialects=args.dialects, speakers=args.speakers,
                                       validation_fraction=args.validation_fraction, seed=seed)
    kept = {}
    for name, split in splits.items():
        filtered = split.filter(lambda d: args.min_duration <= d <= args.max_duration, input_columns=["duration"])
        if len(filtered) < len(split):
            logger.warning("%s: skipped %d of %d clips outside %.1f-%.1f s.", name, len(split) - len(filtered),
                           len(split), args.min_duration, args.max_duration)
        if len(filtered) == 0:
            raise ValueError(f"{args.dataset}: no {name} clips left between {args.min_duration} and {args.max_duration} s")
        kept[name] = filtered
    return DatasetDict(kept)


def pick_reference(args: F5Arguments, validation):
    from data_prep.audio import decode_audio

    if args.sample_reference_audio:
        wave, sr = decode_audio(args.sample_reference_audio)
        return wave, sr, args.sample_reference_text, None
    # Upstream trims references to ~12 s and budgets ~22 s per generated chunk including the reference.
    durations = list(validation["duration"])
    short = [i for i, d in enumerate(durations) if d <= 12.0]
    index = short[0] if short else min(range(len(durations)), key=durations.__getitem__)
    if not short:
        logger.warning("No validation clip is <= 12 s; sampling from a %.1f s reference. Set sample_reference_audio.",
                       durations[index])
    row = validation[index]
    wave, sr = decode_audio(row["audio"])
    return wave, sr, row["text"], row.get("language")


def make_text_front_end(args: F5Arguments):
    from recipes.f5.data import TextFrontEnd

    default = args.text_language
    if default is None and args.languages and len(args.languages) == 1:
        default = args.languages[0]
    if default is None and args.normalize_text_languages:
        default = args.normalize_text_languages[0]
    return TextFrontEnd(tuple(args.normalize_text_languages or ()), default)


def plan_vocab_extension(texts: dict[str, list[str]], vocab: list[str], args: F5Arguments) -> list[str]:
    """The symbols to append to `vocab`: those the *training* text has at least `vocab_min_count` times.

    A row added for a symbol the training data never (or barely) shows stays at its initial value, so a
    symbol seen only in validation or sample texts is not added; it is reported, like one that is too rare.
    Either way it reads as a space (id 0), as in upstream."""
    from recipes.f5.data import missing_symbols

    in_train = missing_symbols(texts["train"], vocab)
    elsewhere = missing_symbols([t for name, split in texts.items() if name != "train" for t in split], vocab)
    if not args.extend_vocab:
        if in_train or elsewhere:
            logger.warning("Symbols not in the vocab will be read as spaces (extend_vocab=false): %s",
                           dict(in_train + elsewhere))
        return []
    added = sorted(s for s, n in in_train.items() if n >= args.vocab_min_count)
    rare = {s: n for s, n in in_train.items() if n < args.vocab_min_count}
    if rare:
        logger.warning("Not added to the vocab, seen fewer than vocab_min_count=%d times in the training text "
                       "(read as spaces): %s", args.vocab_min_count, rare)
    unseen = {s: n for s, n in elsewhere.items() if s not in in_train}
    if unseen:
        logger.warning("Not added to the vocab, seen only in validation/sample texts, never in the training text "
                       "(read as spaces; add training data with them or normalise them away): %s", unseen)
    return added


# ------------------------------------------------------------------------------------------------------
# Export in upstream formats + card
# ------------------------------------------------------------------------------------------------------

def exported_state(trainer) -> tuple[int, dict, dict]:
    """(update, optimizer state, scheduler state) that belong with the weights in `trainer.model` now.

    After load_best_model_at_end the weights (and the EMA, see EMACallback) are the best checkpoint's, so the
    export is named by that step and pairs them with that checkpoint's optimizer and schedule: resuming
    model_last.pt must not continue the best weights with moments and a learning rate from later steps."""
    best = trainer.state.best_model_checkpoint if trainer.args.load_best_model_at_end else None
    if not best:
        return trainer.state.global_step, trainer.optimizer.state_dict(), trainer.lr_scheduler.state_dict()
    best = Path(best)
    update = int(best.name.rsplit("-", 1)[-1])
    missing = [name for name in ("optimizer.pt", "scheduler.pt") if not (best / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{best} lacks {missing}: model_last.pt needs the optimizer and schedule of the best "
                                "checkpoint (do not set save_only_model with load_best_model_at_end)")
    return (update, torch.load(best / "optimizer.pt", map_location="cpu", weights_only=True),
            torch.load(best / "scheduler.pt", map_location="cpu", weights_only=True))


def export_upstream(trainer, ema, args: F5Arguments, arch: dict, vocab: list[str], added: list[str],
                    metrics: dict, text_front_end=None) -> Path:
    import yaml

    from recipes.common import write_model_card
    from recipes.f5.checkpoints import save_ema_safetensors, save_training_checkpoint
    from recipes.f5.data import TextFrontEnd, write_vocab

    out = Path(trainer.args.output_dir)
    update, optimizer_state, scheduler_state = exported_state(trainer)
    trained = trainer.state.global_step
    online = trainer.accelerator.unwrap_model(trainer.model)
    ema_state = ema.state_dict() if ema is not None else {f"ema_model.{k}": v for k, v in online.state_dict().items()}
    for stale in out.glob("model_*.safetensors"):
        stale.unlink()
    save_ema_safetensors(out / f"model_{update}.safetensors", ema_state)
    save_training_checkpoint(out / "model_last.pt", model_state=online.state_dict(), ema_state=ema_state,
                             optimizer_state=optimizer_state, scheduler_state=scheduler_state, update=update)
    write_vocab(vocab, out / "vocab.txt")
    base = f"{args.init_checkpoint_repo}/{args.init_checkpoint}" if args.init_checkpoint_repo else args.init_checkpoint
    (out / "f5_config.yaml").write_text(yaml.safe_dump(dict(
        model_config=args.model_config, arch=arch, mel_spec_type=args.mel_spec_type, vocab_size=len(vocab),
        added_symbols=added, base_checkpoint=base, updates=update, trained_updates=trained,
        text_front_end=(text_front_end or TextFrontEnd()).to_config()), allow_unicode=True, sort_keys=False))
    selected = (f" The exported weights are those of update {update}, the best {trainer.args.metric_for_best_model} "
                f"({args.eval_weights} weights)." if update != trained else "")
    usage = (f"Upstream f5-tts: `f5-tts_infer-cli --model {args.model_config} --ckpt_file model_{update}.safetensors "
             "--vocab_file vocab.txt --ref_audio ref.wav --ref_text \"...\" --gen_text \"...\"`, or "
             "`python recipes/f5/generate.py --model_path <this folder> ...` from tts-recipes.")
    write_model_card(
        str(out), title=f"F5-TTS fine-tune ({args.model_config})", base_model=args.init_checkpoint_repo,
        license=args.license, language=args.card_language or args.languages, tags=["f5-tts", "voice-cloning"],
        summary=f"F5-TTS ({args.model_config}) fine-tuned from `{base or 'random init'}` for {trained} updates with "
                f"recipes/f5/finetune.py. EMA weights: `model_{update}.safetensors`.{selected}",
        sections={"Usage": usage,
                  "Vocabulary": f"{len(vocab)} symbols (`vocab.txt`); added to the base vocab: {added or 'none'}.",
                  "Text front end": "Text of " + (", ".join((text_front_end or TextFrontEnd()).languages) or "no language")
                                    + " goes through tts-recipes' data_prep.text_normalize before the vocab (training"
                                      " and generate.py); upstream inference needs the same normalised text.",
                  "Training": f"Frame budget {args.frames_per_gpu} frames/GPU, max {args.max_samples} clips, lr "
                              f"{trainer.args.learning_rate}, EMA beta {args.ema_beta} (reset to step 0)."},
        metrics=metrics)
    return out


# ------------------------------------------------------------------------------------------------------

def main(args: F5Arguments, training_args) -> Path | None:
    from recipes.common import explain_hub_errors, log_trainable_parameters, push_folder_to_hub, resume_checkpoint
    from recipes.f5.callbacks import AudioSamplesCallback, EMACallback
    from recipes.f5.checkpoints import build_model, extend_text_embedding, load_initial_weights, resolve_model_config
    from recipes.f5.data import (F5Collator, duration_frames, initial_rows, read_vocab, row_languages,
                                 upstream_vocab_path, write_vocab)

    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    if training_args.remove_unused_columns:
        raise ValueError("set remove_unused_columns: false (the collator needs the audio and text columns)")
    set_seed(training_args.seed)

    # --- data
    with training_args.main_process_first(desc="loading data"):
        splits = load_splits(args, training_args.seed)
    logger.info("train %d clips (%.1f min), validation %d", len(splits["train"]),
                sum(splits["train"]["duration"]) / 60, len(splits["validation"]))

    # --- text front end, the same generate.py applies (saved in f5_config.yaml)
    front_end = make_text_front_end(args)
    texts = {name: [front_end(t, lang) for t, lang in zip(split["text"], row_languages(split))]
             for name, split in splits.items()}
    texts["sample"] = [front_end(t) for t in args.sample_texts]

    # --- vocab: the checkpoint's, extended with what the training text needs
    vocab = read_vocab(args.vocab_file or upstream_vocab_path())
    base_vocab = list(vocab)
    added = plan_vocab_extension(texts, vocab, args)
    vocab = vocab + added

    # --- model: base vocab size to match the checkpoint, then grow the text embedding
    arch = resolve_model_config(args.model_config)
    model = build_model(arch, base_vocab, args.mel_spec_type)
    if args.init_checkpoint:
        path = args.init_checkpoint
        if args.init_checkpoint_repo:
            from huggingface_hub import hf_hub_download

            with explain_hub_errors(f"{args.init_checkpoint_repo}/{path}", "recipes/f5/configs/demo.yaml"):
                path = hf_hub_download(args.init_checkpoint_repo, path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"init_checkpoint {path} does not exist (for the demo, run "
                                    "recipes/f5/configs/demo_base.yaml first; it writes that file)")
        load_initial_weights(model, path, args.init_from)
    else:
        logger.warning("No init_checkpoint: training %s from random initialisation.", args.model_config)
    if added:
        sources = initial_rows(added, base_vocab)
        logger.info("Extending the vocab with %d symbol(s): %s", len(added), ", ".join(
            f"{s!r} (from {base_vocab[i]!r})" if i is not None else f"{s!r} (random row)" for s, i in zip(added, sources)))
        extend_text_embedding(model, len(added), init_from=sources)
        model.vocab_char_map = {symbol: i for i, symbol in enumerate(vocab)}
    log_trainable_parameters(model)
    if training_args.process_index == 0:
        write_vocab(vocab, Path(training_args.output_dir) / "vocab.txt")  # inference needs it even mid-run

    # --- trainer
    push = training_args.push_to_hub
    training_args.push_to_hub = False  # the Trainer would upload raw Trainer checkpoints; we push the upstream export
    resume_from = resume_checkpoint(training_args, required_files=["ema.pt"])
    evaluates = training_args.eval_strategy != "no"
    ema_callback = EMACallback(dict(beta=args.ema_beta, update_after_step=args.ema_update_after_step,
                                    update_every=args.ema_update_every, power=args.ema_power),
                               is_main=training_args.process_index == 0, resume_from=resume_from,
                               all_ranks=evaluates and args.eval_weights == "ema")
    callbacks = [ema_callback]
    if args.sample_texts and evaluates:
        ref_wave, ref_sr, ref_text, ref_language = pick_reference(args, splits["validation"])
        callbacks.append(AudioSamplesCallback(args, (ref_wave, ref_sr, front_end(ref_text, ref_language)),
                                              ema_callback, training_args, text_front_end=front_end))
    if args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
    trainer = F5Trainer(
        model=model, args=training_args, train_dataset=splits["train"], eval_dataset=splits["validation"],
        data_collator=F5Collator(vocab, args.mel_spec_type, text_front_end=front_end), callbacks=callbacks,
        train_frame_lengths=duration_frames(splits["train"]), frames_per_gpu=args.frames_per_gpu,
        max_samples=args.max_samples, ema_callback=ema_callback, eval_weights=args.eval_weights)

    result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    metrics = dict(result.metrics)
    if training_args.eval_strategy != "no":
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    if not trainer.is_world_process_zero():
        return None
    card_metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and "loss" in k}
    out = export_upstream(trainer, ema_callback.ema, args, arch, vocab, added, card_metrics, text_front_end=front_end)
    logger.info("Upstream-format export in %s", out)
    if push:
        if not training_args.hub_model_id:
            raise ValueError("push_to_hub needs hub_model_id")
        with explain_hub_errors(f"the Hub repo {training_args.hub_model_id}", "set push_to_hub: false"):
            url = push_folder_to_hub(str(out), training_args.hub_model_id, private=bool(training_args.hub_private_repo))
        logger.info("Pushed to %s", url)
    return out


if __name__ == "__main__":
    from recipes.common import finish_distributed, parse_recipe_args

    main(*parse_recipe_args(F5Arguments, TrainingArguments))
    finish_distributed()
