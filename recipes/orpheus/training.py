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
    # packing: the longest packed row allowed; the token-budget sampler builds batches that fit, and a batch that
    # does not (a sampler bypassed) fails here rather than as an out-of-memory error 20 minutes into a run.
    max_tokens: int | None = None

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
            if self.max_tokens is not None and len(ids) > self.max_tokens:
                raise ValueError(f"packed row of {len(features)} utterances has {len(ids)} tokens, over packing_max_tokens="
                                 f"{self.max_tokens}; batches must come from TokenBudgetBatchSampler (OrpheusTrainer "
                                 "with packing_max_tokens does this)")
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
    """Trainer whose loss is `orpheus_loss` (normalised by the step's label-token count).

    packing_max_tokens: with a packing collator, train and eval batches come from `TokenBudgetBatchSampler`:
    each packed row holds whole utterances, at most `per_device_*_batch_size` of them and at most this many
    tokens. The packing efficiency (real tokens / budget) of the training packs is logged with the loss.
    text_mix: 'shuffle' (text rows share packs with speech rows) or 'batches' (pure text and pure speech
    optimizer steps, Canopy's layout; needs the sampler, so it works with or without packing).
    """

    def __init__(self, *args, packing_max_tokens: int | None = None, text_mix: str = "shuffle", **kwargs):
        if text_mix not in TEXT_MIX_MODES:
            raise ValueError(f"text_mix must be one of {TEXT_MIX_MODES}, got {text_mix!r}")
        self.packing_max_tokens, self.text_mix = packing_max_tokens, text_mix
        self.train_batch_sampler: TokenBudgetBatchSampler | None = None
        super().__init__(*args, **kwargs)
        # The loss uses num_items_in_batch, so the Trainer must count label tokens across accumulation steps.
        self.model_accepts_loss_kwargs = True
        packing = getattr(self.data_collator, "packing", False)
        if packing and packing_max_tokens:
            self.data_collator.max_tokens = packing_max_tokens
        self._use_batch_sampler = bool(packing and packing_max_tokens) or text_mix == "batches"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = orpheus_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch is summed over ranks, and DDP averages gradients over ranks: undo the average.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _batch_sampler(self, dataset, batch_size: int, training: bool) -> TokenBudgetBatchSampler:
        packing = getattr(self.data_collator, "packing", False)
        mix = self.text_mix if training else "shuffle"
        return TokenBudgetBatchSampler(
            row_lengths(dataset), self.packing_max_tokens if packing else None, max_rows=batch_size,
            is_text=[s < 0 for s in dataset["audio_start"]] if mix == "batches" else None, mix=mix,
            # pure text / pure speech optimizer steps: one kind for every rank and accumulation micro-batch
            block=self.args.world_size * self.args.gradient_accumulation_steps, shuffle=training,
            seed=self.args.seed)

    def _sampled_dataloader(self, dataset, batch_sampler):
        from torch.utils.data import DataLoader

        loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=self.data_collator,
                            num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory)
        # accelerate shards a batch sampler: rank r takes batches r, r + world, ...
        return self.accelerator.prepare(loader)

    def get_train_dataloader(self):
        if not self._use_batch_sampler:
            return super().get_train_dataloader()
        self.train_batch_sampler = self._batch_sampler(self.train_dataset, self.args.per_device_train_batch_size, True)
        logger.info("training batches: %s", self.train_batch_sampler.describe())
        return self._sampled_dataloader(self.train_dataset, self.train_batch_sampler)

    def get_eval_dataloader(self, eval_dataset=None):
        if not self._use_batch_sampler:
            return super().get_eval_dataloader(eval_dataset)
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        return self._sampled_dataloader(dataset, self._batch_sampler(dataset, self.args.per_device_eval_batch_size,
                                                                     False))

    def log(self, logs: dict[str, float], *args, **kwargs):
        if self.train_batch_sampler is not None and "loss" in logs and self.train_batch_sampler.max_tokens:
            logs["packing_efficiency"] = round(self.train_batch_sampler.efficiency(), 4)
        return super().log(logs, *args, **kwargs)


