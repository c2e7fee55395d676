"""Pocket TTS CFG + depth distillation (recipes/pocket/distill.py): configs, the student built from teacher
layers, the guided target against a direct computation, frozen heads, and teacher -> student -> pocket_tts."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DISTILL_CONFIGS = sorted((ROOT / "recipes" / "pocket" / "configs").glob("distill_*.yaml"))


def _parse(module, argv):
    from trl import TrlParser

    old, sys.argv = sys.argv, ["x", *argv]
    try:
        return TrlParser(module.make_parser_types()).parse_args_and_config()
    finally:
        sys.argv = old


@pytest.mark.parametrize("config", DISTILL_CONFIGS, ids=[c.name for c in DISTILL_CONFIGS])
def test_every_distill_config_parses(config):
    from recipes.pocket import distill

    no_gpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    args, training_args = _parse(distill, ["--config", str(config), *no_gpu])
    text = config.read_text()
    assert text.startswith("#") and "Hardware:" in text[:1500] and "Global batch" in text[:1500]
    assert args.distill_cfg_coef == 2.0 and args.max_prompt_seconds <= 0  # CFG baked in, full-length prompts
    assert training_args.lr_scheduler_type == "cosine"
    if config.name != "distill_demo.yaml":
        assert args.student_layers == [0, 1, 2, 21, 22, 23] and args.ema_decay == 0.9999
        assert training_args.learning_rate == 4e-4 and training_args.max_steps == 200_000
        assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * (
            8 if "multilingual" in config.name else 1) >= 64


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A tiny 4-layer teacher with non-trivial weights and statistics, as an export folder."""
    import sentencepiece

    from recipes.pocket import modeling
    from recipes.pocket.data import attach_prompt_candidates, load_recipe_dataset
    from recipes.pocket.train_tokenizer import tokenizer_texts, train_tokenizer

    train = load_recipe_dataset("demo", languages=["fr", "es"])["train"]
    train, _ = attach_prompt_candidates(train, 30.0)
    out = tmp_path_factory.mktemp("teacher")
    tok = str(train_tokenizer(tokenizer_texts(train, True), str(out / "tok"), vocab_size=80, user_symbols=["<fr>", "<es>"]))
    n_bins = sentencepiece.SentencePieceProcessor(model_file=tok).vocab_size()
    config = modeling.with_tokenizer(modeling.load_base_config(modeling.TINY_MODEL_CONFIG), tok, n_bins)
    torch.manual_seed(0)
    model = modeling.PocketTTSForTraining(modeling.build_tts_model(config, pretrained_weights=None))
    with torch.no_grad():
        for p in model.flow_lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.flow_lm.emb_mean.normal_()
        model.flow_lm.emb_std.uniform_(0.5, 2.0)
    export = modeling.export_pocket_model(model, None, str(out / "export"), tok, languages=["es", "fr"],
                                          use_language_tag=True)
    return export, train, tok


def _batch(train, tok):
    from recipes.pocket.data import PocketCollator

    return PocketCollator(train, tok, use_language_tag=True, max_prompt_seconds=0)([train[i] for i in range(3)])


def test_student_takes_the_chosen_teacher_layers(tiny_teacher):
    from recipes.pocket.distill import load_teacher, make_student

    export, _, _ = tiny_teacher
    teacher, meta, _ = load_teacher(str(export))
    assert meta["language_tag"] and teacher.config.flow_lm.transformer.num_layers == 4
    student = make_student(teacher, [0, 3])
    assert student.config.flow_lm.transformer.num_layers == 2 and len(student.flow_lm.transformer.layers) == 2
    t, s = teacher.flow_lm.state_dict(), student.flow_lm.state_dict()
    for key, value in s.items():
        if key.startswith("transformer.layers."):
            index, rest = key[len("transformer.layers."):].split(".", 1)
            source = f"transformer.layers.{[0, 3][int(index)]}.{rest}"
        else:
            source = key
        assert torch.equal(value, t[source]), key
    assert sum(p.numel() for p in student.flow_lm.parameters()) < sum(p.numel() for p in teacher.flow_lm.parameters())
    with pytest.raises(ValueError, match="out of range"):
        make_student(teacher, [0, 4])


