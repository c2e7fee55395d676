"""Teach XTTS-v2 an accent, vocabulary or language variant with a LoRA adapter on its GPT.

    accelerate launch recipes/xtts/train_adapter.py --config recipes/xtts/configs/pt_adapter.yaml
    accelerate launch recipes/xtts/train_adapter.py --config recipes/xtts/configs/demo.yaml   # tiny, CPU, offline

Only LoRA weights on the 30 GPT-2 blocks (c_attn, c_proj, c_fc; optionally the perceiver's attention)
train; the DVAE, conditioning encoder/perceiver and HiFi-GAN stay frozen. Model classes are the
upstream `coqui-tts` ones, so the merged `final/model.pth` + `config.json` + `vocab.json` load with
`Xtts.load_checkpoint`. Steps, top to bottom:
  1. base model (Hub id, local folder, or `tiny-random` built here) and data (schema / LJSpeech folder)
  2. tokenise + length limits up front, counted in `skip_report.json`; DVAE codes once per clip
  3. LoRA, trainable-parameter report, Trainer (loss: 0.01 x text CE + code CE, prompt masked per item)
  4. adapter (`final/adapter/`), merged model (`final/`), model card, optional Hub push
The base weights are under the Coqui Public Model License (non-commercial); so is what you train.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from transformers import Trainer, TrainingArguments

logger = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"
SUPPORTED_LANGUAGES = ("ar", "cs", "de", "en", "es", "fr", "hi", "hu", "it", "ja", "ko", "nl", "pl", "pt", "ru",
                       "tr", "zh")


@dataclass
class XttsAdapterArguments:
    base_model: str = field(default="coqui/XTTS-v2", metadata={
        "help": "Hub id or local folder with config.json, model.pth, vocab.json, dvae.pth, mel_stats.pth; "
                f"'{TINY_RANDOM}' builds a tiny random XTTS offline (demo/tests)."})
    dataset: str = field(default="demo", metadata={
        "help": "'demo', a data_prep save_to_disk folder, a Hub dataset id, or an LJSpeech folder "
                "(metadata.csv with id|text or id|text|normalized, wavs/<id>.wav)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    language: str = field(default="pt", metadata={
        "help": "Language of rows without a `language` column (LJSpeech folders), and generate.py's default. "
                "Every other row is tagged from its own `language` column (pt-br -> pt), so original-language "
                "rows can be mixed in."})
    normalize_text: bool = field(default=True, metadata={
        "help": "Spell out numbers, money, dates and abbreviations with data_prep.text_normalize for languages it "
                "has rules for (pt-br, ca), in training and (recorded in final/) at inference."})
    languages: list[str] | None = field(default=None, metadata={"help": "Keep rows whose `language` is listed."})
    dialects: list[str] | None = field(default=None, metadata={"help": "Keep rows whose `dialect` is listed."})
    speakers: list[str] | None = field(default=None, metadata={"help": "Keep rows whose `speaker` is listed."})
    ljspeech_speaker: str | None = field(default=None, metadata={"help": "Speaker name for an LJSpeech folder."})
    validation_fraction: float = 0.1
    max_audio_seconds: float = field(default=255_995 / 22_050, metadata={"help": "Upstream max_wav_length."})
    min_audio_seconds: float = 0.5
    max_text_tokens: int = 200
    min_conditioning_seconds: float = 3.0
    max_conditioning_seconds: float = 6.0
    new_language: str | None = field(default=None, metadata={
        "help": "Teach XTTS a language its tokenizer lacks (e.g. ca): learn BPE tokens from its cleaned training "
                "text, append them and its tag [ca] to vocab.json, grow the text embedding/head (new rows train "
                "and are saved with the adapter). Rows of other languages keep their own tags (mix them in)."})
    dialect_tags: list[str] | None = field(default=None, metadata={
        "help": "Dialects of new_language with their own tag ([ca_balear] for 'balear'), taken from the `dialect` "
                "column; at inference --language ca --dialect balear selects it."})
    new_tokens: int = field(default=2000, metadata={
        "help": "Size of the BPE learned on the new language's text; its tokens the base lacks are appended "
                "(~2000 worked better than 5000 for a new language in community runs)."})
    new_token_min_frequency: int = field(default=2, metadata={"help": "A new merge must occur this often."})
    new_language_char_limit: int = field(default=200, metadata={
        "help": "Characters per inference chunk for the new language (upstream: 203 for pt, 213 for it)."})
    init_tags_from: list[str] = field(default_factory=lambda: ["es", "it", "fr", "pt"], metadata={
        "help": "Base language tags whose mean initialises the new language/dialect tags."})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    perceiver_adapter: bool = field(default=False, metadata={"help": "Also LoRA the perceiver's attention."})
    text_ce_weight: float = 0.01
    mel_ce_weight: float = 1.0
    sample_text: str | None = field(default=None, metadata={
        "help": "Sentence synthesised at each evaluation (TensorBoard); default: the first validation text."})
    sample_max_new_tokens: int = field(default=600, metadata={"help": "Cap on generated codes for the samples."})
    preprocessing_device: str | None = field(default=None, metadata={"help": "Device for DVAE coding."})

    def __post_init__(self):
        new = self.new_language.lower().split("-")[0] if self.new_language else None
        if new and ("_" in new or new in SUPPORTED_LANGUAGES):
            raise ValueError(f"new_language '{self.new_language}': give a plain code XTTS does not know yet "
                             "(dialects go in dialect_tags)")
        if self.language.split("-")[0] not in SUPPORTED_LANGUAGES + ((new,) if new else ()):
            raise ValueError(f"language '{self.language}' has no XTTS tokenizer support (one of "
                             f"{SUPPORTED_LANGUAGES}); teach it with `new_language: {self.language}` (vocab "
                             "extension), or tag a close variant with its parent language (e.g. pt for pt-br).")
        if self.dialect_tags and not new:
            raise ValueError("dialect_tags need new_language (the tags are added to its vocabulary)")
        if any("-" in d or "_" in d for d in self.dialect_tags or []):
            raise ValueError(f"dialect_tags {self.dialect_tags}: plain names (balear), no '-' or '_'")
        if not 0 < self.min_conditioning_seconds <= self.max_conditioning_seconds:
            raise ValueError("need 0 < min_conditioning_seconds <= max_conditioning_seconds")
        if not 0 <= self.min_audio_seconds < self.max_audio_seconds:
            raise ValueError("need 0 <= min_audio_seconds < max_audio_seconds")
        if self.lora_r < 1 or self.max_text_tokens < 1:
            raise ValueError("lora_r and max_text_tokens must be positive")
        if not 0 < self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in (0, 1)")


@dataclass
class EvalSample:
    """What the evaluation hook synthesises: a validation sentence in a validation speaker's voice."""

    text: str
    language: str
    reference: object  # (1, T) float tensor at 22.05 kHz
    max_new_tokens: int