# --- token-budget batches ------------------------------------------------------------------------------
TEXT_MIX_MODES = ("shuffle", "batches")


def row_lengths(dataset) -> list[int]:
    """Token count of every row, read from the Arrow list offsets (no Python copy of the token ids)."""
    import pyarrow.compute as pc

    lengths: list[int] = []
    for batch in dataset.select_columns(["input_ids"]).with_format("arrow").iter(batch_size=65536):
        lengths += pc.list_value_length(batch["input_ids"]).to_pylist()
    return lengths


class TokenBudgetBatchSampler:
    """Batches of dataset indices for the Orpheus collator; an utterance is never split across batches.

    max_tokens (packing): a batch (one packed row) holds at most `max_tokens` tokens and at most `max_rows`
    utterances, filled first-fit-decreasing within shuffled windows of `window` rows. max_tokens=None: batches
    of `max_rows` rows. mix='batches' (with `is_text`): text rows and speech rows never share a batch, and the
    batches come in runs of `block` of one kind (block = world size x gradient accumulation gives pure text or
    pure speech optimizer steps), the text runs spread evenly between the speech runs. Reshuffled per epoch.
    """

    def __init__(self, lengths: list[int], max_tokens: int | None, *, max_rows: int, is_text: list[bool] | None = None,
                 mix: str = "shuffle", block: int = 1, shuffle: bool = True, seed: int = 0, window: int = 4096):
        if mix not in TEXT_MIX_MODES:
            raise ValueError(f"mix must be one of {TEXT_MIX_MODES}, got {mix!r}")
        if max_tokens is not None:
            too_long = [(i, n) for i, n in enumerate(lengths) if n > max_tokens]
            if too_long:
                raise ValueError(f"{len(too_long)} rows are longer than packing_max_tokens={max_tokens} (row {too_long[0][0]}"
                                 f" has {too_long[0][1]} tokens); an utterance is never split, so raise packing_max_tokens"
                                 " to at least max_length, or lower max_length so tokenisation drops them")
        self.lengths, self.max_tokens, self.max_rows = list(lengths), max_tokens, max(1, int(max_rows))
        self.is_text = list(is_text) if is_text is not None else None
        self.mix, self.block, self.shuffle, self.seed, self.window = mix, max(1, block), shuffle, seed, window
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _fill(self, indices: list[int]) -> list[list[int]]:
        if self.max_tokens is None:
            return [indices[i:i + self.max_rows] for i in range(0, len(indices), self.max_rows)]
        batches: list[list[int]] = []
        for start in range(0, len(indices), self.window):
            bins: list[list[int]] = []
            room: list[int] = []
            for i in sorted(indices[start:start + self.window], key=lambda j: -self.lengths[j]):
                n = self.lengths[i]
                target = next((b for b, r in enumerate(room) if r >= n and len(bins[b]) < self.max_rows), None)
                if target is None:
                    bins.append([])
                    room.append(self.max_tokens)
                    target = len(bins) - 1
                bins[target].append(i)
                room[target] -= n
            batches += bins
        return batches

    def batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = random.Random(self.seed + self.epoch)
        groups = [list(range(len(self.lengths)))]
        if self.mix == "batches" and self.is_text is not None:
            groups = [[i for i in groups[0] if not self.is_text[i]], [i for i in groups[0] if self.is_text[i]]]
        runs_per_group = []
        for group in groups:
            if self.shuffle:
                rng.shuffle(group)
            batches = self._fill(group)
            if self.shuffle:
                rng.shuffle(batches)
            runs_per_group.append([batches[i:i + self.block] for i in range(0, len(batches), self.block)])
        # each run sits at its group's evenly spaced position in [0, 1): text runs spread between speech runs; a
        # short last run goes to the very end, so that it cannot shift the step boundaries of the runs after it
        keyed = [((k + 0.5) / len(runs) if len(run) == self.block else 1.0 + g, g, run)
                 for g, runs in enumerate(runs_per_group) for k, run in enumerate(runs)]
        ordered = [batch for _, _, run in sorted(keyed, key=lambda x: (x[0], x[1])) for batch in run]
        self._cache = (self.epoch, ordered)
        return ordered

    def __iter__(self):
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.batches())

    def efficiency(self) -> float:
        """Real tokens / (packed rows x max_tokens) for this epoch's batches (1.0 = every row full)."""
        if not self.max_tokens:
            return 1.0
        return sum(self.lengths) / max(1, len(self.batches()) * self.max_tokens)

    def describe(self) -> str:
        n = len(self.batches())
        if self.max_tokens is None:
            return f"{len(self.lengths)} rows -> {n} batches of <= {self.max_rows} rows (text_mix {self.mix})"
        return (f"{len(self.lengths)} rows -> {n} packed rows of <= {self.max_tokens} tokens and <= {self.max_rows} "
                f"utterances, longest {max(sum(self.lengths[i] for i in b) for b in self.batches())} tokens, packing "
                f"efficiency {self.efficiency():.1%} (real tokens / budget; text_mix {self.mix})")


