"""Text front end shared by the TTS recipes and the evaluation: digits and symbols -> spoken words.

    from data_prep.text_normalize import normalize_text
    normalize_text("R$ 19,50 no dia 15/03/2024", "pt-br")
    # -> "dezenove reais e cinquenta centavos no dia quinze de março de dois mil e vinte e quatro"

A TTS model can only say what its training text spelled out, so the same function must run on the
training transcripts and on the text given at inference (and on both sides of a WER comparison).
The rules per language live in `data_prep/mappings/tts_text_normalization.yaml` (abbreviations, month
names, currency units, ordinal suffixes); this module only knows the kinds of rule. Case is preserved:
whether to lower-case is the caller's decision (XTTS does, F5 does not).

Language codes are read case-insensitively with "_" as "-" ("pt_BR" == "pt-br"); a dialect code falls
back to its base ("ca-valencia" -> "ca"), and `aliases` in the rule file map other codes ("pt" -> "pt-br").
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RULES = Path(__file__).resolve().parent / "mappings" / "tts_text_normalization.yaml"
_SPACES = re.compile(r"[ \t]+")


class UnsupportedLanguageError(ValueError):
    """No normalisation rules for a language; the message names the rule file and the known languages."""


@dataclass(frozen=True)
class _Rules:
    code: str
    number_language: str
    decimal_separator: str
    thousands_separator: str
    decimal_word: str
    percent_word: str | None
    large_number_words: frozenset
    abbreviations: tuple  # (compiled regex, {lower-cased written form: expansion})
    symbols: dict
    ordinal_masculine: re.Pattern | None
    ordinal_feminine: re.Pattern | None
    feminine_rules: tuple
    dates: dict | None
    currencies: tuple  # ((compiled regex, currency dict), ...)
    feminine_nouns: frozenset
    feminine_cardinal_rules: tuple
    amount: str  # regex of a written amount, for currencies/percentages


def _amount_regex(thousands: str, decimal: str) -> str:
    """An amount as written: 1.234.567,89 | 1234,5 | 12 (thousands groups must be exactly 3 digits)."""
    t, d = re.escape(thousands), re.escape(decimal)
    return rf"(?:\d{{1,3}}(?:{t}\d{{3}})+|\d+)(?:{d}\d+)?"


@functools.lru_cache(maxsize=8)
def _load_file(path: str) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config.get("languages"), dict):
        raise ValueError(f"{path}: expected a top-level 'languages:' mapping of language code -> rules")
    return config


def _code_key(code: str) -> str:
    return str(code).strip().lower().replace("_", "-")


def resolve_language(language: str, rules_path: str | os.PathLike | None = None) -> str:
    """The rule-file section used for `language` (e.g. "pt_BR" -> "pt-br", "ca-balear" -> "ca")."""
    path = str(rules_path or DEFAULT_RULES)
    config = _load_file(path)
    sections = {_code_key(k): k for k in config["languages"]}
    aliases = {_code_key(k): v for k, v in (config.get("aliases") or {}).items()}
    key = _code_key(language or "")
    for candidate in (key, key.split("-")[0]):
        if candidate in aliases:
            target = aliases[candidate]
            if target is None:
                break  # an explicit "no rules" entry: fall through to the error
            return sections[_code_key(target)]
        if candidate in sections:
            return sections[candidate]
    raise UnsupportedLanguageError(
        f"no text normalisation rules for language {language!r} in {path}; known: {sorted(sections)} "
        f"(aliases: {sorted(k for k, v in aliases.items() if v)}). Add a section to that file, or turn "
        f"text normalisation off for this language.")


def supported(language: str, rules_path: str | os.PathLike | None = None) -> bool:
    """Whether `normalize_text` has rules for `language` (callers that normalise only where possible)."""
    try:
        resolve_language(language, rules_path)
    except UnsupportedLanguageError:
        return False
    return True


@functools.lru_cache(maxsize=32)
def _rules(section: str, path: str) -> _Rules:
    raw = _load_file(path)["languages"][section] or {}
    if "number_language" not in raw:
        raise ValueError(f"{path}: language {section!r} needs number_language (a num2words code)")
    thousands, decimal = raw.get("thousands_separator", "."), raw.get("decimal_separator", ",")
    amount = _amount_regex(thousands, decimal)

    abbreviations = raw.get("abbreviations") or {}
    abbreviation_re = None
    if abbreviations:
        # Longest first so "Sra." wins over "Sr."; a written form that ends in a letter must end a word.
        parts = [re.escape(a) + (r"(?!\w)" if a[-1].isalnum() else "")
                 for a in sorted(abbreviations, key=len, reverse=True)]
        abbreviation_re = re.compile(r"(?<!\w)(" + "|".join(parts) + r")(\s*$)?", re.IGNORECASE | re.MULTILINE)
    abbreviation_map = {a.lower(): str(e) for a, e in abbreviations.items()}

    ordinals = raw.get("ordinals") or {}

    def suffixes(kind):
        found = ordinals.get(kind) or []
        return re.compile(r"(?<![\w.,])(\d+)(?:" + "|".join(found) + r")(?!\w)") if found else None

    currencies = []
    for currency in raw.get("currencies") or []:
        symbols = "|".join(re.escape(s) for s in sorted(currency["symbols"], key=len, reverse=True))
        scale = "|".join(re.escape(w) for w in sorted(["mil", *raw.get("large_number_words", [])], key=len, reverse=True))
        # symbol before ("R$ 19,50") or after ("19,50 €") the amount, optionally with a scale word ("R$ 2 milhões")
        pattern = (rf"(?<![\w$])(?:(?:{symbols})\s?(?P<a1>{amount})(?:\s+(?P<s1>{scale})(?!\w))?(?!\d)"
                   rf"|(?P<a2>{amount})(?:\s+(?P<s2>{scale})(?!\w))?\s?(?:{symbols}))")
        currencies.append((re.compile(pattern), currency))

    dates = raw.get("dates")
    if dates and len(dates.get("months") or []) != 12:
        raise ValueError(f"{path}: {section}.dates.months must list 12 month names, January first")

    return _Rules(
        code=section,
        number_language=raw["number_language"],
        decimal_separator=decimal,
        thousands_separator=thousands,
        decimal_word=raw.get("decimal_word", decimal),
        percent_word=raw.get("percent_word"),
        large_number_words=frozenset(raw.get("large_number_words") or []),
        abbreviations=(abbreviation_re, abbreviation_map),
        symbols=dict(raw.get("symbols") or {}),
        ordinal_masculine=suffixes("masculine"),
        ordinal_feminine=suffixes("feminine"),
        feminine_rules=tuple((re.compile(a), b) for a, b in ordinals.get("feminine_rules") or []),
        dates=dates,
        currencies=tuple(currencies),
        feminine_nouns=frozenset(w.lower() for w in (raw.get("feminine_cardinals") or {}).get("nouns") or []),
        feminine_cardinal_rules=tuple((re.compile(a), b)
                                      for a, b in (raw.get("feminine_cardinals") or {}).get("rules") or []),
        amount=amount,
    )


# ---- spelling --------------------------------------------------------------------------------------------

def _cardinal(number: int, rules: _Rules) -> str:
    from num2words import num2words

    # num2words pt_BR separates groups with commas ("mil, novecentos e ..."): a TTS model would pause there.
    return num2words(number, lang=rules.number_language).replace(",", "")


def _ordinal(number: int, rules: _Rules, feminine: bool) -> str:
    from num2words import num2words

    words = num2words(number, lang=rules.number_language, to="ordinal").replace(",", "")
    if not feminine:
        return words
    out = []
    for word in words.split(" "):
        for pattern, replacement in rules.feminine_rules:
            if pattern.search(word):
                word = pattern.sub(replacement, word, count=1)
                break
        out.append(word)
    return " ".join(out)


def _split_amount(written: str, rules: _Rules) -> tuple[int, str]:
    """("1.234,50") -> (1234, "50"): integer part and the fraction's digits as written."""
    integer, _, fraction = written.partition(rules.decimal_separator)
    return int(integer.replace(rules.thousands_separator, "")), fraction


