"""Voice LoRA: defaults, options, training on one voice, adapter save, merge == base + adapter, generation."""

import json
import logging
import sys

import numpy as np
import pytest
import torch

from tests.test_orpheus_recipe import REPO, cli, tokenized_rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from recipes.orpheus.build_tiny import build_tiny_orpheus

    return build_tiny_orpheus(tmp_path_factory.getbasetemp() / "orpheus_tiny")


def parse(argv, monkeypatch):
    from recipes.orpheus.finetune_voice_lora import make_parser_args

    monkeypatch.setattr(sys, "argv", ["x"])
    return make_parser_args(argv)


def test_lora_defaults_and_options(monkeypatch):
    from recipes.orpheus.finetune_voice_lora import VoiceLoraArguments, lora_config

    args = VoiceLoraArguments(speakers=["Maria Soler"])
    config = lora_config(args)
    # Canopy's finetune/lora.py: r 32, alpha 64, rsLoRA, dropout 0, all 7 projections
    assert (config.r, config.lora_alpha, config.lora_dropout, config.use_rslora) == (32, 64, 0.0, True)
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert config.modules_to_save is None and args.voice == "maria-soler"
    # the former small setting stays available
    config = lora_config(VoiceLoraArguments(speakers=["x"], lora_target="attention", lora_r=16, lora_alpha=32,
                                            use_rslora=False, lora_modules_to_save=["embed_tokens", "lm_head"]))
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"} and not config.use_rslora
    assert config.modules_to_save == ["embed_tokens", "lm_head"]
    with pytest.raises(ValueError, match="speakers"):
        VoiceLoraArguments()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="QLoRA.*CUDA"):
            VoiceLoraArguments(speakers=["x"], load_in_4bit=True)


def test_voice_lora_trains_saves_merges_and_generates(tiny, tmp_path, monkeypatch, caplog):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from recipes.orpheus import finetune_voice_lora
    from recipes.orpheus.generate import load_synthesizer

    out = tmp_path / "lora"
    argv = ["--config", str(REPO / "recipes/orpheus/configs/voice_lora_demo.yaml"), "--model_name_or_path",
            tiny["model"], "--build_tiny_model", "false", "--snac_model", tiny["snac"],
            "--tokenized_dataset", tokenized_rows(tiny, tmp_path / "rows"), "--speakers", "s0", "s1",
            "--voice", "Veu Demo", "--lora_target", "attention", "--output_dir", str(out), "--max_steps", "3", "--learning_rate", "0.004",
            "--warmup_steps", "0", "--eval_steps", "100", "--save_steps", "100", "--sample_max_new_tokens", "14",
            "--sample_min_new_tokens", "0", "--report_to", "none", "--disable_tqdm", "true"]
    with caplog.at_level(logging.WARNING):
        trainer = finetune_voice_lora.main(*parse(argv, monkeypatch))
    assert "300" in caplog.text and "veu-demo" in caplog.text  # the small-data warning names the voice
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    # 2 layers x r 32 x (in + out) of q (64->64), k and v (64->32), o (64->64)
    assert trainable == 2 * 32 * ((64 + 64) + 2 * (64 + 32) + (64 + 64))

    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 32 and adapter_config["lora_alpha"] == 64 and adapter_config["use_rslora"]
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert (out / "merged" / "model.safetensors").is_file()
    assert json.loads((out / "orpheus_recipe.json").read_text())["voice"] == "veu-demo"
    assert "veu-demo" in (out / "README.md").read_text() and (out / "final_samples" / "veu-demo.wav").is_file()
    for card in (out / "README.md", out / "merged" / "README.md"):  # a local base must not be card metadata
        assert "base_model" not in card.read_text().split("---")[1]

    ids = torch.tensor([[128259, 128000, 300, 301, 128009, 128260, 128261, 128257, 128266, 132362, 136458]])
    base = AutoModelForCausalLM.from_pretrained(tiny["model"]).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        adapted = PeftModel.from_pretrained(base, str(out)).eval()
        adapter_logits = adapted(ids).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(out / "merged").eval()(ids).logits
    assert (adapter_logits - base_logits).abs().max() > 1e-3  # the adapter learnt something
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)

    for model_path in (str(out), str(out / "merged")):  # adapter folder (base from its config) and merged model
        synthesizer = load_synthesizer(model_path, device="cpu", max_new_tokens=14, seed=0)
        assert synthesizer.voice == "veu-demo"
        wave = synthesizer.synthesize(["Bon dia"])[0]
        assert wave.dtype == np.float32 and len(wave) % 2048 == 0


