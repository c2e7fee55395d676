"""Bad input never crashes data_prep: every row of a fuzzed source ends in the dataset or in the skip report
with a reason, and the count in equals kept + skipped (per id, duplicates included)."""

import io
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from data_prep.demo_corpus import FIXTURE_DIR


def _good_clips() -> list[Path]:
    return sorted((FIXTURE_DIR / "clips").glob("pt-br_*.flac"))[:4]


def _wav_bytes(seconds=2.0, sr=16000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _huge_header_wav() -> bytes:
    """A WAV whose data chunk declares ~4 GB (and whose RIFF size says the same) over 0.5 s of samples."""
    data = bytearray(_wav_bytes(0.5))
    data[4:8] = struct.pack("<I", 0xFFFFFFF0 - 8)
    at = data.index(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFF0 - at - 8)
    return bytes(data)


def _huge_fmt_chunk_wav() -> bytes:
    """A WAV whose fmt chunk claims 1 GB, so the chunk walk jumps past the end of the file."""
    data = bytearray(_wav_bytes(1.0))
    at = data.index(b"fmt ")
    data[at + 4:at + 8] = struct.pack("<I", 1 << 30)
    return bytes(data)


def fuzz_audio(folder: Path) -> dict[str, Path]:
    """name -> file: good clips, and every kind of broken file."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, clip in enumerate(_good_clips()):
        files[f"good{i}"] = folder / f"good{i}.flac"
        files[f"good{i}"].write_bytes(clip.read_bytes())
    good = _good_clips()[0].read_bytes()
    broken = {
        "zero_bytes.wav": b"",
        "truncated.flac": good[: len(good) // 3],
        "header_only.wav": _wav_bytes()[:44],
        "png_named.mp3": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20,
        "text_named.flac": b"this is not audio at all\n" * 100,
        "flac_named.wav": good,  # wrong extension, valid content: decodes by content
        "huge_header.wav": _huge_header_wav(),
        "huge_fmt.wav": _huge_fmt_chunk_wav(),
        "random.ogg": np.random.default_rng(0).integers(0, 256, 30_000, dtype=np.uint8).tobytes(),
        "tiny.wav": _wav_bytes(0.01),
    }
    for name, payload in broken.items():
        files[Path(name).stem] = folder / name
        files[Path(name).stem].write_bytes(payload)
    return files


TEXTS = {
    "plain": "O menino foi para a escola hoje cedo.",
    "control": "Bom\x00 dia\x07 a\x1b todos\u200b os amigos.",
    "only_control": "\x00\x01\x02\x7f",
    "broken_quote": 'Ele disse "vamos embora e saiu.',
    "non_utf8": b"Ol\xe1 \xff\xfe mundo bonito".decode("latin-1"),  # written as raw bytes below
}


def _common_voice(tmp_path: Path) -> tuple[Path, Counter]:
    locale = tmp_path / "cv" / "pt"
    files = fuzz_audio(locale / "clips")
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\taccents\tvariant\tlocale\n"
    lines, expected = [], Counter()

    def line(clip, text, speaker="s1", extra="2\t0\t\t\tpt"):
        lines.append(f"{speaker}\t{clip}\t{text}\t{extra}\n".encode("utf-8", errors="surrogateescape"))

    names = sorted(files)
    for i, name in enumerate(names):
        text = list(TEXTS.values())[i % len(TEXTS)] if name.startswith("good") else TEXTS["plain"]
        if i % len(TEXTS) == 4 and name.startswith("good"):
            lines.append(f"s1\t{files[name].name}\t".encode() + b"Ol\xe1 \xff\xfe mundo bonito" + b"\t2\t0\t\t\tpt\n")
        else:
            line(files[name].name, text)
        expected[Path(files[name].name).stem] += 1
    line(files["good0"].name, TEXTS["plain"])  # duplicate id (the same clip listed twice)
    expected["good0"] += 1
    line("missing_file.mp3", TEXTS["plain"])
    expected["missing_file"] += 1
    lines.append(b"s1\tshort_line.mp3\n")  # too few fields
    expected["short_line"] += 1
    lines.append(b"s1\textra.mp3\tsentence\twith\ta\ttab\t2\t0\t\t\tpt\n")  # a tab inside the sentence
    expected["extra"] += 1
    (locale / "validated.tsv").write_bytes(header.encode() + b"".join(lines))
    durations = "clip\tduration[ms]\ngood1.flac\t1e15\ngood2.flac\t-5\ngood3.flac\tnan\nflac_named.wav\tinf\n" \
                "tiny.wav\tnot a number\n"
    (locale / "clip_durations.tsv").write_text(durations)
    return locale, expected


def _folder(tmp_path: Path) -> tuple[Path, Counter]:
    root = tmp_path / "folder"
    files = fuzz_audio(root / "pt" / "spk1")
    expected = Counter()
    for i, (name, path) in enumerate(sorted(files.items())):
        transcript = path.with_suffix(".txt")
        if name == "good1":
            transcript.write_bytes(b"Ol\xe1 \xff\xfe mundo bonito")  # not UTF-8
        elif name != "good3":  # good3 has no transcript
            transcript.write_text(list(TEXTS.values())[i % 4])
        expected[f"pt__spk1__{path.stem}"] += 1
    (root / "pt" / "spk1" / "orphan.txt").write_text("a transcript without audio")
    expected["pt__spk1__orphan"] += 1
    # two files with one stem: the same id twice
    (root / "pt" / "spk1" / "good0.mp3").write_bytes(b"")
    expected["pt__spk1__good0"] += 1
    return root, expected


def _check(prepared, expected: Counter):
    kept = Counter(i for split in prepared.dataset.values() for i in split["id"])
    skipped = Counter(s.id for s in prepared.skips.skips)
    assert all(s.reason and s.detail for s in prepared.skips.skips)
    assert sum(expected.values()) == sum(kept.values()) + sum(skipped.values())  # count in = kept + skipped
    assert kept + skipped == expected  # ... and per id
    assert sum(kept.values()) >= 2  # the good clips made it
    return {s.id: s.reason for s in prepared.skips.skips}


@pytest.mark.parametrize("num_proc", [None, 2])
def test_fuzzed_common_voice_rows_are_all_accounted_for(tmp_path, num_proc):
    from data_prep.processing import ProcessingConfig, prepare
    from data_prep.sources import from_common_voice

    locale, expected = _common_voice(tmp_path)
    cfg = ProcessingConfig(min_duration=0.3, min_per_speaker=1, max_per_speaker=None, num_proc=num_proc,
                           shard_size=4, cache_dir=str(tmp_path / "cache"), validation_fraction=0.3)
    reasons = _check(prepare(from_common_voice(locale, default_dialect="pt"), cfg), expected)
    assert reasons["zero_bytes"] == "unreadable" and reasons["missing_file"] == "missing"
    assert reasons["short_line"] == reasons["extra"] == "bad_tsv_row"
    assert reasons["good0"] == "duplicate_id" and reasons["tiny"] == "too_short"
    assert reasons["good1"] == "empty_text"  # only control characters
    assert reasons["good3"] == "garbage_text"  # not UTF-8: U+FFFD
    assert "good2" not in reasons  # a lone quote is just a character in a Common Voice TSV (no quoting)
    for name in ("png_named", "text_named", "random", "header_only"):
        assert reasons[name] in ("unreadable", "truncated"), name


def test_fuzzed_folder_rows_are_all_accounted_for(tmp_path):
    from data_prep.processing import ProcessingConfig, prepare
    from data_prep.sources import from_folder

    root, expected = _folder(tmp_path)
    cfg = ProcessingConfig(min_duration=0.3, min_per_speaker=1, max_per_speaker=None, shard_size=5,
                           validation_fraction=0.3)
    reasons = _check(prepare(from_folder(root, label_levels="dialect/speaker"), cfg), expected)
    assert reasons["pt__spk1__good1"] == "garbage_text"  # U+FFFD from the non-UTF-8 transcript
    assert reasons["pt__spk1__good3"] == "missing_transcript" and reasons["pt__spk1__orphan"] == "missing"


def test_manifest_csv_with_a_broken_quote_names_the_line(tmp_path):
    from data_prep.sources import from_manifest

    clip = _good_clips()[0]
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'audio_path,text,speaker,language\n{clip},"Ele disse oi,s1,pt\n{clip},Outra frase,s1,pt\n')
    with pytest.raises(ValueError, match=r"m\.csv.*line \d+.*unbalanced quote"):
        from_manifest(manifest)
