"""SNAC tokenisation: batched encode with per-item cropping, exact decode, resumable cache, counted drops."""

import math

import numpy as np
import pytest
import torch

from recipes.orpheus import layout
from recipes.orpheus.tokenize_dataset import SnacAudioTokenizer, build_rows, encode_dataset


@pytest.fixture(scope="module")
def snac():
    from snac import SNAC

    from recipes.orpheus.build_tiny import SNAC_24KHZ_CONFIG

    torch.manual_seed(0)
    model = SNAC(**SNAC_24KHZ_CONFIG).eval()
    assert sum(p.numel() for p in model.parameters()) == 19_842_914  # the real architecture
    return model


def tone(seconds, freq=220.0, sr=24000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_batched_encode_crops_each_item_to_its_own_frames(snac):
    waves = [tone(0.25, 180), tone(0.45, 260), tone(0.15, 330)]
    batched = SnacAudioTokenizer(snac, remove_duplicate_frames=False).encode(waves)
    for wave, (tokens, removed) in zip(waves, batched):
        n_frames = math.ceil(len(wave) / 2048)
        assert removed == 0 and len(tokens) == 7 * n_frames
        single = SnacAudioTokenizer(snac, remove_duplicate_frames=False).encode([wave])[0][0]
        assert len(single) == len(tokens)
        # padding only reaches the receptive field of the last coarse frames
        np.testing.assert_array_equal(tokens[: 7 * max(n_frames - 2, 0)], single[: 7 * max(n_frames - 2, 0)])
    longest = int(np.argmax([len(w) for w in waves]))
    np.testing.assert_array_equal(batched[longest][0],
                                  SnacAudioTokenizer(snac, False).encode([waves[longest]])[0][0])


def test_codes_survive_tokens_and_decode_gives_every_frame(snac):
    with torch.inference_mode():
        codes = [c[0].numpy() for c in snac.encode(torch.from_numpy(tone(0.4))[None, None])]
    tokens = layout.codes_to_tokens(*codes)
    for got, want in zip(layout.tokens_to_codes(tokens), codes):
        np.testing.assert_array_equal(got, want)
    audio_tokenizer = SnacAudioTokenizer(snac)
    zeros = layout.codes_to_tokens(np.zeros(3, int), np.zeros(6, int), np.zeros(12, int))  # code 0 everywhere
    torch.manual_seed(1)
    wave = audio_tokenizer.decode(zeros)
    assert wave.shape == (3 * 2048,) and np.isfinite(wave).all()
    torch.manual_seed(1)  # SNAC's NoiseBlock samples even in eval(): same seed, same audio
    with torch.inference_mode():
        direct = snac.decode([torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 6, dtype=torch.long),
                              torch.zeros(1, 12, dtype=torch.long)]).reshape(-1).numpy()
    np.testing.assert_allclose(wave, direct)


class CountingTokenizer:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def encode(self, waves):
        self.calls += 1
        return self.inner.encode(waves)


def synthetic_dataset():
    from datasets import Audio, Dataset

    from data_prep.schema import schema_features

    rows = {"id": ["a", "b", "empty", "c"], "text": ["u", "dos", "", "tres quatre"],
            "speaker": ["s1", "s2", "s1", "s2"], "dialect": ["balear", "central", "balear", "central"],
            "duration": [0.25, 0.4, 0.3, 0.3], "language": ["ca"] * 4,
            "audio": [{"array": tone(d, 200 + 50 * i), "sampling_rate": 24000}
                      for i, d in enumerate([0.25, 0.4, 0.3, 0.3])]}
    return Dataset.from_dict(rows, features=schema_features()).cast_column("audio", Audio(24000))


