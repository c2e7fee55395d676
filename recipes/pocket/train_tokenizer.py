"""Train the SentencePiece tokenizer(s) a Pocket TTS fine-tune reads its text with.

Pocket's text conditioner is a lookup table whose size must equal the tokenizer's vocabulary
(`lookup_table.n_bins`); a new language needs its own pieces, so the recipe trains a BPE model on
the training transcripts, normalised exactly as `pocket_tts` normalises text at inference.

    # one shared model for several languages, with a <lang> tag piece per language
    python recipes/pocket/train_tokenizer.py --dataset demo --languages fr es de it pt-br \
        --language_tags --vocab_size 4000 --output_dir outputs/pocket-tokenizer
    # one model per language: outputs/pocket-tokenizer/<lang>/tokenizer.model
    python recipes/pocket/train_tokenizer.py --dataset my_cv_fr --per_language --output_dir outputs/tok

`finetune_multilingual.py` calls `train_tokenizer(...)` itself when `tokenizer_path` is unset.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def train_tokenizer(
    texts: list[str],
    output_prefix: str,
    *,
    vocab_size: int = 4000,
    character_coverage: float = 1.0,
    user_symbols: list[str] | None = None,
) -> Path:
    """Train a BPE SentencePiece model; returns the `.model` path. The vocabulary may come out smaller
    than `vocab_size` on little text (no hard limit); read the real size from the model."""
    import io

    import sentencepiece as spm

    if not texts:
        raise ValueError("no training text for the tokenizer")
    Path(output_prefix).parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        hard_vocab_limit=False,
        user_defined_symbols=user_symbols or [],
        # Pocket pads the LUT with its own extra row; no <pad>/<s>/</s> needed, but keep <unk>.
        pad_id=-1, bos_id=-1, eos_id=-1, unk_id=0,
        byte_fallback=False,
        split_digits=True,
        minloglevel=2,
    )
    path = Path(f"{output_prefix}.model")
    path.write_bytes(model.getvalue())
    return path


def tokenizer_texts(dataset, use_language_tag: bool, options: dict | None = None) -> list[str]:
    """Training texts as the model will read them (`options`: `data.text_options(model config)`)."""
    from recipes.pocket.data import normalize_text

    languages = dataset["language"] if "language" in dataset.column_names else dataset["dialect"]
    return [normalize_text(t, lang, use_language_tag, options) for t, lang in zip(dataset["text"], languages)
            if t and t.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="demo | save_to_disk folder | Hub id | manifest .json")
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--vocab_size", type=int, default=4000)
    parser.add_argument("--character_coverage", type=float, default=1.0, help="0.9995 for CJK")
    parser.add_argument("--language_tags", action="store_true", help="prefix texts with <lang> (shared model)")
    parser.add_argument("--per_language", action="store_true", help="one tokenizer per language")
    parser.add_argument("--base_model", default="english_2026-04_24l",
                        help="pocket_tts config the model starts from: its text settings (character replacements) "
                             "are applied to the texts, as at inference")
    args = parser.parse_args(argv)
    if args.per_language and args.language_tags:
        parser.error("--language_tags only makes sense for a shared tokenizer")

    from recipes.pocket.data import language_tag, load_recipe_dataset, text_options
    from recipes.pocket.modeling import load_base_config

    options = text_options(load_base_config(args.base_model))

    train = load_recipe_dataset(args.dataset, languages=args.languages)["train"]
    column = "language" if "language" in train.column_names else "dialect"
    languages = sorted(set(train[column]))
    out = Path(args.output_dir)
    if args.per_language:
        for lang in languages:
            subset = train.filter(lambda v: v == lang, input_columns=[column])
            path = train_tokenizer(tokenizer_texts(subset, False, options), str(out / lang / "tokenizer"),
                                   vocab_size=args.vocab_size, character_coverage=args.character_coverage)
            print(f"{lang}: {path}")
    else:
        symbols = [language_tag(lang) for lang in languages] if args.language_tags else None
        path = train_tokenizer(tokenizer_texts(train, args.language_tags, options), str(out / "tokenizer"),
                               vocab_size=args.vocab_size, character_coverage=args.character_coverage, user_symbols=symbols)
        print(path)


if __name__ == "__main__":
    main()
