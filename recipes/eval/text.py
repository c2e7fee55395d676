"""Per-language transcript normalisation for WER/CER, configured in `configs/languages.yaml`.

The rules (documented in that file) are data, not code: a new language or a different treatment of
numbers is a YAML edit. Both the reference text and the ASR transcript go through the same function.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_LANGUAGE_CONFIG = Path(__file__).resolve().parent / "configs" / "languages.yaml"
_DIGITS = re.compile(r"[0-9]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class LanguageRules:
    unicode_form: str = "NFC"
    lowercase: bool = True
    replacements: dict = field(default_factory=dict)
    numbers: str = "words"
    number_language: str | None = None
    punctuation: str = "space"
    keep_characters: str = ""
    asr_language: str | None = None
    spoken_form: bool = False

    def __post_init__(self):
        if self.numbers not in ("words", "keep", "remove"):
            raise ValueError(f"numbers must be words | keep | remove, got {self.numbers!r}")
        if self.punctuation not in ("space", "keep"):
            raise ValueError(f"punctuation must be space | keep, got {self.punctuation!r}")


class TextNormalizer:
    """`normalize(text, language)` and `asr_language(language)` from a languages YAML file."""

    def __init__(self, config: dict | str | Path | None = None):
        if config is None or isinstance(config, (str, Path)):
            import yaml

            path = Path(config or DEFAULT_LANGUAGE_CONFIG)
            with open(path, encoding="utf-8") as f:
                config = yaml.safe_load(f)
            # Repo-relative for the shipped file: results.json may be published, local paths should not be.
            self.source = "recipes/eval/configs/languages.yaml" if path.resolve() == DEFAULT_LANGUAGE_CONFIG else str(path)
        else:
            self.source = "<dict>"
        known = {f.name for f in fields(LanguageRules)}
        sections = [config.get("default") or {}, *[(rules or {}) for rules in (config.get("languages") or {}).values()]]
        unknown = sorted({key for section in sections for key in section if key not in known})
        if unknown:
            raise ValueError(f"{self.source}: unknown normaliser keys {unknown}; known keys are {sorted(known)}")
        self.default = LanguageRules(**(config.get("default") or {}))
        self.languages = {code: LanguageRules(**{**(config.get("default") or {}), **(rules or {})})
                          for code, rules in (config.get("languages") or {}).items()}
        self._warned: set[str] = set()

    def rules(self, language: str | None) -> LanguageRules:
        if language is None:
            return self.default
        return self.languages.get(language, self.default)

    def asr_language(self, language: str | None) -> str | None:
        """The Whisper language code for a schema language (None lets the ASR detect it)."""
        if language is None:
            return None
        return self.rules(language).asr_language or language.split("-")[0].lower()

    def normalize(self, text: str, language: str | None = None) -> str:
        rules = self.rules(language)
        text = unicodedata.normalize(rules.unicode_form, text or "")
        if rules.spoken_form:
            # The TTS front end's own spelling (money, dates, decimals, ordinals, abbreviations), so a model
            # that said "dezenove reais" for "R$ 19,50" is not charged for it.
            from data_prep.text_normalize import normalize_text

            text = normalize_text(text, language)
        if rules.lowercase:
            text = text.casefold()
        for old, new in rules.replacements.items():
            text = text.replace(old, new)
        if rules.numbers == "words":
            text = _DIGITS.sub(lambda m: " " + self._spell(int(m.group()), rules, language) + " ", text)
        elif rules.numbers == "remove":
            text = _DIGITS.sub(" ", text)
        if rules.punctuation == "space":
            keep = set(rules.keep_characters)
            text = "".join(" " if unicodedata.category(ch)[0] in "PS" and ch not in keep else ch for ch in text)
        return _SPACES.sub(" ", text).strip()

    def _spell(self, number: int, rules: LanguageRules, language: str | None) -> str:
        from num2words import num2words

        code = rules.number_language or (language or "en").replace("-", "_")
        try:
            words = num2words(number, lang=code)
        except NotImplementedError:
            if code not in self._warned:
                self._warned.add(code)
                logger.warning("num2words has no language %r; digits are kept as they are. Set number_language "
                               "for %r in %s.", code, language, self.source)
            return str(number)
        return unicodedata.normalize(rules.unicode_form, words.casefold() if rules.lowercase else words)
