"""F5 data path against upstream f5-tts: mel, text ids, vocab files, frame-budget batches, F5 layout."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLCONFIGDIR", "/tmp/mplconfig-tests")

from recipes.f5.data import (  # noqa: E402
    F5Collator, FrameBudgetBatchSampler, LogMel, expected_frames, missing_symbols, read_vocab, upstream_vocab_path,
    write_vocab,
)


@pytest.fixture(scope="module")
def ptbr_rows():
    from data_prep.demo_corpus import load_demo_dataset

    return load_demo_dataset(languages=["pt-br"])


def test_log_mel_equals_upstream_vocos_and_bigvgan():
    from f5_tts.model.modules import MelSpec, get_bigvgan_mel_spectrogram, get_vocos_mel_spectrogram

    torch.manual_seed(0)
    wave = torch.randn(2, 24000 + 123) * 0.2
    ours = LogMel("vocos")(wave)
    assert ours.shape == (2, 100, expected_frames(wave.shape[1], "vocos"))
    torch.testing.assert_close(ours, get_vocos_mel_spectrogram(wave), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours, MelSpec(mel_spec_type="vocos")(wave), atol=1e-6, rtol=0)
    ours_bigvgan = LogMel("bigvgan")(wave)
    assert ours_bigvgan.shape == (2, 100, expected_frames(wave.shape[1], "bigvgan"))
    # Slaney filterbank from torchaudio vs librosa: float32 rounding only.
    torch.testing.assert_close(ours_bigvgan, get_bigvgan_mel_spectrogram(wave), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="mel_spec_type"):
        LogMel("hifigan")


def test_collator_matches_upstream_text_and_mel(ptbr_rows):
    from f5_tts.model.modules import MelSpec
    from f5_tts.model.utils import convert_char_to_pinyin, list_str_to_idx

    from data_prep.audio import decode_audio

    vocab = read_vocab(upstream_vocab_path())
    rows = [ptbr_rows[i] for i in range(3)]
    batch = F5Collator(vocab)(rows)
    texts = [r["text"] for r in rows]
    expected_ids = list_str_to_idx(convert_char_to_pinyin(texts), {s: i for i, s in enumerate(vocab)})
    assert torch.equal(batch["text"], expected_ids)  # same ids and the same -1 padding as upstream
    assert batch["mel"].shape[0] == 3 and batch["mel"].shape[2] == 100
    for i, row in enumerate(rows):
        wave, _ = decode_audio(row["audio"], target_sr=24000)
        reference = MelSpec()(torch.from_numpy(wave)[None])[0].T
        length = int(batch["mel_lengths"][i])
        assert length == reference.shape[0] == expected_frames(len(wave))
        torch.testing.assert_close(batch["mel"][i, :length], reference, atol=1e-5, rtol=0)
        assert torch.all(batch["mel"][i, length:] == 0)


def test_vocab_files_roundtrip_with_upstream_reader(tmp_path):
    from f5_tts.model.utils import get_tokenizer

    vocab = read_vocab(upstream_vocab_path())
    assert len(vocab) == 2545 and vocab[0] == " "
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes("".join(s + "\r\n" for s in vocab).encode("utf-8"))
    assert read_vocab(crlf) == vocab
    extended = vocab + ["Ô", "Õ"]
    path = write_vocab(extended, tmp_path / "vocab.txt")
    upstream_map, size = get_tokenizer(str(path), "custom")
    assert size == 2547 and upstream_map["Õ"] == 2546 and upstream_map[" "] == 0
    assert dict(missing_symbols(["Ônibus e Õ"], vocab)) == {"Ô": 1, "Õ": 1}
    assert not missing_symbols(["Ônibus e Õ"], extended)


def test_frame_budget_batches_and_epoch_shuffle():
    rng = np.random.default_rng(0)
    lengths = list(rng.uniform(30, 400, size=200)) + [5000.0]  # the last one cannot fit any batch
    sampler = FrameBudgetBatchSampler(lengths, frames_per_batch=1000, max_samples=6, seed=3)
    assert sampler.skipped == [200]
    seen = sorted(i for b in sampler.batches for i in b)
    assert seen == list(range(200))
    for batch in sampler.batches:
        assert sum(lengths[i] for i in batch) <= 1000 and len(batch) <= 6
    # Sorted buckets: a batch spans a narrow slice of the length range.
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in sampler.batches]
    assert np.median(spans) < 40
    sampler.set_epoch(0)
    epoch0, again = list(sampler), list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch0 == again and epoch0 != epoch1 and sorted(map(tuple, epoch0)) == sorted(map(tuple, epoch1))


def test_frame_budget_batches_shard_whole_across_ranks():
    from accelerate.data_loader import BatchSamplerShard

    lengths = [float(x) for x in range(10, 410, 10)]
    sampler = FrameBudgetBatchSampler(lengths, frames_per_batch=600, max_samples=0, seed=0)
    sampler.set_epoch(2)
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=r, even_batches=False)) for r in (0, 1)]
    # Every rank gets whole batches (the budget is per GPU), no batch twice, none lost.
    assert sorted(map(tuple, shards[0] + shards[1])) == sorted(map(tuple, sampler.batches))
    assert not set(map(tuple, shards[0])) & set(map(tuple, shards[1]))


def test_f5_layout_export_import_and_upstream_dataset(tmp_path, ptbr_rows):
    from datasets import Dataset
    from f5_tts.model.dataset import CustomDataset

    from recipes.f5.layout import export_f5_layout, read_f5_layout

    out = export_f5_layout(ptbr_rows, tmp_path / "f5")
    for name in ("metadata.csv", "duration.json", "vocab.txt", "wavs", "raw"):
        assert (out / name).exists(), name
    assert (out / "metadata.csv").read_text().splitlines()[0] == "audio_file|text"
    back = read_f5_layout(out, language="pt-br")
    assert list(back["text"]) == list(ptbr_rows["text"])
    assert np.allclose(back["duration"], ptbr_rows["duration"], atol=0.02)

    # Upstream's own dataset class reads the exported raw/ + duration.json, and its mel is ours.
    import json

    durations = json.loads((out / "duration.json").read_text())["duration"]
    upstream = CustomDataset(Dataset.load_from_disk(str(out / "raw")), durations=durations)
    item = upstream[0]
    ours = F5Collator(read_vocab(out / "vocab.txt"))([back[0]])
    length = int(ours["mel_lengths"][0])
    assert item["mel_spec"].shape == (100, length)
    torch.testing.assert_close(ours["mel"][0, :length].T, item["mel_spec"], atol=1e-4, rtol=0)


def test_f5_layout_gui_form_and_bad_rows(tmp_path, ptbr_rows):
    from data_prep.audio import decode_audio, write_audio
    from recipes.f5.layout import read_f5_layout

    folder = tmp_path / "my_voice"
    (folder / "wavs").mkdir(parents=True)
    for i in range(2):
        wave, sr = decode_audio(ptbr_rows[i]["audio"])
        write_audio(folder / "wavs" / f"clip{i}.wav", wave, sr)
    (folder / "metadata.csv").write_text("clip0|Primeira frase.\nclip1.wav|Segunda frase.\n", encoding="utf-8")
    data = read_f5_layout(folder)  # headerless GUI form, names relative to wavs/, extension optional
    assert list(data["text"]) == ["Primeira frase.", "Segunda frase."] and set(data["speaker"]) == {"my_voice"}
    assert all(d > 1.0 for d in data["duration"])
    (folder / "metadata.csv").write_text("audio_file|text\nclip0.wav|ok\nnope.wav|missing\nclip1.wav|\n")
    with pytest.raises(ValueError, match=r"(?s)2 bad row.*line 3: audio .nope.wav. not found.*line 4: expected"):
        read_f5_layout(folder)


# --- issue 14: vocab extension from training text only, base-letter rows, id 0 = " ", text front end ---------

def test_vocab_extension_takes_only_frequent_training_symbols(caplog):
    from recipes.f5.finetune import F5Arguments, plan_vocab_extension

    vocab = read_vocab(upstream_vocab_path())
    texts = {"train": ["Õ é raro", "Õ de novo", "Ônibus uma vez"],  # Õ twice, Ô once
             "validation": ["Ű só na validação"], "sample": ["Ŵ só no exemplo", "Ônibus"]}
    args = F5Arguments(vocab_min_count=2)
    with caplog.at_level("WARNING"):
        added = plan_vocab_extension(texts, vocab, args)
    assert added == ["Õ"]  # not Ô (1 < 2), nor Ű / Ŵ (never in the training text)
    assert "'Ô': 1" in caplog.text and "vocab_min_count=2" in caplog.text
    only_elsewhere = [r.getMessage() for r in caplog.records if "only in validation/sample" in r.getMessage()]
    assert len(only_elsewhere) == 1 and "'Ű'" in only_elsewhere[0] and "'Ŵ'" in only_elsewhere[0]
    assert "'Ô'" not in only_elsewhere[0]  # it is in the training text, reported as too rare instead
    assert plan_vocab_extension(texts, vocab, F5Arguments(vocab_min_count=1)) == ["Ô", "Õ"]
    assert plan_vocab_extension(texts, vocab, F5Arguments(extend_vocab=False)) == []


def test_new_accented_rows_start_from_their_base_letter():
    from recipes.f5.checkpoints import TINY_ARCH, build_model, extend_text_embedding
    from recipes.f5.data import initial_rows

    vocab = read_vocab(upstream_vocab_path())
    new = ["Ô", "Õ", "Ŕ", "\u2603"]  # Ŕ: no ŕ in the vocab -> R; a snowman has no base letter
    assert "Ŕ" not in vocab and "ŕ" not in vocab
    sources = initial_rows(new, vocab)
    assert sources == [vocab.index("ô"), vocab.index("õ"), vocab.index("R"), None]
    torch.manual_seed(0)
    model = build_model(TINY_ARCH, vocab)
    before = model.transformer.text_embed.text_embed.weight.detach().clone()
    extend_text_embedding(model, len(new), init_from=sources)
    after = model.transformer.text_embed.text_embed.weight.detach()
    assert after.shape[0] == before.shape[0] + 4 and torch.equal(after[: before.shape[0]], before)
    n = len(vocab)  # new symbol k gets id n + k, i.e. embedding row n + k + 1 (row 0 is the filler)
    assert torch.equal(after[n + 1], before[vocab.index("ô") + 1])
    assert torch.equal(after[n + 2], before[vocab.index("õ") + 1])
    assert torch.equal(after[n + 3], before[vocab.index("R") + 1])
    assert not any(torch.equal(after[n + 4], row) for row in before)  # random, like upstream


def test_vocab_id_zero_must_be_a_space(tmp_path):
    vocab = read_vocab(upstream_vocab_path())
    bad = write_vocab(vocab[1:] + [" "], tmp_path / "sorted_vocab.txt")
    with pytest.raises(ValueError, match="id 0 .* must be a single space"):
        read_vocab(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        read_vocab(empty)


def test_collator_applies_the_text_front_end_per_row_language(ptbr_rows):
    from data_prep.text_normalize import normalize_text
    from recipes.f5.data import TextFrontEnd

    vocab = read_vocab(upstream_vocab_path())
    front_end = TextFrontEnd(("pt-br",), "pt-br")
    row = dict(ptbr_rows[0])
    written = dict(row, text="Paguei R$ 19,50 no dia 15/03/2024.", language="pt-br")
    spoken = dict(row, text=normalize_text(written["text"], "pt-br"))
    assert spoken["text"] == "Paguei dezenove reais e cinquenta centavos no dia quinze de março de dois mil e vinte e quatro."
    batch = F5Collator(vocab, text_front_end=front_end)([written])
    assert torch.equal(batch["text"], F5Collator(vocab)([spoken])["text"])
    # a language not listed is left as written; a row without a language uses the default
    catalan = dict(written, language="ca")
    assert torch.equal(F5Collator(vocab, text_front_end=front_end)([catalan])["text"], F5Collator(vocab)([catalan])["text"])
    assert front_end("16 anos", None) == "dezesseis anos" and front_end("16 anys", "ca") == "16 anys"
    assert TextFrontEnd.from_config(front_end.to_config()) == front_end
    with pytest.raises(ValueError, match="no text normalisation rules"):
        TextFrontEnd(("xx",))