def test_distillation_target_is_the_cfg_combination_and_heads_are_frozen(tiny_teacher):
    from recipes.pocket.distill import load_teacher, make_distillation_model_class, make_student

    export, train, tok = tiny_teacher
    teacher, _, _ = load_teacher(str(export))
    batch = _batch(train, tok)
    Model = make_distillation_model_class()

    # A student with ALL teacher layers and coef 1 is the teacher: the loss must be exactly 0.
    same = Model(make_student(teacher, [0, 1, 2, 3]), teacher, cfg_coef=1.0).train()
    loss, _ = same(**batch)
    assert float(loss.detach()) < 1e-10

    model = Model(make_student(teacher, [0, 3]), teacher, cfg_coef=2.0).train()
    loss, metrics = model(**batch)
    # Direct: z_null + 2 (z_cond - z_null) from the teacher, where z_null sees bos_before_voice alone.
    with torch.no_grad():
        tw = model._teacher[0]
        latents, frames = tw.encode(batch["audio"], batch["audio_lengths"])
        voice, voice_frames = tw.encode(batch["prompt_audio"], batch["prompt_lengths"])
        norm = (latents - tw.flow_lm.emb_mean) / tw.flow_lm.emb_std
        z = {}
        for name, keep in (("cond", True), ("null", False)):
            flags = torch.full((3,), keep)
            inputs, prefix = tw.build_rows(norm, voice, voice_frames, batch["text_ids"], batch["text_lengths"],
                                           keep_voice=flags, keep_text=flags)
            z[name] = tw.backbone(inputs, prefix, latents.shape[1])
            if not keep:
                assert torch.all(prefix == 1)  # the null prefix is bos_before_voice alone
        target = z["null"] + 2.0 * (z["cond"] - z["null"])
        inputs, prefix = model.build_rows(norm, voice, voice_frames, batch["text_ids"], batch["text_lengths"],
                                          keep_voice=torch.ones(3, dtype=torch.bool), keep_text=torch.ones(3, dtype=torch.bool))
        z_student = model.backbone(inputs, prefix, latents.shape[1])
        valid = torch.arange(latents.shape[1])[None] < frames[:, None]
        direct = (z_student - target)[valid].square().mean()
    torch.testing.assert_close(loss.detach(), direct)
    assert float(metrics["cfg_delta"]) > 0
    loss.backward()
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("flow_lm.flow_net.", "flow_lm.out_eos.", "mimi.")) for n in names)
    assert all(p.grad is None for p in model.flow_lm.flow_net.parameters())
    assert model.flow_lm.transformer.layers[0].self_attn.in_proj.weight.grad.abs().sum() > 0
    assert not any("teacher" in n for n, _ in model.named_parameters())  # the teacher is not trained nor saved
    assert all(not p.requires_grad for p in tw.parameters())


def test_demo_teacher_distils_into_a_student_pocket_tts_speaks_with(tmp_path, tiny_teacher):
    """teacher export -> distill.py (a few steps) -> student export loaded by pocket_tts, fewer layers, speaks."""
    from pocket_tts import TTSModel

    from data_prep.audio import decode_audio
    from recipes.pocket import distill
    from recipes.pocket.generate import load_synthesizer

    export, train, _ = tiny_teacher
    args, training_args = _parse(distill, [
        "--config", str(ROOT / "recipes/pocket/configs/distill_demo.yaml"), "--teacher", str(export),
        "--languages", "fr", "es", "--output_dir", str(tmp_path / "student"), "--max_steps", "3",
        "--per_device_train_batch_size", "2", "--save_steps", "3", "--eval_strategy", "no", "--report_to", "none",
        "--logging_steps", "1"])
    trainer = distill.main(args, training_args)
    assert trainer.state.global_step == 3
    losses = [e["train/distill_mse"] for e in trainer.state.log_history if "train/distill_mse" in e]
    assert losses and all(v > 0 for v in losses)
    out = tmp_path / "student/pocket_tts"
    threads = torch.get_num_threads()
    student = TTSModel.load_model(config=str(out / "config.yaml"))
    torch.set_num_threads(threads)
    assert len(student.flow_lm.transformer.layers) == 2
    teacher = TTSModel.load_model(config=str(export / "config.yaml"))
    torch.set_num_threads(threads)
    for key in ("flow_net.final_layer.linear.weight", "out_eos.weight"):  # frozen heads: the teacher's
        assert torch.equal(student.flow_lm.state_dict()[key], teacher.flow_lm.state_dict()[key])
    assert (tmp_path / "student/checkpoint-3/pocket_tts.pt").exists()
    wave, sr = decode_audio(train[0]["audio"])
    (audio,) = load_synthesizer(str(out)).synthesize(["Bonjour."], languages=["fr"], reference_audio=[(wave, sr)])
    assert audio.size >= 1920
