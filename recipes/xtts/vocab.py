"""Extend an XTTS `vocab.json` for a language it does not know (and its dialect tags).

New BPE tokens and merges are learned from the new language's training text *after* the cleaning
used at training and inference (`XttsTextTokenizer.preprocess_text`), then APPENDED: every old token
keeps its id ([STOP]=0, [UNK]=1, [START], language tags ...) and the old merges keep their order
in front of the new ones. The language tag (`[ca]`) and dialect tags (`[ca_balear]`: no "-", XTTS
cuts codes at it) become special tokens. Old languages are encoded with the base part only (see
`recipes.xtts.text.restricted_tokenizer`), so their ids cannot change; `check_extension` proves it on
sample texts and measures the [UNK] rate of the new text before and after.

`init_sources` says which old rows initialise each new row of the text embedding / head: the old
sub-tokens a new token replaces (their mean), the listed neighbour-language tags for a new tag.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class VocabExtension:
    base_vocab_size: int
    base_merges: int
    vocab_size: int
    added_tags: list[str]
    added_tokens: list[str]
    added_merges: int
    unk_rate_before: float = float("nan")
    unk_rate_after: float = float("nan")
    old_texts_checked: int = 0
    old_texts_changed_without_freeze: int = 0  # what upstream's plain tokenizer on the new vocab.json would change
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"vocab {self.base_vocab_size} -> {self.vocab_size}: +{len(self.added_tags)} tags "
                f"{self.added_tags}, +{len(self.added_tokens)} BPE tokens, +{self.added_merges} merges; "
                f"[UNK] rate on the new text {self.unk_rate_before:.2%} -> {self.unk_rate_after:.2%}; "
                f"{self.old_texts_checked} old-language texts re-encode identically")

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False))
        return path


def _merge_pair(merge) -> tuple[str, str]:
    return tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge)


def extend_vocab(base_vocab: Path, out_vocab: Path, cleaned_texts: list[str], tags: list[str],
                 new_tokens: int = 2000, min_frequency: int = 2) -> VocabExtension:
    """Write `out_vocab`: `base_vocab` + `tags` (e.g. "[ca]", "[ca_balear]") as special tokens + the
    tokens/merges of a BPE of up to `new_tokens` tokens learned on `cleaned_texts` that the base lacks."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    spec = json.loads(Path(base_vocab).read_text(encoding="utf-8"))
    vocab: dict[str, int] = spec["model"]["vocab"]
    merges = spec["model"]["merges"]
    base_size = max(list(vocab.values()) + [t["id"] for t in spec.get("added_tokens", [])]) + 1
    base_merges = len(merges)
    next_id = base_size

    added_tags = []
    for tag in tags:
        if not (tag.startswith("[") and tag.endswith("]")) or "-" in tag:
            raise ValueError(f"language tag {tag!r}: write it as [code] or [code_dialect] (XTTS cuts codes at '-')")
        if tag in vocab:
            continue
        vocab[tag] = next_id
        spec.setdefault("added_tokens", []).append({"id": next_id, "content": tag, "single_word": False,
                                                    "lstrip": False, "rstrip": False, "normalized": False,
                                                    "special": True})
        added_tags.append(tag)
        next_id += 1

    # The new language's own BPE, pre-tokenised as XTTS text is (whitespace/punctuation pieces).
    learner = Tokenizer(models.BPE(unk_token="[UNK]"))
    learner.pre_tokenizer = pre_tokenizers.Whitespace()
    learner.train_from_iterator(cleaned_texts, trainer=trainers.BpeTrainer(
        vocab_size=new_tokens, min_frequency=min_frequency, special_tokens=["[UNK]"], show_progress=False))
    learned = json.loads(learner.to_str())["model"]
    added_tokens = []
    for token, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if token not in vocab:
            vocab[token] = next_id
            added_tokens.append(token)
            next_id += 1
    known = {_merge_pair(m) for m in merges}
    pair_as_list = bool(merges) and not isinstance(merges[0], str)
    added_merges = 0
    for merge in learned["merges"]:
        pair = _merge_pair(merge)
        if pair not in known:
            merges.append(list(pair) if pair_as_list else " ".join(pair))
            known.add(pair)
            added_merges += 1

    out_vocab = Path(out_vocab)
    out_vocab.parent.mkdir(parents=True, exist_ok=True)
    out_vocab.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    Tokenizer.from_file(str(out_vocab))  # loads as upstream will load it
    return VocabExtension(base_vocab_size=base_size, base_merges=base_merges, vocab_size=next_id,
                          added_tags=added_tags, added_tokens=added_tokens, added_merges=added_merges)


