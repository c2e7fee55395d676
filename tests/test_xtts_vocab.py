"""Teaching XTTS a language its tokenizer lacks (issue 15): vocabulary extension that leaves every old id
and old-language encoding alone, and grown text layers that leave the old-language predictions alone."""

import json

import pytest
import torch

NORMALIZERS = {"pt": "pt-br", "ca": "ca"}
NEW = {"ca": 200}
TAGS = ["[ca]", "[ca_balear]", "[ca_central]", "[ca_valencia]"]


@pytest.fixture(scope="module")
def demo_texts():
    from data_prep.demo_corpus import load_demo_dataset
    from recipes.xtts.text import XttsTextTokenizer, xtts_tag

    demo = load_demo_dataset()
    old = [(t, xtts_tag(lang)) for t, lang in zip(demo["text"], demo["language"]) if lang != "ca"]
    front = XttsTextTokenizer(normalizers=NORMALIZERS, new_languages=NEW)
    catalan = [front.preprocess_text(t, "ca") for t, lang in zip(demo["text"], demo["language"]) if lang == "ca"]
    return old, catalan, front


@pytest.fixture(scope="module")
def extended(tmp_path_factory, demo_texts):
    """A tiny base that never saw Catalan, and its vocabulary extended with the demo's Catalan text."""
    from recipes.xtts import vocab as xvocab
    from recipes.xtts.tiny import build_tiny_base

    old, catalan, front = demo_texts
    folder = tmp_path_factory.mktemp("xtts-vocab")
    base = build_tiny_base(folder / "base", old, clean=front.preprocess_text)
    extension = xvocab.extend_vocab(base / "vocab.json", folder / "vocab.json", catalan, TAGS, 2000, 2)
    return base, folder / "vocab.json", extension


def test_extension_appends_tags_and_tokens_and_keeps_every_old_id(extended, demo_texts):
    from tokenizers import Tokenizer

    from recipes.xtts import vocab as xvocab
    from recipes.xtts.text import XttsTextTokenizer

    base_dir, out_vocab, extension = extended
    old, catalan, _ = demo_texts
    base, grown = Tokenizer.from_file(str(base_dir / "vocab.json")), Tokenizer.from_file(str(out_vocab))
    assert all(grown.token_to_id(t) == i for t, i in base.get_vocab().items())
    assert (grown.token_to_id("[STOP]"), grown.token_to_id("[UNK]")) == (0, 1)
    assert grown.token_to_id("[START]") == base.token_to_id("[START]")
    assert extension.added_tags == TAGS and len(extension.added_tokens) > 20
    assert sorted(grown.get_vocab().values()) == list(range(extension.vocab_size))  # appended, no holes
    assert [grown.token_to_id(t) for t in TAGS] == list(range(extension.base_vocab_size,
                                                              extension.base_vocab_size + 4))
    specials = {t["content"] for t in json.loads(out_vocab.read_text())["added_tokens"] if t["special"]}
    assert set(TAGS) <= specials

    xvocab.check_extension(extension, base_dir / "vocab.json", out_vocab, catalan, old, NORMALIZERS, NEW)
    assert extension.unk_rate_before > 0 and extension.unk_rate_after == 0  # "·" and others were [UNK]
    assert extension.old_texts_checked == len(old) > 0
    before = XttsTextTokenizer(str(base_dir / "vocab.json"), normalizers=NORMALIZERS)
    after = XttsTextTokenizer(str(out_vocab), normalizers=NORMALIZERS, new_languages=NEW,
                              base_vocab_size=extension.base_vocab_size, base_merges=extension.base_merges)
    assert all(after.encode(text, tag) == before.encode(text, tag) for text, tag in old)
    ids = after.encode("S'al·lot ha anat a s'escola.", "ca_balear")
    assert ids[0] == grown.token_to_id("[ca_balear]") and grown.token_to_id("[UNK]") not in ids
    assert after.encode("Bon dia.", "ca")[0] == grown.token_to_id("[ca]")
    with pytest.raises(ValueError, match="no \\[ca_rossello\\] token"):
        after.encode("Bon dia.", "ca_rossello")
    with pytest.raises(NotImplementedError):
        before.encode("Bon dia.", "ca")  # the base tokenizer does not speak it


