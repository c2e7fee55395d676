"""F5 model selection (issue 14): the eval loss scores the EMA weights that ship, and after
load_best_model_at_end the export is the best checkpoint's, named by its step, with its own optimizer state."""

import copy
import os

import pytest
import torch

os.environ.setdefault("MPLCONFIGDIR", "/tmp/mplconfig-tests")

from recipes.f5 import finetune  # noqa: E402


def _trainer(tmp_path, ema_callback=None, eval_weights="ema", model=None, **training):
    from transformers import TrainingArguments

    from data_prep.demo_corpus import load_demo_dataset
    from recipes.f5.checkpoints import TINY_ARCH, build_model
    from recipes.f5.data import F5Collator, duration_frames, read_vocab, upstream_vocab_path

    vocab = read_vocab(upstream_vocab_path())
    data = load_demo_dataset(languages=["pt-br"])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", remove_unused_columns=False,
                             per_device_eval_batch_size=6, seed=5, **training)
    if model is None:
        torch.manual_seed(0)
        model = build_model(TINY_ARCH, vocab)
    callbacks = [ema_callback] if ema_callback is not None else []
    return finetune.F5Trainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                              data_collator=F5Collator(vocab), callbacks=callbacks,
                              train_frame_lengths=duration_frames(data), frames_per_gpu=700, max_samples=3,
                              ema_callback=ema_callback, eval_weights=eval_weights), vocab


def _ema_callback(**kwargs):
    from recipes.f5.callbacks import EMACallback

    return EMACallback(dict(beta=0.9, update_after_step=0, update_every=1, power=2 / 3), is_main=True,
                       resume_from=None, **kwargs)


def test_eval_loss_scores_the_ema_weights(tmp_path):
    ema_callback = _ema_callback()
    trainer, _ = _trainer(tmp_path / "a", ema_callback)
    ema_callback.on_train_begin(trainer.args, trainer.state, trainer.control, model=trainer.model)
    ema_model = copy.deepcopy(ema_callback.ema.ema_model)
    with torch.no_grad():  # the online weights move away from the EMA, as after many updates
        for param in trainer.model.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    ema_loss = trainer.evaluate()["eval_loss"]

    reference, _ = _trainer(tmp_path / "b", model=ema_model, eval_weights="online")
    online, _ = _trainer(tmp_path / "c", model=trainer.model, eval_weights="online")
    assert ema_loss == pytest.approx(reference.evaluate()["eval_loss"], abs=1e-6)
    assert abs(ema_loss - online.evaluate()["eval_loss"]) > 1e-3
    assert ema_callback.ema.ema_model.audio_drop_prob == 0.3  # CFG dropout restored after the eval


def test_load_best_exports_the_best_step_with_its_own_optimizer_state(tmp_path):
    """Best checkpoint at step 2 of 4: the export is model_2.safetensors, and model_last.pt holds the step-2
    weights, EMA, optimizer and schedule with update 2 (not step 4's optimizer next to step 2's weights)."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from recipes.f5.checkpoints import TINY_ARCH

    class EarlierIsBetter(TrainerCallback):  # a metric that makes step 2 the best, whatever the loss does
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics["eval_earlier"] = -state.global_step

    ema_callback = _ema_callback()
    trainer, vocab = _trainer(tmp_path, ema_callback, max_steps=4, eval_strategy="steps", eval_steps=2,
                              save_strategy="steps", save_steps=2, load_best_model_at_end=True,
                              metric_for_best_model="earlier", greater_is_better=True, learning_rate=1e-3)
    trainer.add_callback(EarlierIsBetter())
    trainer.train()
    assert trainer.state.global_step == 4 and trainer.state.best_model_checkpoint.endswith("checkpoint-2")

    args = finetune.F5Arguments(dataset="demo", model_config="tiny", frames_per_gpu=1200, max_duration=10)
    out = finetune.export_upstream(trainer, ema_callback.ema, args, dict(TINY_ARCH), vocab, [], {})
    assert sorted(p.name for p in out.glob("model_*.safetensors")) == ["model_2.safetensors"]
    full = torch.load(out / "model_last.pt", weights_only=True)
    assert full["update"] == 2
    best = tmp_path / "checkpoint-2"
    best_optimizer = torch.load(best / "optimizer.pt", weights_only=True)
    final_optimizer = trainer.optimizer.state_dict()
    key = next(iter(best_optimizer["state"]))
    assert torch.equal(full["optimizer_state_dict"]["state"][key]["exp_avg"], best_optimizer["state"][key]["exp_avg"])
    assert not torch.equal(full["optimizer_state_dict"]["state"][key]["exp_avg"], final_optimizer["state"][key]["exp_avg"])
    assert full["scheduler_state_dict"]["last_epoch"] == 2
    best_weights = load_file(str(best / "model.safetensors"))
    name = "transformer.transformer_blocks.0.attn.to_q.weight"
    assert torch.equal(full["model_state_dict"][name], best_weights[name])
    best_ema = torch.load(best / "ema.pt", weights_only=True)
    exported_ema = load_file(str(out / "model_2.safetensors"))
    assert torch.equal(exported_ema[f"ema_model.{name}"], best_ema[f"ema_model.{name}"])
    config = (out / "f5_config.yaml").read_text()
    assert "updates: 2" in config and "trained_updates: 4" in config
