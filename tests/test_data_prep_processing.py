"""Filters, label mapping, speaker balancing and the train/validation split."""

import json

import numpy as np
import pytest
from datasets import Dataset

from data_prep.audio import write_audio
from data_prep.mapping import CATALAN_DIALECTS, label_key, load_mapping
from data_prep.processing import ProcessingConfig, balance_speakers, declared_length, prepare, text_problem
from data_prep.sources import from_manifest
from data_prep.split import split_train_validation


# ---------------------------------------------------------------- mapping

def test_catalan_mapping_normalises_common_voice_spellings():
    mapping = load_mapping(CATALAN_DIALECTS)
    cases = {
        "valencià": "valencia", "Valencian": "valencia", "VALENCIÀ": "valencia", "valencia": "valencia",
        "balear": "balear", "Balearic": "balear", "mallorquí": "balear",
        "Central": "central", "català central": "central",
        "nord-occidental": "nord-occidental", "Nord Occidental": "nord-occidental", "north-western": "nord-occidental",
        "septentrional": "septentrional", "Northern Catalan": "septentrional",
    }
    for label, expected in cases.items():
        assert mapping.normalize(label) == expected, label
    assert mapping.normalize("klingon") is None
    assert mapping.normalize("") is None
    assert mapping.first_match(["klingon", "Valencian"]) == "valencia"
    assert {"central", "balear", "valencia", "nord-occidental", "septentrional"} <= set(mapping.labels)


