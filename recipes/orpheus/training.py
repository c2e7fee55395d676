"""Orpheus training pieces shared by the pretraining and LoRA recipes: collator, Trainer, text mix,
audio-sample callback, loss plot.

Loss: token cross-entropy summed over label tokens and divided by `num_items_in_batch`, the count the
Trainer takes over *all* micro-batches of an optimizer step (and all ranks). That makes batch 1 x
accumulation 4 equal batch 4 x 1 exactly, which a per-micro-batch mean does not when rows differ in
length. Logits are computed only at positions that predict a label (`logits_to_keep`), so padding
and, in audio-only mode, the prompt never pay for the 156,939-way vocabulary projection.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from recipes.common import hub_repo_id  # noqa: F401  (the Orpheus scripts import it from here)
from recipes.orpheus import layout

logger = logging.getLogger(__name__)
IGNORE_INDEX = -100
LOSS_MODES = ("all", "audio")


# --- collator ------------------------------------------------------------------------------------------
@dataclass
class OrpheusCollator:
    """Rows (`input_ids`, `audio_start`) -> model inputs.

    packing=False: right-padded batch, pad id 128263, attention_mask 0 and labels -100 on padding.
    packing=True: the rows are concatenated into one padding-free row whose `position_ids` restart
    at 0 for each utterance and with no attention mask; transformers then builds a block-diagonal
    causal mask (sdpa/eager/flex) or varlen flash-attention from the position ids, provided no KV
    cache exists (the Trainer forward passes use_cache=False; pitfall 13 in the notes).
    The first label of every utterance is -100: in a packed row it would otherwise be predicted from
    the previous utterance's last token.
    loss_on="audio" keeps labels only from the first audio token to the end of the row (audio, end of
    speech, end of AI), so the prompt conditions but is not learnt.
    """

    packing: bool = False
    loss_on: str = "all"
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        if self.loss_on not in LOSS_MODES:
            raise ValueError(f"loss_on must be one of {LOSS_MODES}, got {self.loss_on!r}")

    def labels_for(self, feature: dict[str, Any]) -> list[int]:
        ids = [int(t) for t in feature["input_ids"]]
        labels = list(ids)
        if self.loss_on == "audio":
            start = int(feature.get("audio_start", -1))
            labels = [IGNORE_INDEX] * len(ids) if start < 0 else [IGNORE_INDEX] * start + ids[start:]
        labels[0] = IGNORE_INDEX
        return labels

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.packing:
            ids, labels, positions = [], [], []
            for feature in features:
                ids += [int(t) for t in feature["input_ids"]]
                labels += self.labels_for(feature)
                positions += list(range(len(feature["input_ids"])))
            return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                    "position_ids": torch.tensor([positions])}
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), longest), layout.PAD, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for b, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[b, :n] = torch.tensor([int(t) for t in feature["input_ids"]])
            labels[b, :n] = torch.tensor(self.labels_for(feature))
            attention_mask[b, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


# --- loss ------------------------------------------------------------------------------------------------
def orpheus_loss(model, inputs: dict[str, torch.Tensor], num_items_in_batch=None):
    """(summed CE / normaliser, outputs). Normaliser: `num_items_in_batch` if given, else this batch's count."""
    labels = inputs["labels"]
    targets = labels[:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    model_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
    # use_cache=False: with a cache the packed-sequence mask is skipped and utterances leak into each other.
    outputs = model(**model_inputs, use_cache=False, logits_to_keep=keep)
    logits = outputs.logits.float()
    picked = targets[:, keep]
    summed = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), picked.reshape(-1), ignore_index=IGNORE_INDEX,
                             reduction="sum")
    normaliser = num_items_in_batch if num_items_in_batch is not None else (picked != IGNORE_INDEX).sum().clamp(min=1)
    return summed / normaliser, outputs


