"""Build a tiny offline Orpheus: Llama with the real token layout, a local tokenizer, and a random SNAC.

    python recipes/orpheus/build_tiny.py --out outputs/orpheus/tiny

Writes `<out>/model` (LlamaForCausalLM + tokenizer) and `<out>/snac` (config.json + pytorch_model.bin,
loadable with `snac.SNAC.from_pretrained(<out>/snac)`). Used by `configs/demo.yaml`, the LoRA demo and
the tests. Shapes are the real ones shrunk: vocab_size stays 156,939 so every Orpheus id exists; only
widths and depth shrink. The tokenizer is a small BPE trained on the demo corpus text with the Llama-3
specials and `<custom_token_i>` placed at exactly the ids the real Orpheus tokenizer gives them.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from recipes.orpheus import layout

# hubertsiuzdak/snac_24khz config.json (notes §4).
SNAC_24KHZ_CONFIG = {
    "sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 1024,
    "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 8,
    "vq_strides": [4, 2, 1], "noise": True, "depthwise": True,
}

# Llama-3.2-3B as Orpheus uses it (notes §5); `tiny_llama_config` shrinks widths and depth only.
LLAMA_3_2_3B_ORPHEUS = {
    "vocab_size": layout.MIN_VOCAB_SIZE, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
    "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": True,
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    # eos as in the tokenizer (<|eot_id|>); generation stops on END_OF_SPEECH via generation_config / generate.py.
    "bos_token_id": layout.BEGIN_OF_TEXT, "eos_token_id": layout.END_OF_TEXT, "pad_token_id": layout.PAD,
}
TINY_OVERRIDES = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "num_key_value_heads": 2, "head_dim": 16}

LLAMA3_SPECIALS = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006,
                   "<|end_header_id|>": 128007, "<|eot_id|>": 128009}


def tiny_llama_config(**overrides):
    from transformers import LlamaConfig

    return LlamaConfig(**{**LLAMA_3_2_3B_ORPHEUS, **TINY_OVERRIDES, **overrides})


def build_tiny_tokenizer(texts: list[str], vocab_size: int = 400):
    """BPE on `texts`, then the Llama-3 specials and 28,683 custom tokens at their Orpheus ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    spec = json.loads(bpe.to_str())
    if max(spec["model"]["vocab"].values()) >= layout.BEGIN_OF_TEXT:
        raise ValueError("tiny BPE vocabulary overlaps the Llama-3 special ids")
    # Specials live in the model vocabulary at fixed ids (the ids are gaps, not a contiguous range), and are
    # registered as added tokens so they are never split.
    specials = {**LLAMA3_SPECIALS,
                **{layout.custom_token(i): layout.CUSTOM_TOKEN_OFFSET + i for i in range(layout.N_CUSTOM_TOKENS)}}
    spec["model"]["vocab"].update(specials)
    # Like the Llama-3 tokenizer, prepend <|begin_of_text|> when add_special_tokens=True.
    spec["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                         {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                       {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>",
                                                                       "ids": [layout.BEGIN_OF_TEXT],
                                                                       "tokens": ["<|begin_of_text|>"]}}}
    spec["added_tokens"] = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for t, i in specials.items()]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                        bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                        pad_token=layout.custom_token(layout.PAD - layout.CUSTOM_TOKEN_OFFSET))
    return tokenizer


def demo_texts() -> list[str]:
    from data_prep.demo_corpus import read_manifest

    texts = [row["text"] for row in read_manifest()]
    # A little generic text so prompts outside the corpus (labels, punctuation) still tokenise compactly.
    texts += ["central: balear: valencia: nord-occidental: septentrional: voice: speaker: dialect:",
              "The quick brown fox jumps over the lazy dog. 0123456789 ,.;:!?'\"()-"]
    return texts


def build_tiny_orpheus(out_dir: str | os.PathLike, seed: int = 0, overwrite: bool = False) -> dict[str, str]:
    """Write the tiny model, tokenizer and SNAC under `out_dir` (reused when already complete)."""
    import torch
    from snac import SNAC
    from transformers import LlamaForCausalLM

    out = Path(out_dir)
    paths = {"model": str(out / "model"), "snac": str(out / "snac")}
    done = out / "BUILD_COMPLETE"
    if done.exists() and not overwrite:
        return paths
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer(demo_texts())
    layout.check_tokenizer(tokenizer, layout.MIN_VOCAB_SIZE, where="tiny tokenizer")
    model = LlamaForCausalLM(tiny_llama_config())
    model.generation_config.eos_token_id = layout.END_OF_SPEECH
    model.generation_config.pad_token_id = layout.PAD
    model.save_pretrained(paths["model"])
    tokenizer.save_pretrained(paths["model"])

    snac = SNAC(**SNAC_24KHZ_CONFIG)
    Path(paths["snac"]).mkdir(parents=True, exist_ok=True)
    (Path(paths["snac"]) / "config.json").write_text(json.dumps(SNAC_24KHZ_CONFIG, indent=2))
    torch.save(snac.state_dict(), Path(paths["snac"]) / "pytorch_model.bin")
    done.write_text(json.dumps(paths))
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/orpheus/tiny", help="folder to write model/ and snac/ into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    print(json.dumps(build_tiny_orpheus(args.out, args.seed, args.overwrite), indent=2))


if __name__ == "__main__":
    main()