def _fraction_words(digits: str, rules: _Rules) -> str:
    # Read as people do: "3,14" -> "três vírgula catorze"; leading zeros one by one ("0,05" -> "zero zero cinco").
    stripped = digits.lstrip("0")
    words = [_cardinal(0, rules)] * (len(digits) - len(stripped))
    if stripped:
        words.append(_cardinal(int(stripped), rules))
    return " ".join(words)


def _number_words(written: str, rules: _Rules) -> str:
    integer, fraction = _split_amount(written, rules)
    if len(written) > 1 and written[0] == "0" and not fraction:
        # "007", codes, phone prefixes: digit by digit
        return " ".join(_cardinal(int(d), rules) for d in written)
    words = _cardinal(integer, rules)
    if fraction:
        words += f" {rules.decimal_word} {_fraction_words(fraction, rules)}"
    return words


def _money(match: re.Match, currency: dict, rules: _Rules) -> str:
    written = match.group("a1") or match.group("a2")
    scale = match.group("s1") or match.group("s2")
    if scale:
        # "R$ 2,5 milhões" -> "dois vírgula cinco milhões de reais": the fraction is not cents here
        words = f"{_number_words(written, rules)} {scale}"
        unit = currency["plural_after_large"] if scale in rules.large_number_words else currency["plural"]
        return f"{words} {unit}"
    integer, fraction = _split_amount(written, rules)
    cents = int((fraction + "00")[:2]) if fraction else 0  # ",5" is fifty cents
    parts = []
    if integer or not cents:
        words = _cardinal(integer, rules)
        if integer == 1:
            unit = currency["singular"]
        elif words.split(" ")[-1] in rules.large_number_words:
            unit = currency["plural_after_large"]
        else:
            unit = currency["plural"]
        parts.append(f"{words} {unit}")
    if cents:
        unit = currency["cent_singular"] if cents == 1 else currency["cent_plural"]
        parts.append(f"{_cardinal(cents, rules)} {unit}")
    return f" {currency['joiner']} ".join(parts)


