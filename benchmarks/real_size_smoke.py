"""Every recipe at its real architecture: random weights from the real configs, 2 optimizer steps of the
real recipe code (Trainer subclass, collator, loss) on real-length rows of the demo corpus.

    python benchmarks/real_size_smoke.py                        # all six rows, CPU, writes outputs/real_size/results.md
    python benchmarks/real_size_smoke.py --models f5 pocket     # a subset
    python benchmarks/real_size_smoke.py --size tiny            # same code on tiny models (seconds; the fast test)

No weights are downloaded: random initialisation from the real configs has the real shapes, dtypes and
memory, so shape, dtype and memory problems show up here instead of on a rented GPU. Each model runs in its
own process (peak RSS is that process's high-water mark) and is checked against its published parameter
count. Rows in the table:
- Orpheus-3B: Llama-3.2-3B shape at vocab 156,940, LoRA on all 7 projections with activation checkpointing
  (configs/voice_lora.yaml), OrpheusTrainer + OrpheusCollator(packing=True) on one packed row of >= 1,024
  tokens of SNAC-coded demo clips. Base weights bf16 on a GPU (the recipe's); fp32 on a CPU without bf16
  instructions, where a bf16 matmul is >100x slower than fp32 (benchmarks/README.md);
- F5-TTS Base (the pt_br.yaml architecture): full fine-tune with F5Trainer, FrameBudgetBatchSampler,
  F5Collator, EMA, on a slice of the real frame budget;
- XTTS-v2 (the coqui/XTTS-v2 config.json GPT): LoRA adapter with XttsAdapterTrainer, DVAE codes from a
  real-size random DVAE, conditioning from another clip of the same speaker;
- Pocket TTS 24-layer teacher (pocket_tts's english_2026-04_24l.yaml): full fine-tune of the flow LM with
  the recipe's Trainer, collator, LSD + EOS loss and weight EMA;
- xtts_extended: the XTTS-v2 GPT on a base vocabulary without Catalan, taught it as train_adapter.py does
  (new_language ca with dialect tags, configs/ca_dialects_adapter.yaml: vocabulary extension, grown text
  embedding/head whose new rows train, LoRA r32), 2 steps on Catalan demo clips;
- pocket_student: distill.py's 6-layer student (make_student, teacher layers 0,1,2,21,22,23) of the random
  24-layer teacher, 2 steps of its CFG distillation loss with the recipe's Trainer, collator and EMA.
On a 2-core CPU the 3B model dominates: see benchmarks/README.md for the figures and the token budget.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                      ("TOKENIZERS_PARALLELISM", "false"), ("WANDB_MODE", "disabled")):
    os.environ.setdefault(_name, _value)
os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "mplconfig"))

MODELS = ("orpheus", "f5", "xtts", "pocket", "xtts_extended", "pocket_student")
# Memory a real-size CPU run needs (GB, measured peak RSS rounded up): the runner waits for this much
# (+ a 3 GB margin) to be available before starting it, so a shared machine is not pushed into the OOM killer.
REAL_SIZE_NEED_GB = {"orpheus": 10, "f5": 8, "xtts": 5, "pocket": 7, "xtts_extended": 6, "pocket_student": 5}

# One transformer layer of Pocket's flow LM (pocket_tts english_2026-04_24l.yaml: d 1024, hidden_scale 4): fused
# bias-free in_proj 3d x d + out_proj d x d + bias-free MLP 2 x 4d x d + two LayerNorms (weight, bias).
POCKET_D_MODEL, POCKET_HIDDEN_SCALE = 1024, 4
POCKET_LAYER_PARAMS = (4 + 2 * POCKET_HIDDEN_SCALE) * POCKET_D_MODEL ** 2 + 4 * POCKET_D_MODEL  # 12,587,008
POCKET_TEACHER_PARAMS, POCKET_STUDENT_LAYERS = 316.01e6, 6

# Published sizes. `tolerance` is relative; `adjust` says how our build may differ from the published model.
PUBLISHED = {
    "orpheus": dict(params=3.30e9, source="Orpheus-3B (Llama-3.2-3B + 28,683 audio tokens, vocab 156,940): 3.30 B "
                    "(shared/notes/orpheus.md §5; Hub: 3.3B)", tolerance=0.01),
    "f5": dict(params=337.10e6, source="F5TTS_Base at the 2545-symbol Emilia vocab: 337.10 M (notes/f5.md §4; "
               "paper: 336 M)", tolerance=0.01),
    "xtts": dict(params=377.9e6, source="XTTS-v2 GPT-2 stack, 30 blocks x 1024: 377.9 M (notes/xtts.md §7)",
                 tolerance=0.01),
    "pocket": dict(params=316.01e6, source="Pocket TTS *_24l flow LM at 4000 pieces: 316.01 M (notes/pocket.md §2)",
                   tolerance=0.01),
    "xtts_extended": dict(params=377.9e6, source="XTTS-v2 GPT-2 stack, 30 blocks x 1024: 377.9 M (notes/xtts.md §7); "
                          "the vocabulary extension grows only the text embedding and head, outside the stack",
                          tolerance=0.01),
    "pocket_student": dict(params=POCKET_TEACHER_PARAMS - (24 - POCKET_STUDENT_LAYERS) * POCKET_LAYER_PARAMS,
                           source="derived from the teacher's config: *_24l flow LM 316.01 M - 18 dropped layers x "
                                  "12,587,008 (d 1024: in_proj 3d^2 + out_proj d^2 + MLP 8d^2 + 2 LayerNorms) = "
                                  "89.44 M at 4000 pieces; the released 6-layer models: 89.45 M (notes/pocket.md §2)",
                           tolerance=0.01),
}


# ----------------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------------

def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # ru_maxrss is KiB on Linux


def available_memory_gb() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 ** 2
    return float("inf")


def wait_for_memory(need_gb: float, minutes: float, what: str) -> None:
    """Block until `need_gb` is available (checked every 30 s), or fail clearly after `minutes`."""
    deadline = time.monotonic() + 60 * minutes
    while True:
        available = available_memory_gb()
        if available >= need_gb:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} needs ~{need_gb:.0f} GB free and only {available:.1f} GB is available after "
                             f"waiting {minutes:g} min; free memory or pass --memory_wait_minutes")
        print(f"[{what}] waiting for memory: {available:.1f} GB available, {need_gb:.0f} GB wanted", flush=True)
        time.sleep(30)


def step_timer():
    """A TrainerCallback recording the wall time of each optimizer step (data loading included)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self._start = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def snapshot_trainable(model, n: int = 6) -> dict:
    """Copies of `n` trainable tensors spread over the model (first, last, between): enough to prove an update.

    Zero-initialised tensors are left out: behind a zero-initialised gate (Pocket's adaLN head, LoRA's B) they
    legitimately receive no gradient for the first step or two (a real-size Pocket run flagged such a bias)."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad and bool(p.detach().ne(0).any())]
    picks = {round(i * (len(named) - 1) / max(n - 1, 1)) for i in range(n)}
    return {named[i][0]: named[i][1].detach().float().cpu().clone() for i in sorted(picks)}


def changed(model, before: dict) -> list[str]:
    params = dict(model.named_parameters())
    return [k for k, v in before.items() if not params[k].detach().float().cpu().equal(v)]


def trainer_losses(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def common_training_kwargs(out: str, device: str, steps: int) -> dict:
    return dict(output_dir=out, max_steps=steps, logging_steps=1, report_to="none", save_strategy="no",
                eval_strategy="no", use_cpu=device == "cpu", bf16=device == "cuda", disable_tqdm=True,
                dataloader_num_workers=0, seed=0)


def finish(result: dict, trainer, timer, model, before: dict, params: int, trainable: int, started: float) -> dict:
    import math

    losses = trainer_losses(trainer)
    result.update(
        params=params, trainable=trainable, steps=trainer.state.global_step, losses=losses,
        step_seconds=timer.times, s_per_step=sum(timer.times) / max(len(timer.times), 1),
        updated=changed(model, before), total_seconds=time.perf_counter() - started)
    problems = []
    if trainer.state.global_step != result["steps_wanted"]:
        problems.append(f"ran {trainer.state.global_step} optimizer steps, wanted {result['steps_wanted']}")
    if not losses or not all(math.isfinite(x) for x in losses):
        problems.append(f"losses not finite: {losses}")
    if len(result["updated"]) != len(before):
        problems.append(f"trainable tensors that did not change: {sorted(set(before) - set(result['updated']))}")
    result["problems"] = result.get("problems", []) + problems
    return result


# ----------------------------------------------------------------------------------------------------
# Orpheus-3B: LoRA (all 7 projections) on bf16 base weights, one packed row
# ----------------------------------------------------------------------------------------------------

# One token of Orpheus-3B costs ~20 GFLOP per LoRA step (forward, input gradients, and the forward again under
# activation checkpointing). A CPU without bf16 instructions (AVX2 only: this 2-core EPYC) multiplies bf16
# matrices >100x slower than fp32 (a 1024x3072 @ 3072x8192 product: 42 GFLOP/s per core in fp32, not done after
# 10 min in bf16). An fp32 base would need 13.2 GB for weights alone. So on CPU the base is stored in bf16, as
# the recipe loads it, and each frozen matrix is upcast to fp32 when it is used (`compute_in_float32`): under
# activation checkpointing only one layer's fp32 copies exist at a time.
ORPHEUS_TOKENS = 1024


def compute_in_float32(model) -> None:
    """Keep the bf16 weights, do the arithmetic in fp32: what bf16 autocast does on a GPU, the other way round
    (a CPU without bf16 instructions multiplies fp32 far faster). Every bf16 Linear multiplies with an fp32 copy
    of its weight made on the spot (the stored parameter stays bf16 and frozen; nothing keeps the copy, so under
    activation checkpointing one layer's copies exist at a time), and the embedding output is cast to fp32, so
    norms, attention and LoRA all see fp32 activations."""
    import torch
    import torch.nn.functional as F

    def float32_forward(module):
        def forward(x):
            return F.linear(x, module.weight.float(), None if module.bias is None else module.bias.float())
        return forward

    for module in list(model.modules()):
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.bfloat16:
            module.forward = float32_forward(module)
    model.get_input_embeddings().register_forward_hook(lambda module, inputs, output: output.float())
ORPHEUS_VOCAB = 156_940  # canopylabs/orpheus-3b-0.1-ft (the -pretrained checkpoint has 156,939)
ORPHEUS_LORA = dict(r=16, alpha=32, dropout=0.05)  # configs/voice_lora.yaml
LORA_PARAMS_PER_LAYER_PER_RANK = 54_272  # q 3072+3072, k/v 3072+1024, o 3072+3072, gate/up 3072+8192, down 8192+3072


def orpheus_config(size: str):
    from transformers import LlamaConfig

    from recipes.orpheus.build_tiny import LLAMA_3_2_3B_ORPHEUS, tiny_llama_config

    if size == "real":
        return LlamaConfig(**{**LLAMA_3_2_3B_ORPHEUS, "vocab_size": ORPHEUS_VOCAB})
    return tiny_llama_config(vocab_size=ORPHEUS_VOCAB)


def build_orpheus(size: str, dtype, device: str = "cpu", attn_implementation: str = "sdpa"):
    """Random-init Orpheus built directly in `dtype` on `device` (no fp32 copy of a bf16 model is ever made)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = orpheus_config(size)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    model.config.use_cache = False  # a cache disables the packed-sequence mask (notes, pitfall 13)
    return model


def orpheus_rows(tokenizer, tokens: int, snac_size: str = "real", device: str = "cpu") -> list[dict]:
    """Demo clips SNAC-coded (random SNAC of the real 24 kHz config) into Orpheus rows with `{dialect}: {text}`
    prompts: at least 2 utterances (so packing has a boundary) and `tokens` tokens in all. Rows are cut when the
    budget is smaller than whole clips, keeping each prompt and at least one audio frame."""
    import torch
    from snac import SNAC

    from data_prep.audio import decode_audio
    from data_prep.demo_corpus import load_demo_dataset
    from recipes.orpheus import layout
    from recipes.orpheus.build_tiny import SNAC_24KHZ_CONFIG
    from recipes.orpheus.tokenize_dataset import SnacAudioTokenizer

    torch.manual_seed(0)
    snac_config = dict(SNAC_24KHZ_CONFIG) if snac_size == "real" else {**SNAC_24KHZ_CONFIG, "encoder_dim": 8,
                                                                       "decoder_dim": 32}
    coder = SnacAudioTokenizer(SNAC(**snac_config).eval().to(device), remove_duplicate_frames=False)
    clips = load_demo_dataset(dialects=["central", "balear", "valencia"], sampling_rate=layout.SAMPLING_RATE)
    rows, total = [], 0
    for row in clips:
        wave, _ = decode_audio(row["audio"], target_sr=layout.SAMPLING_RATE)
        (audio, _), = coder.encode([wave])
        ids, start = layout.tts_row(layout.text_ids(tokenizer, layout.format_prompt(row["dialect"], row["text"])), audio)
        still_needed = max(2 - len(rows), 1)  # utterances, this one included
        cap = (tokens - total) // still_needed
        if len(ids) > cap:
            ids = ids[: max(cap, start + layout.TOKENS_PER_FRAME + 1)]
        rows.append({"input_ids": ids, "audio_start": start, "seconds": float(row["duration"])})
        total += len(ids)
        if total >= tokens and len(rows) >= 2:
            break
    return rows


def run_orpheus(size: str = "real", device: str = "cpu", steps: int = 2, tokens: int = 1024, out: str | None = None,
                dtype: str | None = None) -> dict:
    import torch
    from datasets import Dataset
    from recipes.orpheus import layout
    from recipes.orpheus.build_tiny import build_tiny_tokenizer, demo_texts
    from recipes.orpheus.finetune_voice_lora import ALL_PROJECTIONS, VoiceLoraArguments, lora_config, lora_model
    from recipes.orpheus.pretrain_dialects import OrpheusTrainingArguments
    from recipes.orpheus.training import OrpheusCollator, OrpheusTrainer

    started = time.perf_counter()
    # The recipe's bf16 base weights at real size (on CPU computed in fp32: see ORPHEUS_TOKENS); fp32 for the
    # tiny rehearsal.
    dtype = dtype or ("bfloat16" if size == "real" else "float32")
    torch_dtype = getattr(torch, dtype)
    model = build_orpheus(size, torch_dtype, device)
    compute = "bf16 autocast" if device != "cpu" else "fp32"
    if device == "cpu" and torch_dtype == torch.bfloat16:
        compute_in_float32(model)
    # configs/voice_lora.yaml trains with activation checkpointing; finetune_voice_lora.py then needs input grads
    # on the frozen embedding so the checkpointed blocks see a tensor that requires grad.
    model.enable_input_require_grads()
    params = sum(p.numel() for p in model.parameters())
    tokenizer = build_tiny_tokenizer(demo_texts())  # the real Orpheus ids (layout.check_tokenizer passes)
    layout.check_tokenizer(tokenizer, model.config.vocab_size, where="smoke tokenizer")
    rows = orpheus_rows(tokenizer, tokens, snac_size=size, device=device)
    row_tokens = sum(len(r["input_ids"]) for r in rows)
    # Explicit settings, whatever the recipe's defaults are: LoRA r16 / alpha 32 on all 7 projections.
    lora_args = VoiceLoraArguments(speakers=["smoke"], lora_target="all", lora_r=ORPHEUS_LORA["r"],
                                   lora_alpha=ORPHEUS_LORA["alpha"], lora_dropout=ORPHEUS_LORA["dropout"])
    config = lora_config(lora_args)
    model = lora_model(model, lora_args)  # the recipe's: peft + fp32 trainable weights over the frozen base
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_layers = model.config.num_hidden_layers
    result = dict(model="orpheus", steps_wanted=steps, dtype=f"base {dtype} ({compute} compute), LoRA {next(p for p in model.parameters() if p.requires_grad).dtype}",
                  setting=f"LoRA r{ORPHEUS_LORA['r']} on {len(ALL_PROJECTIONS)} projections, 1 packed row of "
                          f"{len(rows)} utterances = {row_tokens} tokens",
                  tokens_per_step=row_tokens, problems=[])
    if size == "real":
        expected_lora = n_layers * ORPHEUS_LORA["r"] * LORA_PARAMS_PER_LAYER_PER_RANK
        result["trainable_expected"] = expected_lora
        if trainable != expected_lora:
            result["problems"].append(f"LoRA trainable {trainable:,} != 28 x r x 54,272 = {expected_lora:,}")
        if sorted(config.target_modules) != sorted(ALL_PROJECTIONS):
            result["problems"].append(f"LoRA targets {sorted(config.target_modules)}, wanted all 7 projections")
    before = snapshot_trainable(model)
    timer = step_timer()
    with tempfile.TemporaryDirectory() as tmp:
        args = OrpheusTrainingArguments(**common_training_kwargs(out or tmp, device, steps),
                                        per_device_train_batch_size=len(rows), learning_rate=2e-4,
                                        lr_scheduler_type="constant", warmup_steps=0,
                                        activation_checkpointing=True,
                                        activation_checkpointing_kwargs={"use_reentrant": False})
        trainer = OrpheusTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 data_collator=OrpheusCollator(packing=True), processing_class=tokenizer,
                                 callbacks=[timer])
        trainer.train()
    return finish(result, trainer, timer, model, before, params, trainable, started)


