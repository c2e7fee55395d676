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
