"""Orpheus collator/Trainer: packing without leakage, loss masks, grad-accumulation equivalence, resume."""

import numpy as np
import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from recipes.orpheus import layout
from recipes.orpheus.training import IGNORE_INDEX, OrpheusCollator, OrpheusTrainer, mix_text_rows, orpheus_loss


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoTokenizer

    from recipes.orpheus.build_tiny import build_tiny_orpheus

    paths = build_tiny_orpheus(tmp_path_factory.getbasetemp() / "orpheus_tiny")
    return paths, AutoTokenizer.from_pretrained(paths["model"])


def load_model(paths):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(paths["model"], attn_implementation="sdpa")


def fake_rows(tokenizer, n, seed=0, frames=(1, 6)):
    """TTS rows with random audio of varying length (so per-batch means differ from token means)."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    columns = {"input_ids": [], "audio_start": [], "dialect": [], "speaker": []}
    for i in range(n):
        n_frames = int(rng.integers(*frames))
        codes = [rng.integers(0, 4096, size=k * n_frames) for k in (1, 2, 4)]
        dialect = ["balear", "central"][i % 2]
        ids, start = layout.tts_row(layout.text_ids(tokenizer, f"{dialect}: frase {i}"), layout.codes_to_tokens(*codes))
        columns["input_ids"].append(ids)
        columns["audio_start"].append(start)
        columns["dialect"].append(dialect)
        columns["speaker"].append(f"s{i % 3}")
    return Dataset.from_dict(columns)


def test_collator_masks(tiny):
    rows = list(fake_rows(tiny[1], 3))
    packed = OrpheusCollator(packing=True)(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    assert packed["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in packed
    starts = np.cumsum([0] + lengths[:-1])
    assert (packed["position_ids"][0, starts] == 0).all()
    assert packed["position_ids"][0, -1] == lengths[-1] - 1
    assert (packed["labels"][0, starts] == IGNORE_INDEX).all()  # nothing predicts across a boundary
    padded = OrpheusCollator(packing=False)(rows)
    assert padded["input_ids"].shape == (3, max(lengths))
    assert padded["attention_mask"].sum().item() == sum(lengths)
    assert (padded["input_ids"][padded["attention_mask"] == 0] == layout.PAD).all()
    assert (padded["labels"][padded["attention_mask"] == 0] == IGNORE_INDEX).all()
    audio = OrpheusCollator(loss_on="audio")(rows)
    for b, row in enumerate(rows):
        kept = audio["labels"][b][audio["labels"][b] != IGNORE_INDEX].tolist()
        assert kept == row["input_ids"][row["audio_start"]:]  # audio, end of speech, end of AI
        assert kept[-2:] == [layout.END_OF_SPEECH, layout.END_OF_AI]


def test_packed_rows_do_not_attend_to_each_other(tiny):
    model = load_model(tiny[0]).eval()
    rows = list(fake_rows(tiny[1], 3, seed=1))
    packed = OrpheusCollator(packing=True)(rows)
    with torch.no_grad():
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        offset = 0
        for row in rows:
            alone = model(input_ids=torch.tensor([row["input_ids"]]), use_cache=False).logits
            n = len(row["input_ids"])
            torch.testing.assert_close(packed_logits[:, offset:offset + n], alone, atol=1e-4, rtol=1e-4)
            offset += n
        # and the training loss is the same packed or padded
        loss_packed, _ = orpheus_loss(model, packed)
        loss_padded, _ = orpheus_loss(model, OrpheusCollator(packing=False)(rows))
    torch.testing.assert_close(loss_packed, loss_padded, atol=1e-5, rtol=1e-5)


def trainer_args(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1, learning_rate=1.0,
                  optim="sgd", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, seed=0,
                  save_strategy="no", logging_steps=1, remove_unused_columns=False, disable_tqdm=True)
    values.update(overrides)
    return TrainingArguments(**values)


@pytest.mark.parametrize("packing", [False, True])
def test_batch1_accum4_equals_batch4_accum1(tiny, tmp_path, packing):
    rows = fake_rows(tiny[1], 4, seed=2)
    updated = {}
    for batch, accumulation in ((1, 4), (4, 1)):
        model = load_model(tiny[0])
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainer = OrpheusTrainer(model=model, args=trainer_args(tmp_path / f"{batch}x{accumulation}",
                                                                per_device_train_batch_size=batch,
                                                                gradient_accumulation_steps=accumulation),
                                 train_dataset=rows, data_collator=OrpheusCollator(packing=packing))
        trainer.train()
        updated[batch] = {n: p.detach() - before[n] for n, p in model.named_parameters()}
    for name in updated[1]:
        torch.testing.assert_close(updated[1][name], updated[4][name], atol=2e-6, rtol=1e-4)
    assert any(u.abs().max() > 0 for u in updated[1].values())

    # The check has teeth: the per-micro-batch mean (the usual bug) gives a different gradient.
    model = load_model(tiny[0])
    naive = sum(orpheus_loss(model, OrpheusCollator()([r]))[0] for r in rows) / 4
    naive.backward()
    embed = model.get_input_embeddings().weight
    assert not torch.allclose(-embed.grad, updated[1]["model.embed_tokens.weight"], atol=1e-7, rtol=1e-3)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_continues_exactly(tiny, tmp_path):
    from recipes.common import resume_checkpoint

    rows = fake_rows(tiny[1], 8, seed=3)
    common = dict(max_steps=4, per_device_train_batch_size=2, learning_rate=1e-3, optim="adamw_torch",
                  lr_scheduler_type="cosine", warmup_steps=1, save_strategy="steps", save_steps=2)

    def run(output_dir, callbacks=()):
        model = load_model(tiny[0])
        args = trainer_args(output_dir, **common)
        trainer = OrpheusTrainer(model=model, args=args, train_dataset=rows, data_collator=OrpheusCollator(True),
                                 callbacks=list(callbacks))
        trainer.train(resume_from_checkpoint=resume_checkpoint(args))
        return trainer, model

    _, straight = run(tmp_path / "straight")
    interrupted, _ = run(tmp_path / "resumed", [StopAt(2)])
    assert interrupted.state.global_step == 2 and (tmp_path / "resumed" / "checkpoint-2").is_dir()
    resumed, model = run(tmp_path / "resumed")
    assert resumed.state.global_step == 4
    assert [h["step"] for h in resumed.state.log_history if "loss" in h][-2:] == [3, 4]
    for (name, a), b in zip(straight.named_parameters(), model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=f"{name} differs after resume")


def test_text_rows_mix_at_ratio(tiny, tmp_path):
    from recipes.orpheus.training import load_text_rows

    text_file = tmp_path / "text.txt"
    text_file.write_text("Primera frase.\n\nSegona frase una mica més llarga.\nTercera.\n", encoding="utf-8")
    text = load_text_rows(str(text_file), tiny[1])
    assert len(text) == 3 and text[0]["input_ids"][0] == layout.BEGIN_OF_TEXT
    assert text[0]["input_ids"][-1] == layout.END_OF_TEXT and text[0]["audio_start"] == -1
    speech = fake_rows(tiny[1], 4)
    speech_tokens = sum(len(r) for r in speech["input_ids"])
    mixed = mix_text_rows(speech, text, ratio=1.5, seed=0)
    # token-weighted: text-row tokens / speech-row tokens reaches the ratio (text rows repeat when too few),
    # overshooting by less than one text row; a row count (the old meaning) would give 6 short text rows
    text_tokens = sum(len(ids) for ids, s in zip(mixed["input_ids"], mixed["audio_start"]) if s == -1)
    longest_text = max(len(r) for r in text["input_ids"])
    assert 1.5 * speech_tokens <= text_tokens < 1.5 * speech_tokens + longest_text
    assert sum(s == -1 for s in mixed["audio_start"]) > 6
    labels = OrpheusCollator()([mixed[-1]])["labels"][0]
    assert (labels[1:] != IGNORE_INDEX).all()  # text rows train on every token after the first


def test_text_mix_batches_gives_pure_text_or_pure_speech_steps():
    """Canopy's layout: no batch mixes text and speech, and runs of world x GA batches keep every optimizer step
    (all ranks, all accumulation micro-batches) one kind; text runs spread between speech runs."""
    from recipes.orpheus.training import TokenBudgetBatchSampler

    rng = np.random.default_rng(0)
    is_text = [False] * 120 + [True] * 60
    lengths = rng.integers(100, 900, len(is_text)).tolist()
    sampler = TokenBudgetBatchSampler(lengths, 2048, max_rows=8, is_text=is_text, mix="batches", block=4, seed=0)
    batches = list(sampler)
    kinds = [{is_text[i] for i in b} for b in batches]
    assert all(len(k) == 1 for k in kinds)  # pure batches
    steps = [kinds[i:i + 4] for i in range(0, len(kinds), 4)]
    assert sum(len({frozenset(k) for k in step}) > 1 for step in steps) <= 2  # only the two groups' last runs
    text_steps = [i for i, step in enumerate(steps) if step[0] == {True}]
    assert text_steps[0] < len(steps) / 2 < text_steps[-1]  # spread, not all at the end
    shuffled = TokenBudgetBatchSampler(lengths, 2048, max_rows=8, is_text=is_text, mix="shuffle", seed=0)
    assert any(len({is_text[i] for i in b}) == 2 for b in shuffled)


def test_audio_samples_leave_the_training_rng_alone(tiny, tmp_path):
    from types import SimpleNamespace

    from recipes.orpheus.generate import OrpheusSynthesizer
    from recipes.orpheus.training import AudioSampleCallback

    class NoCodec:
        def decode(self, tokens):
            return np.zeros(len(tokens) // 7 * 2048, dtype=np.float32)

    class Silent:
        def log(self, samples, step):
            self.logged = (sorted(samples), step)

    model = load_model(tiny[0]).train()
    callback = AudioSampleCallback(lambda m: OrpheusSynthesizer(m, tiny[1], NoCodec(), max_new_tokens=7, seed=0),
                                   {"balear": {"text": "hola", "dialect": "balear"}}, 2, Silent())
    torch.manual_seed(123)
    torch.rand(3)  # training has used the RNG for a while
    before = torch.get_rng_state()
    expected_next = torch.rand(4)
    torch.set_rng_state(before)
    waves = callback._log(model, SimpleNamespace(global_step=2, is_world_process_zero=True))
    assert set(waves) == {"balear"} and model.training  # sampled, and back in training mode
    # the synthesizer seeds itself (seed=0); training's dropout must not restart from that seed after each sample
    torch.testing.assert_close(torch.rand(4), expected_next)


# --- precision: fp32 master weights for everything that trains (issue 13.1) ---------------------------------
def bf16_checkpoint(paths, folder):
    """The tiny model saved in bf16, as the real Orpheus checkpoints are."""
    from transformers import AutoTokenizer

    load_model(paths).to(torch.bfloat16).save_pretrained(folder)
    AutoTokenizer.from_pretrained(paths["model"]).save_pretrained(folder)
    return folder


def changed_fraction(model, before: dict) -> float:
    changed = total = 0
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            changed += (parameter.detach().float() != before[name]).sum().item()
            total += parameter.numel()
    return changed / total


ADAMW_5E5 = dict(max_steps=2, learning_rate=5e-5, optim="adamw_torch", lr_scheduler_type="constant", weight_decay=0.01,
                 bf16=True, per_device_train_batch_size=2)


def test_full_finetuning_from_bf16_checkpoint_updates_every_weight(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    from tests.test_orpheus_recipe import REPO, run_script, tokenized_rows

    checkpoint = bf16_checkpoint(tiny[0], tmp_path / "bf16")
    start = {n: p.detach().float() for n, p in AutoModelForCausalLM.from_pretrained(checkpoint).named_parameters()}
    trainer = run_script(["--config", str(REPO / "recipes/orpheus/configs/demo.yaml"), "--model_name_or_path",
                          str(checkpoint), "--build_tiny_model", "false", "--snac_model", str(tiny[0]["snac"]),
                          "--tokenized_dataset", tokenized_rows(tiny[0], tmp_path / "rows"), "--output_dir",
                          str(tmp_path / "run"), "--max_steps", "2", "--learning_rate", "5e-5", "--warmup_steps", "0",
                          "--lr_scheduler_type", "constant", "--bf16", "true", "--eval_strategy", "no",
                          "--save_strategy", "no", "--sample_max_new_tokens", "7", "--sample_min_new_tokens", "0",
                          "--report_to", "none", "--disable_tqdm", "true"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters() if p.requires_grad)
    # bf16 weights: ~50 % of the elements keep their value (the update rounds away); fp32 masters: all move
    assert changed_fraction(trainer.model, start) >= 0.99


# --- token budget per packed row (issue 13.3) ---------------------------------------------------------------
def long_rows(n, length, seed=0):
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    ids = [[layout.START_OF_HUMAN] + rng.integers(layout.AUDIO_OFFSET, layout.LAST_AUDIO_ID, length - 1).tolist()
           for _ in range(n)]
    return Dataset.from_dict({"input_ids": ids, "audio_start": [1] * n})


def test_packed_rows_stay_within_the_token_budget(tiny, tmp_path):
    rows = long_rows(8, 8192)
    trainer = OrpheusTrainer(model=load_model(tiny[0]), args=trainer_args(tmp_path, per_device_train_batch_size=8),
                             train_dataset=rows, data_collator=OrpheusCollator(packing=True), packing_max_tokens=8192)
    batches = list(trainer.get_train_dataloader())
    # before: the 8 rows were concatenated into one 65,536-token row
    assert max(b["input_ids"].shape[1] for b in batches) == 8192 and len(batches) == 8
    assert sum(b["input_ids"].shape[1] for b in batches) == 8 * 8192

    # mixed lengths: whole utterances only, never over budget, every row exactly once
    from recipes.orpheus.training import TokenBudgetBatchSampler

    rng = np.random.default_rng(1)
    lengths = rng.integers(50, 1000, 500).tolist()
    sampler = TokenBudgetBatchSampler(lengths, 2048, max_rows=16, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert max(sum(lengths[i] for i in b) for b in batches) <= 2048 and max(len(b) for b in batches) <= 16
    assert sampler.efficiency() > 0.9  # first-fit decreasing fills the rows
    sampler.set_epoch(1)
    assert list(sampler) != batches  # reshuffled per epoch
    with pytest.raises(ValueError, match="row 2 has 3000 tokens"):
        TokenBudgetBatchSampler([10, 20, 3000], 2048, max_rows=4)
    with pytest.raises(ValueError, match="over packing_max_tokens=100"):
        OrpheusCollator(packing=True, max_tokens=100)([{"input_ids": [1] * 60}, {"input_ids": [1] * 60}])


def test_packing_efficiency_is_logged(tiny, tmp_path):
    rows = fake_rows(tiny[1], 8, seed=4)
    trainer = OrpheusTrainer(model=load_model(tiny[0]), args=trainer_args(tmp_path, per_device_train_batch_size=4,
                                                                          max_steps=2),
                             train_dataset=rows, data_collator=OrpheusCollator(packing=True), packing_max_tokens=400)
    trainer.train()
    logged = [h["packing_efficiency"] for h in trainer.state.log_history if "loss" in h]
    lengths = [len(r) for r in rows["input_ids"]]
    assert logged and 0 < logged[0] <= 1
    assert logged[0] == pytest.approx(sum(lengths) / (len(trainer.train_batch_sampler) * 400), abs=1e-4)
