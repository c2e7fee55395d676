"""LoRA placement on XTTS: GPT-2 Conv1D blocks only (plus the perceiver on request), everything else frozen,
and merging / reloading the adapter reproduces the adapted model exactly."""

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from recipes.xtts.tiny import build_tiny_base

    return build_tiny_base(tmp_path_factory.mktemp("xtts-lora-base"), [("O menino foi para a escola.", "pt")])


def _batch(xtts, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([xtts.tokenizer.encode("o menino foi para a escola", "pt")] * 2)
    return {"text_ids": ids, "text_lengths": torch.tensor([ids.shape[1], ids.shape[1] - 3]),
            "audio_codes": torch.randint(0, 256, (2, 40), generator=g), "code_lengths": torch.tensor([40, 31]),
            "cond_waves": 0.1 * torch.randn(2, 22050 * 3, generator=g), "cond_lengths": torch.tensor([66150, 50000]),
            "prompt_spans": torch.tensor([[-1, -1], [1024, 9000]])}


def _perturb_lora(peft_model):
    # LoRA B starts at zero (a no-op); give every adapter a visible effect.
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            param.data.normal_(std=0.05)


@pytest.mark.parametrize("perceiver", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_lora_targets_freeze_train_merge_and_reload(tiny_base, tmp_path, perceiver):
    from peft import PeftModel
    from peft.tuners.lora import Linear as LoraLinear

    from recipes.xtts import modeling

    config, xtts = modeling.load_xtts(tiny_base)
    layers, dim = config.model_args.gpt_layers, config.model_args.gpt_n_model_channels
    peft_model = modeling.add_lora(modeling.XttsAdapterModel(xtts), modeling.AdapterSpec(r=4, alpha=8, dropout=0.0,
                                   perceiver=perceiver), base_model=str(tiny_base))
    wrapped = {n: m for n, m in peft_model.named_modules() if isinstance(m, LoraLinear)}
    gpt_blocks = [n for n in wrapped if ".gpt.gpt.h." in n]
    perceiver_layers = [n for n in wrapped if "conditioning_perceiver" in n]
    assert len(gpt_blocks) == 4 * layers and len(perceiver_layers) == (6 if perceiver else 0)
    assert all(wrapped[n].fan_in_fan_out for n in gpt_blocks)  # HF Conv1D: weight stored [in, out]
    assert not any(wrapped[n].fan_in_fan_out for n in perceiver_layers)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # r x (in + out) per layer: c_attn d->3d, c_proj d->d, c_fc d->4d, mlp c_proj 4d->d
    gpt_lora = sum(p.numel() for n, p in peft_model.named_parameters() if p.requires_grad and ".gpt.gpt.h." in n)
    assert gpt_lora == layers * 4 * (4 * dim + 2 * dim + 5 * dim + 5 * dim)

    _perturb_lora(peft_model)
    batch = _batch(xtts)
    peft_model.train()
    assert xtts.gpt.training and not xtts.hifigan_decoder.training  # upstream's train/eval split
    peft_model(**batch)["loss"].backward()
    with_grad = {n for n, p in peft_model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any("lora_A" in n for n in with_grad) and any("lora_B" in n for n in with_grad)
    assert all("lora_" in n for n in with_grad)
    if perceiver:
        assert any("conditioning_perceiver" in n for n in with_grad)

    # Activation checkpointing of the GPT-2 blocks (active in train mode only) changes memory, not numbers;
    # the same seed gives the same dropout masks, which the recompute replays.
    grads = []
    for checkpointed in (False, True):
        if checkpointed:
            modeling.enable_activation_checkpointing(xtts.gpt)
            assert all(block.gradient_checkpointing for block in xtts.gpt.gpt.h)
        peft_model.zero_grad()
        torch.manual_seed(3)
        peft_model(**batch)["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name])

    peft_model.eval()
    loss = peft_model(**batch)["loss"]
    peft_model.save_pretrained(str(tmp_path / "adapter"))

    # A fresh base + the saved adapter gives the same loss; merging into plain weights keeps it too.
    _, fresh = modeling.load_xtts(tiny_base)
    reloaded = PeftModel.from_pretrained(modeling.XttsAdapterModel(fresh), str(tmp_path / "adapter")).eval()
    torch.testing.assert_close(reloaded(**batch)["loss"], loss)
    merged = reloaded.merge_and_unload()
    assert type(merged.xtts.gpt.gpt.h[0].attn.c_attn).__name__ == "Conv1D"
    torch.testing.assert_close(merged(**batch)["loss"], loss, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_full_size_v2_architecture_trainable_parameters_and_step():
    """XTTS-v2's published architecture (config.json values), random weights: 120 LoRA modules,
    7.86 M trainable parameters at r=16, and one forward/backward of the recipe's loss."""
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.models.xtts import Xtts

    from recipes.xtts import modeling

    args = XttsArgs(gpt_layers=30, gpt_n_model_channels=1024, gpt_n_heads=16, gpt_number_text_tokens=6681,
                    gpt_start_text_token=261, gpt_stop_text_token=0, gpt_max_audio_tokens=605,
                    gpt_max_text_tokens=402, gpt_max_prompt_tokens=70, gpt_num_audio_tokens=1026,
                    gpt_start_audio_token=1024, gpt_stop_audio_token=1025, gpt_use_perceiver_resampler=True,
                    gpt_use_masking_gt_prompt_approach=True, decoder_input_dim=1024, d_vector_dim=512)
    xtts = Xtts(XttsConfig(model_args=args))
    peft_model = modeling.add_lora(modeling.XttsAdapterModel(xtts), modeling.AdapterSpec(r=16, alpha=32),
                                   base_model="coqui/XTTS-v2")
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    lora_modules = {n.rsplit(".lora_", 1)[0] for n, p in peft_model.named_parameters() if p.requires_grad}
    assert len(lora_modules) == 120 and trainable == 7_864_320
    # The recipe's longest clip (11.6 s) fits the position table with the start/stop tokens.
    assert -(-255_995 // 1024) + 5 <= xtts.gpt.max_mel_tokens
    g = torch.Generator().manual_seed(0)
    batch = {"text_ids": torch.randint(3, 6000, (1, 30), generator=g), "text_lengths": torch.tensor([30]),
             "audio_codes": torch.randint(0, 1024, (1, 60), generator=g), "code_lengths": torch.tensor([60]),
             "cond_waves": 0.1 * torch.randn(1, 22050 * 3, generator=g), "cond_lengths": torch.tensor([66150]),
             "prompt_spans": torch.tensor([[-1, -1]])}
    peft_model.train()
    loss = peft_model(**batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and 5 < float(loss) < 12  # ~ln(1026) for random weights