class XttsAdapterTrainer(Trainer):
    """Trainer whose loss is the XTTS GPT loss; logs its two parts and audio samples at evaluation."""

    def __init__(self, *args, xtts=None, sample=None, sample_logger=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # the loss normalises itself
        self.xtts, self.sample, self.sample_logger = xtts, sample, sample_logger
        self._parts = {"loss_text_ce": 0.0, "loss_mel_ce": 0.0}
        self._parts_steps = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:
            for key in self._parts:
                self._parts[key] += float(outputs[key]) / self.args.gradient_accumulation_steps
            self._parts_steps += 1 / self.args.gradient_accumulation_steps
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def log(self, logs, *args, **kwargs):
        if "loss" in logs and self._parts_steps > 0:
            logs.update({k: round(v / self._parts_steps, 5) for k, v in self._parts.items()})
            self._parts = {k: 0.0 for k in self._parts}
            self._parts_steps = 0
        super().log(logs, *args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        import torch

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = model(**inputs)["loss"]
        return loss.detach(), None, None

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs)
        if self.sample is not None and self.sample_logger is not None and self.is_world_process_zero():
            import torch

            from recipes.xtts.modeling import OUTPUT_SAMPLE_RATE, sample_speech

            # Sampling on a forked RNG leaves the training draws of a resumed run equal to the uninterrupted one.
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
                wave = sample_speech(self.xtts, self.sample.text, self.sample.language, self.sample.reference,
                                     22_050, max_new_tokens=self.sample.max_new_tokens)
            self.sample_logger.log({"samples/validation": (wave.numpy(), OUTPUT_SAMPLE_RATE)}, self.state.global_step)
        return metrics


def write_card(final: Path, args: XttsAdapterArguments, reports, metrics: dict, trainable: int, total: int,
               extension=None):
    from recipes.common import write_model_card

    kept = ", ".join(r.summary() for r in reports)
    usage = (
        "```python\n"
        "from TTS.tts.configs.xtts_config import XttsConfig\n"
        "from TTS.tts.models.xtts import Xtts\n\n"
        "config = XttsConfig(); config.load_json(\"config.json\")\n"
        "model = Xtts(config)\n"
        "model.load_checkpoint(config, checkpoint_dir=\".\", eval=True)\n"
        f"out = model.synthesize(\"...\", speaker_wav=\"reference.wav\", language=\"{args.language}\")\n"
        "```\n\nor `python recipes/xtts/generate.py --model . --text ... --voice reference.wav`."
    )
    path = write_model_card(
        str(final), title=f"XTTS-v2 LoRA adapter ({args.language})",
        base_model=None if args.base_model == TINY_RANDOM else args.base_model,
        license="other", language=[args.language.split("-")[0]],
        summary=(f"A LoRA adapter (r={args.lora_r}, alpha={args.lora_alpha}) on the GPT-2 blocks of XTTS-v2, trained "
                 f"on `{args.dataset}`, plus the merged checkpoint (`model.pth`, `config.json`, `vocab.json`) "
                 "that standard coqui-tts XTTS inference loads."),
        sections={
            "License": "The base weights are released under the **Coqui Public Model License (CPML)**, which allows "
                       "non-commercial use only (https://coqui.ai/cpml). This adapter and the merged model are "
                       "derived from them and carry the same restriction.",
            "Files": "`model.pth`, `config.json`, `vocab.json`: merged model for `Xtts.load_checkpoint`. "
                     "`adapter/`: the peft LoRA adapter (adapter_model.safetensors + adapter_config.json).",
            "Training": f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%). "
                        f"Loss: {args.text_ce_weight} x text CE + {args.mel_ce_weight} x audio-code CE, the "
                        f"conditioning prompt masked per item. Data after filtering: {kept}.",
            "Usage": usage,
            **({"New language": f"`{args.new_language}` taught by vocabulary extension: {extension.summary()}. "
                "The new rows of the text embedding and head are in `adapter/` (peft `modules_to_save`); load "
                "with `recipes.xtts.text.use_text_frontend(model, folder)` after `load_checkpoint` to speak it."}
               if extension else {}),
        },
        tags=["xtts", "coqui", "lora", "peft"], metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
    )
    # The Hub names non-standard licences through license_name/license_link (as coqui/XTTS-v2 does).
    text = path.read_text().replace("license: other\n", "license: other\nlicense_name: coqui-public-model-license\n"
                                    "license_link: https://coqui.ai/cpml\n", 1)
    path.write_text(text)
    return path


