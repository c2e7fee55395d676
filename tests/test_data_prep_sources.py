"""Every data_prep source turns the demo corpus (exported to its format) into the schema, with the bad
files counted in the skip report under the right reason."""

import json
import shutil

import numpy as np
import pytest

from data_prep.mapping import CATALAN_DIALECTS
from data_prep.processing import ProcessingConfig, prepare
from data_prep.schema import SchemaError, validate_schema
from data_prep.sources import from_common_voice, from_folder, from_hf, from_ljspeech, from_manifest

DEFECTS = {"truncated": "bad_truncated", "empty_text": "bad_empty_text", "silence": "bad_silence",
           "too_long": "bad_too_long", "missing": "bad_missing"}
CATALAN = {"central", "balear", "valencia"}
ALL_DIALECTS = CATALAN | {"pt-br", "it", "fr", "es", "de"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from data_prep.exporters import export_all

    return export_all(out_dir=tmp_path_factory.mktemp("formats"))


def _check_defects(prepared, extra=None):
    """The five defects are each counted once, under their reason, naming the bad file."""
    filter_and_source = {s.reason: s for s in prepared.skips.skips if s.stage in ("filter", "source")}
    expected = dict(DEFECTS, **(extra or {}))
    assert {r: n for r, n in prepared.skips.counts().items()
            if r not in ("speaker_below_min_clips", "speaker_over_max_clips")} == {r: 1 for r in expected}
    for reason, stem in DEFECTS.items():
        skip = filter_and_source[reason]
        assert stem in skip.file or stem in skip.id, (reason, skip)
        assert skip.detail


def _check_schema(prepared, dialects, n_rows):
    data = prepared.dataset
    validate_schema(data, 24000)
    assert set(data) == {"train", "validation"}
    assert len(data["train"]) + len(data["validation"]) == n_rows
    assert set(data["train"]["dialect"]) == dialects
    assert set(data["validation"]["dialect"]) == dialects  # validation covers every dialect
    assert all(1.0 <= d <= 15.0 for d in data["train"]["duration"])
    assert all(t.strip() for t in data["train"]["text"])
    samples = data["validation"][0]["audio"].get_all_samples()
    assert samples.sample_rate == 24000 and samples.data.shape[0] == 1
    assert abs(samples.data.shape[1] / 24000 - data["validation"][0]["duration"]) < 0.01
    assert np.abs(samples.data.numpy()).max() > 0.01


def test_common_voice_with_mapping_and_vote_filter(exported):
    source = from_common_voice(exported["common_voice"], locale="ca", mapping=CATALAN_DIALECTS, vote_filter=True)
    prepared = prepare(source, ProcessingConfig(min_per_speaker=3))
    _check_defects(prepared, {"votes": 1})
    votes = next(s for s in prepared.skips.skips if s.reason == "votes")
    assert "central" in votes.id and "down_votes=2" in votes.detail
    _check_schema(prepared, CATALAN, 3 * 2 * 5 - 1)
    # speaker = client_id: two speakers per dialect, hashed as in a real release
    assert len(set(prepared.dataset["train"]["speaker"])) == 6
    assert all(len(s) == 64 for s in prepared.dataset["train"]["speaker"])


def test_common_voice_without_vote_filter_keeps_downvoted_row(exported):
    source = from_common_voice(exported["common_voice"] / "ca", mapping=CATALAN_DIALECTS)
    prepared = prepare(source, ProcessingConfig())  # default min_per_speaker=5: all six speakers have 5 clips
    _check_defects(prepared)
    _check_schema(prepared, CATALAN, 30)


def test_common_voice_labels_use_variant_then_accents_and_count_unmapped(exported, tmp_path):
    locale_dir = tmp_path / "ca"
    shutil.copytree(exported["common_voice"] / "ca", locale_dir)
    tsv = (locale_dir / "validated.tsv").read_text(encoding="utf-8").splitlines()
    header = tsv[0].split("\t")
    variants = {row.split("\t")[header.index("variant")] for row in tsv[1:]}
    accents = {row.split("\t")[header.index("accents")] for row in tsv[1:]}
    # the export spells dialects many ways, in both columns
    assert {"Valencian", "valencià", "Central", "balear", "Balearic"} <= variants | accents
    assert accents - {""}
    # one row gets a label no mapping knows
    fields = tsv[1].split("\t")
    fields[header.index("variant")] = "klingon"
    tsv[1] = "\t".join(fields)
    (locale_dir / "validated.tsv").write_text("\n".join(tsv) + "\n", encoding="utf-8")

    source = from_common_voice(locale_dir, mapping=CATALAN_DIALECTS)
    assert source.skips.counts() == {"unmapped_dialect": 1}
    assert "klingon" in source.skips.skips[0].detail
    assert set(source.dataset["dialect"]) == CATALAN
    kept = from_common_voice(locale_dir, mapping=CATALAN_DIALECTS, keep_unmapped=True)
    assert "klingon" in set(kept.dataset["dialect"]) and len(kept.skips) == 0


def test_common_voice_other_locales_default_to_locale(exported):
    source = from_common_voice(exported["common_voice"], locale="pt-br", mapping=CATALAN_DIALECTS)
    assert set(source.dataset["dialect"]) == {"pt-br"}
    with pytest.raises(FileNotFoundError, match="--locale"):
        from_common_voice(exported["common_voice"])  # several locales: must say which


def test_ljspeech(exported):
    source = from_ljspeech(exported["ljspeech"], dialect="central", speaker="lj_central", language="ca")
    prepared = prepare(source, ProcessingConfig())
    _check_defects(prepared)
    _check_schema(prepared, {"central"}, 5)
    assert set(prepared.dataset["train"]["speaker"]) == {"lj_central"}


def test_folder_with_sidecar_transcripts(exported):
    source = from_folder(exported["folder"], label_levels="dialect/speaker")
    prepared = prepare(source, ProcessingConfig(min_per_speaker=3))
    _check_defects(prepared)
    missing = next(s for s in prepared.skips.skips if s.reason == "missing")
    assert missing.stage == "source" and missing.file.endswith("bad_missing.txt")
    _check_schema(prepared, ALL_DIALECTS, 60)
    assert "central_m3" in set(prepared.dataset["train"]["speaker"])


@pytest.mark.parametrize("manifest_kind", ["json", "jsonl"])
def test_manifest(exported, demo_corpus_dir, manifest_kind):
    path = exported["manifest"] if manifest_kind == "json" else demo_corpus_dir / "manifest.jsonl"
    prepared = prepare(from_manifest(path), ProcessingConfig(min_per_speaker=3))
    _check_defects(prepared)
    _check_schema(prepared, ALL_DIALECTS, 60)
    assert set(prepared.dataset["train"]["language"]) == {"ca", "pt-br", "it", "fr", "es", "de"}


def test_manifest_declared_duration_catches_a_decodable_but_cut_file(tmp_path, demo_corpus_dir):
    # a decoder that reads the head of a cut file yields a valid-looking clip; the declared duration gives it away
    clips = sorted((demo_corpus_dir / "clips").glob("central_m3_00*.flac"))
    rows = [{"audio_path": str(c), "text": "Hola a tothom.", "language": "ca", "speaker": "a"} for c in clips]
    rows[0]["duration"] = 9.0
    rows[1]["duration"] = 2.6  # right (within tolerance): kept
    (tmp_path / "m.json").write_text(json.dumps(rows), encoding="utf-8")
    prepared = prepare(from_manifest(tmp_path / "m.json"), ProcessingConfig(min_per_speaker=1))
    assert prepared.skips.counts() == {"truncated": 1}
    assert "declares 9.00 s" in prepared.skips.skips[0].detail
    assert sum(len(split) for split in prepared.dataset.values()) == len(clips) - 1


def test_hf_dataset_with_column_map(exported):
    column_map = {"id": "utt_id", "audio": "file", "text": "sentence", "speaker": "client", "dialect": "accent",
                  "language": "lang"}
    prepared = prepare(from_hf(str(exported["hf"]), column_map=column_map), ProcessingConfig(min_per_speaker=3))
    _check_defects(prepared)
    _check_schema(prepared, ALL_DIALECTS, 60)


def test_hf_wrong_column_fails_early_listing_columns(exported):
    with pytest.raises(SchemaError) as err:
        from_hf(str(exported["hf"]), column_map={"audio": "file", "text": "transcription"})
    message = str(err.value)
    assert "transcription" in message
    for column in ("utt_id", "file", "sentence", "client", "accent", "lang"):
        assert column in message
    with pytest.raises(SchemaError, match="--speaker"):
        from_hf(str(exported["hf"]), column_map={"audio": "file", "text": "sentence"}, dialect="ca")