def unk_rate(tokenizer, cleaned_texts: list[str]) -> float:
    """Share of [UNK] ids when the (already cleaned) texts are encoded as XTTS encodes them (no tag)."""
    unk = tokenizer.token_to_id("[UNK]")
    ids = [i for text in cleaned_texts for i in tokenizer.encode(text.replace(" ", "[SPACE]")).ids]
    return sum(i == unk for i in ids) / max(len(ids), 1)


def check_extension(extension: VocabExtension, base_vocab: Path, out_vocab: Path, new_texts: list[str],
                    old_samples: list[tuple[str, str]], normalizers: dict | None = None,
                    new_languages: dict | None = None) -> VocabExtension:
    """Fill in and enforce the checks: old ids unchanged, `old_samples` ((text, tag) of languages the
    base knew) encode to the same ids, zero [UNK] on `new_texts` (cleaned); [UNK] rates before/after."""
    from tokenizers import Tokenizer

    from recipes.xtts.text import VoiceBpeTokenizer, XttsTextTokenizer

    base = Tokenizer.from_file(str(base_vocab))
    extended = Tokenizer.from_file(str(out_vocab))
    moved = {t: (i, extended.token_to_id(t)) for t, i in base.get_vocab().items() if extended.token_to_id(t) != i}
    if moved:
        raise AssertionError(f"extension moved old ids: {dict(list(moved.items())[:5])}")
    extension.unk_rate_before = unk_rate(base, new_texts)
    extension.unk_rate_after = unk_rate(extended, new_texts)
    if extension.unk_rate_after > 0:
        raise AssertionError(f"the extended vocab still has [UNK] on the new text ({extension.unk_rate_after:.2%})")

    before = XttsTextTokenizer(str(base_vocab), normalizers=normalizers)
    after = XttsTextTokenizer(str(out_vocab), normalizers=normalizers, new_languages=new_languages,
                              base_vocab_size=extension.base_vocab_size, base_merges=extension.base_merges)
    plain = VoiceBpeTokenizer(str(out_vocab))
    changed = [(text, tag) for text, tag in old_samples if after.encode(text, tag) != before.encode(text, tag)]
    if changed:
        raise AssertionError(f"old-language texts encode differently after the extension: {changed[:3]}")
    extension.old_texts_checked = len(old_samples)
    extension.old_texts_changed_without_freeze = sum(
        plain.tokenizer.encode(f"[{tag}]{before.preprocess_text(text, tag)}".replace(" ", "[SPACE]")).ids
        != before.encode(text, tag) for text, tag in old_samples)
    return extension


def init_sources(extension: VocabExtension, out_vocab: Path, tag_sources: list[str]) -> list[list[int]]:
    """For each new id (in order): the old ids whose rows are averaged to initialise it. A BPE token:
    the old sub-tokens the base splits it into ([UNK] dropped; none -> every old row). A tag: the
    base's tags for `tag_sources` (neighbour languages), those present."""
    from recipes.xtts.text import restricted_tokenizer

    base = restricted_tokenizer(Path(out_vocab), extension.base_vocab_size, extension.base_merges)
    unk = base.token_to_id("[UNK]")
    tag_ids = [base.token_to_id(f"[{t}]") for t in tag_sources]
    tag_ids = [i for i in tag_ids if i is not None]
    every_old = list(range(extension.base_vocab_size))
    sources = []
    for tag in extension.added_tags:
        sources.append(tag_ids or every_old)
    for token in extension.added_tokens:
        ids = [i for i in base.encode(token).ids if i != unk]
        sources.append(ids or every_old)
    return sources
