"""Continued pretraining of Orpheus-3B on many speakers of several dialects (`{dialect}: {text}` prompts).

    accelerate launch --config_file accelerate_configs/fsdp2.yaml \
        recipes/orpheus/pretrain_dialects.py --config recipes/orpheus/configs/catalan_dialects.yaml
    # offline CPU demo (builds a tiny model on first use, a few minutes):
    python recipes/orpheus/pretrain_dialects.py --config recipes/orpheus/configs/demo.yaml

Without --config it uses configs/catalan_dialects.yaml (flags still override it). Steps, top to bottom:
1. load the base model and tokenizer, and check the tokenizer has the Orpheus ids;
2. load the schema dataset (data_prep) and SNAC-tokenise it, cached and resumable
   (or read rows written by `recipes/orpheus/tokenize_dataset.py` via --tokenized_dataset);
3. optionally mix in text-only rows at `text_ratio` text tokens per speech token (in shared or separate batches);
4. train with OrpheusTrainer: padded batches, or padding-free packed rows of whole utterances within a token
   budget (`packing_max_tokens`); full-row or audio-only loss; fp32 master weights under bf16 autocast;
   validation loss overall and per dialect, audio samples per dialect in TensorBoard;
5. save model, tokenizer, generation config, loss curve and model card; push if asked.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from recipes.orpheus import layout
from recipes.orpheus.tokenize_dataset import TokenizeArguments

logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "catalan_dialects.yaml"
DEMO_COMMAND = "python recipes/orpheus/pretrain_dialects.py --config recipes/orpheus/configs/demo.yaml"
# The SNAC cache defaults to <output_dir>/snac_cache: it is the encoded corpus (texts, speaker ids), not the model.
HUB_IGNORE_PATTERNS = ["checkpoint-*", "snac_cache/*", "runs/*", "*.pt", "*.pth", "optimizer*"]


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(default="canopylabs/orpheus-3b-0.1-pretrained", metadata={
        "help": "Orpheus base (the ungated mirror is unsloth/orpheus-3b-0.1-pretrained) or a local folder"})
    build_tiny_model: bool = field(default=False, metadata={
        "help": "demo only: build the tiny offline model/SNAC into the parent of model_name_or_path if missing"})
    dataset: str = field(default="demo", metadata={"help": "'demo', a data_prep save_to_disk folder, or a Hub id"})
    dataset_config: str | None = None
    dialects: list[str] | None = field(default=None, metadata={"help": "dialects to train on (default: all)"})
    validation_fraction: float = 0.05
    tokenized_dataset: str | None = field(default=None, metadata={
        "help": "rows from tokenize_dataset.py (save_to_disk folder); skips SNAC encoding"})
    packing: bool = field(default=True, metadata={
        "help": "padding-free packing: each device step is one row of whole utterances (<= per_device batch size of "
                "them, <= packing_max_tokens tokens)"})
    packing_max_tokens: int | None = field(default=None, metadata={
        "help": "token budget of one packed row (default: max_length); bounds activation and logits memory"})
    loss_on: str = field(default="all", metadata={"help": "'all' (upstream parity: whole row) or 'audio'"})
    attn_implementation: str = field(default="auto", metadata={"help": "auto | sdpa | flash_attention_2 | eager"})
    text_dataset: str | None = field(default=None, metadata={"help": "text-only data (.txt, .jsonl, folder, Hub id)"})
    text_column: str = "text"
    text_ratio: float = field(default=0.0, metadata={
        "help": "text-row tokens per speech-row token (token-weighted; 0 = TTS only). Canopy's `ratio` counts whole "
                "text batches per speech batch; with packing and text_mix=batches both kinds of row are ~full, so "
                "its ratio 2 is about text_ratio 2"})
    text_mix: str = field(default="shuffle", metadata={
        "help": "'shuffle': text rows share batches with speech rows; 'batches': pure text and pure speech "
                "optimizer steps (Canopy), text steps spread evenly between speech steps"})
    sample_every_n_steps: int | None = field(default=None, metadata={
        "help": "log one generated sample per dialect every N steps (and at the end); 0/None: end only"})
    sample_text: str = field(default="Bon dia, avui fa un dia molt bonic.", metadata={
        "help": "text spoken by the per-dialect samples"})
    sample_max_new_tokens: int = field(default=600, metadata={"help": "~82 tokens per second of audio"})
    sample_min_new_tokens: int = field(default=0, metadata={
        "help": "suppress end-of-speech before this many tokens (demo: a barely trained model stops at once)"})
    sample_temperature: float = 0.6
    language: str = field(default="ca", metadata={"help": "language code for the model card"})

    def __post_init__(self):
        if self.loss_on not in ("all", "audio"):
            raise ValueError(f"loss_on must be 'all' or 'audio', got {self.loss_on!r}")
        if self.text_mix not in ("shuffle", "batches"):
            raise ValueError(f"text_mix must be 'shuffle' or 'batches', got {self.text_mix!r}")
        if self.packing_max_tokens is not None and self.packing_max_tokens < 1:
            raise ValueError("packing_max_tokens must be >= 1 (or unset: max_length)")
        if self.text_ratio < 0:
            raise ValueError("text_ratio must be >= 0")
        if self.text_ratio > 0 and not self.text_dataset:
            raise ValueError("text_ratio > 0 needs --text_dataset")
        if self.text_ratio > 0 and self.loss_on == "audio":
            raise ValueError("text rows have no audio, so text_ratio > 0 with loss_on='audio' would train nothing on "
                             "them; use loss_on='all'")


@dataclass
class OrpheusTrainingArguments(TrainingArguments):
    """TrainingArguments with the field's settings for Orpheus (notes §6-7) as defaults."""

    output_dir: str = "outputs/orpheus/catalan_dialects"
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.03
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    per_device_train_batch_size: int = 4
    per_device_eval_batch_size: int = 4
    logging_steps: int = 10
    eval_strategy: str = "steps"
    eval_steps: int = 500
    save_steps: int = 500
    save_total_limit: int | None = 3
    report_to: list[str] | str | None = "tensorboard"
    remove_unused_columns: bool = False  # the collator needs audio_start
    bf16: bool | None = None  # None: on when training on a GPU that supports it

    def __post_init__(self):
        import torch

        has_bf16_gpu = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if self.bf16 is None:
            # use_cpu (the demos) trains on the CPU even when a GPU is present: keep fp32 weights there.
            self.bf16 = has_bf16_gpu and not self.use_cpu
        elif self.bf16 and not has_bf16_gpu and not self.use_cpu:
            raise ValueError(f"bf16: true needs a CUDA GPU with bf16 support and none was found. This config is for "
                             f"GPUs; on CPU try the offline demo: {DEMO_COMMAND} (or pass --bf16 false).")
        super().__post_init__()


