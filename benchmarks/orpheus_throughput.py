"""Orpheus throughput: packed vs padded training steps, and batched vs one-at-a-time SNAC encoding.

    python benchmarks/orpheus_throughput.py                 # CPU: tiny Llama with the Orpheus vocab
    python benchmarks/orpheus_throughput.py --model real    # GPU: the Llama-3.2-3B/Orpheus config, random bf16 weights

Both halves measure the alternative and its baseline in the same run on the same data and print the
ratio. Training counts only real (non-padding) tokens, so padded batches pay for their padding; on
GPU the model FLOPs utilisation (6 x params x tokens/s over the bf16 dense peak) is printed as well.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from recipes.orpheus import layout

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}


def synthetic_rows(n: int, min_s: float, max_s: float, seed: int = 0) -> list[dict]:
    """Rows shaped like real ones: ~20 prompt tokens + 82 audio tokens per second, lengths uniform in seconds."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        frames = max(1, int(rng.uniform(min_s, max_s) * layout.SAMPLING_RATE / layout.SAMPLES_PER_FRAME))
        audio = layout.codes_to_tokens(*(rng.integers(0, 4096, k * frames) for k in (1, 2, 4)))
        ids, start = layout.tts_row([layout.BEGIN_OF_TEXT, *rng.integers(100, 1000, 18).tolist()], audio)
        rows.append({"input_ids": ids, "audio_start": start})
    return rows


def train_throughput(model, rows, batch_size: int, packing: bool, steps: int, warmup: int, device) -> dict:
    from recipes.orpheus.training import OrpheusCollator, orpheus_loss

    collator = OrpheusCollator(packing=packing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batches = [collator(rows[i:i + batch_size]) for i in range(0, len(rows) - batch_size + 1, batch_size)]
    real_tokens, slots, elapsed = 0, 0, 0.0
    for step in range(warmup + steps):
        batch = {k: v.to(device) for k, v in batches[step % len(batches)].items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = orpheus_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            elapsed += time.perf_counter() - start
            real_tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
            slots += batch["input_ids"].numel()
    return {"tokens_per_s": real_tokens / elapsed, "padding_fraction": 1 - real_tokens / slots, "seconds": elapsed}


def snac_throughput(snac, waves: list[np.ndarray], batch_size: int) -> float:
    from recipes.orpheus.tokenize_dataset import SnacAudioTokenizer

    tokenizer = SnacAudioTokenizer(snac, remove_duplicate_frames=False)
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))  # as encode_dataset does
    tokenizer.encode([waves[order[0]]])  # warm-up (kernels, allocator)
    if tokenizer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(order), batch_size):
        tokenizer.encode([waves[j] for j in order[i:i + batch_size]])
    if tokenizer.device.type == "cuda":
        torch.cuda.synchronize()
    return sum(len(w) for w in waves) / layout.SAMPLING_RATE / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["auto", "tiny", "real"], default="auto",
                        help="auto: real 3B config on GPU, tiny on CPU")
    parser.add_argument("--batch_size", type=int, default=None, help="rows per step (default 8 GPU / 4 CPU)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--min_seconds", type=float, default=1.0)
    parser.add_argument("--max_seconds", type=float, default=None, help="default 12 GPU / 4 CPU")
    parser.add_argument("--snac_clips", type=int, default=None)
    parser.add_argument("--snac_batch_size", type=int, default=None)
    parser.add_argument("--attn_implementation", default="sdpa")
    args = parser.parse_args()

    from snac import SNAC
    from transformers import LlamaForCausalLM

    from recipes.orpheus.build_tiny import LLAMA_3_2_3B_ORPHEUS, SNAC_24KHZ_CONFIG, tiny_llama_config

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    real = args.model == "real" or (args.model == "auto" and cuda)
    batch_size = args.batch_size or (8 if cuda else 4)
    steps = args.steps or (10 if cuda else 3)
    max_seconds = args.max_seconds or (12.0 if cuda else 4.0)
    torch.manual_seed(0)

    from transformers import LlamaConfig

    config = LlamaConfig(**LLAMA_3_2_3B_ORPHEUS) if real else tiny_llama_config()
    config._attn_implementation = args.attn_implementation
    model = LlamaForCausalLM(config).to(device=device, dtype=torch.bfloat16 if cuda else torch.float32)
    if real:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    rows = synthetic_rows(batch_size * (steps + 2), args.min_seconds, max_seconds)
    device_name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device_name}; model: {'Llama-3.2-3B Orpheus config' if real else 'tiny Orpheus config'} "
          f"({n_params / 1e6:.1f} M params, random weights); {batch_size} rows/step of {args.min_seconds}-"
          f"{max_seconds} s audio; {steps} timed steps after 1 warm-up")
    results = {}
    for packing in (False, True):
        results[packing] = train_throughput(model, rows, batch_size, packing, steps, 1, device)
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if cuda and k in device_name), None)
    print(f"\n{'training':<28}{'tokens/s':>12}{'padding':>10}" + (f"{'MFU':>8}" if peak else ""))
    for packing, name in ((False, "padded (baseline)"), (True, "packed, padding-free")):
        r = results[packing]
        mfu = f"{100 * 6 * n_params * r['tokens_per_s'] / (peak * 1e12):>7.1f}%" if peak else ""
        print(f"{name:<28}{r['tokens_per_s']:>12,.0f}{100 * r['padding_fraction']:>9.1f}%{mfu}")
    print(f"packed / padded tokens/s ratio: {results[True]['tokens_per_s'] / results[False]['tokens_per_s']:.2f}x")

    del model
    snac = SNAC(**SNAC_24KHZ_CONFIG).eval().to(device)
    n_clips = args.snac_clips or (64 if cuda else 8)
    snac_batch = args.snac_batch_size or (16 if cuda else 4)
    rng = np.random.default_rng(1)
    waves = [(0.1 * rng.standard_normal(int(rng.uniform(args.min_seconds, max_seconds) * 24000))).astype(np.float32)
             for _ in range(n_clips)]
    single = snac_throughput(snac, waves, 1)
    batched = snac_throughput(snac, waves, snac_batch)
    total = sum(len(w) for w in waves) / 24000
    print(f"\nSNAC encode ({n_clips} clips, {total:.0f} s of audio){'':<2}{'audio s/s':>12}")
    print(f"{'one clip at a time (baseline)':<40}{single:>12.1f}")
    print(f"{f'batches of {snac_batch}, length-sorted':<40}{batched:>12.1f}")
    print(f"batched / one-at-a-time ratio: {batched / single:.2f}x")
    if not math.isfinite(batched):
        raise SystemExit("timing failed")


if __name__ == "__main__":
    main()