# --- precision -----------------------------------------------------------------------------------------
def upcast_trainable_parameters(model) -> int:
    """Make every trainable parameter fp32 (frozen ones keep their dtype); returns how many were cast.

    AdamW on bf16 weights loses most updates to rounding: bf16 keeps 8 mantissa bits, so an update below
    ~1/256 of the weight is rounded away (measured on the tiny model: 5 steps at lr 5e-5 changed 49.6 % of
    bf16 weights vs 100 % in fp32). With fp32 masters the Trainer's `bf16` runs the forward pass under bf16
    autocast, as upstream trained. peft's LoRA weights are fp32 already; `modules_to_save` copies are not.
    """
    import torch

    cast = 0
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
            cast += 1
    return cast

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
    """Speech rows plus text rows holding about `ratio` text tokens per speech-row token (token-weighted, so a
    few long documents and many short lines give the same text share). Text rows repeat, with a warning, when
    the text dataset is too small. Not Canopy's ratio (pure text *batches* per speech batch); with packing and
    text_mix='batches' both kinds of packed row are ~full, so the two agree."""
    from datasets import concatenate_datasets

    if ratio <= 0:
        return speech
    wanted = ratio * sum(row_lengths(speech))
    text_lengths = row_lengths(text)
    rng = random.Random(seed)
    order = list(range(len(text)))
    rng.shuffle(order)
    picked, tokens = [], 0
    while tokens < wanted:
        i = order[len(picked) % len(order)]
        picked.append(i)
        tokens += text_lengths[i]
    if len(picked) > len(text):
        logger.warning("text_ratio=%s wants %d text tokens but the text dataset has %d: repeating its rows", ratio,
                       round(wanted), sum(text_lengths))
    speech_columns = speech.select_columns(["input_ids", "audio_start"])
    return concatenate_datasets([speech_columns, text.select(picked).cast(speech_columns.features)])


# --- audio samples during training ----------------------------------------------------------------
class AudioSampleCallback(TrainerCallback):
    """Every `every_n_steps` (and at the end) synthesise one sample per prompt and log it.

    All ranks generate (FSDP/ZeRO-3 need every rank in the forward pass, and the synthesizer passes
    synced_gpus there); only the main process logs. With bf16 the samples run under the same autocast as
    training: fp32 trainable copies (peft modules_to_save) next to bf16 frozen weights need it.
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

    def _log(self, model, state, args=None):
        if not self.prompts:
            return {}
        if state.global_step == self.last_logged_step:
            return self.last_waves
        was_training = model.training
        model.eval()
        # The synthesizer seeds torch's global RNG; fork it so that training's dropout masks (LoRA dropout)
        # do not restart from that seed after every sample.
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        bf16 = bool(getattr(args, "bf16", False))
        device_type = args.device.type if bf16 else "cpu"
        with torch.random.fork_rng(devices=devices), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
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
            self._log(model, state, args)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        from data_prep.audio import write_audio

        waves = self._log(model, state, args)
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
