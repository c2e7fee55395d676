"""Callbacks of the F5 recipe: the EMA of the online weights, and audio samples at each evaluation."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import TrainerCallback


class EMACallback(TrainerCallback):
    """ema_pytorch EMA of the online weights, created at train start (model on its device) with step 0.

    Upstream keeps it on the main process only. With `all_ranks` every process keeps one (identical: DDP keeps
    the online weights in sync), so evaluation, which shards the validation set over ranks, can score the EMA
    weights that ship; only the main process writes it."""

    def __init__(self, ema_kwargs: dict, is_main: bool, resume_from: str | None, all_ranks: bool = False):
        self.ema_kwargs, self.is_main, self.resume_from, self.ema = ema_kwargs, is_main, resume_from, None
        self.all_ranks = all_ranks

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not (self.is_main or self.all_ranks) or self.ema is not None:
            return
        from ema_pytorch import EMA

        self.ema = EMA(model, include_online_model=False, **self.ema_kwargs)
        self.ema.to(next(model.parameters()).device)
        if self.resume_from:
            self.load(self.resume_from)

    def load(self, checkpoint_dir: str):
        path = Path(checkpoint_dir) / "ema.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: cannot resume the EMA of {checkpoint_dir}")
        self.ema.load_state_dict(torch.load(path, map_location=next(self.ema.parameters()).device, weights_only=True))

    def on_step_end(self, args, state, control, **kwargs):
        if self.ema is not None:
            self.ema.update()
            if control.should_save and self.is_main:  # every rank may keep an EMA (eval_weights: ema); one writes
                # Written now, before the Trainer saves checkpoint-N (trainer_state.json last): a kill -9 during
                # the save leaves a checkpoint without trainer_state.json, which resume_checkpoint skips.
                self.save(args, state)

    def on_save(self, args, state, control, **kwargs):
        # Saves decided elsewhere than at a step end (epoch ends) did not pass through on_step_end.
        if self.ema is not None and self.is_main and not (self.folder(args, state) / "ema.pt").is_file():
            self.save(args, state)

    @staticmethod
    def folder(args, state) -> Path:
        return Path(args.output_dir) / f"checkpoint-{state.global_step}"

    def save(self, args, state):
        folder = self.folder(args, state)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.ema.state_dict(), folder / "ema.pt.tmp")
        os.replace(folder / "ema.pt.tmp", folder / "ema.pt")

    def on_train_end(self, args, state, control, **kwargs):
        # load_best_model_at_end restores the best online weights; keep the EMA of that same checkpoint
        # (the one the best eval_loss was measured on when eval_weights is ema).
        if self.ema is not None and args.load_best_model_at_end and state.best_model_checkpoint:
            self.load(state.best_model_checkpoint)


class AudioSamplesCallback(TrainerCallback):
    """Clones the reference voice with the EMA and the online weights (they can differ a lot early in a
    fine-tune) and logs the audio to TensorBoard and <output_dir>/samples/."""

    def __init__(self, script_args, reference, ema_callback, training_args, text_front_end=None):
        from recipes.common import AudioSampleLogger

        self.args, self.reference, self.ema_callback = script_args, reference, ema_callback
        # Sample texts are said as generate.py would say them (the reference text is normalised by the caller).
        self.texts = [text_front_end(t) if text_front_end else t for t in script_args.sample_texts]
        # transformers 5 has no logging_dir: scalars go to $TENSORBOARD_LOGGING_DIR or <output_dir>/runs/<run>;
        # audio goes beside them so one `tensorboard --logdir <output_dir>/runs` shows both.
        log_dir = os.environ.get("TENSORBOARD_LOGGING_DIR") or os.path.join(training_args.output_dir, "runs",
                                                                           "audio_samples")
        self.audio_logger = AudioSampleLogger(log_dir, training_args.output_dir, training_args.report_to)
        self.vocoder = None

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or not self.args.sample_texts:
            return
        # Sampling draws noise, and the first call builds the (random demo) vocoder from a fixed seed: both on a
        # forked RNG, else the training RNG after an evaluation depends on whether this process built the
        # vocoder already, and a run resumed from a checkpoint draws other noise than the uninterrupted one.
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            self._sample(args, state, model)

    def _sample(self, args, state, model):
        from recipes.f5.checkpoints import load_vocoder
        from recipes.f5.generate import synthesize_with_reference

        device = str(next(model.parameters()).device)
        if self.vocoder is None:
            self.vocoder = load_vocoder(self.args.vocoder_path, self.args.mel_spec_type, device, args.output_dir)
        ref_wave, ref_sr, ref_text = self.reference
        weights = [("online", model)]
        if self.ema_callback.ema is not None:
            weights.insert(0, ("ema", self.ema_callback.ema.ema_model))
        samples = {}
        for name, cfm in weights:
            was_training = cfm.training
            for i, text in enumerate(self.texts):
                wave = synthesize_with_reference(cfm, self.vocoder, ref_wave, ref_sr, ref_text, text,
                                                 mel_spec_type=self.args.mel_spec_type, device=device,
                                                 nfe_step=self.args.sample_nfe_steps)
                samples[f"samples/{name}_{i}"] = (wave, 24_000)
            cfm.train(was_training)  # CFM.sample switches to eval mode
        self.audio_logger.log(samples, state.global_step)