def test_mapping_file_formats_and_ambiguity(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"Valencian": "valencia", "mallorqui": "balear"}), encoding="utf-8")
    mapping = load_mapping(flat)
    assert mapping.normalize("valencian") == "valencia" and mapping.normalize("Mallorquí") == "balear"
    assert load_mapping(None).normalize("  Some Label ") == "some label"  # no mapping: labels as they are
    assert label_key("Nord-Occidental") == label_key("nord occidental")
    with pytest.raises(ValueError, match="ambiguous"):
        load_mapping({"a": ["x"], "b": ["X"]})
    with pytest.raises(FileNotFoundError, match="catalan_dialects"):
        load_mapping(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- filters

def test_text_problems():
    assert text_problem("")[0] == "empty_text"
    assert text_problem("... !!! 123")[0] == "garbage_text"
    assert text_problem("caf\ufffd amb llet")[0] == "garbage_text"
    assert text_problem("see https://example.com now")[0] == "garbage_text"
    assert text_problem("Bon dia a tothom.") is None


def test_filters_count_channels_text_mismatch_and_duplicates(tmp_path, demo_corpus_dir):
    sr = 24000
    t = np.arange(2 * sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    import soundfile as sf

    sf.write(tmp_path / "three_channels.wav", np.stack([tone] * 3, axis=1), sr)
    sf.write(tmp_path / "stereo.wav", np.stack([tone, tone], axis=1), sr)
    write_audio(tmp_path / "short.wav", tone[: sr // 2], sr)
    write_audio(tmp_path / "tone.flac", tone, sr)
    (tmp_path / "notaudio.wav").write_bytes(b"this is not audio at all" * 20)
    rows = [
        {"audio_path": "three_channels.wav", "text": "tres canals"},
        {"audio_path": "stereo.wav", "text": "dos canals, es barregen"},
        {"audio_path": "short.wav", "text": "curt"},
        {"audio_path": "tone.flac", "text": "x" * 200, "id": "too_much_text"},
        {"audio_path": "notaudio.wav", "text": "no és àudio"},
        {"audio_path": "tone.flac", "text": "un to", "id": "tone"},
        {"audio_path": "tone.flac", "text": "un to repetit", "id": "tone"},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    prepared = prepare(from_manifest(tmp_path / "m.jsonl", speaker="s", dialect="central"),
                       ProcessingConfig(min_per_speaker=1, normalize="peak"))
    assert prepared.skips.counts() == {"wrong_channels": 1, "too_short": 1, "text_audio_mismatch": 1,
                                       "unreadable": 1, "duplicate_id": 1}
    kept = list(prepared.dataset["train"]["text"]) + list(prepared.dataset["validation"]["text"])
    assert sorted(kept) == ["dos canals, es barregen", "un to"]
    audio = prepared.dataset["train"][0]["audio"].get_all_samples().data.numpy()
    assert abs(np.abs(audio).max() - 10 ** (-1 / 20)) < 0.01  # peak-normalised to -1 dBFS


def test_declared_length_reads_wav_header_of_a_cut_file(tmp_path):
    sr = 22050
    write_audio(tmp_path / "full.wav", np.full(sr * 2, 0.1, np.float32), sr)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 3])
    assert declared_length(tmp_path / "cut.wav") == (2 * sr, sr)
    assert declared_length(str(tmp_path / "full.wav")) == (2 * sr, sr)


def test_num_proc_gives_the_same_result(demo_corpus_dir):
    source = from_manifest(demo_corpus_dir / "manifest.jsonl")
    single = prepare(source, ProcessingConfig(min_per_speaker=3))
    multi = prepare(source, ProcessingConfig(min_per_speaker=3, num_proc=2))
    assert single.skips.counts() == multi.skips.counts()
    assert list(single.dataset["train"]["id"]) == list(multi.dataset["train"]["id"])


def _shard_in_worker(task):
    """data_prep's shard job that also notes which process ran it (module level: pool workers unpickle it)."""
    import os

    from data_prep import processing

    with open(os.path.join(task[0], "pids.txt"), "a") as f:
        f.write(f"{os.getpid()}\n")
    return processing._real_shard(task)


def test_workers_are_replaced_every_worker_clips_and_results_do_not_change(demo_corpus_dir, monkeypatch, tmp_path):
    """Shards run in worker processes, each replaced by a fresh fork after WORKER_CLIPS clips (a long-lived decoder
    process's heap fragments without bound); without num_proc too. Same rows and skips as one in-process shard."""
    import os

    from data_prep import processing

    source = from_manifest(demo_corpus_dir / "manifest.jsonl")
    whole = prepare(source, ProcessingConfig(min_per_speaker=3, shard_size=10_000, cache_dir=str(tmp_path / "one")))
    monkeypatch.setattr(processing, "_real_shard", processing._process_shard, raising=False)
    monkeypatch.setattr(processing, "_process_shard", _shard_in_worker)
    monkeypatch.setattr(processing, "WORKER_CLIPS", 20)  # two shards of 10 per worker
    sharded = prepare(source, ProcessingConfig(min_per_speaker=3, shard_size=10, cache_dir=str(tmp_path / "many")))
    (folder,) = (tmp_path / "many").glob("shards-*")
    pids = (folder / "pids.txt").read_text().split()
    n_shards = -(-len(source.dataset) // 10)
    assert len(pids) == n_shards and os.getpid() not in map(int, pids)
    assert len(set(pids)) == -(-n_shards // 2)  # a new worker every two shards
    assert sharded.skips.counts() == whole.skips.counts()
    for split in ("train", "validation"):
        assert list(sharded.dataset[split]["id"]) == list(whole.dataset[split]["id"])


# ---------------------------------------------------------------- balancing and split

def _table(counts: dict[tuple[str, str], int]) -> Dataset:
    rows = [(d, s, f"{d}-{s}-{i}") for (d, s), n in counts.items() for i in range(n)]
    return Dataset.from_dict({"dialect": [r[0] for r in rows], "speaker": [r[1] for r in rows],
                              "id": [r[2] for r in rows], "duration": [2.0] * len(rows)})


def test_balance_drops_small_speakers_and_caps_large_ones_per_dialect():
    data = _table({("a", "s1"): 3, ("a", "s2"): 10, ("a", "s3"): 120, ("b", "s1"): 6})
    balanced, skips = balance_speakers(data, min_per_speaker=5, max_per_speaker=50, seed=0)
    counts = {}
    for d, s in zip(balanced["dialect"], balanced["speaker"]):
        counts[(d, s)] = counts.get((d, s), 0) + 1
    # the same speaker id in two dialects is balanced per dialect
    assert counts == {("a", "s2"): 10, ("a", "s3"): 50, ("b", "s1"): 6}
    assert skips.counts() == {"speaker_over_max_clips": 70, "speaker_below_min_clips": 3}
    assert all(s.stage == "balance" for s in skips.skips)
    again, _ = balance_speakers(data, 5, 50, seed=0)
    other, _ = balance_speakers(data, 5, 50, seed=1)
    assert list(again["id"]) == list(balanced["id"]) and list(other["id"]) != list(balanced["id"])  # seeded


def test_split_covers_every_dialect_with_several_speakers():
    data = _table({(d, f"{d}_spk{i}"): 8 for d in ("central", "balear", "valencia") for i in range(6)}
                  | {("tiny", "only"): 2})
    splits = split_train_validation(data, validation_fraction=0.1, seed=0)
    validation = splits["validation"]
    assert set(validation["dialect"]) == {"central", "balear", "valencia", "tiny"}
    for dialect in ("central", "balear", "valencia"):
        speakers = {s for d, s in zip(validation["dialect"], validation["speaker"]) if d == dialect}
        assert len(speakers) >= 4
    assert set(splits["train"]["id"]).isdisjoint(validation["id"])
    assert len(splits["train"]) + len(validation) == len(data)
    assert abs(len(validation) / len(data) - 0.1) < 0.03


def test_speaker_disjoint_split():
    data = _table({(d, f"{d}_spk{i}"): 5 for d in ("central", "balear") for i in range(10)} | {("solo", "one"): 5})
    with pytest.warns(UserWarning, match="one speaker"):
        splits = split_train_validation(data, validation_fraction=0.2, seed=0, speaker_disjoint=True)
    train_speakers, val_speakers = set(splits["train"]["speaker"]), set(splits["validation"]["speaker"])
    assert train_speakers.isdisjoint(val_speakers)
    assert set(splits["validation"]["dialect"]) == {"central", "balear"}
    for dialect in ("central", "balear"):
        held = {s for d, s in zip(splits["validation"]["dialect"], splits["validation"]["speaker"]) if d == dialect}
        assert len(held) == 2  # 20% of 10 speakers with equal clip counts
        assert any(s.startswith(dialect) for s in train_speakers)


def test_loading_reexports_the_split():
    from data_prep import loading

    assert loading.split_train_validation is split_train_validation


def _labelled_rows(n=3000, seed=7) -> Dataset:
    """Rows with skewed speaker sizes (some under any minimum, some over any cap), a few speakers in two dialects,
    non-ASCII and upper-case labels (sort order), float32 durations."""
    rng = np.random.default_rng(seed)
    dialects = ["valencià", "central", "balear", "nord-occidental", "Zeta"]
    speakers = [f"spk{int(x):03d}" for x in rng.zipf(1.6, size=n) % 120]
    dialect = [dialects[int(s[3:]) % len(dialects)] for s in speakers]
    for i in range(0, n, 97):
        dialect[i] = dialects[(dialects.index(dialect[i]) + 1) % len(dialects)]
    return Dataset.from_dict({"id": [f"c{i:05d}" for i in range(n)], "speaker": speakers, "dialect": dialect,
                              "duration": rng.uniform(1, 15, size=n).astype(np.float32).tolist(),
                              "source": [f"src{i}" for i in range(n)]})


def _digest(value) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value, default=str, sort_keys=True).encode()).hexdigest()[:16]


# Digests of the balance and split results of the plain Python loops these functions used before they went
# columnar (integer label codes): a prepared dataset must balance and split the same from one release to the
# next, or an evaluation of an older run would score clips its model trained on.
BALANCE_DIGESTS = {(0, 5, 50): "0b0f05cf1d9385cb", (0, 1, None): "49e53635bbe71f6c", (0, 3, 20): "c2d9344a1b76ed9a",
                   (1, 5, 50): "10588b1c76e2f9b1", (1, 3, 20): "01ab270324906f7a"}
SPLIT_DIGESTS = {(0, False, 0.1): "9d7e36be496d788c", (0, False, 0.3): "57bc0fdffd2c170a",
                 (0, True, 0.1): "499e8d0ced31aa4e", (0, True, 0.3): "d069e34895697b2c",
                 (1, False, 0.1): "9d437af31310079d", (1, False, 0.3): "e819e7a61619aaee",
                 (1, True, 0.1): "aad425f26b85a982", (1, True, 0.3): "7513fddd590da8dc"}


def test_balance_and_split_are_the_same_as_in_earlier_releases():
    data = _labelled_rows()
    for (seed, low, high), expected in BALANCE_DIGESTS.items():
        balanced, skips = balance_speakers(data, low, high, seed)
        got = _digest([balanced["id"], [(s.id, s.file, s.reason, s.detail, s.stage) for s in skips.skips]])
        assert got == expected, (seed, low, high)
    for (seed, disjoint, fraction), expected in SPLIT_DIGESTS.items():
        splits = split_train_validation(data, fraction, seed, disjoint)
        assert _digest([splits["train"]["id"], splits["validation"]["id"]]) == expected, (seed, disjoint, fraction)


def test_stats_equal_a_plain_recount():
    from collections import defaultdict

    from data_prep.report import compute_stats

    splits = split_train_validation(_labelled_rows(), 0.1, 0)
    stats = compute_stats(splits)
    seconds, clips, speakers = defaultdict(float), defaultdict(int), defaultdict(set)
    speaker_seconds, speaker_clips, speaker_dialects = defaultdict(float), defaultdict(int), defaultdict(set)
    for split in ("train", "validation"):
        for dialect, speaker, duration in zip(splits[split]["dialect"], splits[split]["speaker"],
                                              splits[split]["duration"]):
            seconds[dialect] += duration
            clips[dialect] += 1
            speakers[dialect].add(speaker)
            speaker_seconds[speaker] += duration
            speaker_clips[speaker] += 1
            speaker_dialects[speaker].add(dialect)
    assert list(stats["per_dialect"]) == sorted(clips)  # sorted as Python sorts: "Zeta" < "balear" < "valencià"
    assert stats["per_dialect"] == {d: {"clips": clips[d], "hours": round(seconds[d] / 3600, 4),
                                        "speakers": len(speakers[d])} for d in sorted(clips)}
    assert stats["per_speaker"] == {s: {"clips": speaker_clips[s], "minutes": round(speaker_seconds[s] / 60, 3),
                                        "dialects": sorted(speaker_dialects[s])} for s in sorted(speaker_clips)}
    assert stats["clips"] == 3000 and stats["speakers"] == len(speaker_seconds)
    assert stats["splits"]["validation"]["clips"] == len(splits["validation"])
    assert stats["hours"] == round(sum(seconds.values()) / 3600, 4)


def test_duplicate_ids_name_the_first_row():
    from data_prep.processing import _duplicate_rows

    raw = Dataset.from_dict({"id": ["a", "b", "a", "c", "b", "a"], "source": [f"line{i}" for i in range(6)]})
    assert _duplicate_rows(raw) == {2: "row 0 (line0)", 4: "row 1 (line1)", 5: "row 0 (line0)"}
    assert _duplicate_rows(Dataset.from_dict({"id": ["x", "y"], "source": ["1", "2"]})) == {}