# ----------------------------------------------------------------------------------------------------
# F5-TTS Base: full fine-tune on a frame-budget slice
# ----------------------------------------------------------------------------------------------------

def run_f5(size: str = "real", device: str = "cpu", steps: int = 2, frames: int = 600, out: str | None = None) -> dict:
    import torch
    import yaml
    from transformers import TrainingArguments

    from data_prep.demo_corpus import load_demo_dataset
    from recipes.f5.callbacks import EMACallback
    from recipes.f5.checkpoints import build_model, extend_text_embedding, resolve_model_config
    from recipes.f5.data import (F5Collator, FrameBudgetBatchSampler, duration_frames, missing_symbols, read_vocab,
                                 upstream_vocab_path)
    from recipes.f5.finetune import F5Trainer

    started = time.perf_counter()
    recipe = yaml.safe_load((REPO / "recipes/f5/configs/pt_br.yaml").read_text())
    arch_name = recipe["model_config"] if size == "real" else "tiny"
    arch = resolve_model_config(arch_name)
    data = load_demo_dataset(languages=["pt-br"])
    vocab = read_vocab(upstream_vocab_path())
    base_size = len(vocab)
    added = sorted(missing_symbols(list(data["text"]), vocab))  # Ô/Õ and the like, as finetune.py does
    torch.manual_seed(0)
    model = build_model(arch, vocab, recipe["mel_spec_type"])
    params_at_base_vocab = sum(p.numel() for p in model.parameters())
    vocab = vocab + added
    if added:
        extend_text_embedding(model, len(added))
        model.vocab_char_map = {symbol: i for i, symbol in enumerate(vocab)}
    params = sum(p.numel() for p in model.parameters())
    sampler = FrameBudgetBatchSampler(duration_frames(data), frames, recipe["max_samples"], seed=0)
    result = dict(model="f5", steps_wanted=steps, dtype="fp32" if device == "cpu" else "bf16 autocast, fp32 weights",
                  setting=f"{arch_name} full fine-tune, frame budget {frames} of the config's "
                          f"{recipe['frames_per_gpu']} per GPU ({len(sampler)} batches of pt-br demo clips), "
                          f"vocab {base_size}+{len(added)}, EMA on",
                  params_compared=params_at_base_vocab, frames_per_step=frames, problems=[])
    model = model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    before = snapshot_trainable(model)
    timer = step_timer()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(**common_training_kwargs(out or tmp, device, steps), remove_unused_columns=False,
                                 learning_rate=recipe["learning_rate"], warmup_steps=0,
                                 weight_decay=recipe["weight_decay"], max_grad_norm=recipe["max_grad_norm"])
        ema = EMACallback(dict(beta=recipe["ema_beta"], update_after_step=0, update_every=1), is_main=True,
                          resume_from=None)
        trainer = F5Trainer(model=model, args=args, train_dataset=data, data_collator=F5Collator(vocab),
                            callbacks=[ema, timer], train_frame_lengths=duration_frames(data), frames_per_gpu=frames,
                            max_samples=recipe["max_samples"])
        trainer.train()
    return finish(result, trainer, timer, model, before, params, trainable, started)