class OrpheusTrainer(Trainer):
    """Trainer whose loss is `orpheus_loss` (normalised by the step's label-token count)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The loss uses num_items_in_batch, so the Trainer must count label tokens across accumulation steps.
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = orpheus_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch is summed over ranks, and DDP averages gradients over ranks: undo the average.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss


# --- datasets ------------------------------------------------------------------------------------------
def per_dialect_eval_sets(validation, min_rows: int = 1) -> dict:
    """{'all': validation, '<dialect>': rows of that dialect, ...}; logged as eval_<name>_loss."""
    sets = {"all": validation}
    dialects = validation["dialect"]
    for dialect in sorted(set(dialects)):
        indices = [i for i, d in enumerate(dialects) if d == dialect]
        if len(indices) >= min_rows:
            sets[dialect] = validation.select(indices)
    return sets


def load_text_rows(name_or_path: str, tokenizer, column: str = "text", max_length: int = 8192,
                   max_rows: int | None = None):
    """Text-only rows `<|begin_of_text|> text <|eot_id|>` from a .txt (one document per line), .jsonl,
    save_to_disk folder or Hub dataset. Long documents are cut into max_length chunks (text can be
    split anywhere; audio rows never are)."""
    import os

    from datasets import Dataset, load_dataset, load_from_disk

    if name_or_path.endswith(".txt"):
        texts = [line.strip() for line in Path(name_or_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        data = load_from_disk(name_or_path) if os.path.isdir(name_or_path) else (
            load_dataset("json", data_files=name_or_path, split="train") if name_or_path.endswith(".jsonl")
            else load_dataset(name_or_path, split="train"))
        if column not in data.column_names:
            raise ValueError(f"text dataset {name_or_path} has no column '{column}'; columns are {data.column_names}."
                             " Set --text_column.")
        texts = [t for t in data[column] if t and t.strip()]
    rows = []
    for text in texts[:max_rows]:
        ids = layout.text_ids(tokenizer, text)
        for start in range(0, len(ids), max_length - 1):
            rows.append(layout.text_only_row(ids[start:start + max_length - 1]))
    if not rows:
        raise ValueError(f"text dataset {name_or_path} has no non-empty '{column}' values")
    return Dataset.from_dict({"input_ids": rows, "audio_start": [-1] * len(rows)})


def mix_text_rows(speech, text, ratio: float, seed: int = 0):
    """Speech rows plus round(ratio * len(speech)) text rows (the Trainer shuffles, so every batch holds
    text:speech at `ratio` in expectation). Text rows repeat, with a warning, if there are too few."""
    from datasets import concatenate_datasets

    wanted = round(ratio * len(speech))
    if wanted == 0:
        return speech
    rng = random.Random(seed)
    order = list(range(len(text)))
    rng.shuffle(order)
    if wanted > len(text):
        logger.warning("text_ratio=%s wants %d text rows but the text dataset has %d: repeating them", ratio, wanted,
                       len(text))
    picked = [order[i % len(order)] for i in range(wanted)]
    speech_columns = speech.select_columns(["input_ids", "audio_start"])
    return concatenate_datasets([speech_columns, text.select(picked).cast(speech_columns.features)])


# --- audio samples during training ----------------------------------------------------------------
class AudioSampleCallback(TrainerCallback):
    """Every `every_n_steps` (and at the end) synthesise one sample per prompt and log it.

    All ranks generate (FSDP/ZeRO-3 need every rank in the forward pass); only the main process logs.
    `prompts` maps a tag (e.g. the dialect) to keyword arguments for `OrpheusSynthesizer.synthesize`.
    """

    def __init__(self, make_synthesizer, prompts: dict[str, dict], every_n_steps: int | None, sample_logger,
                 final_dir: str | None = None):
        self.make_synthesizer = make_synthesizer
        self.prompts = prompts
        self.every_n_steps = every_n_steps
        self.sample_logger = sample_logger
        self.final_dir = final_dir
        self.last_logged_step = -1
        self.last_waves: dict[str, np.ndarray] = {}

    def _log(self, model, state):
        if not self.prompts:
            return {}
        if state.global_step == self.last_logged_step:
            return self.last_waves
        was_training = model.training
        model.eval()
        # The synthesizer seeds torch's global RNG; fork it so that training's dropout masks (LoRA dropout)
        # do not restart from that seed after every sample.
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            try:
                synthesizer = self.make_synthesizer(model)
                tags = list(self.prompts)
                generated = synthesizer.synthesize([self.prompts[t]["text"] for t in tags],
                                                   dialects=[self.prompts[t].get("dialect") for t in tags],
                                                   speakers=[self.prompts[t].get("speaker") for t in tags])
                waves = dict(zip(tags, generated))
            finally:
                model.train(was_training)
        self.last_logged_step, self.last_waves = state.global_step, waves
        if state.is_world_process_zero:
            self.sample_logger.log({f"samples/{tag}": (w, layout.SAMPLING_RATE) for tag, w in waves.items()},
                                   state.global_step)
        return waves

    def on_step_end(self, args, state, control, model=None, **kwargs):
        from recipes.common import every_n_steps

        if every_n_steps(state.global_step, self.every_n_steps):
            self._log(model, state)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        from data_prep.audio import write_audio

        waves = self._log(model, state)
        if self.final_dir and state.is_world_process_zero:
            for tag, wave in waves.items():
                write_audio(Path(self.final_dir) / f"{tag}.wav", wave, layout.SAMPLING_RATE)


def plot_loss_curve(log_history: list[dict], path: str | Path) -> Path | None:
    """Training loss (and every eval_*_loss) against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train), label="train loss", marker=".")
    eval_keys = sorted({k for h in log_history for k in h if k.startswith("eval_") and k.endswith("_loss")})
    for key in eval_keys:
        points = [(h["step"], h[key]) for h in log_history if key in h]
        ax.plot(*zip(*points), label=key.removeprefix("eval_").removesuffix("_loss") + " (val)", marker="o",
                linestyle="--")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def dataset_summary(rows) -> dict:
    """Hours, clips and speakers per dialect, for logs and the model card."""
    summary: dict[str, dict] = {}
    for dialect, speaker, duration in zip(rows["dialect"], rows["speaker"], rows["duration"]):
        entry = summary.setdefault(dialect, {"clips": 0, "hours": 0.0, "speakers": set()})
        entry["clips"] += 1
        entry["hours"] += float(duration) / 3600
        entry["speakers"].add(speaker)
    return {d: {"clips": e["clips"], "hours": round(e["hours"], 4), "speakers": len(e["speakers"])}
            for d, e in sorted(summary.items())}


def resolve_attn_implementation(requested: str) -> str:
    """'auto' -> flash_attention_2 when installed on a GPU, else sdpa."""
    if requested != "auto":
        return requested
    import importlib.util

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def seeded(seed: int | None):
    """Seed python/numpy/torch RNGs (SNAC decoding and sampling are random)."""
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
