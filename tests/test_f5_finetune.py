"""recipes/f5/finetune.py end to end (tiny DiT on the pt-BR demo clips) and its Trainer's loss plumbing."""

import json
import os
import random
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLCONFIGDIR", "/tmp/mplconfig-tests")

from recipes.f5 import finetune  # noqa: E402

CONFIG_DIR = Path(finetune.__file__).parent / "configs"


def _parse(*argv):
    # TrainingArguments rejects bf16 on a machine without a bf16 GPU; the real configs ask for it.
    cpu_only = [] if torch.cuda.is_available() else ["--bf16", "false"]
    return finetune.make_parser().parse_args_and_config(args=list(argv) + cpu_only)


@pytest.mark.parametrize("config", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_parses(config):
    script_args, training_args = _parse("--config", str(config), "--output_dir", "/tmp/f5-parse-only")
    assert script_args.frames_per_gpu >= script_args.max_duration * 93.75
    assert training_args.remove_unused_columns is False
    assert training_args.metric_for_best_model == "eval_loss"


def test_help_and_cli_overrides_yaml(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse("--help")
    assert exit_info.value.code == 0 and "--frames_per_gpu" in capsys.readouterr().out
    script_args, training_args = _parse("--config", str(CONFIG_DIR / "pt_br.yaml"), "--frames_per_gpu", "9600",
                                        "--gradient_accumulation_steps", "2", "--output_dir", "/tmp/x")
    assert script_args.frames_per_gpu == 9600 and training_args.gradient_accumulation_steps == 2
    assert script_args.init_checkpoint_repo == "firstpixel/F5-TTS-pt-br" and script_args.license == "cc-by-nc-4.0"
    with pytest.raises(ValueError, match="frames_per_gpu"):
        _parse("--config", str(CONFIG_DIR / "demo.yaml"), "--max_duration", "30")


@pytest.mark.parametrize("module", ["generate", "layout", "checkpoints"])
def test_tool_help(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"recipes.f5.{module}").main(["--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A full training checkpoint saved at update 200000 (like firstpixel's model_200000.pt), tiny DiT."""
    from ema_pytorch import EMA

    from recipes.f5.checkpoints import TINY_ARCH, build_model, save_training_checkpoint
    from recipes.f5.data import read_vocab, upstream_vocab_path, write_vocab

    torch.manual_seed(0)
    model = build_model(TINY_ARCH, read_vocab(upstream_vocab_path()))
    ema = EMA(model, include_online_model=False)
    ema.step.fill_(200000)
    path = tmp_path_factory.mktemp("base") / "model_200000.pt"
    write_vocab(read_vocab(upstream_vocab_path()), path.parent / "vocab.txt")
    save_training_checkpoint(path, model_state=model.state_dict(), ema_state=ema.state_dict(), optimizer_state={},
                             scheduler_state={}, update=200000)
    return path, ema.ema_model.state_dict()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, base_checkpoint):
    out = tmp_path_factory.mktemp("f5-demo")
    common = ["--config", str(CONFIG_DIR / "demo.yaml"), "--output_dir", str(out), "--init_checkpoint",
              str(base_checkpoint[0]), "--vocab_file", str(base_checkpoint[0].parent / "vocab.txt"),
              "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
              "--sample_nfe_steps", "2", "--early_stopping_patience", "100",
              # export names stay step-based here; load-best naming: tests/test_f5_model_selection.py
              "--load_best_model_at_end", "false"]
    finetune.main(*_parse(*common, "--max_steps", "4"))
    first_state = json.loads((out / "trainer_state.json").read_text())
    first_export = sorted(p.name for p in out.glob("model_*.safetensors"))
    pushed = []
    with pytest.MonkeyPatch.context() as patch:  # no network: record what would be uploaded
        patch.setattr("recipes.common.push_folder_to_hub", lambda folder, repo_id, **kw: pushed.append((folder, repo_id)))
        # finds checkpoint-4 in output_dir and resumes
        finetune.main(*_parse(*common, "--max_steps", "6", "--push_to_hub", "true", "--hub_model_id", "me/f5-demo"))
    assert pushed == [(str(out), "me/f5-demo")]
    return out, first_state, first_export


def test_demo_starts_at_step_zero_from_a_full_checkpoint(demo_run):
    out, first_state, first_export = demo_run
    # Upstream would resume at update 200000 and train nothing; we train 4 updates from step 0.
    assert first_state["global_step"] == 4 and first_export == ["model_4.safetensors"]
    losses = [entry["loss"] for entry in first_state["log_history"] if "loss" in entry]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)
    assert any("eval_loss" in entry for entry in first_state["log_history"])
    assert (out / "samples" / "step-2" / "samples_ema_0.wav").is_file()
    assert (out / "samples" / "step-2" / "samples_online_0.wav").is_file()
    from tensorboard.backend.event_processing.event_accumulator import AUDIO, EventAccumulator

    audio_events = EventAccumulator(str(out / "runs" / "audio_samples"), size_guidance={AUDIO: 0}).Reload()
    assert {"samples/ema_0", "samples/online_0"} <= set(audio_events.Tags()["audio"])


def test_demo_resume_continues_weights_and_ema(demo_run, base_checkpoint):
    from safetensors.torch import load_file

    out, _, _ = demo_run
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [e["step"] for e in state["log_history"] if "loss" in e][:4] == [1, 2, 3, 4]  # history carried over
    ema = load_file(str(out / "model_6.safetensors"))
    assert int(ema["step"]) == 6  # EMA counter resumed from checkpoint-4/ema.pt, not restarted
    full = torch.load(out / "model_last.pt", weights_only=True)
    assert set(full) == {"model_state_dict", "optimizer_state_dict", "ema_model_state_dict", "scheduler_state_dict",
                         "update"} and full["update"] == 6
    assert len(full["optimizer_state_dict"]["param_groups"]) == 1  # loads into upstream's single-group AdamW
    base = base_checkpoint[1]
    key = "transformer.transformer_blocks.0.attn.to_q.weight"
    assert not torch.equal(full["model_state_dict"][key], base[key])  # it trained


def test_demo_export_vocab_and_loads_in_upstream(demo_run, base_checkpoint):
    from f5_tts.infer.utils_infer import load_model
    from f5_tts.model import DiT

    from recipes.f5.checkpoints import TEXT_EMBEDDING_KEY, TINY_ARCH
    from recipes.f5.data import read_vocab

    out, _, _ = demo_run
    vocab = read_vocab(out / "vocab.txt")
    # The sample text has Ô but the demo's training text never does: no row that would never train.
    assert "Ô" not in vocab and len(vocab) == 2545
    import yaml

    saved = yaml.safe_load((out / "f5_config.yaml").read_text())
    assert saved["added_symbols"] == [] and saved["updates"] == 6
    assert saved["text_front_end"] == {"normalize_languages": ["pt-br"], "default_language": "pt-br"}
    model = load_model(DiT, TINY_ARCH, str(out / "model_6.safetensors"), vocab_file=str(out / "vocab.txt"),
                       device="cpu")
    rows = model.state_dict()[TEXT_EMBEDDING_KEY]
    assert rows.shape[0] == len(vocab) + 1
    card = (out / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "model_6.safetensors" in card


def test_upstream_trainer_resumes_our_full_checkpoint_and_starts_from_our_safetensors(demo_run, tmp_path):
    """Upstream's own Trainer.load_checkpoint: model_last.pt resumes (weights, optimizer, schedule, counter);
    the EMA safetensors, offered as a pretrained file, starts at update 0."""
    import shutil

    from f5_tts.model import Trainer as UpstreamTrainer
    from torch.optim.lr_scheduler import LinearLR, SequentialLR

    from recipes.f5.checkpoints import TINY_ARCH, build_model
    from recipes.f5.data import read_vocab

    out, _, _ = demo_run
    vocab = read_vocab(out / "vocab.txt")
    for name, target, expected_update in (("model_last.pt", "model_last.pt", 6),
                                          ("model_6.safetensors", "pretrained_model_6.safetensors", 0)):
        folder = tmp_path / target
        folder.mkdir()
        shutil.copy(out / name, folder / target)
        model = build_model(TINY_ARCH, vocab)
        trainer = UpstreamTrainer(model, epochs=1, learning_rate=1e-4, checkpoint_path=str(folder), logger=None,
                                  accelerate_kwargs=dict(cpu=True))
        trainer.scheduler = SequentialLR(trainer.optimizer, [LinearLR(trainer.optimizer, 1e-8, 1.0, total_iters=5),
                                                             LinearLR(trainer.optimizer, 1.0, 1e-8, total_iters=25)],
                                         milestones=[5])
        assert trainer.load_checkpoint() == expected_update
        saved = torch.load(out / "model_last.pt", weights_only=True)
        key = "transformer.text_embed.text_embed.weight"
        expected = saved["model_state_dict"][key] if expected_update else saved["ema_model_state_dict"][f"ema_model.{key}"]
        assert torch.equal(trainer.accelerator.unwrap_model(trainer.model).state_dict()[key], expected)


def test_demo_generate_cli_uses_the_export(demo_run, tmp_path):
    from data_prep.demo_corpus import load_demo_dataset
    from recipes.f5.generate import load_synthesizer

    out, _, _ = demo_run
    from recipes.common import Synthesizer

    synthesizer = load_synthesizer(str(out), device="cpu", vocoder_path="random", nfe_step=2)
    assert isinstance(synthesizer, Synthesizer)
    assert synthesizer.needs_reference and synthesizer.sampling_rate == 24000
    ref = load_demo_dataset(languages=["pt-br"])[0]
    from data_prep.audio import decode_audio

    wave, sr = decode_audio(ref["audio"])
    [generated] = synthesizer.synthesize(["Ônibus às três."], reference_audio=[(wave, sr)],
                                         reference_texts=[ref["text"]])
    assert generated.ndim == 1 and generated.size > 2400 and bool(torch.isfinite(torch.from_numpy(generated)).all())
    with pytest.raises(ValueError, match="reference"):
        synthesizer.synthesize(["x"])

    # generate.py says the text as training did: the saved text front end, on the text and the reference text
    from data_prep.text_normalize import normalize_text

    seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("recipes.f5.generate.synthesize_with_reference",
                      lambda model, vocoder, w, s, ref_text, text, **kw: seen.append((ref_text, text)) or wave)
        synthesizer.synthesize(["R$ 19,50 às 3 horas"], reference_audio=[(wave, sr)], reference_texts=["Dia 1º."])
        synthesizer.synthesize(["16"], languages=["ca"], reference_audio=[(wave, sr)], reference_texts=["x"])
    assert seen[0] == (normalize_text("Dia 1º.", "pt-br"), "dezenove reais e cinquenta centavos às três horas")
    assert seen[1][1] == "16"  # Catalan is not in this model's normalize_text_languages


def test_demo_generate_cli_shared_shape_and_old_flags(demo_run, tmp_path, demo_corpus_dir):
    from recipes.f5 import generate

    out, _, _ = demo_run
    ref = str(Path(demo_corpus_dir) / "clips" / "pt-br_f2_000.flac")
    common = ["--vocoder_path", "random", "--nfe_step", "2", "--device", "cpu", "--ref_text", "Amanhã vamos ver o mar."]
    generate.main(["--model", str(out), "--voice", ref, "--text", "Bom dia.", "--text", "R$ 2,00.",
                   "--out", str(tmp_path / "wavs"), "--language", "pt-br", *common])
    assert sorted(p.name for p in (tmp_path / "wavs").glob("*.wav")) == ["000.wav", "001.wav"]
    generate.main(["--model_path", str(out), "--ref_audio", ref, "--text", "Bom dia.", "--out",
                   str(tmp_path / "one.wav"), *common])
    assert (tmp_path / "one.wav").is_file()


def _tiny_trainer(tmp_path, gradient_accumulation_steps=1):
    from data_prep.demo_corpus import load_demo_dataset
    from transformers import TrainingArguments

    from recipes.f5.checkpoints import TINY_ARCH, build_model
    from recipes.f5.data import F5Collator, duration_frames, read_vocab, upstream_vocab_path

    vocab = read_vocab(upstream_vocab_path())
    data = load_demo_dataset(languages=["pt-br"])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", remove_unused_columns=False,
                             gradient_accumulation_steps=gradient_accumulation_steps, per_device_eval_batch_size=3,
                             seed=5)
    torch.manual_seed(0)
    collator = F5Collator(vocab)
    trainer = finetune.F5Trainer(
        model=build_model(TINY_ARCH, vocab), args=args, train_dataset=data, eval_dataset=data, data_collator=collator,
        train_frame_lengths=duration_frames(data), frames_per_gpu=700, max_samples=3)
    return trainer, data, collator


def test_gradient_accumulation_averages_micro_batch_losses(tmp_path):
    """GA=2 must give the mean of the two micro-batch gradients (upstream's semantics), whatever
    num_items_in_batch the Trainer passes: the CFM loss is already a mean over its span frames."""
    trainer, data, collator = _tiny_trainer(tmp_path, gradient_accumulation_steps=2)
    model = trainer.model
    trainer.create_optimizer()
    batches = [collator([data[0], data[1]]), collator([data[2], data[3], data[4]])]

    def seeded(i):
        torch.manual_seed(100 + i)
        random.seed(100 + i)

    model.zero_grad()
    trainer.current_gradient_accumulation_steps = 2
    for i, batch in enumerate(batches):
        seeded(i)
        trainer.training_step(model, batch, num_items_in_batch=torch.tensor(9999))
    accumulated = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    for i, batch in enumerate(batches):
        seeded(i)
        loss, _, _ = model(batch["mel"], text=batch["text"], lens=batch["mel_lengths"])
        (loss / 2).backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(accumulated[name], param.grad, rtol=1e-5, atol=1e-7)
    assert trainer.model_accepts_loss_kwargs is False


def test_eval_loss_is_reproducible_and_leaves_training_rng_alone(tmp_path):
    trainer, _, _ = _tiny_trainer(tmp_path)
    torch.manual_seed(1)
    first = trainer.evaluate()["eval_loss"]
    after_first = torch.rand(1)
    torch.manual_seed(1)
    # advance the global generator: evaluation must not depend on its state
    torch.rand(7)
    second = trainer.evaluate()["eval_loss"]
    assert first == pytest.approx(second, abs=1e-7)
    torch.manual_seed(1)
    trainer.evaluate()
    assert torch.equal(torch.rand(1), after_first)
    assert trainer.model.audio_drop_prob == 0.3 and trainer.model.cond_drop_prob == 0.2  # restored


def test_early_stopping_on_eval_loss(tmp_path):
    from transformers import EarlyStoppingCallback, TrainingArguments

    from recipes.f5.checkpoints import TINY_ARCH, build_model
    from recipes.f5.data import F5Collator, duration_frames, read_vocab, upstream_vocab_path

    from data_prep.demo_corpus import load_demo_dataset

    vocab = read_vocab(upstream_vocab_path())
    data = load_demo_dataset(languages=["pt-br"])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", remove_unused_columns=False,
                             max_steps=20, eval_strategy="steps", eval_steps=1, save_steps=1, save_total_limit=1,
                             load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
                             per_device_eval_batch_size=6, learning_rate=1e-3)
    # A threshold no step can beat: the first evaluation sets the best, the second exhausts patience 1.
    trainer = finetune.F5Trainer(
        model=build_model(TINY_ARCH, vocab), args=args, train_dataset=data, eval_dataset=data,
        data_collator=F5Collator(vocab), callbacks=[EarlyStoppingCallback(1, early_stopping_threshold=1e9)],
        train_frame_lengths=duration_frames(data), frames_per_gpu=700, max_samples=3)
    trainer.train()
    assert trainer.state.global_step == 2  # of max_steps 20
    assert len([e for e in trainer.state.log_history if "eval_loss" in e]) == 2


def test_f5_layout_folder_is_a_dataset_source(tmp_path):
    from data_prep.demo_corpus import load_demo_dataset
    from recipes.f5.layout import export_f5_layout

    folder = export_f5_layout(load_demo_dataset(languages=["pt-br"]), tmp_path / "f5")
    args = finetune.F5Arguments(dataset=str(folder), languages=["pt-br"], validation_fraction=0.2, max_duration=10,
                                frames_per_gpu=1200)
    splits = finetune.load_splits(args, seed=0)
    assert len(splits["train"]) + len(splits["validation"]) == 6 and len(splits["validation"]) >= 1
    assert set(splits["train"]["language"]) == {"pt-br"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        finetune.load_splits(finetune.F5Arguments(dataset="./no/such/folder"), seed=0)


def test_train_dataloader_is_frame_budgeted(tmp_path):
    trainer, data, _ = _tiny_trainer(tmp_path)
    loader = trainer.get_train_dataloader()
    batches = list(loader)
    assert sum(len(b["mel_lengths"]) for b in batches) == len(data)
    assert all(int(b["mel_lengths"].sum()) <= 700 + len(b["mel_lengths"]) for b in batches)
    assert all(len(b["mel_lengths"]) <= 3 for b in batches)


@pytest.mark.slow
def test_ddp_two_ranks_share_the_frame_budget_batches(tmp_path, base_checkpoint):
    """torchrun with 2 CPU ranks (gloo): each rank takes whole batches, the main rank exports."""
    import subprocess
    import sys

    script = Path(finetune.__file__)
    env = dict(os.environ, PYTHONPATH=str(script.parents[2]), OMP_NUM_THREADS="1")
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", str(script), "--config", str(CONFIG_DIR / "demo.yaml"),
         "--output_dir", str(tmp_path), "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2",
         "--sample_nfe_steps", "2", "--init_checkpoint", str(base_checkpoint[0]),
         "--vocab_file", str(base_checkpoint[0].parent / "vocab.txt")], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    # 5 demo clips make 2 frame-budget batches: one per rank per step, so one epoch per step.
    assert state["global_step"] == 4 and state["epoch"] == pytest.approx(4.0)
    assert (tmp_path / "model_4.safetensors").is_file() and (tmp_path / "model_last.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_save", "mid_save"])