def _date(match: re.Match, rules: _Rules) -> str:
    day, month, year = int(match.group(1)), int(match.group(3)), match.group(4)
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return match.group(0)
    dates = rules.dates
    day_words = dates.get("first_day") if day == 1 and dates.get("first_day") else _cardinal(day, rules)
    return dates["template"].format(day=day_words, month=dates["months"][month - 1],
                                    year=_cardinal(int(year), rules))


def _abbreviation(match: re.Match, mapping: dict) -> str:
    written = match.group(1)
    expansion = mapping[written.lower()]
    # "o Sr. Silva" -> "o senhor Silva"; only a capitalised abbreviation that starts a sentence stays capitalised.
    before = match.string[:match.start()].rstrip()
    if written[0].isupper() and (not before or before[-1] in ".!?:\"'«—–-"):
        expansion = expansion[:1].upper() + expansion[1:]
    # An abbreviation that ends the text also ended the sentence: keep its full stop.
    if match.group(2) is not None and written.endswith("."):
        expansion += "."
    return expansion + (match.group(2) or "")


# ---- entry point -----------------------------------------------------------------------------------------

def normalize_text(text: str, language: str, rules_path: str | os.PathLike | None = None) -> str:
    """`text` with numbers, money, dates, percentages, ordinals and abbreviations spelled out for `language`.

    Raises UnsupportedLanguageError for a language without rules (see `supported`). Case is kept.
    """
    path = str(rules_path or DEFAULT_RULES)
    rules = _rules(resolve_language(language, path), path)
    text = unicodedata.normalize("NFC", text or "")

    pattern, mapping = rules.abbreviations
    if pattern is not None:
        text = pattern.sub(lambda m: _abbreviation(m, mapping), text)
    for currency_re, currency in rules.currencies:
        text = currency_re.sub(lambda m, c=currency: _money(m, c, rules), text)
    if rules.dates:
        text = re.sub(r"(?<![\d.,/])(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?![\d/])",
                      lambda m: _date(m, rules), text)
    if rules.percent_word:
        text = re.sub(rf"(?<![\d.,])({rules.amount})\s?%",
                      lambda m: f"{_number_words(m.group(1), rules)} {rules.percent_word}", text)
    if rules.ordinal_feminine is not None:
        text = rules.ordinal_feminine.sub(lambda m: _ordinal(int(m.group(1)), rules, feminine=True), text)
    if rules.ordinal_masculine is not None:
        text = rules.ordinal_masculine.sub(lambda m: _ordinal(int(m.group(1)), rules, feminine=False), text)
    # Remaining numbers; a number glued to a word ("MP3") is separated from it by a space.
    text = re.sub(rf"(?<!\d)({rules.amount})(?!\d)(?=(\s+\w+)?)",
                  lambda m: _pad(m, _agree(_number_words(m.group(1), rules), m.group(2), rules)), text)
    for symbol, words in rules.symbols.items():
        text = text.replace(symbol, words)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))


def _agree(words: str, next_word: str | None, rules: _Rules) -> str:
    """Feminine cardinal before a listed feminine noun ("2 horas" -> "duas horas"; num2words gives "dois")."""
    if not next_word or next_word.strip().lower() not in rules.feminine_nouns:
        return words
    out = []
    for word in words.split(" "):
        for pattern, replacement in rules.feminine_cardinal_rules:
            if pattern.search(word):
                word = pattern.sub(replacement, word, count=1)
                break
        out.append(word)
    return " ".join(out)


def _pad(match: re.Match, words: str) -> str:
    text, start, end = match.string, match.start(), match.end()
    before = " " if start > 0 and text[start - 1].isalpha() else ""
    after = " " if end < len(text) and text[end].isalpha() else ""
    return before + words + after