# ----------------------------------------------------------------------------------------------------
# XTTS-v2: LoRA adapter on the full GPT
# ----------------------------------------------------------------------------------------------------

# coqui/XTTS-v2 config.json model_args (notes/xtts.md §2); the text vocabulary is 6681 BPE tokens.
XTTS_V2_ARGS = dict(gpt_layers=30, gpt_n_model_channels=1024, gpt_n_heads=16, gpt_max_audio_tokens=605,
                    gpt_max_text_tokens=402, gpt_max_prompt_tokens=70, gpt_num_audio_tokens=1026,
                    gpt_start_audio_token=1024, gpt_stop_audio_token=1025, gpt_use_masking_gt_prompt_approach=True,
                    gpt_use_perceiver_resampler=True, gpt_code_stride_len=1024, decoder_input_dim=1024,
                    d_vector_dim=512)
XTTS_V2_TEXT_TOKENS = 6681


def xtts_base(size: str, work: Path, texts: list[tuple[str, str]]):
    """(config, Xtts, DvaeCoder) at XTTS-v2 size (or the recipe's tiny size), built in memory: writing and reading
    a 1.8 GB model.pth would only double the peak memory."""
    import torch
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.models.xtts import Xtts

    from recipes.xtts import modeling
    from recipes.xtts.text import XttsTextTokenizer
    from recipes.xtts.tiny import XTTS_LANGUAGE_TAGS, build_tiny_base, train_tiny_vocab

    torch.manual_seed(0)
    if size != "real":
        base = build_tiny_base(work / "tiny-base", texts)
        config, xtts = modeling.load_xtts(base)
        return config, xtts, modeling.DvaeCoder.from_base(base, config)
    vocab = train_tiny_vocab(texts, work / "vocab.json")
    spec = json.loads(vocab.read_text())
    # Pad the corpus-trained BPE to XTTS-v2's 6681 ids with never-produced symbols, so the text embedding and
    # head have their real shapes.
    for i in range(XTTS_V2_TEXT_TOKENS - len(spec["model"]["vocab"])):
        spec["model"]["vocab"][f"<unused_{i}>"] = len(spec["model"]["vocab"])
    vocab.write_text(json.dumps(spec))
    config = XttsConfig(model_args=XttsArgs(**XTTS_V2_ARGS, tokenizer_file=str(vocab)), audio=XttsAudioConfig(),
                        languages=list(XTTS_LANGUAGE_TAGS))
    # The recipe's tokenizer class (load_xtts's): upstream's plus normalisers and new languages (xtts_extended).
    tokenizer = XttsTextTokenizer(vocab_file=str(vocab))
    modeling.set_text_token_args(config, tokenizer)
    xtts = Xtts(config)
    xtts.tokenizer = tokenizer
    dvae = DiscreteVAE(num_tokens=config.model_args.gpt_num_audio_tokens - 2, **modeling.DVAE_ARGS)
    torch.save(dvae.state_dict(), work / "dvae.pth")
    del dvae
    coder = modeling.DvaeCoder(work / "dvae.pth", config.model_args.gpt_num_audio_tokens, torch.ones(80))
    return config, xtts, coder