def test_kill_9_and_rerun_matches_the_uninterrupted_run(tmp_path, base_checkpoint, point):
    """SIGKILL after checkpoint-2 (or during checkpoint-4's save, leaving it without trainer_state.json), rerun
    the same command: every logged loss and the final EMA equal the uninterrupted run's."""
    from safetensors.torch import load_file

    from tests.kill_resume import losses, straight_and_killed

    argv = ["--config", str(CONFIG_DIR / "demo.yaml"), "--init_checkpoint", str(base_checkpoint[0]),
            "--vocab_file", str(base_checkpoint[0].parent / "vocab.txt"), "--max_steps", "6", "--save_steps", "2",
            "--eval_steps", "2", "--logging_steps", "1", "--sample_nfe_steps", "2", "--early_stopping_patience", "100",
            "--report_to", "none", "--bf16", "false"]
    straight, resumed, log = straight_and_killed("recipes.f5.finetune", argv, tmp_path, point,
                                                 2 if point == "after_save" else 4)
    if point == "mid_save":
        assert "Skipping" in log and "checkpoint-4: no trainer_state.json" in log
    assert sorted(losses(straight)) == list(range(1, 7))
    assert losses(resumed) == losses(straight)  # exact: same batches, noise and dropout after the resume
    evals = [[e["eval_loss"] for e in s["log_history"] if "eval_loss" in e] for s in (straight, resumed)]
    assert evals[0] == evals[1]
    ema = [load_file(str(tmp_path / name / "model_6.safetensors")) for name in ("straight", "killed")]
    assert ema[0].keys() == ema[1].keys() and int(ema[1]["step"]) == 6
    for key in ema[0]:
        assert torch.equal(ema[0][key], ema[1][key]), key
