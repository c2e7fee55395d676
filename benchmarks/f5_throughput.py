"""Training throughput (mel frames/s) of recipes/f5 vs upstream f5-tts's own Trainer, same data, model and batches.

Both train the same randomly initialised `CFM(DiT)` (same seed) on the same clips (the demo corpus, exported to
the F5 layout so upstream's `CustomDataset` reads it), with the same frame budget, clip cap, optimizer (AdamW),
EMA settings, number of epochs and data-loader workers. Times cover the whole `train()` call of each (data
loading, mel extraction, forward/backward, EMA, the final checkpoint write).

    python benchmarks/f5_throughput.py                                  # tiny DiT, CPU, ~1 min
    python benchmarks/f5_throughput.py --model_config F5TTS_v1_Base --frames_per_gpu 9600 --epochs 2   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "mplconfig"))
os.environ.setdefault("WANDB_MODE", "disabled")


def clip_frames(durations: list[float]) -> list[int]:
    from recipes.f5.data import HOP_LENGTH, SAMPLING_RATE

    return [1 + int(round(d * SAMPLING_RATE)) // HOP_LENGTH for d in durations]


def run_ours(dataset, vocab, arch, args, work: Path) -> tuple[float, int]:
    import torch
    from transformers import TrainingArguments

    from recipes.f5.checkpoints import build_model
    from recipes.f5.data import F5Collator, duration_frames
    from recipes.f5.callbacks import EMACallback
    from recipes.f5.finetune import F5Trainer

    torch.manual_seed(args.seed)
    model = build_model(arch, vocab)
    training_args = TrainingArguments(
        output_dir=str(work / "ours"), num_train_epochs=args.epochs, learning_rate=args.learning_rate,
        warmup_steps=args.warmup, weight_decay=0.01, max_grad_norm=1.0, report_to="none", save_strategy="no",
        eval_strategy="no", logging_steps=10_000, remove_unused_columns=False, seed=args.seed,
        dataloader_num_workers=args.workers, use_cpu=args.device == "cpu", bf16=args.bf16, disable_tqdm=True)
    ema = EMACallback(dict(beta=0.9999, update_after_step=100, update_every=10), is_main=True, resume_from=None)
    trainer = F5Trainer(
        model=model, args=training_args, train_dataset=dataset, data_collator=F5Collator(vocab), callbacks=[ema],
        train_frame_lengths=duration_frames(dataset), frames_per_gpu=args.frames_per_gpu, max_samples=args.max_samples)
    start = time.perf_counter()
    trainer.train()
    trainer.save_model()  # upstream's train() ends with a checkpoint write; match it
    seconds = time.perf_counter() - start
    return seconds, trainer.state.global_step


def run_upstream(f5_dir: Path, vocab_file: Path, arch, args, work: Path) -> tuple[float, int]:
    import torch
    from datasets import Dataset
    from f5_tts.model import Trainer as UpstreamTrainer
    from f5_tts.model.dataset import CustomDataset

    from recipes.f5.checkpoints import build_model
    from recipes.f5.data import read_vocab

    torch.manual_seed(args.seed)
    model = build_model(arch, read_vocab(vocab_file))
    durations = json.loads((f5_dir / "duration.json").read_text())["duration"]
    dataset = CustomDataset(Dataset.load_from_disk(str(f5_dir / "raw")), durations=durations)
    trainer = UpstreamTrainer(
        model, epochs=args.epochs, learning_rate=args.learning_rate, num_warmup_updates=args.warmup,
        save_per_updates=10**9, last_per_updates=10**9, checkpoint_path=str(work / "upstream"),
        batch_size_per_gpu=args.frames_per_gpu, batch_size_type="frame", max_samples=args.max_samples,
        max_grad_norm=1.0, logger=None, accelerate_kwargs=dict(cpu=args.device == "cpu",
                                                               mixed_precision="bf16" if args.bf16 else "no"),
        ema_kwargs=dict(beta=0.9999, update_after_step=100, update_every=10))
    start = time.perf_counter()
    trainer.train(dataset, num_workers=max(args.workers, 1), resumable_with_seed=args.seed)
    seconds = time.perf_counter() - start
    updates = int(torch.load(work / "upstream" / "model_last.pt", weights_only=True, map_location="cpu")["update"])
    return seconds, updates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config", default="tiny")
    parser.add_argument("--frames_per_gpu", type=int, default=1200)
    parser.add_argument("--max_samples", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="data-loader workers for both (upstream needs >= 1)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per trainer, in alternating order after one untimed warm-up each; the best "
                             "run counts (a shared machine's load and first-run costs would otherwise decide the ratio)")
    parser.add_argument("--no_warmup", dest="warmup", action="store_false",
                        help="skip the untimed warm-up run of each trainer (the GPU check's CPU rehearsal)")
    args = parser.parse_args(argv)

    import torch

    from data_prep.demo_corpus import load_demo_dataset
    from recipes.f5.checkpoints import resolve_model_config
    from recipes.f5.data import read_vocab, upstream_vocab_path
    from recipes.f5.layout import export_f5_layout

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dataset = load_demo_dataset()
    arch = resolve_model_config(args.model_config)
    vocab = read_vocab(upstream_vocab_path())
    frames_per_epoch = sum(clip_frames(list(dataset["duration"])))
    work = Path(tempfile.mkdtemp(prefix="f5-bench-"))
    f5_dir = export_f5_layout(dataset, work / "f5_layout")
    print(f"data: {len(dataset)} demo clips, {frames_per_epoch} mel frames per epoch; model {args.model_config}; "
          f"{args.frames_per_gpu} frames/batch, max {args.max_samples} clips; {args.epochs} epochs; device {args.device}")

    ours_name, upstream_name = "tts-recipes (HF Trainer)", "upstream f5_tts.model.Trainer"
    runners = {
        ours_name: lambda run_dir: run_ours(dataset, vocab, arch, args, run_dir),
        upstream_name: lambda run_dir: run_upstream(f5_dir, f5_dir / "vocab.txt", arch, args, run_dir),
    }
    timings: dict[str, list[tuple[float, int]]] = {name: [] for name in runners}
    # warm-up (untimed), then alternate the order so neither trainer always runs first
    warmup = list(runners) if args.warmup else []
    order = warmup + [name for i in range(args.repeats) for name in (list(runners) if i % 2 else list(runners)[::-1])]
    for i, name in enumerate(order):
        try:
            result = runners[name](work / f"run{i}")
        except Exception as err:  # report why upstream could not run here, with the exception, instead of a ratio
            print(f"{name} did not run: {type(err).__name__}: {err}")
            runners.pop(name, None)
            timings.pop(name, None)
            order = [n for n in order if n != name]
            continue
        if i >= len(warmup):
            timings[name].append(result)

    frames = frames_per_epoch * args.epochs
    print(f"\n{'trainer':34s} {'updates':>8s} {'best s':>8s} {'median s':>9s} {'frames/s (best)':>16s}")
    best = {}
    for name, runs in timings.items():
        if not runs:
            continue
        seconds = sorted(s for s, _ in runs)
        best[name] = seconds[0]
        print(f"{name:34s} {runs[0][1]:8d} {seconds[0]:8.2f} {seconds[len(seconds) // 2]:9.2f} {frames / seconds[0]:16.0f}")
    if len(best) == 2:
        print(f"\nratio ours/upstream frames/s (best of {args.repeats} each): {best[upstream_name] / best[ours_name]:.2f}x")
    return {"frames": frames, "frames_per_s": {name: frames / s for name, s in best.items()},
            "updates": {name: runs[0][1] for name, runs in timings.items() if runs},
            "ratio_ours_over_upstream": best[upstream_name] / best[ours_name] if len(best) == 2 else None}


if __name__ == "__main__":
    main()