def pick_sample_reference(split, pool=None) -> tuple[str, int]:
    """The voice prompt for the evaluation sample, which speaks the text of `split[0]`: another clip of the
    same speaker, from `split` or else from `pool`, so the sample does not replay the clip whose text it
    speaks. Returns ("split" | "pool", row index)."""
    from data_prep.speakers import other_clips_of_same_speaker

    speaker = split[0]["speaker"] if "speaker" in split.column_names else None
    for which, candidates in (("split", split), ("pool", pool)):
        if candidates is None or speaker is None:
            continue
        others = other_clips_of_same_speaker(split.select([0]), candidates)[0]
        if others:
            return which, others[0]
    logger.warning("speaker %s has a single clip: the audio samples clone the clip whose text they speak", speaker)
    return "split", 0


def row_languages(data, language: str) -> list[str]:
    """The distinct `language` values of all splits (`language` for a dataset without that column)."""
    found = set()
    for split in data.values():
        found.update(v or language for v in (split["language"] if "language" in split.column_names else [language]))
    return sorted(found)


def text_normalizers(languages: list[str], enabled: bool = True) -> dict[str, str]:
    """XTTS tag -> normaliser language for the data's languages with normaliser rules ({"pt": "pt-br"})."""
    from recipes.xtts.text import base_language, normalizer_for

    normalizers: dict[str, str] = {}
    for language in languages if enabled else []:
        rules = normalizer_for(language)
        tag = base_language(language)
        if rules is None:
            continue
        if normalizers.get(tag, rules) != rules:
            raise ValueError(f"rows in {normalizers[tag]} and {rules} would share the XTTS tag [{tag}] with different "
                             "text normalisers; train one variant per model (filter with `languages:`)")
        normalizers[tag] = rules
    return normalizers


