"""XTTS text front end and loading (issue 14, items 4-7): Brazilian normalisation applied identically in
training and generation, per-row language tags, text split over the per-language character limit, and a
base checkpoint loaded without writing to it."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

PT_CASES = [  # (input, what the pt-BR front end must say, what upstream's European `pt` cleaner says)
    ("Tenho 16 anos.", "tenho dezesseis anos.", "dezasseis"),
    ("Custa R$ 19,50.", "custa dezenove reais e cinquenta centavos.", "dólar"),
    ("Nasci em 15/03/2024.", "nasci em quinze de março de dois mil e vinte e quatro.", "quinze/três"),
    ("O Sr. Silva chegou em 1º lugar.", "o senhor silva chegou em primeiro lugar.", None),
]
LONG_PT = ("O menino foi para a escola de manhã e voltou para casa à tarde com os amigos do bairro. " * 3
           + "Depois do almoço, todos foram ao parque jogar bola até escurecer, e só voltaram quando a mãe chamou. "
           * 2).strip()


@pytest.fixture(scope="module")
def tiny_pt_base(tmp_path_factory):
    """A tiny random XTTS folder trained-as-if with the Brazilian normaliser (recorded in xtts_adapter.json)."""
    from recipes.xtts.text import XttsTextTokenizer
    from recipes.xtts.tiny import build_tiny_base

    texts = [(t, "pt") for t, _, _ in PT_CASES] + [(LONG_PT, "pt"), ("Il ragazzo è andato a scuola.", "it")]
    folder = tmp_path_factory.mktemp("xtts-text-base")
    build_tiny_base(folder, texts, clean=XttsTextTokenizer(normalizers={"pt": "pt-br"}).preprocess_text)
    (folder / "xtts_adapter.json").write_text(json.dumps({"language": "pt", "text": {"normalizers": {"pt": "pt-br"}}}))
    return folder


@pytest.mark.parametrize("text,expected,upstream_says", PT_CASES)
def test_pt_br_front_end_numbers_currency_dates(text, expected, upstream_says):
    from recipes.xtts.text import XttsTextTokenizer

    assert XttsTextTokenizer(normalizers={"pt": "pt-br"}).preprocess_text(text, "pt") == expected
    if upstream_says:  # the European forms the issue measured: what training used to see
        assert upstream_says in XttsTextTokenizer().preprocess_text(text, "pt")


def test_normalisers_follow_the_data_languages(monkeypatch):
    from recipes.xtts import text
    from recipes.xtts.train_adapter import text_normalizers

    assert text_normalizers(["it", "pt-br"]) == {"pt": "pt-br"}
    assert text_normalizers(["pt", "pt-br"]) == {"pt": "pt-br"}  # the rule file's alias: one set of rules
    assert text_normalizers(["ca", "it"]) == {"ca": "ca"}
    assert text_normalizers(["pt-br"], enabled=False) == {}
    monkeypatch.setattr(text, "normalizer_for", lambda language: language)  # two real variants of one tag
    with pytest.raises(ValueError, match="share the XTTS tag"):
        text_normalizers(["pt-br", "pt-pt"])


def test_rows_are_tagged_with_their_own_language(tiny_pt_base):
    """Original-language rows mixed in (against forgetting) keep their language tag."""
    from datasets import Dataset

    from recipes.xtts.data import Limits, tokenize_and_filter
    from recipes.xtts.text import load_tokenizer

    tokenizer = load_tokenizer(tiny_pt_base)
    rows = Dataset.from_dict({"id": ["a", "b", "c"], "text": ["Tenho 16 anos.", "Il ragazzo è andato a scuola.",
                                                              "Custa R$ 19,50."],
                              "language": ["pt-br", "it", "pt-br"], "duration": [1.0, 1.0, 1.0]})
    kept, report = tokenize_and_filter(rows, tokenizer, "pt", Limits(), "train")
    vocab = tokenizer.tokenizer
    assert [ids[0] for ids in kept["text_ids"]] == [vocab.token_to_id(t) for t in ("[pt]", "[it]", "[pt]")]
    assert kept["xtts_language"] == ["pt", "it", "pt"] and not report.skipped
    assert kept["text_ids"][0] == tokenizer.encode("Tenho 16 anos.", "pt")
    unknown = rows.remove_columns(["language"]).add_column("language", ["ca"] * 3)
    with pytest.raises(ValueError, match=r"no tag for: \{'ca': 3\}.*new_language"):
        tokenize_and_filter(unknown, tokenizer, "pt", Limits(), "train")


def _recording_synthesizer(tiny_pt_base, monkeypatch):
    from recipes.xtts.generate import load_synthesizer

    synthesizer = load_synthesizer(str(tiny_pt_base), "cpu", max_new_tokens=2)
    calls = []
    encode = synthesizer.xtts.tokenizer.encode

    def recording(txt, lang):
        ids = encode(txt, lang)
        calls.append((txt, lang, ids))
        return ids

    monkeypatch.setattr(synthesizer.xtts.tokenizer, "encode", recording)
    return synthesizer, calls


def test_generation_encodes_exactly_as_training_and_splits_long_text(tiny_pt_base, monkeypatch):
    """Upstream `Xtts.inference` (lower-casing first) through generate.py gives the training ids, and text over
    the pt limit (203 characters) is spoken in sentence chunks, as upstream's enable_text_splitting does."""
    from data_prep.audio import decode_audio
    from recipes.xtts.text import load_tokenizer

    synthesizer, calls = _recording_synthesizer(tiny_pt_base, monkeypatch)
    assert synthesizer.language == "pt" and synthesizer.xtts.tokenizer.char_limits["pt"] == 203
    reference = decode_audio("tests/fixtures/demo_corpus/clips/pt-br_f2_000.flac")
    texts = [text for text, _, _ in PT_CASES[:3]] + [LONG_PT]
    torch.manual_seed(0)
    waves = synthesizer.synthesize(texts, languages=["pt-br"] * len(texts), reference_audio=[reference] * len(texts))
    training = load_tokenizer(tiny_pt_base)
    for text, (_, lang, ids) in zip(texts[:3], calls[:3]):
        assert lang == "pt" and ids == training.encode(text, "pt")
    long_calls = calls[3:]
    assert len(LONG_PT) > 203 and len(long_calls) >= 3
    assert all(len(txt) <= 203 and txt.rstrip().endswith(".") for txt, _, _ in long_calls)
    assert " ".join(txt for txt, _, _ in long_calls) == training.normalize(LONG_PT, "pt").lower()
    assert all(np.isfinite(w).all() and len(w) > 0 for w in waves)