def test_grown_text_layers_leave_pt_predictions_unchanged(extended):
    """Old rows are kept bit for bit, so a pt prompt's text logits (over the old ids) and audio-code logits
    are unchanged; each new row is the mean of its old sub-token rows, and only new rows are trainable."""
    from recipes.xtts import modeling
    from recipes.xtts import vocab as xvocab
    from recipes.xtts.text import XttsTextTokenizer

    base_dir, out_vocab, extension = extended
    _, xtts = modeling.load_xtts(base_dir)
    xtts.gpt.train(False)  # no dropout; the training layout (no inference-only modules)
    ids = torch.tensor([xtts.tokenizer.encode("O menino foi para a escola em 2024.", "pt")])
    g = torch.Generator().manual_seed(0)
    batch = dict(text_ids=ids, text_lengths=torch.tensor([ids.shape[1]]),
                 audio_codes=torch.randint(0, 256, (1, 30), generator=g), code_lengths=torch.tensor([30]),
                 cond_latents=torch.randn(1, 32, 64, generator=g), prompt_spans=torch.tensor([[-1, -1]]))
    with torch.no_grad():
        _, loss_codes, text_logits, code_logits = modeling.xtts_gpt_losses(xtts.gpt, **batch, return_logits=True)
    old_embedding = xtts.gpt.text_embedding.weight.detach().clone()

    sources = xvocab.init_sources(extension, out_vocab, ["es", "it", "fr", "pt"])
    assert modeling.extend_text_layers(xtts.gpt, sources) == extension.vocab_size
    xtts.tokenizer = XttsTextTokenizer(str(out_vocab), normalizers=NORMALIZERS, new_languages=NEW,
                                       base_vocab_size=extension.base_vocab_size, base_merges=extension.base_merges)
    assert xtts.tokenizer.encode("O menino foi para a escola em 2024.", "pt") == ids[0].tolist()
    with torch.no_grad():
        _, loss_codes_2, text_logits_2, code_logits_2 = modeling.xtts_gpt_losses(xtts.gpt, **batch,
                                                                                 return_logits=True)
    base_size = extension.base_vocab_size
    assert text_logits_2.shape[1] == extension.vocab_size
    torch.testing.assert_close(text_logits_2[:, :base_size], text_logits, rtol=0, atol=0)
    torch.testing.assert_close(code_logits_2, code_logits, rtol=0, atol=0)
    torch.testing.assert_close(loss_codes_2, loss_codes, rtol=0, atol=0)

    embedding = xtts.gpt.text_embedding
    torch.testing.assert_close(embedding.weight[:base_size], old_embedding, rtol=0, atol=0)
    token = extension.added_tokens[-1]  # a multi-piece token: its row is the mean of its old pieces
    new_id = base_size + len(extension.added_tags) + len(extension.added_tokens) - 1
    pieces = sources[new_id - base_size]
    assert len(pieces) > 1, token
    torch.testing.assert_close(embedding.weight[new_id], old_embedding[pieces].mean(0))
    trainable = {n for n, p in xtts.gpt.named_parameters() if n.startswith(("text_embedding", "text_head"))}
    assert trainable == {"text_embedding.new_weight", "text_head.new_weight", "text_head.new_bias"}

    # Plain layers again for the export, same numbers.
    modeling.finalize_text_layers(xtts)
    assert type(xtts.gpt.text_embedding).__name__ == "Embedding" and xtts.gpt.text_head.bias.shape[0] == \
        extension.vocab_size
    with torch.no_grad():
        _, _, text_logits_3, _ = modeling.xtts_gpt_losses(xtts.gpt, **batch, return_logits=True)
    torch.testing.assert_close(text_logits_3, text_logits_2, rtol=0, atol=0)
