"""Fine-tune Orpheus to one voice (or a few) with LoRA: `{voice}: {text}` prompts, adapter + optional merge.

    accelerate launch --config_file accelerate_configs/single_gpu.yaml \
        recipes/orpheus/finetune_voice_lora.py --config recipes/orpheus/configs/voice_lora.yaml
    # offline CPU demo on one demo-corpus speaker (builds the tiny model on first use):
    python recipes/orpheus/finetune_voice_lora.py --config recipes/orpheus/configs/voice_lora_demo.yaml

Base: an Orpheus checkpoint, e.g. a dialect model from pretrain_dialects.py or orpheus-3b-0.1-ft.
Steps: load base (bf16, or 4-bit on GPU for QLoRA) -> check tokenizer -> filter the schema dataset
to the speaker(s), SNAC-tokenise with the pretraining recipe's cached tokeniser, warn below
300 clips / 30 minutes -> LoRA (Canopy's lora.py: r 32, alpha 64, rsLoRA, dropout 0, all 7 projections
q/k/v/o/gate/up/down; trainable weights in fp32 over a bf16 frozen base) -> train with the
pretraining recipe's collator and Trainer -> save the adapter (safetensors), merge on request ->
card, push. `recipes/orpheus/generate.py --model <output_dir>` loads the adapter (base read from
adapter_config.json); `--model <output_dir>/merged` loads the merged model.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from recipes.orpheus import layout
from recipes.orpheus.pretrain_dialects import OrpheusTrainingArguments
from recipes.orpheus.tokenize_dataset import TokenizeArguments

logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "voice_lora.yaml"
DEMO_COMMAND = "python recipes/orpheus/finetune_voice_lora.py --config recipes/orpheus/configs/voice_lora_demo.yaml"
ATTENTION_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_PROJECTIONS = ATTENTION_PROJECTIONS + ["gate_proj", "up_proj", "down_proj"]
MIN_CLIPS, MIN_MINUTES = 300, 30.0


@dataclass
class VoiceLoraArguments:
    model_name_or_path: str = field(default="canopylabs/orpheus-3b-0.1-ft", metadata={
        "help": "Orpheus base: -ft keeps emotion tags; a dialect model from pretrain_dialects.py for a dialect voice"})
    build_tiny_model: bool = field(default=False, metadata={"help": "demo only: build the tiny offline model if missing"})
    dataset: str = field(default="demo", metadata={"help": "'demo', a data_prep save_to_disk folder, or a Hub id"})
    dataset_config: str | None = None
    speakers: list[str] | None = field(default=None, metadata={"help": "speaker id(s) of the voice (schema column)"})
    voice: str | None = field(default=None, metadata={"help": "prompt label (default: the first speaker id)"})
    validation_fraction: float = 0.05
    tokenized_dataset: str | None = field(default=None, metadata={"help": "rows from tokenize_dataset.py instead"})
    packing: bool = True
    packing_max_tokens: int | None = field(default=None, metadata={
        "help": "token budget of one packed row of whole clips (default: max_length)"})
    loss_on: str = field(default="all", metadata={"help": "'all' or 'audio'"})
    attn_implementation: str = "auto"
    # Defaults: Canopy's finetune/lora.py (48.6 M trainable on the 3B). Unsloth's notebook: r 64, alpha 64,
    # use_rslora false, lr 2e-4 (97 M). The former small default (r 16, alpha 32, dropout 0.05, attention only,
    # 9.2 M) is still `--lora_target attention --lora_r 16 --lora_alpha 32 --use_rslora false`.
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    lora_target: str = field(default="all", metadata={"help": "'all' (q/k/v/o/gate/up/down) or 'attention' (q/k/v/o)"})
    use_rslora: bool = field(default=True, metadata={"help": "scale by alpha/sqrt(r) instead of alpha/r"})
    lora_modules_to_save: list[str] | None = field(default=None, metadata={
        "help": "e.g. [embed_tokens, lm_head]: full trainable copies, ~1 B extra parameters on the 3B model"})
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA: 4-bit NF4 base via bitsandbytes (CUDA only)"})
    merge: bool = field(default=False, metadata={"help": "also write <output_dir>/merged (base with the adapter folded in)"})
    push_merged: bool = field(default=False, metadata={"help": "with push_to_hub: push the merged model to <hub_model_id>-merged"})
    sample_every_n_steps: int | None = None
    sample_text: str = "Bon dia, avui fa un dia molt bonic."
    sample_max_new_tokens: int = 600
    sample_min_new_tokens: int = 0
    sample_temperature: float = 0.6
    language: str = "ca"

    def __post_init__(self):
        if not self.speakers:
            raise ValueError("set speakers: the voice's speaker id(s) from the dataset's `speaker` column")
        if self.lora_target not in ("attention", "all"):
            raise ValueError(f"lora_target must be 'attention' or 'all', got {self.lora_target!r}")
        if self.loss_on not in ("all", "audio"):
            raise ValueError(f"loss_on must be 'all' or 'audio', got {self.loss_on!r}")
        if self.load_in_4bit:
            import torch

            if not torch.cuda.is_available():
                raise ValueError("load_in_4bit (QLoRA) needs a CUDA GPU: bitsandbytes 4-bit layers do not train on "
                                 "CPU. Drop --load_in_4bit (plain LoRA works on CPU for the demo).")
        self.voice = layout.normalize_label(self.voice or self.speakers[0])


def lora_config(args: VoiceLoraArguments):
    from peft import LoraConfig

    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", use_rslora=args.use_rslora,
                      target_modules=ALL_PROJECTIONS if args.lora_target == "all" else ATTENTION_PROJECTIONS,
                      modules_to_save=args.lora_modules_to_save or None)


def lora_model(model, args: VoiceLoraArguments):
    """peft model with fp32 trainable weights: the LoRA matrices and any `modules_to_save` copy (peft copies
    those in the base's dtype, and AdamW on bf16 weights rounds most updates away). The frozen base keeps its
    dtype (bf16 or 4-bit); the Trainer's bf16 autocast runs the mixed forward pass."""
    from peft import get_peft_model

    from recipes.orpheus.training import upcast_trainable_parameters

    model = get_peft_model(model, lora_config(args))
    upcast_trainable_parameters(model)
    return model


def load_base(args: VoiceLoraArguments, bf16: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recipes.common import explain_hub_errors
    from recipes.orpheus.training import resolve_attn_implementation

    kwargs = {"attn_implementation": resolve_attn_implementation(args.attn_implementation),
              "dtype": torch.bfloat16 if bf16 or args.load_in_4bit else torch.float32}
    if args.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    with explain_hub_errors(f"Orpheus model '{args.model_name_or_path}'", DEMO_COMMAND):
        tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
        model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, **kwargs)
    layout.check_tokenizer(tokenizer, model.config.vocab_size, where=f"tokenizer of {args.model_name_or_path}")
    return model, tokenizer


def merge_adapter(adapter_dir: str, out_dir: str, dtype=None) -> str:
    """Fold the adapter into a fresh copy of its base and save a plain model (+ tokenizer, recipe file)."""
    import shutil

    from recipes.orpheus.generate import RECIPE_FILE, load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer(adapter_dir, device="cpu", dtype=dtype)
    merged = model.merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if (Path(adapter_dir) / RECIPE_FILE).exists():
        shutil.copy(Path(adapter_dir) / RECIPE_FILE, Path(out_dir) / RECIPE_FILE)
    return out_dir


def main(args: VoiceLoraArguments, tok_args: TokenizeArguments, training_args: OrpheusTrainingArguments):
    from datasets import DatasetDict, load_from_disk
    from peft import prepare_model_for_kbit_training
    from transformers import set_seed

    from data_prep.loading import load_prepared_dataset
    from recipes.common import AudioSampleLogger, log_trainable_parameters, push_folder_to_hub, resume_checkpoint, \
        write_model_card
    from recipes.orpheus.generate import RECIPE_FILE, OrpheusSynthesizer
    from recipes.orpheus.tokenize_dataset import SnacAudioTokenizer, load_snac, tokenize_splits
    from recipes.orpheus.training import (AudioSampleCallback, OrpheusCollator, OrpheusTrainer, hub_repo_id,
                                          plot_loss_curve)

    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(training_args.seed)

    # ---- 1. base model -------------------------------------------------------------------------------
    if args.build_tiny_model:
        from recipes.orpheus.build_tiny import build_tiny_orpheus

        with training_args.main_process_first(desc="build tiny model"):
            build_tiny_orpheus(Path(args.model_name_or_path).parent)
    if args.model_name_or_path.startswith(("outputs/", "./", "/")) and not os.path.isdir(args.model_name_or_path):
        raise SystemExit(f"base model folder {args.model_name_or_path} does not exist. For the demo, train the dialect "
                         "model first: python recipes/orpheus/pretrain_dialects.py --config "
                         "recipes/orpheus/configs/demo.yaml (or point model_name_or_path at an Orpheus checkpoint).")
    model, tokenizer = load_base(args, training_args.bf16)
    model.config.use_cache = False  # a cache disables the packed-sequence mask (notes, pitfall 13)

    # ---- 2. the voice's clips ------------------------------------------------------------------------
    if args.tokenized_dataset:
        rows = load_from_disk(args.tokenized_dataset)
        wanted = set(args.speakers)
        rows = DatasetDict({k: v.filter(lambda s: s in wanted, input_columns="speaker") for k, v in rows.items()})
        # rows were written with another prompt: rebuild their prompt around the stored audio
        rows = DatasetDict({k: _relabel(v, tokenizer, args.voice) for k, v in rows.items()})
        report = {"source": args.tokenized_dataset}
    else:
        splits = load_prepared_dataset(args.dataset, config_name=args.dataset_config, speakers=args.speakers,
                                       validation_fraction=args.validation_fraction, seed=training_args.seed)
        cache_root = tok_args.snac_cache_dir or os.path.join(training_args.output_dir, "snac_cache")
        with training_args.main_process_first(desc="SNAC tokenisation"):
            rows, report = tokenize_splits(splits, tokenizer, tok_args, cache_root, device=str(training_args.device),
                                           voice=args.voice)
    if len(rows["train"]) == 0:
        raise ValueError(f"no training rows for speakers {args.speakers} (report: {report})")
    clips = len(rows["train"])
    minutes = float(sum(rows["train"]["duration"])) / 60
    if clips < MIN_CLIPS or minutes < MIN_MINUTES:
        logger.warning("Only %d clips / %.1f minutes of '%s'. Voice LoRAs are reported to need ~300 clips or 30+ "
                       "minutes (notes §7); expect a weak or unstable voice.", clips, minutes, args.voice)

    # ---- 3. LoRA ---------------------------------------------------------------------------------------
    if args.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=training_args.activation_checkpointing)
    if training_args.activation_checkpointing:
        training_args.activation_checkpointing_kwargs = training_args.activation_checkpointing_kwargs or {"use_reentrant": False}
        model.enable_input_require_grads()
    model = lora_model(model, args)
    trainable, total = log_trainable_parameters(model, logger.info)

    # ---- 4. train --------------------------------------------------------------------------------------
    snac_holder = {}

    def make_synthesizer(current_model):
        if "snac" not in snac_holder:
            snac_holder["snac"] = SnacAudioTokenizer(load_snac(tok_args.snac_model, str(training_args.device)), False)
        return OrpheusSynthesizer(current_model, tokenizer, snac_holder["snac"], voice=args.voice,
                                  temperature=args.sample_temperature, max_new_tokens=args.sample_max_new_tokens,
                                  min_new_tokens=args.sample_min_new_tokens,
                                  seed=training_args.seed)

    sample_logger = AudioSampleLogger(os.environ.get("TENSORBOARD_LOGGING_DIR")
                                      or os.path.join(training_args.output_dir, "runs", "samples"),
                                      training_args.output_dir, training_args.report_to)
    has_validation = "validation" in rows and len(rows["validation"]) > 0
    if not has_validation and training_args.eval_strategy != "no":
        from transformers.trainer_utils import IntervalStrategy

        logger.warning("no validation clips for %s: evaluation is turned off (raise validation_fraction to keep it)",
                       args.speakers)
        training_args.eval_strategy = IntervalStrategy.NO
    trainer = OrpheusTrainer(
        model=model, args=training_args, train_dataset=rows["train"],
        eval_dataset=rows["validation"] if has_validation and training_args.eval_strategy != "no" else None,
        data_collator=OrpheusCollator(packing=args.packing, loss_on=args.loss_on), processing_class=tokenizer,
        packing_max_tokens=(args.packing_max_tokens or tok_args.max_length) if args.packing else None,
        callbacks=[AudioSampleCallback(make_synthesizer, {args.voice: {"text": args.sample_text}},
                                       args.sample_every_n_steps, sample_logger,
                                       final_dir=os.path.join(training_args.output_dir, "final_samples"))],
    )
    recipe_info = {"snac_model": tok_args.snac_model, "prompt_label": "none", "voice": args.voice,
                   "prompt_format": "{voice}: {text}", "base_model": args.model_name_or_path}
    if trainer.is_world_process_zero():
        os.makedirs(training_args.output_dir, exist_ok=True)
        Path(training_args.output_dir, RECIPE_FILE).write_text(json.dumps(recipe_info, indent=2))
    result = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    if metrics:
        trainer.save_metrics("eval", metrics)
    trainer.save_state()

    # ---- 5. adapter, merge, card, push ---------------------------------------------------------------
    trainer.save_model(training_args.output_dir)  # adapter_model.safetensors + adapter_config.json
    if not trainer.is_world_process_zero():
        return trainer
    tokenizer.save_pretrained(training_args.output_dir)
    plot_loss_curve(trainer.state.log_history, Path(training_args.output_dir) / "loss_curve.png")
    merged_dir = merge_adapter(training_args.output_dir, os.path.join(training_args.output_dir, "merged")) \
        if args.merge else None
    targets = ALL_PROJECTIONS if args.lora_target == "all" else ATTENTION_PROJECTIONS
    card = dict(
        title=f"Orpheus voice LoRA: {args.voice}", base_model=hub_repo_id(args.model_name_or_path), license="llama3.2",
        language=[args.language],
        summary=(f"LoRA adapter teaching `{args.model_name_or_path}` the voice `{args.voice}` from {clips} clips "
                 f"({minutes:.1f} minutes, speakers {', '.join(args.speakers)}) in {trainer.state.global_step} steps, "
                 "trained with `recipes/orpheus/finetune_voice_lora.py`."),
        sections={
            "Prompt format": f"`{args.voice}: {{text}}` inside `[128259] <|begin_of_text|>... [128009, 128260, 128261, "
                             "128257]`; generation stops at 128258.",
            "LoRA": f"r {args.lora_r}, alpha {args.lora_alpha}, dropout {args.lora_dropout}, rsLoRA {args.use_rslora}, "
                    f"targets {targets}, modules_to_save {args.lora_modules_to_save}, 4-bit base {args.load_in_4bit}; "
                    f"{trainable:,} trainable of {total:,} parameters.",
            "Use": "`python recipes/orpheus/generate.py --model <adapter repo or folder> --text \"...\"` (adapter), "
                   "or the merged model folder. Listen to both: merged models are reported to sound worse "
                   "(notes, pitfall 4).",
            "Data": f"Dataset `{args.tokenized_dataset or args.dataset}`, tokenisation report: {json.dumps(report)}",
        },
        tags=["orpheus", "lora", "peft", "voice"], metrics={k: float(v) for k, v in metrics.items() if k.endswith("loss")},
    )
    write_model_card(training_args.output_dir, **card)
    if merged_dir:
        write_model_card(merged_dir, **{**card, "title": f"Orpheus voice {args.voice} (LoRA merged)"})
    if training_args.push_to_hub:
        if not training_args.hub_model_id:
            raise SystemExit("push_to_hub needs hub_model_id (e.g. your-name/orpheus-voice-x)")
        print(push_folder_to_hub(training_args.output_dir, training_args.hub_model_id, training_args.hub_private_repo,
                                 ignore_patterns=["checkpoint-*", "merged/*", "snac_cache/*", "runs/*", "*.pt"]))
        if merged_dir and args.push_merged:
            print(push_folder_to_hub(merged_dir, f"{training_args.hub_model_id}-merged", training_args.hub_private_repo))
    logger.info("adapter in %s%s", training_args.output_dir, f", merged model in {merged_dir}" if merged_dir else "")
    return trainer


def _relabel(rows, tokenizer, voice: str):
    def rebuild(row):
        audio = row["input_ids"][row["audio_start"]:row["audio_start"] + row["n_audio_tokens"]]
        ids, start = layout.tts_row(layout.text_ids(tokenizer, layout.format_prompt(voice, row["text"])), audio)
        return {"input_ids": ids, "audio_start": start}

    return rows.map(rebuild)


def make_parser_args(argv: list[str] | None = None):
    from recipes.common import parse_recipe_args

    # no --config: the real recipe (offline, that fails with a message pointing to the demo)
    return parse_recipe_args(VoiceLoraArguments, TokenizeArguments, OrpheusTrainingArguments, default_config=DEFAULT_CONFIG, argv=argv)


if __name__ == "__main__":
    from recipes.common import finish_distributed

    main(*make_parser_args())
    finish_distributed()