def test_split_text_packs_sentences_and_wraps_long_ones():
    from recipes.xtts.text import split_text

    assert split_text("Curta.", 203) == ["Curta."]
    chunks = split_text(LONG_PT, 203)
    assert all(len(c) <= 203 for c in chunks) and " ".join(chunks) == LONG_PT
    assert all(c.endswith(".") for c in chunks)  # whole sentences while they fit
    wrapped = split_text("palavra " * 60, 50)  # one sentence over the limit: wrapped at words
    assert all(len(c) <= 50 for c in wrapped) and " ".join(wrapped) == ("palavra " * 60).strip()


def test_a_legacy_base_checkpoint_is_loaded_without_writing_it(tiny_pt_base, tmp_path):
    """The official model.pth pickles an XttsConfig; upstream converts it and saves over the file (a read-only
    Hub cache fails, a user's cache is altered). Ours reads it the same but writes nothing."""
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts, _legacy_safe_globals

    from recipes.xtts.modeling import load_xtts, load_xtts_config

    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_pt_base, legacy)
    state = torch.load(legacy / "model.pth", weights_only=True)["model"]
    with _legacy_safe_globals():  # pickled under the class paths the official file uses
        torch.save({"model": state, "config": load_xtts_config(legacy)}, legacy / "model.pth")
    digest = hashlib.sha256((legacy / "model.pth").read_bytes()).hexdigest()
    mtime = (legacy / "model.pth").stat().st_mtime_ns

    _, xtts = load_xtts(legacy)
    assert hashlib.sha256((legacy / "model.pth").read_bytes()).hexdigest() == digest
    assert (legacy / "model.pth").stat().st_mtime_ns == mtime
    key = "gpt.gpt.h.0.attn.c_attn.weight"
    torch.testing.assert_close(xtts.state_dict()[key], state[key])

    # The file really is the kind upstream rewrites (so the check above means something).
    upstream_copy = tmp_path / "upstream.pth"
    shutil.copy(legacy / "model.pth", upstream_copy)
    Xtts(XttsConfig())._load_checkpoint(upstream_copy)
    assert hashlib.sha256(upstream_copy.read_bytes()).hexdigest() != digest
