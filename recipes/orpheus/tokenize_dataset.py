"""SNAC tokenisation for Orpheus: schema dataset -> audio-free rows of token ids.

    python recipes/orpheus/tokenize_dataset.py --dataset demo --out outputs/orpheus/tokenized \
        --tokenizer canopylabs/orpheus-3b-0.1-pretrained --snac_model hubertsiuzdak/snac_24khz
    # big corpora, one process per GPU (each takes every world_size-th shard):
    accelerate launch --num_processes 8 recipes/orpheus/tokenize_dataset.py --config my.yaml

Two stages. (1) SNAC encoding, the expensive part: audio is decoded at 24 kHz, sorted by length,
encoded in padded batches and each item cropped back to its own frame count; results are written
in shards under `snac_cache_dir/<key>/` so an interrupted run resumes where it stopped (the key hashes
the clip ids, the codec and the dedup flag, so a different corpus never reuses a stale cache).
(2) Row building, cheap: `[SOH] {label}: {text} [EOT EOH SOA SOS] audio [EOS EOA]`, with rows over
`max_length` dropped and counted. The output keeps `input_ids`, `audio_start`, `n_audio_tokens`,
`speaker`, `dialect`, `id`, `text`, `duration` and `frames_removed`; collators derive labels/masks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recipes.orpheus import layout

logger = logging.getLogger(__name__)
SNAC_HUB_ID = "hubertsiuzdak/snac_24khz"


# --- SNAC ------------------------------------------------------------------------------------------
def load_snac(name_or_path: str = SNAC_HUB_ID, device: str | None = None):
    """SNAC from a local folder (config.json + pytorch_model.bin) or the Hub, in eval mode on `device`."""
    import torch
    from snac import SNAC

    from recipes.common import explain_hub_errors

    with explain_hub_errors(f"SNAC codec '{name_or_path}'", "python recipes/orpheus/pretrain_dialects.py "
                            "--config recipes/orpheus/configs/demo.yaml"):
        snac = SNAC.from_pretrained(name_or_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return snac.eval().to(device)


class SnacAudioTokenizer:
    """Batched SNAC encode -> Orpheus audio ids, and the exact inverse decode."""

    def __init__(self, snac, remove_duplicate_frames: bool = True):
        self.snac = snac
        self.remove_duplicate_frames = remove_duplicate_frames
        self.device = next(snac.parameters()).device

    def encode(self, waves: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        """(audio ids, frames removed) per wave. Waves are mono float at 24 kHz, any lengths.

        SNAC takes no lengths, so the batch is zero-padded and item b keeps ceil(len_b / 2048) coarse
        frames (x2, x4 for the finer levels), which is exactly what encoding it alone would return
        in length; only its last 1-2 frames can differ in value (they see padding instead of
        SNAC's own zero padding of a single clip), so callers sort by length to keep padding small.
        """
        import torch

        n_frames = [math.ceil(len(w) / layout.SAMPLES_PER_FRAME) for w in waves]
        batch = torch.zeros(len(waves), 1, max(n_frames) * layout.SAMPLES_PER_FRAME)
        for b, wave in enumerate(waves):
            batch[b, 0, :len(wave)] = torch.from_numpy(np.asarray(wave, dtype=np.float32))
        with torch.inference_mode():
            l0, l1, l2 = (level.cpu().numpy() for level in self.snac.encode(batch.to(self.device)))
        results = []
        for b, n in enumerate(n_frames):
            tokens = layout.codes_to_tokens(l0[b, :n], l1[b, :2 * n], l2[b, :4 * n])
            removed = 0
            if self.remove_duplicate_frames:
                tokens, removed = layout.remove_duplicate_frames(tokens)
            results.append((tokens, removed))
        return results

    def decode(self, audio_tokens) -> np.ndarray:
        """Audio ids (whole frames) -> float32 waveform of n_frames * 2048 samples at 24 kHz."""
        import torch

        l0, l1, l2 = layout.tokens_to_codes(audio_tokens)
        if len(l0) == 0:
            return np.zeros(0, dtype=np.float32)
        codes = [torch.from_numpy(c)[None].to(self.device) for c in (l0, l1, l2)]
        with torch.inference_mode():
            return self.snac.decode(codes).reshape(-1).float().cpu().numpy()


# --- stage 1: encode a schema dataset, resumably ---------------------------------------------------
def _encoded_features():
    from datasets import Features, List, Value

    return Features({"id": Value("string"), "text": Value("string"), "speaker": Value("string"),
                     "dialect": Value("string"), "duration": Value("float64"), "language": Value("string"),
                     "audio_tokens": List(Value("int64")), "frames_removed": Value("int64")})


def snac_cache_key(ids: list[str], snac_model: str, remove_duplicate_frames: bool) -> str:
    digest = hashlib.sha1("\n".join(ids).encode())
    digest.update(json.dumps([os.path.abspath(snac_model) if os.path.isdir(snac_model) else snac_model,
                              bool(remove_duplicate_frames), layout.SAMPLING_RATE]).encode())
    return digest.hexdigest()[:16]


def encode_dataset(dataset, audio_tokenizer: SnacAudioTokenizer, cache_dir: str | os.PathLike, *,
                   batch_size: int = 8, shard_size: int = 512, rank: int = 0, world_size: int = 1,
                   show_progress: bool = True):
    """Encode every clip of a schema `Dataset`; returns the audio-free encoded `Dataset` (or None when
    `world_size > 1`: each rank only fills its shards and a single-process call concatenates them).

    Shards are written to `cache_dir/shard-XXXXX` with a `DONE` marker, so rerunning skips finished
    ones. Clips that cannot be used (empty text, undecodable or empty audio) are skipped, counted and
    listed in `cache_dir/skipped.jsonl`.
    """
    from datasets import Dataset, concatenate_datasets, load_from_disk
    from tqdm.auto import tqdm

    from data_prep.audio import decode_audio

    encoded_features = _encoded_features()

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    n_shards = max(1, math.ceil(len(dataset) / shard_size))
    mine = [s for s in range(n_shards) if s % world_size == rank]
    todo = [s for s in mine if not (cache_dir / f"shard-{s:05d}" / "DONE").exists()]
    if len(todo) < len(mine):
        logger.info("SNAC cache %s: %d of %d shards already encoded, resuming", cache_dir, len(mine) - len(todo), len(mine))
    progress = tqdm(total=sum(min(shard_size, len(dataset) - s * shard_size) for s in todo), unit="clip",
                    desc=f"SNAC encode (rank {rank})", disable=not show_progress or not todo)
    for s in todo:
        shard = dataset.select(range(s * shard_size, min((s + 1) * shard_size, len(dataset))))
        rows, skipped, waves = [], [], []
        for row in shard:
            meta = {k: row[k] for k in ("id", "text", "speaker", "dialect", "duration")}
            meta["language"] = row.get("language") or ""
            reason = None
            if not str(meta["text"]).strip():
                reason = "empty text"
            else:
                try:
                    wave, _ = decode_audio(row["audio"], layout.SAMPLING_RATE)
                    if wave.size == 0 or not np.isfinite(wave).all():
                        reason = "empty or non-finite audio"
                except Exception as err:  # a broken file must not stop a 1000-hour run
                    reason = f"undecodable audio: {err}"
            if reason:
                skipped.append({"id": meta["id"], "reason": reason})
                progress.update(1)
                continue
            rows.append(meta)
            waves.append(np.clip(wave, -1.0, 1.0))
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        encoded: list = [None] * len(waves)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, result in zip(chunk, audio_tokenizer.encode([waves[i] for i in chunk])):
                encoded[i] = result
            progress.update(len(chunk))
        for meta, (tokens, removed) in zip(rows, encoded):
            meta["audio_tokens"] = tokens.tolist()
            meta["frames_removed"] = removed
        shard_dir = cache_dir / f"shard-{s:05d}"
        columns = ["id", "text", "speaker", "dialect", "duration", "language", "audio_tokens", "frames_removed"]
        Dataset.from_dict({c: [r[c] for r in rows] for c in columns}).save_to_disk(str(shard_dir))
        (shard_dir / "skipped.jsonl").write_text("".join(json.dumps(x) + "\n" for x in skipped))
        (shard_dir / "DONE").touch()
    progress.close()
    if world_size > 1:  # the caller concatenates once every rank has finished (see main)
        return None
    missing = [s for s in range(n_shards) if not (cache_dir / f"shard-{s:05d}" / "DONE").exists()]
    if missing:
        raise RuntimeError(f"SNAC cache {cache_dir}: shards {missing[:5]} are not finished; wait for all ranks "
                           "(accelerate's wait_for_everyone) before concatenating")
    skipped = [json.loads(line) for s in range(n_shards)
               for line in (cache_dir / f"shard-{s:05d}" / "skipped.jsonl").read_text().splitlines()]
    (cache_dir / "skipped.jsonl").write_text("".join(json.dumps(x) + "\n" for x in skipped))
    if skipped:
        reasons = Counter(x["reason"].split(":")[0] for x in skipped)
        logger.warning("SNAC encode skipped %d clip(s) (%s), e.g. %s; full list in %s", len(skipped), dict(reasons),
                       skipped[0], cache_dir / "skipped.jsonl")
    # A shard whose clips were all skipped is saved with no data file and cannot be loaded back; it holds nothing.
    shards = [load_from_disk(str(shard_dir)) for shard_dir in (cache_dir / f"shard-{s:05d}" for s in range(n_shards))
              if any(shard_dir.glob("*.arrow"))]
    if not shards:
        return Dataset.from_dict({c: [] for c in encoded_features}, features=encoded_features)
    return concatenate_datasets(shards)


# --- stage 2: rows -----------------------------------------------------------------------------------
def build_rows(encoded, tokenizer, prompt_label: str = "dialect", max_length: int = 8192, voice: str | None = None):
    """Encoded clips -> training rows. Returns (Dataset, report) where the report counts what was dropped."""
    from datasets import Dataset

    columns = {k: [] for k in ("id", "text", "speaker", "dialect", "duration", "input_ids", "audio_start",
                               "n_audio_tokens", "frames_removed")}
    too_long: Counter = Counter()
    for row in encoded:
        try:
            label = voice if voice is not None else layout.prompt_label(prompt_label, dialect=row["dialect"],
                                                                        speaker=row["speaker"])
        except ValueError as err:
            raise ValueError(f"clip {row['id']!r}: {err}. Fill in that column in the dataset (data_prep) or choose "
                             f"another prompt_label") from err
        ids, audio_start = layout.tts_row(layout.text_ids(tokenizer, layout.format_prompt(label, row["text"])),
                                          row["audio_tokens"])
        if len(ids) > max_length:
            too_long[row["dialect"]] += 1
            continue
        for key in ("id", "text", "speaker", "dialect", "duration", "frames_removed"):
            columns[key].append(row[key])
        columns["input_ids"].append(ids)
        columns["audio_start"].append(audio_start)
        columns["n_audio_tokens"].append(len(row["audio_tokens"]))
    report = {
        "rows": len(columns["id"]),
        "dropped_over_max_length": sum(too_long.values()),
        "dropped_over_max_length_by_dialect": dict(too_long),
        "frames_removed_as_duplicates": int(sum(encoded["frames_removed"])) if len(encoded) else 0,
        "audio_tokens": int(sum(columns["n_audio_tokens"])),
    }
    total_frames = report["frames_removed_as_duplicates"] + sum(len(t) for t in encoded["audio_tokens"]) // 7 \
        if len(encoded) else 0
    if total_frames and report["frames_removed_as_duplicates"] > 0.3 * total_frames:
        logger.warning("Duplicate-frame removal dropped %d of %d frames (%.0f%%): far more than the silence it is meant "
                       "for (a random or mismatched codec?). Set remove_duplicate_frames false to keep them.",
                       report["frames_removed_as_duplicates"], total_frames,
                       100 * report["frames_removed_as_duplicates"] / total_frames)
    if too_long:
        logger.warning("Dropped %d row(s) longer than max_length=%d tokens (%s). Raise max_length or split long "
                       "clips (8192 tokens is about 100 s of audio).", report["dropped_over_max_length"], max_length,
                       dict(too_long))
    return Dataset.from_dict(columns), report


def check_row_prompts(rows, tokenizer, prompt_label: str, n_rows: int = 8) -> None:
    """Stop when pre-tokenised rows were built with another prompt_label (or tokenizer) than this run's:
    the saved recipe file and card would then promise prompts the model never saw."""
    for row in rows.select(range(min(n_rows, len(rows)))):
        label = layout.prompt_label(prompt_label, dialect=row["dialect"], speaker=row["speaker"])
        expected, audio_start = layout.tts_row(layout.text_ids(tokenizer, layout.format_prompt(label, row["text"])), [])
        if list(row["input_ids"][:row["audio_start"]]) != expected[:audio_start]:
            found = tokenizer.decode(row["input_ids"][2:max(2, row["audio_start"] - 4)])
            raise ValueError(f"row {row['id']!r} has the prompt {found!r}, but prompt_label={prompt_label!r} gives "
                             f"{layout.format_prompt(label, row['text'])!r}. Pass the --prompt_label the rows were "
                             "tokenised with (and the same tokenizer), or tokenise again.")


@dataclass
class TokenizeArguments:
    """Options shared by the tokenise CLI and the training recipes (`snac_*`, `prompt_label`, `max_length`)."""

    snac_model: str = field(default=SNAC_HUB_ID, metadata={"help": "SNAC 24 kHz codec: Hub id or local folder"})
    snac_batch_size: int | None = field(default=None, metadata={
        "help": "clips per SNAC encode batch (length-sorted); default 16 on GPU, 1 on CPU where batching is slower "
                "(benchmarks/orpheus_throughput.py measured 0.42x on 2 cores)"})
    snac_shard_size: int = field(default=512, metadata={"help": "clips per resumable cache shard"})
    snac_cache_dir: str | None = field(default=None, metadata={
        "help": "where SNAC codes are cached (default: <output_dir>/snac_cache); keyed by clip ids + codec + dedup"})
    remove_duplicate_frames: bool = field(default=True, metadata={
        "help": "drop frames whose coarse code repeats the previous kept frame (upstream parity; lossy)"})
    prompt_label: str = field(default="dialect", metadata={"help": f"prompt prefix: one of {layout.PROMPT_LABELS}"})
    max_length: int = field(default=8192, metadata={"help": "rows longer than this are dropped and counted"})

    def __post_init__(self):
        if self.prompt_label not in layout.PROMPT_LABELS:
            raise ValueError(f"prompt_label must be one of {layout.PROMPT_LABELS}, got {self.prompt_label!r}")
        if self.max_length < 64:
            raise ValueError(f"max_length={self.max_length} cannot hold even one second of audio (82 tokens/s)")


def tokenize_splits(splits, tokenizer, args: TokenizeArguments, cache_root: str, *, rank: int = 0,
                    world_size: int = 1, device: str | None = None, voice: str | None = None, snac=None):
    """Schema DatasetDict -> (DatasetDict of rows, report) through the resumable SNAC cache."""
    import torch
    from datasets import DatasetDict

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    audio_tokenizer = (SnacAudioTokenizer(snac, args.remove_duplicate_frames) if snac is not None
                       else _LazyAudioTokenizer(args, device))
    rows, report = {}, {}
    for split, dataset in splits.items():
        key = snac_cache_key(list(dataset["id"]), args.snac_model, args.remove_duplicate_frames)
        cache_dir = Path(cache_root) / f"{split}-{key}"
        batch_size = args.snac_batch_size or (16 if str(device or "").startswith("cuda") else 1)
        encoded = encode_dataset(dataset, audio_tokenizer, cache_dir, batch_size=batch_size,
                                 shard_size=args.snac_shard_size, rank=rank, world_size=world_size)
        if encoded is None:
            continue
        rows[split], report[split] = build_rows(encoded, tokenizer, args.prompt_label, args.max_length, voice=voice)
        report[split]["skipped_clips"] = len(dataset) - len(encoded)
        report[split]["hours"] = float(sum(rows[split]["duration"])) / 3600
    return DatasetDict(rows), report


class _LazyAudioTokenizer:
    """Loads SNAC only if a shard actually needs encoding (a resumed or cached run skips the load)."""

    def __init__(self, args: TokenizeArguments, device):
        self.args, self.device, self._inner = args, device, None

    def encode(self, waves):
        if self._inner is None:
            self._inner = SnacAudioTokenizer(load_snac(self.args.snac_model, self.device),
                                             self.args.remove_duplicate_frames)
        return self._inner.encode(waves)


# --- CLI -------------------------------------------------------------------------------------------
@dataclass
class TokenizeCliArguments:
    dataset: str = field(default="demo", metadata={"help": "'demo', a data_prep save_to_disk folder, or a Hub id"})
    out: str = field(default="outputs/orpheus/tokenized", metadata={"help": "save_to_disk folder for the rows"})
    tokenizer: str = field(default="canopylabs/orpheus-3b-0.1-pretrained", metadata={"help": "Orpheus tokenizer"})
    dialects: list[str] | None = field(default=None, metadata={"help": "keep only these dialects"})
    speakers: list[str] | None = field(default=None, metadata={"help": "keep only these speakers"})
    validation_fraction: float = 0.05
    push_to_hub: bool = False
    hub_dataset_id: str | None = None


def main():
    from accelerate import PartialState
    from datasets import DatasetDict, load_from_disk
    from transformers import AutoTokenizer

    from data_prep.loading import load_prepared_dataset
    from recipes.common import explain_hub_errors, parse_recipe_args

    cli, args = parse_recipe_args(TokenizeCliArguments, TokenizeArguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = PartialState()
    with explain_hub_errors(f"tokenizer '{cli.tokenizer}'", "python recipes/orpheus/build_tiny.py, then "
                            "--tokenizer outputs/orpheus/tiny/model --snac_model outputs/orpheus/tiny/snac"):
        tokenizer = AutoTokenizer.from_pretrained(cli.tokenizer)
    layout.check_tokenizer(tokenizer, where=cli.tokenizer)
    splits = load_prepared_dataset(cli.dataset, dialects=cli.dialects, speakers=cli.speakers,
                                   validation_fraction=cli.validation_fraction)
    cache_root = args.snac_cache_dir or os.path.join(cli.out, "snac_cache")
    device = str(state.device) if state.device.type != "mps" else "cpu"
    tokenize_splits(splits, tokenizer, args, cache_root, rank=state.process_index, world_size=state.num_processes,
                    device=device)
    state.wait_for_everyone()
    if state.is_main_process:
        rows, report = tokenize_splits(splits, tokenizer, args, cache_root, device="cpu")
        DatasetDict(rows).save_to_disk(os.path.join(cli.out, "dataset"))
        Path(cli.out, "report.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        print(f"rows written to {os.path.join(cli.out, 'dataset')} (load_from_disk); train with "
              f"--tokenized_dataset {os.path.join(cli.out, 'dataset')}")
        if cli.push_to_hub:
            if not cli.hub_dataset_id:
                raise SystemExit("--push_to_hub needs --hub_dataset_id")
            load_from_disk(os.path.join(cli.out, "dataset")).push_to_hub(cli.hub_dataset_id)


if __name__ == "__main__":
    main()