def test_encode_dataset_is_resumable_and_counts_skips(snac, tmp_path):
    from transformers import AutoTokenizer

    from recipes.orpheus.build_tiny import build_tiny_orpheus

    dataset = synthetic_dataset()
    counting = CountingTokenizer(SnacAudioTokenizer(snac, remove_duplicate_frames=True))
    encoded = encode_dataset(dataset, counting, tmp_path / "cache", batch_size=2, shard_size=2, show_progress=False)
    assert encoded["id"] == ["a", "b", "c"]  # the empty-text row is skipped ...
    assert '"empty"' in (tmp_path / "cache" / "skipped.jsonl").read_text()  # ... and listed
    calls = counting.calls
    assert calls > 0
    again = encode_dataset(dataset, counting, tmp_path / "cache", batch_size=2, shard_size=2, show_progress=False)
    assert counting.calls == calls and again["audio_tokens"] == encoded["audio_tokens"]  # all shards reused
    for tokens, removed, duration in zip(encoded["audio_tokens"], encoded["frames_removed"], encoded["duration"]):
        assert len(tokens) + 7 * removed == 7 * math.ceil(duration * 24000 / 2048)

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_orpheus(tmp_path.parent / "orpheus_tiny")["model"])
    rows, report = build_rows(encoded, tokenizer, "dialect", max_length=10_000)
    assert report["rows"] == 3 and report["dropped_over_max_length"] == 0
    row = rows[0]
    assert row["input_ids"][:2] == [layout.START_OF_HUMAN, layout.BEGIN_OF_TEXT]
    assert tokenizer.decode(row["input_ids"][2:row["audio_start"] - 4]) == "balear: u"
    assert row["input_ids"][row["audio_start"]:-2] == encoded[0]["audio_tokens"]
    limit = min(len(r) for r in rows["input_ids"])
    short, report = build_rows(encoded, tokenizer, "dialect", max_length=limit)
    assert len(short) == 1 and report["dropped_over_max_length"] == 2
    assert sum(report["dropped_over_max_length_by_dialect"].values()) == 2


class FrameCountTokenizer:
    """Stands in for SNAC: all-zero codes, one frame per started 2048 samples."""

    def encode(self, waves):
        n = [math.ceil(len(w) / 2048) for w in waves]
        return [(layout.codes_to_tokens(np.zeros(k, int), np.zeros(2 * k, int), np.zeros(4 * k, int)), 0) for k in n]


def test_shards_with_every_clip_skipped_and_empty_splits_still_load(tmp_path):
    from transformers import AutoTokenizer

    from recipes.orpheus.build_tiny import build_tiny_orpheus

    dataset = synthetic_dataset()  # rows a, b, empty (empty text), c: with one clip per shard, shard 2 is all skipped
    encoded = encode_dataset(dataset, FrameCountTokenizer(), tmp_path / "cache", batch_size=2, shard_size=1,
                             show_progress=False)
    assert encoded["id"] == ["a", "b", "c"]
    again = encode_dataset(dataset, FrameCountTokenizer(), tmp_path / "cache", batch_size=2, shard_size=1,
                           show_progress=False)  # the resumed run reads the same cache
    assert again["id"] == ["a", "b", "c"]
    # a split with no usable clip (e.g. a speaker-disjoint validation split filtered to one voice)
    nothing = encode_dataset(dataset.select([]), FrameCountTokenizer(), tmp_path / "empty", show_progress=False)
    assert len(nothing) == 0 and "audio_tokens" in nothing.column_names
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_orpheus(tmp_path.parent / "orpheus_tiny")["model"])
    rows, report = build_rows(nothing, tokenizer, "dialect")
    assert len(rows) == 0 and report["rows"] == 0


def test_missing_prompt_label_names_the_clip(tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from recipes.orpheus.build_tiny import build_tiny_orpheus

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_orpheus(tmp_path.parent / "orpheus_tiny")["model"])
    audio = layout.codes_to_tokens(np.zeros(1, int), np.zeros(2, int), np.zeros(4, int)).tolist()
    encoded = Dataset.from_dict({"id": ["ok", "clip-17"], "text": ["u", "dos"], "speaker": ["s1", "s2"],
                                 "dialect": ["balear", ""], "duration": [0.1, 0.1], "audio_tokens": [audio, audio],
                                 "frames_removed": [0, 0]})
    with pytest.raises(ValueError, match=r"clip 'clip-17'.*needs a dialect.*prompt_label"):
        build_rows(encoded, tokenizer, "dialect")
    rows, _ = build_rows(encoded, tokenizer, "speaker")  # the speaker prompt does not need the dialect
    assert len(rows) == 2
