import numpy as np
import pytest

from data_prep.audio import AudioDecodeError, decode_audio, peak_normalize, resample, rms_dbfs
from data_prep.demo_corpus import DIALECTS, load_demo_dataset, read_manifest
from data_prep.schema import SCHEMA_COLUMNS, SchemaError, require_columns, validate_schema


def test_demo_dataset_follows_schema():
    ds = load_demo_dataset()
    validate_schema(ds)
    assert set(SCHEMA_COLUMNS) <= set(ds.column_names)
    assert set(ds["dialect"]) == {d.label for d in DIALECTS}
    samples, sr = decode_audio(ds[0]["audio"])
    assert sr == 24_000 and samples.ndim == 1 and samples.dtype == np.float32
    assert abs(len(samples) / sr - ds[0]["duration"]) < 0.01


def test_fixture_has_each_kind_of_bad_file():
    defects = {r["defect"] for r in read_manifest() if r["defect"]}
    assert defects == {"truncated", "empty_text", "silence", "too_long", "missing"}


def test_missing_column_error_lists_existing_columns():
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['speaker'\].*Available columns: \['audio', 'text'\]"):
        require_columns(["audio", "text"], ["audio", "text", "speaker"])


def test_wrong_sampling_rate_is_rejected():
    from datasets import Audio

    ds = load_demo_dataset(dialects=["it"]).cast_column("audio", Audio(sampling_rate=16_000))
    with pytest.raises(SchemaError, match="16000 Hz but 24000 Hz"):
        validate_schema(ds)


def test_decode_accepts_every_cell_kind(tmp_path):
    row = read_manifest()[0]
    from_path, sr = decode_audio(row["audio_path"])
    with open(row["audio_path"], "rb") as f:
        from_bytes, _ = decode_audio({"bytes": f.read(), "path": None})
    from_dict, _ = decode_audio({"array": from_path, "sampling_rate": sr})
    np.testing.assert_allclose(from_path, from_bytes)
    np.testing.assert_allclose(from_path, from_dict)
    down, sr16 = decode_audio(row["audio_path"], target_sr=16_000)
    assert sr16 == 16_000 and abs(len(down) - len(from_path) * 16 / 24) <= 2
    stereo, _ = decode_audio((np.stack([from_path, np.zeros_like(from_path)]), sr))
    np.testing.assert_allclose(stereo, from_path / 2, atol=1e-7)


def test_decode_errors_name_the_file():
    truncated = next(r for r in read_manifest() if r["defect"] == "truncated")["audio_path"]
    missing = next(r for r in read_manifest() if r["defect"] == "missing")["audio_path"]
    with pytest.raises(AudioDecodeError, match="bad_missing.flac"):
        decode_audio(missing)
    try:  # FFmpeg may decode the readable head of a truncated FLAC: then it must be shorter than declared
        samples, sr = decode_audio(truncated)
        assert len(samples) / sr < 0.5 * next(r for r in read_manifest() if r["defect"] == "truncated")["duration"]
    except AudioDecodeError as err:
        assert "bad_truncated.flac" in str(err)


def test_levels():
    sine = np.sin(np.linspace(0, 100, 24_000)).astype(np.float32) * 0.1
    assert abs(float(np.abs(peak_normalize(sine, -1.0)).max()) - 10 ** (-1 / 20)) < 1e-4
    assert rms_dbfs(np.zeros(10, np.float32)) == float("-inf")
    assert abs(len(resample(sine, 24_000, 22_050)) - 22_050) <= 1


def test_load_prepared_demo_dataset_splits_every_dialect():
    from data_prep.loading import load_prepared_dataset

    data = load_prepared_dataset("demo", validation_fraction=0.2)
    assert set(data["validation"]["dialect"]) == set(data["train"]["dialect"])
    assert not set(data["validation"]["id"]) & set(data["train"]["id"])
    central = [s for s, d in zip(data["validation"]["speaker"], data["validation"]["dialect"]) if d == "central"]
    assert len(set(central)) == 2  # round-robin over the dialect's speakers
    only = load_prepared_dataset("demo", dialects=["balear"])
    assert set(only["train"]["dialect"]) == {"balear"}


def test_load_prepared_dataset_from_disk(tmp_path):
    from data_prep.loading import load_prepared_dataset

    load_demo_dataset(languages=["it", "fr"]).save_to_disk(str(tmp_path / "ds"))
    data = load_prepared_dataset(str(tmp_path / "ds"), sampling_rate=16_000)
    assert data["train"].features["audio"].sampling_rate == 16_000
    assert len(data["train"]) + len(data["validation"]) == 12


def test_a_dialects_validation_clips_do_not_depend_on_the_other_dialects():
    from data_prep.loading import load_prepared_dataset

    everything = load_prepared_dataset("demo", validation_fraction=0.2, seed=3)
    only_balear = load_prepared_dataset("demo", validation_fraction=0.2, seed=3, dialects=["balear"])
    held_out = {i for i, d in zip(everything["validation"]["id"], everything["validation"]["dialect"]) if d == "balear"}
    assert held_out and set(only_balear["validation"]["id"]) == held_out


def test_other_clips_of_same_speaker_never_include_the_row_itself():
    from data_prep.speakers import other_clips_of_same_speaker

    rows = {"id": ["a1", "a2", "b1", "a3"], "speaker": ["a", "a", "b", "a"]}
    assert other_clips_of_same_speaker(rows) == [[1, 3], [0, 3], [], [0, 1]]
    pool = {"id": ["a9", "b9", "a1"], "speaker": ["a", "b", "a"]}  # a pool that happens to hold the target a1
    assert other_clips_of_same_speaker({"id": ["a1", "c1"], "speaker": ["a", "c"]}, pool) == [[0], []]