def train_xtts_steps(peft_model, xtts, dataset, recipe: dict, out: str, device: str, steps: int, batch_size: int,
                     timer):
    """The XTTS rows' training: the recipe's XttsAdapterTrainer and collator with the YAML's optimiser settings."""
    from transformers import TrainingArguments

    from recipes.xtts import data as xdata
    from recipes.xtts.train_adapter import XttsAdapterTrainer

    args = TrainingArguments(**common_training_kwargs(out, device, steps), remove_unused_columns=False,
                             per_device_train_batch_size=batch_size, learning_rate=recipe["learning_rate"],
                             warmup_steps=0, weight_decay=recipe["weight_decay"], adam_beta2=recipe["adam_beta2"])
    trainer = XttsAdapterTrainer(model=peft_model, args=args, train_dataset=dataset,
                                 data_collator=xdata.XttsCollator(), xtts=xtts)
    trainer.add_callback(timer)
    trainer.train()
    return trainer


def run_xtts(size: str = "real", device: str = "cpu", steps: int = 2, batch_size: int = 2,
             out: str | None = None) -> dict:
    import yaml

    from recipes.xtts import data as xdata
    from recipes.xtts import modeling

    started = time.perf_counter()
    recipe = yaml.safe_load((REPO / "recipes/xtts/configs/pt_adapter.yaml").read_text())
    language = recipe["language"]
    splits = xdata.load_splits("demo", language=language, languages=["pt-br"], validation_fraction=0.2, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config, xtts, coder = xtts_base(size, work, [(t, language) for s in splits.values() for t in s["text"]])
        params = sum(p.numel() for p in xtts.parameters())
        gpt_stack = sum(p.numel() for p in xtts.gpt.gpt.h.parameters())
        limits = xdata.Limits(max_audio_samples=int(recipe["max_audio_seconds"] * modeling.GPT_SAMPLE_RATE),
                              max_text_tokens=recipe["max_text_tokens"])
        train, report = xdata.tokenize_and_filter(splits["train"], xtts.tokenizer, language, limits, "train")
        train = xdata.add_audio_codes(train, coder, limits, report, device=device, cache_key=f"smoke-{size}")
        del coder
        cond = [int(recipe[k] * modeling.GPT_SAMPLE_RATE) for k in ("min_conditioning_seconds",
                                                                     "max_conditioning_seconds")]
        dataset = xdata.XttsTrainingDataset(train, *cond)
        model = modeling.XttsAdapterModel(xtts, recipe["text_ce_weight"], recipe["mel_ce_weight"])
        spec = modeling.AdapterSpec(r=recipe["lora_r"], alpha=recipe["lora_alpha"], dropout=recipe["lora_dropout"])
        peft_model = modeling.add_lora(model, spec, base_model="random-xtts-v2").to(device)
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        layers, width = xtts.gpt.gpt.config.n_layer, xtts.gpt.gpt.config.n_embd
        expected = layers * recipe["lora_r"] * (4 * width + 2 * width + 5 * width + 5 * width)
        codes = [len(c) for c in train["audio_codes"]]
        result = dict(model="xtts", steps_wanted=steps, dtype="fp32" if device == "cpu" else "bf16 autocast",
                      setting=f"LoRA r{spec.r} on c_attn/c_proj/c_fc of {layers} GPT-2 blocks, batch {batch_size} "
                              f"pt-br clips ({min(codes)}-{max(codes)} DVAE codes), text vocab "
                              f"{config.model_args.gpt_number_text_tokens}",
                      params_compared=gpt_stack, params_note=f"whole Xtts {params:,} (GPT + HiFi-GAN + speaker encoder)",
                      trainable_expected=expected, problems=[])
        if trainable != expected:
            result["problems"].append(f"LoRA trainable {trainable:,} != layers x r x 16 x width = {expected:,}")
        before = snapshot_trainable(peft_model)
        timer = step_timer()
        trainer = train_xtts_steps(peft_model, xtts, dataset, recipe, out or str(work / "run"), device, steps,
                                   batch_size, timer)
        return finish(result, trainer, timer, peft_model, before, params, trainable, started)


# ----------------------------------------------------------------------------------------------------
# XTTS-v2 for a new language: vocabulary extension + LoRA (train_adapter.py's new_language path)
# ----------------------------------------------------------------------------------------------------

XTTS_NEW_LANGUAGE_CONFIG = "recipes/xtts/configs/ca_dialects_adapter.yaml"  # Catalan + dialect tags, XTTS-v2 base
XTTS_OLD_LANGUAGES = ["pt-br", "it"]  # demo rows of languages the base knows: the old-ids check encodes them


def run_xtts_extended(size: str = "real", device: str = "cpu", steps: int = 2, batch_size: int = 2,
                      out: str | None = None) -> dict:
    """XTTS-v2 taught Catalan as train_adapter.py does with `new_language: ca`: a base vocabulary without
    Catalan (built from the demo's pt-br/it text, padded to XTTS-v2's 6681 ids), `extend_for_new_language`
    (BPE tokens + [ca]/[ca_<dialect>] tags appended, old ids checked, text embedding/head grown from the
    source rows), LoRA with the grown text layers as modules_to_save, 2 steps on Catalan demo clips."""
    import dataclasses

    import yaml

    from recipes.xtts import data as xdata
    from recipes.xtts import modeling
    from recipes.xtts.text import base_language, xtts_tag
    from recipes.xtts.train_adapter import (XttsAdapterArguments, extend_for_new_language,
                                            row_languages, text_normalizers)

    started = time.perf_counter()
    recipe = yaml.safe_load((REPO / XTTS_NEW_LANGUAGE_CONFIG).read_text())
    fields = {f.name for f in dataclasses.fields(XttsAdapterArguments)}
    # The real config's settings; its data (Common Voice ca) replaced by the demo's Catalan + old-language rows.
    args = XttsAdapterArguments(**{**{k: v for k, v in recipe.items() if k in fields}, "dataset": "demo",
                                   "dialects": None, "languages": [recipe["language"], *XTTS_OLD_LANGUAGES]})
    new = base_language(args.new_language)
    data = xdata.load_splits("demo", language=args.language, languages=args.languages, validation_fraction=0.2,
                             seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        old_texts = [(t, xtts_tag(lang)) for s in data.values() for t, lang in zip(s["text"], s["language"])
                     if base_language(lang) != new]
        config, xtts, coder = xtts_base(size, work, old_texts)  # the base knows no Catalan
        base_dir = Path(xtts.tokenizer.vocab_file).parent
        base_text_tokens = xtts.gpt.text_embedding.weight.shape[0]
        xtts.tokenizer.normalizers.update(text_normalizers(row_languages(data, args.language), args.normalize_text))
        extension = extend_for_new_language(args, xtts, config, base_dir, data["train"], work)
        added = extension.vocab_size - extension.base_vocab_size
        params = sum(p.numel() for p in xtts.parameters())
        gpt_stack = sum(p.numel() for p in xtts.gpt.gpt.h.parameters())
        limits = xdata.Limits(max_audio_samples=int(args.max_audio_seconds * modeling.GPT_SAMPLE_RATE),
                              min_audio_samples=int(args.min_audio_seconds * modeling.GPT_SAMPLE_RATE),
                              max_text_tokens=args.max_text_tokens)
        dialect_tags = {f"{new}_{d.lower()}" for d in args.dialect_tags or []}
        catalan = data["train"].filter(lambda lang: base_language(lang) == new, input_columns="language")
        train, report = xdata.tokenize_and_filter(catalan, xtts.tokenizer, args.language, limits, "train",
                                                  dialect_tags)
        train = xdata.add_audio_codes(train, coder, limits, report, device=device, cache_key=f"smoke-ext-{size}")
        del coder
        cond = (int(args.min_conditioning_seconds * modeling.GPT_SAMPLE_RATE),
                int(args.max_conditioning_seconds * modeling.GPT_SAMPLE_RATE))
        dataset = xdata.XttsTrainingDataset(train, *cond)
        model = modeling.XttsAdapterModel(xtts, args.text_ce_weight, args.mel_ce_weight)
        spec = modeling.AdapterSpec(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                                    perceiver=args.perceiver_adapter)
        peft_model = modeling.add_lora(model, spec, base_model="random-xtts-v2").to(device)
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        layers, width = xtts.gpt.gpt.config.n_layer, xtts.gpt.gpt.config.n_embd
        lora = layers * args.lora_r * 16 * width  # c_attn, c_proj, c_fc, mlp.c_proj (as the xtts row)
        new_rows = added * (width + width + 1)  # embedding row + head row + head bias per new id
        tags = sorted(set(train["xtts_language"]))
        result = dict(model="xtts_extended", steps_wanted=steps, dtype="fp32" if device == "cpu" else "bf16 autocast",
                      setting=f"{XTTS_NEW_LANGUAGE_CONFIG.rsplit('/', 1)[1]}: text vocab {base_text_tokens} + "
                              f"{added} ({len(extension.added_tags)} tags, {len(extension.added_tokens)} BPE tokens; "
                              f"[UNK] {extension.unk_rate_before:.1%} -> {extension.unk_rate_after:.1%}, "
                              f"{extension.old_texts_checked} old-language texts unchanged), LoRA r{spec.r} + new "
                              f"text rows, batch {batch_size} of {len(train)} Catalan clips tagged {tags}",
                      params_compared=gpt_stack,
                      params_note=f"whole Xtts {params:,} with the grown text layers",
                      trainable_expected=lora + new_rows, text_tokens=[base_text_tokens, extension.vocab_size],
                      vocab_added=added, languages_trained=tags, problems=[])
        if trainable != lora + new_rows:
            result["problems"].append(f"trainable {trainable:,} != LoRA {lora:,} + {added} new ids x (2 x {width} + 1)"
                                      f" = {lora + new_rows:,}")
        if not any(t.startswith(f"{new}_") for t in tags):
            result["problems"].append(f"no dialect-tagged rows trained: {tags}")
        grown = {k: p for k, p in peft_model.named_parameters() if p.requires_grad and "new_" in k}
        if len(grown) != 3:
            result["problems"].append(f"trainable new text rows: {sorted(grown)} (want embedding, head weight, bias)")
        before = {**snapshot_trainable(peft_model), **{k: p.detach().clone() for k, p in grown.items()}}
        frozen_rows = xtts.gpt.text_embedding.modules_to_save["default"].base_weight.clone()
        timer = step_timer()
        trainer = train_xtts_steps(peft_model, xtts, dataset, recipe, out or str(work / "run"), device, steps,
                                   batch_size, timer)
        if not xtts.gpt.text_embedding.modules_to_save["default"].base_weight.equal(frozen_rows):
            result["problems"].append("the base rows of the text embedding changed (old languages must not move)")
        return finish(result, trainer, timer, peft_model, before, params, trainable, started)


# ----------------------------------------------------------------------------------------------------
# Pocket TTS: the 24-layer teacher, full fine-tune
# ----------------------------------------------------------------------------------------------------

POCKET_TEACHER = "english_2026-04_24l"  # pocket_tts/config/english_2026-04_24l.yaml, the base of configs/fr.yaml


def run_pocket(size: str = "real", device: str = "cpu", steps: int = 2, batch_size: int = 2,
               out: str | None = None) -> dict:
    import sentencepiece
    import torch
    import yaml

    from data_prep.demo_corpus import FIXTURE_DIR  # noqa: F401  (the corpus the rows come from)
    from recipes.pocket import modeling
    from recipes.pocket.data import PocketCollator, attach_prompt_candidates, load_recipe_dataset, text_options
    from recipes.pocket.finetune_multilingual import PocketTrainingArguments, make_callbacks, make_trainer_class
    from recipes.pocket.train_tokenizer import tokenizer_texts, train_tokenizer

    started = time.perf_counter()
    threads = torch.get_num_threads()
    recipe = yaml.safe_load((REPO / "recipes/pocket/configs/fr.yaml").read_text())
    base_name = recipe["base_model"] if size == "real" else modeling.TINY_MODEL_CONFIG
    data = load_recipe_dataset("demo", languages=recipe["languages"], seed=0)
    train, _ = attach_prompt_candidates(data["train"], recipe["max_duration_sec"])
    base = modeling.load_base_config(base_name)
    settings = text_options(base)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer = str(train_tokenizer(tokenizer_texts(train, False, settings), str(work / "tokenizer"),
                                        vocab_size=recipe["vocab_size"]))
        n_bins = sentencepiece.SentencePieceProcessor(model_file=tokenizer).vocab_size()
        torch.manual_seed(0)
        tts = modeling.build_tts_model(modeling.with_tokenizer(base, tokenizer, n_bins), pretrained_weights=None)
        torch.set_num_threads(threads)
        model = modeling.PocketTTSForTraining(
            tts, flow_batch_multiplier=recipe["flow_batch_multiplier"], eos_weight=recipe["eos_weight"],
            text_dropout=recipe["text_dropout"], voice_dropout=recipe["voice_dropout"],
            stats_ema_decay=recipe["stats_ema_decay"], stats_ema_steps=recipe["stats_ema_steps"], seed=0).to(device)
        flow_params = sum(p.numel() for p in model.flow_lm.parameters())
        lut_width = model.flow_lm.conditioner.embed.embedding_dim
        at_published_vocab = flow_params + (recipe["vocab_size"] - n_bins) * lut_width
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        layers = len(model.flow_lm.transformer.layers)
        result = dict(model="pocket", steps_wanted=steps, dtype="fp32" if device == "cpu" else "bf16 autocast",
                      setting=f"{base_name if size == 'real' else 'tiny'} ({layers} layers) full fine-tune of the flow LM, "
                              f"batch {batch_size} fr demo clips + other-clip voice prompts, LSD x"
                              f"{recipe['flow_batch_multiplier']} + EOS, weight EMA; our tokenizer has {n_bins} pieces "
                              f"(compared at {recipe['vocab_size']})",
                      params_compared=at_published_vocab,
                      params_note=f"flow LM {flow_params:,} at {n_bins} pieces; frozen Mimi "
                                  f"{sum(p.numel() for p in model.mimi.parameters()):,}",
                      problems=[])
        ema = modeling.WeightEMA(model.flow_lm, recipe["ema_decay"])
        before = snapshot_trainable(model)
        timer = step_timer()
        args = PocketTrainingArguments(**common_training_kwargs(out or str(work / "run"), device, steps),
                                       per_device_train_batch_size=batch_size, learning_rate=recipe["learning_rate"],
                                       warmup_steps=0, lr_scheduler_type="constant")
        collator = PocketCollator(train, tokenizer, frame_size=model.frame_size,
                                  max_prompt_seconds=recipe["max_prompt_seconds"], seed=0, text_options=settings)
        trainer = make_trainer_class()(model=model, args=args, train_dataset=train, data_collator=collator,
                                       callbacks=[*make_callbacks(ema, lambda *a: None), timer])
        trainer.train()
        if ema.updates != steps:
            result["problems"].append(f"weight EMA updated {ema.updates} times in {steps} steps")
        return finish(result, trainer, timer, model, before, params, trainable, started)


# ----------------------------------------------------------------------------------------------------
# Pocket TTS: the 6-layer student distilled from the 24-layer teacher (distill.py)
# ----------------------------------------------------------------------------------------------------

POCKET_DISTILL_CONFIG = "recipes/pocket/configs/distill_fr.yaml"  # student = teacher layers [0,1,2,21,22,23]


def run_pocket_student(size: str = "real", device: str = "cpu", steps: int = 2, batch_size: int = 2,
                       out: str | None = None) -> dict:
    """distill.py on a random teacher: the 24-layer teacher built as the `pocket` row builds it (fr.yaml's
    base), `make_student` with distill_fr.yaml's layers, the recipe's distillation model (frozen teacher, CFG
    target, frozen flow/EOS heads), Trainer, collator (full-length prompts), cosine lr and weight EMA."""
    import sentencepiece
    import torch
    import yaml

    from recipes.pocket import modeling
    from recipes.pocket.data import PocketCollator, attach_prompt_candidates, load_recipe_dataset, text_options
    from recipes.pocket.distill import (DistillArguments, DistillTrainingArguments, make_distillation_model_class,
                                        make_student)
    from recipes.pocket.finetune_multilingual import make_callbacks, make_trainer_class
    from recipes.pocket.train_tokenizer import tokenizer_texts, train_tokenizer

    started = time.perf_counter()
    threads = torch.get_num_threads()
    teacher_recipe = yaml.safe_load((REPO / "recipes/pocket/configs/fr.yaml").read_text())
    recipe = yaml.safe_load((REPO / (POCKET_DISTILL_CONFIG if size == "real" else
                                     "recipes/pocket/configs/distill_demo.yaml")).read_text())
    distill = DistillArguments(student_layers=recipe["student_layers"], distill_cfg_coef=recipe["distill_cfg_coef"],
                               max_prompt_seconds=recipe["max_prompt_seconds"], ema_decay=recipe["ema_decay"])
    base_name = teacher_recipe["base_model"] if size == "real" else modeling.TINY_MODEL_CONFIG
    data = load_recipe_dataset("demo", languages=recipe["languages"], seed=0)
    train, _ = attach_prompt_candidates(data["train"], distill.max_duration_sec)
    base = modeling.load_base_config(base_name)
    settings = text_options(base)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer = str(train_tokenizer(tokenizer_texts(train, False, settings), str(work / "tokenizer"),
                                        vocab_size=teacher_recipe["vocab_size"]))
        n_bins = sentencepiece.SentencePieceProcessor(model_file=tokenizer).vocab_size()
        torch.manual_seed(0)
        teacher = modeling.build_tts_model(modeling.with_tokenizer(base, tokenizer, n_bins), pretrained_weights=None)
        student = make_student(teacher, distill.student_layers)
        model = make_distillation_model_class()(student, teacher, cfg_coef=distill.distill_cfg_coef).to(device)
        torch.set_num_threads(threads)
        teacher_layers = len(teacher.flow_lm.transformer.layers)
        student_layers = len(student.flow_lm.transformer.layers)
        per_layer = sum(p.numel() for p in teacher.flow_lm.transformer.layers[0].parameters())
        teacher_params = sum(p.numel() for p in teacher.flow_lm.parameters())
        student_params = sum(p.numel() for p in model.flow_lm.parameters())
        lut_width = model.flow_lm.conditioner.embed.embedding_dim
        at_published_vocab = student_params + (teacher_recipe["vocab_size"] - n_bins) * lut_width
        heads = sum(p.numel() for h in (model.flow_lm.flow_net, model.flow_lm.out_eos) for p in h.parameters())
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        result = dict(model="pocket_student", steps_wanted=steps, dtype="fp32" if device == "cpu" else "bf16 autocast",
                      setting=f"{student_layers}-layer student (teacher layers {distill.student_layers} of "
                              f"{teacher_layers}, {base_name if size == 'real' else 'tiny'}) distilled with CFG "
                              f"x{distill.distill_cfg_coef} targets, flow/EOS heads frozen, batch {batch_size} "
                              f"{'/'.join(recipe['languages'])} demo clips + full-length voice prompts, weight EMA",
                      params_compared=at_published_vocab,
                      params_note=f"student flow LM {student_params:,} at {n_bins} pieces = teacher {teacher_params:,} "
                                  f"- {teacher_layers - student_layers} x {per_layer:,} per layer; frozen heads "
                                  f"{heads:,}",
                      teacher_params=teacher_params, student_params=student_params,
                      layers=[teacher_layers, student_layers], per_layer_params=per_layer,
                      trainable_expected=student_params - heads, problems=[])
        if student_layers != len(distill.student_layers):
            result["problems"].append(f"student has {student_layers} layers, wanted {len(distill.student_layers)}")
        if student_params != teacher_params - (teacher_layers - student_layers) * per_layer:
            result["problems"].append(f"student {student_params:,} != teacher {teacher_params:,} - "
                                      f"{teacher_layers - student_layers} x {per_layer:,}")
        if size == "real" and per_layer != POCKET_LAYER_PARAMS:
            result["problems"].append(f"a teacher layer has {per_layer:,} parameters, the published size assumes "
                                      f"{POCKET_LAYER_PARAMS:,}")
        if trainable != student_params - heads:
            result["problems"].append(f"trainable {trainable:,} != student flow LM - frozen heads = "
                                      f"{student_params - heads:,}")
        ema = modeling.WeightEMA(model.flow_lm, distill.ema_decay)
        before = snapshot_trainable(model)
        teacher_before = {k: v.detach().clone() for k, v in list(teacher.flow_lm.named_parameters())[::40]}
        timer = step_timer()
        args = DistillTrainingArguments(**common_training_kwargs(out or str(work / "run"), device, steps),
                                        per_device_train_batch_size=batch_size, learning_rate=recipe["learning_rate"],
                                        lr_scheduler_type=recipe["lr_scheduler_type"], warmup_steps=0)
        collator = PocketCollator(train, tokenizer, frame_size=model.frame_size,
                                  max_prompt_seconds=distill.max_prompt_seconds, seed=0, text_options=settings,
                                  trim=distill.trim)
        trainer = make_trainer_class()(model=model, args=args, train_dataset=train, data_collator=collator,
                                       callbacks=[*make_callbacks(ema, lambda *a: None, tokenizer), timer])
        trainer.train()
        if ema.updates != steps:
            result["problems"].append(f"weight EMA updated {ema.updates} times in {steps} steps")
        teacher_now = dict(teacher.flow_lm.named_parameters())
        moved = [k for k, v in teacher_before.items() if not teacher_now[k].detach().equal(v)]
        if moved:
            result["problems"].append(f"the frozen teacher changed: {moved[:3]}")
        return finish(result, trainer, timer, model, before, params, trainable, started)


RUNNERS = {"orpheus": run_orpheus, "f5": run_f5, "xtts": run_xtts, "pocket": run_pocket,
           "xtts_extended": run_xtts_extended, "pocket_student": run_pocket_student}


# ----------------------------------------------------------------------------------------------------
# driver: one process per model, table
# ----------------------------------------------------------------------------------------------------

def check_size(result: dict, size: str) -> dict:
    published = PUBLISHED[result["model"]]
    compared = result.get("params_compared", result["params"])
    result["published"] = published["params"]
    result["published_source"] = published["source"]
    result["size_ratio"] = compared / published["params"]
    if size == "real" and abs(result["size_ratio"] - 1) > published["tolerance"]:
        result["problems"].append(f"{compared:,} parameters vs published {published['params']:,.0f} "
                                  f"(off by {100 * (result['size_ratio'] - 1):+.2f} %, tolerance "
                                  f"{100 * published['tolerance']:.0f} %)")
    return result


def child_main(model: str, size: str, device: str, result_path: str, options: dict) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    kwargs = {k: v for k, v in options.items() if v is not None}
    result = RUNNERS[model](size=size, device=device, **kwargs)
    result = check_size(result, size)
    result["peak_rss_gb"] = peak_rss_gb()
    if device == "cuda":
        result["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1024 ** 3
    Path(result_path).write_text(json.dumps(result, indent=1, default=str))


def fmt_count(n: float) -> str:
    return f"{n / 1e9:.3f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def markdown_table(results: list[dict], header: str) -> str:
    lines = [header, "",
             "| model | params (compared) | published | trainable | peak RSS | s/step | steps, loss | setting | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            last = [line.strip() for line in r["error"].splitlines() if line.strip()][-1:] or ["(no output)"]
            lines.append(f"| {r['model']} | | | | | | | | FAILED: {last[0][:300].replace('|', '/')} |")
            continue
        loss = ", ".join(f"{x:.3f}" for x in r["losses"])
        status = "ok" if not r["problems"] else "; ".join(r["problems"])
        trainable = fmt_count(r["trainable"]) + (f" (expected {fmt_count(r['trainable_expected'])})"
                                                 if "trainable_expected" in r else "")
        compared = fmt_count(r.get("params_compared", r["params"]))
        lines.append(f"| {r['model']} | {compared} ({100 * (r['size_ratio'] - 1):+.2f} %) | "
                     f"{fmt_count(r['published'])} | {trainable} | {r['peak_rss_gb']:.1f} GB | {r['s_per_step']:.1f} | "
                     f"{r['steps']}: {loss} | {r['setting']}; {r['dtype']} | {status} |")
    lines += ["", "Published sizes:"] + [f"- {r['model']}: {r['published_source']}" + (
        f"; {r['params_note']}" if r.get("params_note") else "") for r in results if "published_source" in r]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--size", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--orpheus_tokens", type=int, default=None,
                        help=f"tokens in the packed Orpheus row (default {ORPHEUS_TOKENS}; 256 with --size tiny)")
    parser.add_argument("--orpheus_dtype", choices=["bfloat16", "float32"], default=None,
                        help="Orpheus base weights (default: bfloat16 on GPU, float32 on CPU; see ORPHEUS_TOKENS)")
    parser.add_argument("--f5_frames", type=int, default=None, help="frame budget of the F5 batch (default 600)")
    parser.add_argument("--out", default="outputs/real_size")
    parser.add_argument("--memory_wait_minutes", type=float, default=10.0)
    parser.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.orpheus_tokens is None:
        args.orpheus_tokens = ORPHEUS_TOKENS if args.size == "real" else 256
    options = {"orpheus": {"tokens": args.orpheus_tokens, "dtype": args.orpheus_dtype}, "f5": {"frames": args.f5_frames}}
    if args.child:
        child_main(args.child, args.size, args.device, args.result,
                   {"steps": args.steps, **options.get(args.child, {})})
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for model in args.models:  # one at a time: the big ones must never overlap
        if args.size == "real" and args.device == "cpu":
            wait_for_memory(REAL_SIZE_NEED_GB[model] + 3, args.memory_wait_minutes, model)
        result_path = out / f"{model}.json"
        result_path.unlink(missing_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--child", model, "--result", str(result_path),
                   "--size", args.size, "--device", args.device, "--steps", str(args.steps)]
        for flag, value in (("--orpheus_tokens", args.orpheus_tokens), ("--orpheus_dtype", args.orpheus_dtype),
                            ("--f5_frames", args.f5_frames)):
            if value is not None:
                command += [flag, str(value)]
        print(f"[{model}] {' '.join(command[2:])}", flush=True)
        started = time.perf_counter()
        # A fixed glibc mmap threshold: buffers over 1 MB are mapped and unmapped, not carved from the heap. With
        # the default (dynamic, up to 32 MB) the 12.6 MB fp32 activations of the recomputed Orpheus layers
        # fragmented the heap by ~0.4 GB per layer (measured: 6 layers 10.0 GB peak vs 7.5 GB with the threshold),
        # and the 28-layer step was OOM-killed at 19.7 GB.
        env = {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_MMAP_THRESHOLD_": "1048576"}
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not result_path.is_file():
            results.append({"model": model, "error": (proc.stderr or proc.stdout)[-2000:]})
            print(f"[{model}] FAILED\n{(proc.stderr or proc.stdout)[-4000:]}", flush=True)
            continue
        result = json.loads(result_path.read_text())
        result["wall_seconds"] = time.perf_counter() - started
        results.append(result)
        print(f"[{model}] {fmt_count(result.get('params_compared', result['params']))} params, "
              f"{fmt_count(result['trainable'])} trainable, peak RSS {result['peak_rss_gb']:.1f} GB, "
              f"{result['s_per_step']:.1f} s/step, losses {result['losses']}, wall {result['wall_seconds']:.0f} s"
              + (f"  PROBLEMS: {result['problems']}" if result["problems"] else ""), flush=True)
    import platform

    import torch

    header = (f"# Real-size smoke ({args.size}, {args.device})\n\nMachine: {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"{args.steps} optimizer steps per model; random weights from the real configs.")
    (out / "results.md").write_text(markdown_table(results, header))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {out / 'results.md'}")
    failed = [r["model"] for r in results if "error" in r or r["problems"]]
    if failed:
        print(f"FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
