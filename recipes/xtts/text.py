"""XTTS text front end: our normaliser, per-row language tags, new languages, sentence splitting.

Upstream `VoiceBpeTokenizer` cleans `pt` text with num2words `pt` (European: "16" -> "dezasseis") and
raises for any language it does not list. `XttsTextTokenizer` is a drop-in subclass that
  * runs `data_prep.text_normalize.normalize_text` first for the languages the model was trained
    with it (`normalizers`: XTTS tag -> normaliser language, e.g. {"pt": "pt-br"}), so training and
    inference spell numbers, money and dates the same (Brazilian) way;
  * speaks languages added to the vocabulary (`new_languages`: code -> character limit), with their
    dialect tags (`[ca_balear]`: "_" because XTTS cuts language codes at "-");
  * encodes the languages the base already knew with the base's own BPE (old ids, old merges only),
    so extending the vocabulary cannot change how `pt` or `it` text is tokenised.
What a model folder needs to rebuild it is the `text` entry of `xtts_adapter.json` (`TEXT_INFO_KEY`);
`load_tokenizer(folder)` reads it, and `use_text_frontend(xtts, folder)` puts the tokenizer into an
upstream `Xtts`, so upstream `synthesize`/`inference` go through it too.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

from recipes.xtts.modeling import RECIPE_INFO

# Languages upstream's tokenizer has a cleaner for.
UPSTREAM_LANGUAGES = ("ar", "cs", "de", "en", "es", "fr", "hi", "hu", "it", "ja", "ko", "nl", "pl", "pt", "ru",
                      "tr", "zh")
DEFAULT_CHAR_LIMIT = 200  # for a new language; upstream's limits range 71 (ja) .. 273 (fr), pt 203
TEXT_INFO_KEY = "text"
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?;:…])\s+")


def base_language(code: str) -> str:
    """XTTS language code without region or dialect: "pt-br" -> "pt", "ca_balear" -> "ca"."""
    return code.lower().split("-")[0].split("_")[0]


def xtts_tag(language: str, dialect: str | None = None, dialect_tags=()) -> str:
    """The XTTS language tag for a data row: its language without region ("pt-br" -> "pt"), or
    "<language>_<dialect>" when that dialect has its own tag in the vocabulary."""
    base = base_language(language)
    if dialect and f"{base}_{dialect.lower()}" in dialect_tags:
        return f"{base}_{dialect.lower()}"
    return base


def normalizer_for(language: str) -> str | None:
    """The normaliser language for a data language ("pt-br" -> "pt-br"), None when it has no rules."""
    from data_prep.text_normalize import resolve_language, supported

    return resolve_language(language) if supported(language) else None


class XttsTextTokenizer(VoiceBpeTokenizer):
    """`VoiceBpeTokenizer` plus our normaliser, new languages/dialect tags and frozen old-language encoding."""

    def __init__(self, vocab_file=None, normalizers: dict | None = None, new_languages: dict | None = None,
                 base_vocab_size: int | None = None, base_merges: int | None = None):
        super().__init__(vocab_file)
        self.vocab_file = vocab_file
        self.normalizers = {k.lower(): v for k, v in (normalizers or {}).items()}
        self.new_languages = {k.lower(): int(v) for k, v in (new_languages or {}).items()}
        self.char_limits.update(self.new_languages)
        self.base_vocab_size, self.base_merges = base_vocab_size, base_merges
        self.base_tokenizer = None
        if vocab_file is not None and base_vocab_size is not None:
            self.base_tokenizer = restricted_tokenizer(Path(vocab_file), base_vocab_size, base_merges)

    def info(self) -> dict:
        """What `load_tokenizer` needs besides vocab.json (stored under `text` in xtts_adapter.json)."""
        return {"normalizers": self.normalizers, "new_languages": self.new_languages,
                "base_vocab_size": self.base_vocab_size, "base_merges": self.base_merges}

    @property
    def languages(self) -> list[str]:
        """Every language/dialect tag the vocabulary has a token for."""
        tags = [t[1:-1] for t in self.tokenizer.get_vocab() if t.startswith("[") and t.endswith("]")]
        return sorted(t for t in tags if t == "zh-cn" or base_language(t) in UPSTREAM_LANGUAGES + tuple(
            self.new_languages))

    def normalize(self, txt: str, lang: str) -> str:
        """Our normaliser (numbers, money, dates, abbreviations) for the languages that use it; else `txt`."""
        language = self.normalizers.get(base_language(lang))
        if language is None:
            return txt
        from data_prep.text_normalize import normalize_text

        return normalize_text(txt, language)

    def preprocess_text(self, txt, lang):
        base = base_language(lang)
        txt = self.normalize(txt, lang)
        if base in self.new_languages:
            # What upstream's cleaner does for every language, without its per-language tables (the
            # normaliser above covered numbers and abbreviations from the rule file).
            return _SPACES.sub(" ", txt.lower()).strip()
        if base not in UPSTREAM_LANGUAGES:
            # NotImplementedError, as upstream raises for a language it lacks (the evaluation falls back on it)
            raise NotImplementedError(f"language '{lang}' is neither an XTTS language ({UPSTREAM_LANGUAGES}) nor "
                                      f"one added to this vocabulary ({sorted(self.new_languages)})")
        return super().preprocess_text(txt, base)

    def encode(self, txt, lang):
        lang = lang.lower().split("-")[0]  # upstream drops the region; "_dialect" stays
        base = base_language(lang)
        self.check_input_length(txt, base)
        txt = self.preprocess_text(txt, lang)
        tag = "zh-cn" if lang == "zh" else lang
        if self.tokenizer.token_to_id(f"[{tag}]") is None:
            raise ValueError(f"vocab.json has no [{tag}] token: the model was not trained with language '{lang}' "
                             f"(it knows {self.languages})")
        model = self.tokenizer if self.base_tokenizer is None or base in self.new_languages else self.base_tokenizer
        return model.encode(f"[{tag}]{txt}".replace(" ", "[SPACE]")).ids


def restricted_tokenizer(vocab_file: Path, vocab_size: int, merges: int | None):
    """The base BPE inside an extended vocab.json: ids < vocab_size and the first `merges` merges."""
    from tokenizers import Tokenizer

    spec = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
    spec["model"]["vocab"] = {t: i for t, i in spec["model"]["vocab"].items() if i < vocab_size}
    if merges is not None:
        spec["model"]["merges"] = spec["model"]["merges"][:merges]
    spec["added_tokens"] = [t for t in spec.get("added_tokens", []) if t["id"] < vocab_size]
    return Tokenizer.from_str(json.dumps(spec))


def read_text_info(folder: str | Path) -> dict:
    info_file = Path(folder) / RECIPE_INFO
    return json.loads(info_file.read_text()).get(TEXT_INFO_KEY, {}) if info_file.is_file() else {}


def load_tokenizer(folder: str | Path, vocab_file: str | Path | None = None) -> XttsTextTokenizer:
    """The tokenizer a model folder was trained with: its vocab.json and the `text` entry of its
    xtts_adapter.json (none for an upstream base folder: then it behaves as upstream's)."""
    return XttsTextTokenizer(str(vocab_file or Path(folder) / "vocab.json"), **read_text_info(folder))


def use_text_frontend(xtts, folder: str | Path) -> XttsTextTokenizer:
    """Swap an upstream `Xtts`'s tokenizer for the one `folder` was trained with (same vocab.json, so
    the model's sizes still match) and return it."""
    xtts.tokenizer = load_tokenizer(folder)
    return xtts.tokenizer


def split_text(text: str, limit: int) -> list[str]:
    """Sentences packed into chunks of at most `limit` characters, as upstream inference's
    `split_sentence` does (sentences joined while they fit, an over-long sentence wrapped at words)
    but without spaCy (not installed) and for any language."""
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= limit:
        return [text] if text else []
    chunks: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pieces = textwrap.wrap(sentence, width=limit, break_long_words=True, break_on_hyphens=False) \
            if len(sentence) > limit else [sentence]
        for piece in pieces:
            if chunks and len(chunks[-1]) + 1 + len(piece) <= limit:
                chunks[-1] += " " + piece
            else:
                chunks.append(piece)
    return chunks