def build_tiny_base_for(data, out_dir: Path, language: str, tokenizer, exclude: str | None = None) -> Path:
    """A tiny random base whose vocabulary covers the data's text, except language `exclude` (a language
    the base must not know, to be taught by vocabulary extension)."""
    from recipes.xtts.text import base_language, xtts_tag
    from recipes.xtts.tiny import build_tiny_base

    texts = []
    for split in data.values():
        languages = split["language"] if "language" in split.column_names else [language] * len(split)
        texts += [(t, xtts_tag(lang or language)) for t, lang in zip(split["text"], languages)
                  if base_language(lang or language) != exclude]
    if not texts:
        raise ValueError("the tiny base needs some text in a language XTTS knows (mix original-language rows in)")
    from data_prep.audio import decode_audio
    from recipes.xtts.modeling import GPT_SAMPLE_RATE

    first = next(iter(data.values()))  # speech for the DVAE's codebook (see recipes/xtts/tiny.py)
    waves = [decode_audio(first[i]["audio"], target_sr=GPT_SAMPLE_RATE)[0] for i in range(min(32, len(first)))]
    return build_tiny_base(out_dir, texts, clean=tokenizer.preprocess_text, waves=waves)


def extend_for_new_language(args, xtts, config, base_dir: Path, train_split, output_dir: Path):
    """Vocabulary extension + grown text layers for `args.new_language` (see recipes/xtts/vocab.py).
    Returns the VocabExtension report, or None when the base already has the language's tag."""
    from recipes.xtts import modeling
    from recipes.xtts import vocab as xvocab
    from recipes.xtts.text import XttsTextTokenizer, base_language

    new = base_language(args.new_language)
    tags = [f"[{new}]"] + [f"[{new}_{d.lower()}]" for d in args.dialect_tags or []]
    base_tokenizer = xtts.tokenizer
    if base_tokenizer.tokenizer.token_to_id(f"[{new}]") is not None:
        missing = [t for t in tags if base_tokenizer.tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"{base_dir} already speaks '{new}' but lacks the tags {missing}; start from the base "
                             "it was extended from")
        logger.info("%s already has [%s] (an extended model): no vocabulary extension", base_dir, new)
        return None
    languages = train_split["language"] if "language" in train_split.column_names else [args.language] * len(train_split)
    new_texts = [t for t, lang in zip(train_split["text"], languages) if base_language(lang or args.language) == new]
    if not new_texts:
        raise ValueError(f"new_language '{new}': no training rows with that language")
    old_samples = [(t, base_language(lang or args.language)) for t, lang in zip(train_split["text"], languages)
                   if base_language(lang or args.language) != new][:500]
    limits = {new: args.new_language_char_limit}
    front = XttsTextTokenizer(normalizers=base_tokenizer.normalizers, new_languages=limits)
    cleaned = [front.preprocess_text(t, new) for t in new_texts]
    out_vocab = output_dir / "extended-vocab" / "vocab.json"
    extension = xvocab.extend_vocab(base_dir / "vocab.json", out_vocab, cleaned, tags, args.new_tokens,
                                    args.new_token_min_frequency)
    xvocab.check_extension(extension, base_dir / "vocab.json", out_vocab, cleaned, old_samples,
                           base_tokenizer.normalizers, limits)
    sources = xvocab.init_sources(extension, out_vocab, args.init_tags_from)
    modeling.extend_text_layers(xtts.gpt, sources)
    xtts.tokenizer = XttsTextTokenizer(str(out_vocab), normalizers=base_tokenizer.normalizers, new_languages=limits,
                                       base_vocab_size=extension.base_vocab_size,
                                       base_merges=extension.base_merges)
    modeling.set_text_token_args(config, xtts.tokenizer)
    extension.save(output_dir / "vocab_extension.json")
    logger.info("vocabulary extension: %s", extension.summary())
    print(extension.summary())
    return extension


