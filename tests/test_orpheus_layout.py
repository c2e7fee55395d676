"""Orpheus token layout: SNAC codes <-> ids against an independent reading of the published table,
duplicate-frame removal, decoding of generated spans, row template, tokenizer check."""

import numpy as np
import pytest

from recipes.orpheus import layout


def reference_tokens(l0, l1, l2):
    """Straight from the notes' table: frame i -> 7 ids, id = 128266 + 4096 * p + code."""
    out = []
    for i in range(len(l0)):
        codes = [l0[i], l1[2 * i], l2[4 * i], l2[4 * i + 1], l1[2 * i + 1], l2[4 * i + 2], l2[4 * i + 3]]
        out += [128266 + 4096 * p + int(c) for p, c in enumerate(codes)]
    return out


def random_codes(n_frames, seed=0):
    rng = np.random.default_rng(seed)
    l0, l1, l2 = (rng.integers(0, 4096, size=k * n_frames) for k in (1, 2, 4))
    l0[0], l1[0], l2[0], l2[-1] = 0, 0, 0, 4095  # the extremes, code 0 in the first frame included
    return l0, l1, l2


def test_layout_matches_reference_and_round_trips_exactly():
    l0, l1, l2 = random_codes(50)
    tokens = layout.codes_to_tokens(l0, l1, l2)
    assert tokens.tolist() == reference_tokens(l0, l1, l2)
    assert tokens.min() >= layout.AUDIO_OFFSET and tokens.max() <= layout.LAST_AUDIO_ID == 156937
    back = layout.tokens_to_codes(tokens)
    for got, want in zip(back, (l0, l1, l2)):
        np.testing.assert_array_equal(got, want)


def test_constants_match_the_notes():
    assert (layout.START_OF_SPEECH, layout.END_OF_SPEECH, layout.START_OF_HUMAN, layout.END_OF_HUMAN,
            layout.START_OF_AI, layout.END_OF_AI, layout.PAD) == tuple(range(128257, 128264))
    assert layout.MIN_VOCAB_SIZE == 156939
    assert abs(layout.AUDIO_TOKENS_PER_SECOND - 82.03) < 0.01


def test_tokens_to_codes_rejects_misplaced_ids():
    tokens = layout.codes_to_tokens(*random_codes(2)).copy()
    tokens[3] = layout.AUDIO_OFFSET + 5  # a position-0 id at position 3
    with pytest.raises(ValueError, match="frame 0 position 3"):
        layout.tokens_to_codes(tokens)
    with pytest.raises(ValueError, match="multiple of 7"):
        layout.tokens_to_codes(tokens[:-1])


def test_duplicate_frame_removal_compares_with_last_kept_frame():
    def frames(l0_codes):
        n = len(l0_codes)
        return layout.codes_to_tokens(np.array(l0_codes), np.arange(2 * n) % 4096, np.arange(4 * n) % 4096)

    kept, removed = layout.remove_duplicate_frames(frames([1, 1, 8, 8]))
    assert removed == 2
    assert layout.tokens_to_codes(kept)[0].tolist() == [1, 8]
    # frames 0 and 2 are kept whole, with their own finer codes
    np.testing.assert_array_equal(kept, np.concatenate([frames([1, 1, 8, 8])[:7], frames([1, 1, 8, 8])[14:21]]))
    kept, removed = layout.remove_duplicate_frames(frames([1, 2, 1, 1, 1, 3]))
    assert removed == 2 and layout.tokens_to_codes(kept)[0].tolist() == [1, 2, 1, 3]


def test_audio_tokens_from_generation_keeps_code_zero_and_first_frame():
    audio = layout.codes_to_tokens(np.zeros(3, int), np.zeros(6, int), np.zeros(12, int))  # all code 0
    generated = [5, layout.START_OF_SPEECH, *audio, layout.END_OF_SPEECH, layout.END_OF_AI, 99]
    tokens, discarded = layout.audio_tokens_from_generation(generated)
    np.testing.assert_array_equal(tokens, audio)
    assert discarded == 0
    # a stray text id and a misplaced frame are dropped and counted; a trailing partial frame is trimmed
    broken = [*audio[:7], 42, *audio[8:14], audio[7], *audio[14:], *audio[:3]]
    tokens, discarded = layout.audio_tokens_from_generation(broken)
    assert len(tokens) == 14 and discarded == 1 + 7 + 3


def test_row_template_and_prompt():
    ids, audio_start = layout.tts_row([128000, 11, 12], [128266, 132362])
    assert ids == [128259, 128000, 11, 12, 128009, 128260, 128261, 128257, 128266, 132362, 128258, 128262]
    assert ids[audio_start] == 128266
    assert layout.format_prompt(layout.prompt_label("dialect", dialect="Nord Occidental"), "Hola  món") == \
        "nord-occidental: Hola món"
    assert layout.prompt_label("both", dialect="balear", speaker="F3") == "balear f3"
    with pytest.raises(ValueError, match="needs a speaker"):
        layout.prompt_label("speaker", dialect="balear", speaker=None)


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from recipes.orpheus.build_tiny import build_tiny_orpheus

    paths = build_tiny_orpheus(tmp_path_factory.getbasetemp() / "orpheus_tiny")
    return AutoTokenizer.from_pretrained(paths["model"])


def test_tiny_tokenizer_passes_check_and_maps_like_orpheus(tiny_tokenizer):
    layout.check_tokenizer(tiny_tokenizer, layout.MIN_VOCAB_SIZE)
    assert tiny_tokenizer.convert_tokens_to_ids("<custom_token_10>") == 128266
    assert tiny_tokenizer.convert_tokens_to_ids("<custom_token_28682>") == 156938
    assert tiny_tokenizer("hola")["input_ids"][0] == 128000
    ids = layout.text_ids(tiny_tokenizer, "balear: Bon dia")
    assert ids[0] == 128000 and max(ids[1:]) < 128000
    assert tiny_tokenizer.decode(ids[1:]) == "balear: Bon dia"


def test_check_tokenizer_names_problem_and_fix(tiny_tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    plain = Tokenizer(models.WordLevel({"[UNK]": 0, "hola": 1}, unk_token="[UNK]"))
    plain.pre_tokenizer = pre_tokenizers.Whitespace()
    wrong = PreTrainedTokenizerFast(tokenizer_object=plain)
    wrong.add_tokens([layout.custom_token(i) for i in range(20)], special_tokens=True)  # at 2.., not 128256..
    with pytest.raises(layout.OrpheusTokenizerError, match=r"<custom_token_1> -> 3 \(expected 128257\).*Fix:"):
        layout.check_tokenizer(wrong, where="my-tokenizer")
    with pytest.raises(layout.OrpheusTokenizerError, match="vocab_size is 128256"):
        layout.check_tokenizer(tiny_tokenizer, model_vocab_size=128256)