@pytest.mark.parametrize("name", ["voice_lora.yaml", "voice_lora_demo.yaml"])
def test_lora_configs_use_the_anchor_setting(name, monkeypatch):
    args = parse(["--config", str(REPO / "recipes/orpheus/configs" / name), "--speakers", "x",
                  *([] if torch.cuda.is_available() else ["--bf16", "false"])], monkeypatch)[0]
    assert (args.lora_r, args.lora_alpha, args.lora_dropout, args.use_rslora, args.lora_target) == (32, 64, 0.0, True,
                                                                                                     "all")


def test_real_shape_trainable_parameters():
    """On the real 3B shape (meta device, no memory): 48.6 M trainable with the default, as Canopy's lora.py."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from recipes.orpheus.build_tiny import LLAMA_3_2_3B_ORPHEUS
    from recipes.orpheus.finetune_voice_lora import VoiceLoraArguments, lora_config
    from transformers import LlamaConfig

    def trainable(**options):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(LlamaConfig(**LLAMA_3_2_3B_ORPHEUS))
        peft_model = get_peft_model(model, lora_config(VoiceLoraArguments(speakers=["x"], **options)))
        return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)

    assert trainable() == 28 * 32 * 54_272 == 48_627_712
    assert trainable(lora_r=64, lora_alpha=64, use_rslora=False) == 97_255_424  # Unsloth
    assert trainable(lora_target="attention", lora_r=16, lora_alpha=32) == 9_175_040  # the former default


def test_lora_trainable_weights_are_fp32_over_a_bf16_base(tiny, tmp_path):
    """peft keeps modules_to_save copies in the base dtype; AdamW on bf16 copies loses most updates (issue 13.1)."""
    from recipes.orpheus.finetune_voice_lora import VoiceLoraArguments, load_base, lora_model
    from recipes.orpheus.training import OrpheusCollator, OrpheusTrainer
    from tests.test_orpheus_training import ADAMW_5E5, bf16_checkpoint, changed_fraction, fake_rows, trainer_args

    checkpoint = bf16_checkpoint(tiny, tmp_path / "bf16")
    args = VoiceLoraArguments(model_name_or_path=str(checkpoint), speakers=["x"], attn_implementation="sdpa",
                              lora_modules_to_save=["lm_head"])
    base, tokenizer = load_base(args, bf16=True)
    model = lora_model(base, args)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any("modules_to_save" in n for n in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert all(p.dtype == torch.bfloat16 for p in model.parameters() if not p.requires_grad)  # the frozen base
    before = {n: p.detach().float().clone() for n, p in trainable.items()}
    trainer = OrpheusTrainer(model=model, args=trainer_args(tmp_path / "run", **ADAMW_5E5),
                             train_dataset=fake_rows(tokenizer, 6), data_collator=OrpheusCollator(packing=True))
    trainer.train()
    assert changed_fraction(model, before) >= 0.99


def test_lora_help():
    result = cli("recipes/orpheus/finetune_voice_lora.py", "--help")
    assert result.returncode == 0 and "--lora_r" in result.stdout and "--load_in_4bit" in result.stdout


@pytest.mark.gpu
def test_qlora_trains_on_gpu(tiny, tmp_path, monkeypatch):
    from recipes.orpheus import finetune_voice_lora

    out = tmp_path / "qlora"
    argv = ["--config", str(REPO / "recipes/orpheus/configs/voice_lora_demo.yaml"), "--model_name_or_path",
            tiny["model"], "--snac_model", tiny["snac"], "--tokenized_dataset", tokenized_rows(tiny, tmp_path / "rows"),
            "--speakers", "s0", "s1", "--output_dir", str(out), "--load_in_4bit", "true", "--use_cpu", "false",
            "--bf16", "true", "--max_steps", "2", "--merge", "false", "--sample_max_new_tokens", "14",
            "--sample_min_new_tokens", "0", "--report_to", "none"]
    trainer = finetune_voice_lora.main(*parse(argv, monkeypatch))
    assert trainer.state.global_step == 2 and (out / "adapter_model.safetensors").is_file()
    assert any("4bit" in type(m).__name__ for m in trainer.model.modules())