def main(args: XttsAdapterArguments, training_args: TrainingArguments):
    import torch

    from recipes.common import AudioSampleLogger, log_trainable_parameters, push_folder_to_hub, resume_checkpoint
    from recipes.xtts import data as xdata
    from recipes.xtts import modeling

    output_dir = Path(training_args.output_dir)
    push_repo = (training_args.hub_model_id or output_dir.name) if training_args.push_to_hub else None
    # The Trainer would push bare adapter checkpoints; we push merged model + adapter + card at the end.
    training_args.push_to_hub = False

    # 1. Data (22.05 kHz) and base model.
    data = xdata.load_splits(args.dataset, language=args.language, dataset_config=args.dataset_config,
                             languages=args.languages, dialects=args.dialects, speakers=args.speakers,
                             validation_fraction=args.validation_fraction, seed=training_args.seed,
                             ljspeech_speaker=args.ljspeech_speaker)
    from recipes.xtts.text import XttsTextTokenizer

    normalizers = text_normalizers(row_languages(data, args.language), args.normalize_text)
    with training_args.main_process_first(desc="base model"):
        if args.base_model == TINY_RANDOM:
            base_dir = output_dir / "tiny-base"
            if not (base_dir / "model.pth").is_file():
                build_tiny_base_for(data, base_dir, args.language, XttsTextTokenizer(normalizers=normalizers),
                                    exclude=args.new_language and args.new_language.lower().split("-")[0])
        else:
            base_dir = modeling.resolve_base_model(args.base_model)
    missing = [name for name in ("dvae.pth", "mel_stats.pth") if not (base_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{base_dir}: training needs {missing} beside model.pth (the frozen DVAE that turns "
                                "audio into codes); copy them from the coqui/XTTS-v2 Hub repo")
    config, xtts = modeling.load_xtts(base_dir)
    # Training text goes through the same normaliser that generate.py will use (recorded in final/).
    xtts.tokenizer.normalizers.update(normalizers)
    logger.info("text normalisers (XTTS tag -> rules): %s", xtts.tokenizer.normalizers or "none (upstream cleaners)")
    extension = None
    if args.new_language:
        with training_args.main_process_first(desc="vocabulary extension"):
            extension = extend_for_new_language(args, xtts, config, base_dir, data["train"], output_dir)
    dialect_tags = {f"{args.new_language.lower()}_{d.lower()}" for d in args.dialect_tags or []} \
        if args.new_language else set()
    gpt = xtts.gpt
    limits = xdata.Limits(max_audio_samples=int(args.max_audio_seconds * modeling.GPT_SAMPLE_RATE),
                          min_audio_samples=int(args.min_audio_seconds * modeling.GPT_SAMPLE_RATE),
                          max_text_tokens=args.max_text_tokens)
    if args.max_text_tokens > config.model_args.gpt_max_text_tokens:
        raise ValueError(f"max_text_tokens {args.max_text_tokens} > the model's gpt_max_text_tokens "
                         f"{config.model_args.gpt_max_text_tokens}")
    max_codes = -(-limits.max_audio_samples // gpt.code_stride_len)
    if max_codes + 5 > gpt.max_mel_tokens:
        raise ValueError(f"max_audio_seconds {args.max_audio_seconds} gives {max_codes} codes; the model's position "
                         f"table holds {gpt.max_mel_tokens - 5}. Lower max_audio_seconds.")

    # 2. Filters up front (counted), then DVAE codes once.
    device = args.preprocessing_device or training_args.device  # this rank's accelerator
    dvae_file = base_dir / "dvae.pth"
    dvae_identity = f"{dvae_file.resolve()}:{dvae_file.stat().st_size}:{dvae_file.stat().st_mtime_ns}"
    coder = modeling.DvaeCoder.from_base(base_dir, config)
    splits, reports = {}, []
    with training_args.main_process_first(desc="tokenise + DVAE codes"):
        for name, split in data.items():
            split, report = xdata.tokenize_and_filter(split, xtts.tokenizer, args.language, limits, name,
                                                      dialect_tags)
            splits[name] = xdata.add_audio_codes(split, coder, limits, report, device=device, cache_key=dvae_identity)
            reports.append(report)
            logger.info(report.summary())
    del coder
    if training_args.process_index == 0:
        logger.info("skip report: %s", xdata.write_skip_reports(reports, training_args.output_dir))
    if len(splits["train"]) == 0:
        raise ValueError(f"no training rows left after filtering: {reports[0].summary()}")
    cond_range = (int(args.min_conditioning_seconds * modeling.GPT_SAMPLE_RATE),
                  int(args.max_conditioning_seconds * modeling.GPT_SAMPLE_RATE))
    train_set = xdata.XttsTrainingDataset(splits["train"], *cond_range)
    eval_set = xdata.XttsTrainingDataset(splits["validation"], *cond_range, is_eval=True) \
        if len(splits["validation"]) else None
    if eval_set is None and training_args.eval_strategy != "no":
        raise ValueError(f"no validation rows left ({reports[-1].summary()}); add data, raise validation_fraction "
                         "or set --eval_strategy no")

    # 3. LoRA on the frozen model.
    model = modeling.XttsAdapterModel(xtts, args.text_ce_weight, args.mel_ce_weight)
    spec = modeling.AdapterSpec(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                                perceiver=args.perceiver_adapter)
    base_name = str(base_dir.resolve()) if args.base_model == TINY_RANDOM else args.base_model
    peft_model = modeling.add_lora(model, spec, base_model=base_name)
    trainable, total = log_trainable_parameters(peft_model, log=print)
    if getattr(training_args, "activation_checkpointing", False) or training_args.gradient_checkpointing:
        modeling.enable_activation_checkpointing(gpt)  # on the GPT-2 blocks; the wrapper is no PreTrainedModel
        training_args.gradient_checkpointing = False
        if hasattr(training_args, "activation_checkpointing"):  # transformers >= 5.x name of the same switch
            training_args.activation_checkpointing = False

    sample = None
    if eval_set is not None or args.sample_text:
        text_split = splits["validation"] if eval_set is not None else splits["train"]
        from data_prep.audio import decode_audio

        which, reference_row = pick_sample_reference(text_split, splits["train"])
        reference_split = text_split if which == "split" else splits["train"]
        reference = torch.from_numpy(decode_audio(reference_split[reference_row]["audio"],
                                                  modeling.GPT_SAMPLE_RATE)[0])[None]
        sample = EvalSample(args.sample_text or text_split[0]["text"], text_split[0]["xtts_language"], reference,
                            args.sample_max_new_tokens)
    report_to = training_args.report_to or []
    # Beside the Trainer's own runs/<date>_<host> folder, so one `tensorboard --logdir <output_dir>/runs` shows both.
    sample_logger = AudioSampleLogger(os.getenv("TENSORBOARD_LOGGING_DIR") or str(output_dir / "runs" / "samples"),
                                      str(output_dir), report_to) if report_to else None

    trainer = XttsAdapterTrainer(model=peft_model, args=training_args, train_dataset=train_set,
                                 eval_dataset=eval_set, data_collator=xdata.XttsCollator(), xtts=xtts,
                                 sample=sample, sample_logger=sample_logger)
    result = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    metrics = dict(result.metrics)
    evaluated_steps = {entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry}
    if eval_set is not None and trainer.state.global_step not in evaluated_steps:
        metrics.update(trainer.evaluate())
    metrics.update({k: v for e in trainer.state.log_history if e.get("step") == trainer.state.global_step
                    for k, v in e.items() if k.startswith("eval_")})

    # 4. Adapter, merged model, card, push.
    if trainer.is_world_process_zero():
        final = output_dir / "final"
        peft_model.save_pretrained(str(final / "adapter"))
        # What generate.py needs beyond upstream's files: the default language tag and the text front end
        # (normalisers, new languages); the adapter folder gets them and the vocabulary too.
        info = json.dumps({"language": args.language, "base_model": base_name, "text": xtts.tokenizer.info()},
                          indent=2)
        (final / "adapter" / modeling.RECIPE_INFO).write_text(info)
        shutil.copy(xtts.tokenizer.vocab_file, final / "adapter" / "vocab.json")
        modeling.save_merged(peft_model, base_dir, final)
        (final / modeling.RECIPE_INFO).write_text(info)
        write_card(final, args, reports, metrics, trainable, total, extension)
        print(f"adapter: {final / 'adapter'}\nmerged XTTS (model.pth, config.json, vocab.json): {final}")
        if push_repo:
            print(push_folder_to_hub(str(final), push_repo, private=training_args.hub_private_repo or False,
                                     ignore_patterns=["checkpoint-*", "runs/*", "optimizer*"]))


def make_parser():
    from trl import TrlParser

    return TrlParser((XttsAdapterArguments, TrainingArguments))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from recipes.common import finish_distributed

    main(*make_parser().parse_args_and_config())
    finish_distributed()