def main(script_args: ScriptArguments, tok_args: TokenizeArguments, training_args: OrpheusTrainingArguments):
    import torch
    from datasets import DatasetDict, load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from data_prep.loading import load_prepared_dataset
    from recipes.common import (AudioSampleLogger, explain_hub_errors, log_trainable_parameters,
                                push_folder_to_hub, resume_checkpoint, write_model_card)
    from recipes.orpheus.generate import RECIPE_FILE, OrpheusSynthesizer
    from recipes.orpheus.tokenize_dataset import SnacAudioTokenizer, check_row_prompts, load_snac, tokenize_splits
    from recipes.orpheus.training import (AudioSampleCallback, OrpheusCollator, OrpheusTrainer, dataset_summary,
                                          hub_repo_id, load_text_rows, mix_text_rows, per_dialect_eval_sets,
                                          plot_loss_curve, resolve_attn_implementation)

    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(training_args.seed)

    # ---- 1. model + tokenizer ------------------------------------------------------------------------
    if script_args.build_tiny_model:
        from recipes.orpheus.build_tiny import build_tiny_orpheus

        with training_args.main_process_first(desc="build tiny model"):
            build_tiny_orpheus(Path(script_args.model_name_or_path).parent)
    with explain_hub_errors(f"Orpheus model '{script_args.model_name_or_path}'", DEMO_COMMAND):
        tokenizer = AutoTokenizer.from_pretrained(script_args.model_name_or_path)
        # fp32 weights even with bf16: the Trainer's bf16 is autocast, and AdamW on bf16 weights rounds most
        # updates away (training.upcast_trainable_parameters). FSDP2/ZeRO-3 shard these fp32 masters.
        model = AutoModelForCausalLM.from_pretrained(
            script_args.model_name_or_path, attn_implementation=resolve_attn_implementation(script_args.attn_implementation),
            dtype=torch.float32)
    layout.check_tokenizer(tokenizer, model.config.vocab_size, where=f"tokenizer of {script_args.model_name_or_path}")
    model.config.use_cache = False  # a cache disables the packed-sequence mask (notes, pitfall 13)
    if training_args.activation_checkpointing:
        training_args.activation_checkpointing_kwargs = training_args.activation_checkpointing_kwargs or {"use_reentrant": False}
    log_trainable_parameters(model, logger.info)

    # ---- 2. data -------------------------------------------------------------------------------------
    if script_args.tokenized_dataset:
        rows = load_from_disk(script_args.tokenized_dataset)
        report = {"source": script_args.tokenized_dataset}
        if script_args.dialects:
            rows = DatasetDict({k: v.filter(lambda d: d in script_args.dialects, input_columns="dialect")
                                for k, v in rows.items()})
        if "train" in rows:  # (a missing split is reported below)
            check_row_prompts(rows["train"], tokenizer, tok_args.prompt_label)
    else:
        splits = load_prepared_dataset(script_args.dataset, config_name=script_args.dataset_config,
                                       dialects=script_args.dialects, validation_fraction=script_args.validation_fraction,
                                       seed=training_args.seed)
        cache_root = tok_args.snac_cache_dir or os.path.join(training_args.output_dir, "snac_cache")
        with training_args.main_process_first(desc="SNAC tokenisation"):
            rows, report = tokenize_splits(splits, tokenizer, tok_args, cache_root, device=str(training_args.device))
    for split in ("train", "validation"):
        if split not in rows or len(rows[split]) == 0:
            raise ValueError(f"no {split} rows left after tokenisation (report: {report}); check the dataset and "
                             f"max_length={tok_args.max_length}")
    summary = dataset_summary(rows["train"])
    logger.info("tokenisation report: %s", json.dumps(report))
    logger.info("train data per dialect: %s", json.dumps(summary))
    train_rows = rows["train"]
    packing_max_tokens = script_args.packing_max_tokens or tok_args.max_length
    if script_args.text_ratio > 0:
        text_rows = load_text_rows(script_args.text_dataset, tokenizer, script_args.text_column,
                                   min(tok_args.max_length, packing_max_tokens))
        train_rows = mix_text_rows(train_rows, text_rows, script_args.text_ratio, training_args.seed)
        logger.info("mixed %d text rows into %d speech rows (text_ratio %s text tokens per speech token, text_mix %s)",
                    len(train_rows) - len(rows["train"]), len(rows["train"]), script_args.text_ratio,
                    script_args.text_mix)

    # ---- 3. trainer ----------------------------------------------------------------------------------
    snac_for_samples = {}

    def make_synthesizer(current_model):
        if "snac" not in snac_for_samples:
            snac_for_samples["snac"] = SnacAudioTokenizer(load_snac(tok_args.snac_model, str(training_args.device)),
                                                          remove_duplicate_frames=False)
        return OrpheusSynthesizer(current_model, tokenizer, snac_for_samples["snac"], prompt_label=tok_args.prompt_label,
                                  temperature=script_args.sample_temperature,
                                  max_new_tokens=script_args.sample_max_new_tokens,
                                  min_new_tokens=script_args.sample_min_new_tokens, seed=training_args.seed)

    prompts = {}
    for dialect in sorted(set(rows["train"]["dialect"])):
        speaker = next(s for s, d in zip(rows["train"]["speaker"], rows["train"]["dialect"]) if d == dialect)
        prompts[layout.normalize_label(dialect)] = {"text": script_args.sample_text, "dialect": dialect,
                                                    "speaker": speaker}
    # Beside the Trainer's scalars: `tensorboard --logdir <output_dir>/runs` shows losses and audio together.
    sample_logger = AudioSampleLogger(os.environ.get("TENSORBOARD_LOGGING_DIR")
                                      or os.path.join(training_args.output_dir, "runs", "samples"),
                                      training_args.output_dir, training_args.report_to)
    trainer = OrpheusTrainer(
        model=model,
        args=training_args,
        train_dataset=train_rows,
        eval_dataset=per_dialect_eval_sets(rows["validation"]) if training_args.eval_strategy != "no" else None,
        data_collator=OrpheusCollator(packing=script_args.packing, loss_on=script_args.loss_on),
        processing_class=tokenizer,
        packing_max_tokens=packing_max_tokens if script_args.packing else None,
        text_mix=script_args.text_mix,
        callbacks=[AudioSampleCallback(make_synthesizer, prompts, script_args.sample_every_n_steps, sample_logger,
                                       final_dir=os.path.join(training_args.output_dir, "final_samples"))],
    )
    if trainer.is_world_process_zero():  # what inference needs, before the long run starts
        os.makedirs(training_args.output_dir, exist_ok=True)
        recipe_info = {"snac_model": tok_args.snac_model, "prompt_label": tok_args.prompt_label,
                       "prompt_format": "{label}: {text}", "dialects": sorted(summary), "voice": None}
        Path(training_args.output_dir, RECIPE_FILE).write_text(json.dumps(recipe_info, indent=2))
        tokenizer.save_pretrained(training_args.output_dir)

    # ---- 4. train ------------------------------------------------------------------------------------
    result = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    metrics = {}
    if trainer.eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    trainer.save_state()

    # ---- 5. save, card, push -------------------------------------------------------------------------
    model.config.use_cache = True
    model.generation_config.eos_token_id = layout.END_OF_SPEECH
    model.generation_config.pad_token_id = layout.PAD
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        plot_loss_curve(trainer.state.log_history, Path(training_args.output_dir) / "loss_curve.png")
        hours = sum(v["hours"] for v in summary.values())
        table = "\n".join(f"| {d} | {v['clips']} | {v['hours']:.2f} | {v['speakers']} |" for d, v in summary.items())
        label_example = layout.format_prompt(layout.prompt_label(tok_args.prompt_label, dialect="balear",
                                                                 speaker="spk1") if tok_args.prompt_label != "none"
                                             else None, "Bon dia.")
        write_model_card(
            training_args.output_dir, title=f"Orpheus dialect TTS ({', '.join(summary)})",
            base_model=hub_repo_id(script_args.model_name_or_path), license="llama3.2",
            language=[script_args.language],
            summary=(f"Continued pretraining of `{script_args.model_name_or_path}` on {hours:.2f} h of speech in "
                     f"{len(summary)} dialects for {trainer.state.global_step} steps with "
                     "`recipes/orpheus/pretrain_dialects.py`. Audio is SNAC 24 kHz, 7 tokens per 85 ms frame."),
            sections={
                "Data": f"Dataset: `{script_args.dataset if not script_args.tokenized_dataset else script_args.tokenized_dataset}`"
                        f"\n\n| dialect | clips | hours | speakers |\n|---|---|---|---|\n{table}\n\n"
                        f"Tokenisation: {json.dumps(report)}",
                "Prompt format": f"`{{label}}: {{text}}` with label = {tok_args.prompt_label} (lower case), e.g. "
                                 f"`{label_example}`, inside `[128259] <|begin_of_text|>... [128009, 128260, 128261, "
                                 f"128257]`; generation stops at 128258.",
                "Training": f"loss on {script_args.loss_on} tokens, packing={script_args.packing}"
                            + (f" (rows of <= {packing_max_tokens} tokens)" if script_args.packing else "")
                            + f", lr {training_args.learning_rate} "
                            f"{getattr(training_args.lr_scheduler_type, 'value', training_args.lr_scheduler_type)}, global batch "
                            f"{training_args.per_device_train_batch_size} x {training_args.gradient_accumulation_steps}"
                            f" x {training_args.world_size} rows, "
                            + (f"text_ratio {script_args.text_ratio} text tokens per speech token in "
                               f"{'separate text and speech steps' if script_args.text_mix == 'batches' else 'shared batches'}"
                               f" from `{script_args.text_dataset}`." if script_args.text_ratio > 0 else
                               "speech only (text_ratio 0)."),
                "Use": "`python recipes/orpheus/generate.py --model <this repo> --dialect balear --text \"Bon dia.\"`",
            },
            tags=["orpheus", "snac", "dialects"],
            datasets=[script_args.dataset] if script_args.dataset != "demo" and hub_repo_id(script_args.dataset) else [],
            metrics={k: float(v) for k, v in metrics.items() if k.endswith("_loss")},
        )
        if training_args.push_to_hub:
            if not training_args.hub_model_id:
                raise SystemExit("push_to_hub needs hub_model_id (e.g. your-name/orpheus-catalan-dialects)")
            print(push_folder_to_hub(training_args.output_dir, training_args.hub_model_id, training_args.hub_private_repo,
                                     ignore_patterns=HUB_IGNORE_PATTERNS))
        logger.info("done: model, loss_curve.png and final_samples/*.wav in %s", training_args.output_dir)
    return trainer


def make_parser_args(argv: list[str] | None = None):
    from recipes.common import parse_recipe_args

    # no --config: the real recipe (offline, that fails with a message pointing to the demo)
    return parse_recipe_args(ScriptArguments, TokenizeArguments, OrpheusTrainingArguments, default_config=DEFAULT_CONFIG, argv=argv)


if __name__ == "__main__":
    from recipes.common import finish_distributed

    main(*make_parser_args())
    finish_distributed()
