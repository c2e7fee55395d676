"""The one GPU check: run it first on any GPU you rent (sized for <= 8 min on one H100/H200; no network needed).

    python benchmarks/gpu_check.py            # or `make gpu-check`; writes outputs/gpu_check/results.{json,md}
    python benchmarks/gpu_check.py --tiny     # the same script on CPU with tiny models (the test suite runs it)

Random weights from the real configs (no download), each part measured against its baseline in the same run:
1. Orpheus-3B full fine-tune step, bf16 autocast over fp32 master weights, AdamW: tokens/s, MFU and peak
   memory for padded vs packed (padding-free) batches, with sdpa and, when importable, flash-attention-2.
   MFU = (6 x params x tokens + attention FLOPs) / seconds / peak, peak dense bf16 989 TFLOP/s (H100 SXM / H200);
   attention FLOPs = 12 x layers x heads x head_dim x sum(utterance length^2) (tokens attend only within
   their utterance). Only real tokens count, so padding is paid for, not credited.
2. The same model through accelerate_configs/fsdp2.yaml launched on 1 GPU with the recipe's OrpheusTrainer.
3. QLoRA: the recipe's 4-bit loader + LoRA (all 7 projections) step, when bitsandbytes is importable.
4. SNAC 24 kHz (real size) encoding: batched vs one clip at a time, in x real time.
5. F5-TTS Base: our F5Trainer vs upstream f5_tts Trainer, same data and frame budget, frames/s
   (benchmarks/f5_throughput.py).
6. XTTS-v2 LoRA step and Pocket 24-layer teacher step (benchmarks/real_size_smoke.py runners): s/step, peak memory.
Anything missing (flash-attn, bitsandbytes, a second part failing) is recorded with its reason and the rest runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                      ("TOKENIZERS_PARALLELISM", "false"), ("WANDB_MODE", "disabled")):
    os.environ.setdefault(_name, _value)
os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "mplconfig"))

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "B200": 2250.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10": 125.0, "4090": 165.0}


class Skip(Exception):
    """A part that cannot run here (missing package or device): recorded with its reason."""


def device_info(tiny: bool) -> dict:
    import torch

    if torch.cuda.is_available() and not tiny:
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        return {"device": "cuda", "name": name, "peak_tflops": peak,
                "memory_gb": torch.cuda.get_device_properties(0).total_memory / 1024 ** 3}
    return {"device": "cpu", "name": f"CPU ({os.cpu_count()} cores)", "peak_tflops": None, "memory_gb": None}


def reset_peak():
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 1024 ** 3
    from real_size_smoke import peak_rss_gb

    return peak_rss_gb()  # CPU: the process high-water mark (not per part)


def sync(device: str):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------------
# 1. Orpheus-3B full fine-tune: packed vs padded, sdpa vs flash-attention-2
# ----------------------------------------------------------------------------------------------------

def orpheus_rows(n: int, tiny: bool) -> list[dict]:
    from orpheus_throughput import synthetic_rows

    # Real-length rows: ~20 prompt tokens + 82 audio tokens/s, 1-12 s (tiny: 1-3 s).
    return synthetic_rows(n, 1.0, 3.0 if tiny else 12.0, seed=0)


def attention_flops(config, batch: dict) -> float:
    """12 x layers x (heads x head_dim) x sum(len^2) over the utterances of the batch (real tokens only)."""
    width = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    if "position_ids" in batch:  # packed: utterances restart their positions at 0
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["position_ids"].shape[1]]
        lengths = [b - a for a, b in zip(starts, starts[1:])]
    else:
        lengths = batch["attention_mask"].sum(dim=1).tolist()
    return 12.0 * config.num_hidden_layers * width * float(sum(n * n for n in lengths))


def orpheus_train_variant(model, rows, batch_size: int, packing: bool, steps: int, warmup: int, device: str,
                          peak_tflops: float | None) -> dict:
    import torch

    from recipes.orpheus.training import OrpheusCollator, orpheus_loss

    collator = OrpheusCollator(packing=packing)
    # fp32 master weights: the model is fp32, autocast runs the matmuls in bf16, AdamW updates fp32.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device == "cuda")
    batches = [collator(rows[i:i + batch_size]) for i in range(0, len(rows) - batch_size + 1, batch_size)]
    n_params = sum(p.numel() for p in model.parameters())
    tokens, slots, flops, elapsed = 0, 0, 0.0, 0.0
    reset_peak()
    for step in range(warmup + steps):
        batch = {k: v.to(device) for k, v in batches[step % len(batches)].items()}
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = orpheus_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step >= warmup:
            elapsed += time.perf_counter() - start
            real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
            tokens += real
            slots += batch["input_ids"].numel()
            flops += 6.0 * n_params * real + attention_flops(model.config, batch)
    del optimizer
    result = {"tokens_per_s": tokens / elapsed, "s_per_step": elapsed / steps, "padding_fraction": 1 - tokens / slots,
              "tokens_per_step": tokens / steps, "model_tflops_per_s": flops / elapsed / 1e12,
              "peak_memory_gb": peak_gb(device), "loss": loss.item()}
    if peak_tflops:
        result["mfu"] = flops / elapsed / (peak_tflops * 1e12)
    return result


def part_orpheus_full(ctx) -> dict:
    import torch

    from real_size_smoke import build_orpheus

    size = "tiny" if ctx.tiny else "real"
    rows = orpheus_rows(ctx.orpheus_rows_per_step * (ctx.steps + 2), ctx.tiny)
    implementations = ["sdpa"]
    skipped = {}
    if ctx.device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        implementations.append("flash_attention_2")
    else:
        skipped["flash_attention_2"] = "flash_attn not importable" if ctx.device == "cuda" else "needs CUDA"
    results = {}
    for implementation in implementations:
        reset_peak()
        model = build_orpheus(size, torch.float32, ctx.device, attn_implementation=implementation)
        checkpointing = ctx.device == "cuda" and (ctx.info["memory_gb"] or 0) < 100
        if checkpointing:  # 80 GB cards: weights + grads + AdamW alone are ~53 GB
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        for packing in (False, True):
            name = f"{implementation}, {'packed' if packing else 'padded'}"
            results[name] = orpheus_train_variant(model, rows, ctx.orpheus_rows_per_step, packing, ctx.steps, 1,
                                                  ctx.device, ctx.info["peak_tflops"])
            results[name]["activation_checkpointing"] = checkpointing
        del model
    params = sum(p.numel() for p in build_orpheus(size, torch.float32, "meta").parameters())
    return {"params": params, "rows_per_step": ctx.orpheus_rows_per_step, "variants": results, "skipped": skipped}


# ----------------------------------------------------------------------------------------------------
# 2. FSDP2 config on 1 GPU (accelerate launch), recipe Trainer
# ----------------------------------------------------------------------------------------------------

def fsdp_child(out: str, tiny: bool, steps: int, rows_per_step: int) -> None:
    """Runs under `accelerate launch --config_file accelerate_configs/fsdp2.yaml`: OrpheusTrainer on Orpheus-3B."""
    import torch
    from datasets import Dataset

    from real_size_smoke import build_orpheus, step_timer
    from recipes.orpheus.pretrain_dialects import OrpheusTrainingArguments
    from recipes.orpheus.training import OrpheusCollator, OrpheusTrainer

    cuda = torch.cuda.is_available() and not tiny
    model = build_orpheus("tiny" if tiny else "real", torch.float32, "cpu")
    rows = orpheus_rows(rows_per_step * (steps + 1), tiny)
    timer = step_timer()
    with tempfile.TemporaryDirectory() as tmp:
        args = OrpheusTrainingArguments(output_dir=tmp, max_steps=steps + 1, per_device_train_batch_size=rows_per_step,
                                        bf16=cuda, use_cpu=not cuda, report_to="none", save_strategy="no",
                                        eval_strategy="no", logging_steps=1, disable_tqdm=True,
                                        lr_scheduler_type="constant", warmup_steps=0)
        trainer = OrpheusTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 data_collator=OrpheusCollator(packing=True), callbacks=[timer])
        trainer.train()
    times = timer.times[1:] or timer.times  # the first step includes sharding and warm-up
    tokens = sum(len(r["input_ids"]) for r in rows[:rows_per_step])
    result = {"distributed_type": str(trainer.accelerator.distributed_type), "fsdp_version":
              getattr(getattr(trainer.accelerator.state, "fsdp_plugin", None), "fsdp_version", None),
              "s_per_step": sum(times) / len(times), "tokens_per_s_approx": tokens / (sum(times) / len(times)),
              "peak_memory_gb": peak_gb("cuda" if cuda else "cpu"),
              "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}
    if trainer.is_world_process_zero():
        Path(out).write_text(json.dumps(result))


def part_fsdp2(ctx) -> dict:
    out = Path(ctx.work) / "fsdp2.json"
    common = ["--fsdp_child", str(out), "--steps", str(ctx.steps), "--orpheus_rows_per_step",
              str(ctx.orpheus_rows_per_step)] + (["--tiny"] if ctx.tiny else [])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if ctx.device == "cuda":
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(REPO / "accelerate_configs/fsdp2.yaml"), "--num_processes", "1", str(Path(__file__).resolve()),
                   *common]
        note = "accelerate_configs/fsdp2.yaml, --num_processes 1"
    else:  # FSDP needs CUDA: keep the child's code path alive, in this process
        fsdp_child(str(out), ctx.tiny, ctx.steps, ctx.orpheus_rows_per_step)
        return {**json.loads(out.read_text()),
                "launch": "FSDP2 needs CUDA: the same Trainer code ran here without FSDP (code path only)"}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=ctx.part_timeout)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-3000:]}")
    return {**json.loads(out.read_text()), "launch": note}


# ----------------------------------------------------------------------------------------------------
# 3. QLoRA 4-bit step
# ----------------------------------------------------------------------------------------------------

def part_qlora(ctx) -> dict:
    import torch
    from datasets import Dataset
    from peft import get_peft_model, prepare_model_for_kbit_training

    if ctx.device != "cuda":
        raise Skip("QLoRA (bitsandbytes 4-bit) needs CUDA")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise Skip("bitsandbytes not importable (pip install -r requirements-gpu.txt)")
    from real_size_smoke import build_orpheus, step_timer
    from recipes.orpheus.build_tiny import build_tiny_tokenizer, demo_texts
    from recipes.orpheus.finetune_voice_lora import VoiceLoraArguments, load_base, lora_config
    from recipes.orpheus.pretrain_dialects import OrpheusTrainingArguments
    from recipes.orpheus.training import OrpheusCollator, OrpheusTrainer

    folder = Path(ctx.work) / "orpheus_random_bf16"
    model = build_orpheus("real", torch.bfloat16, "cuda")
    model.save_pretrained(folder)
    build_tiny_tokenizer(demo_texts()).save_pretrained(folder)
    del model
    reset_peak()
    args = VoiceLoraArguments(model_name_or_path=str(folder), speakers=["check"], load_in_4bit=True, lora_target="all",
                              lora_r=16, lora_alpha=32, lora_dropout=0.05, attn_implementation="sdpa")
    model, tokenizer = load_base(args, True)  # the recipe's loader: NF4, double quant, bf16 compute
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, lora_config(args))
    rows = orpheus_rows(ctx.orpheus_rows_per_step * (ctx.steps + 1), False)
    timer = step_timer()
    with tempfile.TemporaryDirectory() as tmp:
        training_args = OrpheusTrainingArguments(
            output_dir=tmp, max_steps=ctx.steps + 1, per_device_train_batch_size=ctx.orpheus_rows_per_step, bf16=True,
            report_to="none", save_strategy="no", eval_strategy="no", logging_steps=1, disable_tqdm=True,
            activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False})
        trainer = OrpheusTrainer(model=model, args=training_args, train_dataset=Dataset.from_list(rows),
                                 data_collator=OrpheusCollator(packing=True), processing_class=tokenizer,
                                 callbacks=[timer])
        trainer.train()
    times = timer.times[1:]
    tokens = sum(len(r["input_ids"]) for r in rows[:ctx.orpheus_rows_per_step])
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "s_per_step": sum(times) / len(times), "tokens_per_s_approx": tokens * len(times) / sum(times),
            "peak_memory_gb": peak_gb("cuda"), "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}


# ----------------------------------------------------------------------------------------------------
# 4. SNAC encode, 5. F5 trainers, 6. XTTS / Pocket steps
# ----------------------------------------------------------------------------------------------------

def part_snac(ctx) -> dict:
    import numpy as np
    import torch
    from snac import SNAC

    from orpheus_throughput import snac_throughput
    from recipes.orpheus.build_tiny import SNAC_24KHZ_CONFIG

    torch.manual_seed(0)
    snac = SNAC(**SNAC_24KHZ_CONFIG).eval().to(ctx.device)
    rng = np.random.default_rng(1)
    n, longest, batch = (4, 2.0, 2) if ctx.tiny else (64, 12.0, 16)
    waves = [(0.1 * rng.standard_normal(int(rng.uniform(1.0, longest) * 24000))).astype(np.float32) for _ in range(n)]
    single = snac_throughput(snac, waves, 1)
    batched = snac_throughput(snac, waves, batch)
    return {"clips": n, "audio_seconds": sum(len(w) for w in waves) / 24000, "batch_size": batch,
            "x_real_time_one_at_a_time": single, "x_real_time_batched": batched, "ratio": batched / single}


def part_f5(ctx) -> dict:
    from f5_throughput import main as f5_main

    argv = (["--model_config", "tiny", "--frames_per_gpu", "1200", "--max_samples", "8", "--epochs", "1",
             "--repeats", "1", "--no_warmup", "--device", "cpu"] if ctx.tiny else
            ["--model_config", "F5TTS_Base", "--frames_per_gpu", "9600", "--max_samples", "64", "--epochs", "4",
             "--repeats", "1", "--bf16", "--workers", "4", "--device", "cuda"])
    result = f5_main(argv)
    if not result or result.get("ratio_ours_over_upstream") is None:
        raise RuntimeError(f"one of the trainers did not run (see the log above): {result}")
    return {**result, "argv": " ".join(argv)}


def part_xtts(ctx) -> dict:
    from real_size_smoke import run_xtts

    reset_peak()
    result = run_xtts(size="tiny" if ctx.tiny else "real", device=ctx.device, steps=ctx.steps, batch_size=2)
    return {k: result[k] for k in ("params", "trainable", "s_per_step", "step_seconds", "losses", "problems",
                                   "setting")} | {"peak_memory_gb": peak_gb(ctx.device)}


def part_pocket(ctx) -> dict:
    from real_size_smoke import run_pocket

    reset_peak()
    result = run_pocket(size="tiny" if ctx.tiny else "real", device=ctx.device, steps=ctx.steps, batch_size=2)
    return {k: result[k] for k in ("params", "trainable", "s_per_step", "step_seconds", "losses", "problems",
                                   "setting")} | {"peak_memory_gb": peak_gb(ctx.device)}


PARTS = {"orpheus_full_ft": part_orpheus_full, "fsdp2": part_fsdp2, "snac": part_snac, "qlora": part_qlora,
         "f5": part_f5, "xtts_lora": part_xtts, "pocket_teacher": part_pocket}


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------

def _num(value, fmt="{:,.1f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else "-"


def markdown(report: dict) -> str:
    info = report["device"]
    lines = [f"# GPU check ({'tiny, CPU' if report['tiny'] else info['name']})", "",
             f"{info['name']}; torch {report['torch']}; peak dense bf16 {_num(info['peak_tflops'])} TFLOP/s; "
             f"total {report['seconds']:.0f} s. Random weights from the real configs.", ""]
    parts = report["parts"]
    for name, part in parts.items():
        if part.get("status") != "ok":
            lines.append(f"- **{name}**: {part.get('status')}: {part.get('reason', '')[:400]}")
    orpheus = parts.get("orpheus_full_ft", {})
    if orpheus.get("status") == "ok":
        lines += ["", f"## Orpheus full fine-tune ({orpheus['params'] / 1e9:.2f} B params, fp32 master weights, bf16 "
                  f"autocast, AdamW, {orpheus['rows_per_step']} rows/step)", "",
                  "| attention, batching | tokens/s | tokens/step | padding | MFU | s/step | peak memory GB |",
                  "|---|---|---|---|---|---|---|"]
        for variant, r in orpheus["variants"].items():
            lines.append(f"| {variant} | {_num(r['tokens_per_s'], '{:,.0f}')} | {_num(r['tokens_per_step'], '{:,.0f}')} | "
                         f"{100 * r['padding_fraction']:.0f} % | {_num(r.get('mfu'), '{:.1%}')} | "
                         f"{_num(r['s_per_step'], '{:.3f}')} | {_num(r['peak_memory_gb'])} |")
        for variant, why in orpheus["skipped"].items():
            lines.append(f"| {variant} | skipped: {why} | | | | | |")
    rows = []
    if parts.get("fsdp2", {}).get("status") == "ok":
        r = parts["fsdp2"]
        rows.append(f"| Orpheus FSDP2 ({r['launch']}) | {_num(r['s_per_step'], '{:.3f}')} s/step, "
                    f"~{_num(r['tokens_per_s_approx'], '{:,.0f}')} tokens/s | {_num(r['peak_memory_gb'])} |")
    if parts.get("qlora", {}).get("status") == "ok":
        r = parts["qlora"]
        rows.append(f"| Orpheus QLoRA 4-bit, LoRA r16 x 7 projections | {_num(r['s_per_step'], '{:.3f}')} s/step, "
                    f"~{_num(r['tokens_per_s_approx'], '{:,.0f}')} tokens/s | {_num(r['peak_memory_gb'])} |")
    if parts.get("snac", {}).get("status") == "ok":
        r = parts["snac"]
        rows.append(f"| SNAC encode, {r['clips']} clips / {r['audio_seconds']:.0f} s | one at a time "
                    f"{r['x_real_time_one_at_a_time']:,.2f}x real time, batches of {r['batch_size']} "
                    f"{r['x_real_time_batched']:,.2f}x ({r['ratio']:.2f}x) | - |")
    if parts.get("f5", {}).get("status") == "ok":
        r = parts["f5"]
        speeds = ", ".join(f"{k}: {v:,.0f}" for k, v in r["frames_per_s"].items())
        rows.append(f"| F5 trainers, frames/s ({r['argv']}) | {speeds}; ours/upstream "
                    f"{r['ratio_ours_over_upstream']:.2f}x | - |")
    for name, label in (("xtts_lora", "XTTS-v2 LoRA step"), ("pocket_teacher", "Pocket 24L teacher step")):
        if parts.get(name, {}).get("status") == "ok":
            r = parts[name]
            rows.append(f"| {label} ({r['setting']}) | {_num(r['s_per_step'], '{:.3f}')} s/step | "
                        f"{_num(r['peak_memory_gb'])} |")
    if rows:
        lines += ["", "## Other parts", "", "| part | result | peak memory GB |", "|---|---|---|", *rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU (seconds; what the test suite runs)")
    parser.add_argument("--out", default="outputs/gpu_check")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 5; tiny 2)")
    parser.add_argument("--orpheus_rows_per_step", type=int, default=None,
                        help="utterances per step (default 8, as catalan_dialects.yaml; tiny 2)")
    parser.add_argument("--budget_s", type=float, default=None,
                        help="skip the parts left after this many seconds (default 450 on a GPU; --tiny: no limit, "
                             "every part must run)")
    parser.add_argument("--fsdp_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.tiny else 5)
    args.budget_s = args.budget_s or (float("inf") if args.tiny else 450.0)
    args.orpheus_rows_per_step = args.orpheus_rows_per_step or (2 if args.tiny else 8)
    if args.fsdp_child:
        fsdp_child(args.fsdp_child, args.tiny, args.steps, args.orpheus_rows_per_step)
        return 0

    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = device_info(args.tiny)
    if info["device"] == "cpu" and not args.tiny:
        print("No CUDA GPU here: running the --tiny version (tiny models on CPU) instead.")
        args.tiny, args.budget_s = True, float("inf")
    work = tempfile.mkdtemp(prefix="gpu-check-")
    ctx = argparse.Namespace(**vars(args), info=info, device=info["device"], work=work,
                             part_timeout=300 if not args.tiny else 600)
    report = {"tiny": args.tiny, "device": info, "torch": torch.__version__, "parts": {}}
    started = time.perf_counter()
    for name in args.parts:
        if time.perf_counter() - started > args.budget_s:
            report["parts"][name] = {"status": "skipped", "reason": f"time budget {args.budget_s:.0f} s used up",
                                     "seconds": 0.0}
            continue
        print(f"\n=== {name} ===", flush=True)
        part_start = time.perf_counter()
        try:
            result = PARTS[name](ctx)
            report["parts"][name] = {"status": "ok", **result}
        except Skip as why:
            report["parts"][name] = {"status": "skipped", "reason": str(why)}
        except Exception as err:  # one broken part must not hide the others' numbers
            report["parts"][name] = {"status": "failed", "reason": f"{type(err).__name__}: {err}",
                                     "traceback": traceback.format_exc()[-3000:]}
        report["parts"][name]["seconds"] = time.perf_counter() - part_start
        print(f"{name}: {report['parts'][name]['status']} ({report['parts'][name]['seconds']:.0f} s) "
              f"{report['parts'][name].get('reason', '')[:300]}", flush=True)
        reset_peak()
    report["seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "results.md").write_text(markdown(report))
    print("\n" + markdown(report))
    print(f"wrote {out / 'results.md'} and results.json")
    failed = [k for k, v in report["parts"].items() if v["status"] == "failed"]
    if failed:
        print(f"FAILED parts: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
