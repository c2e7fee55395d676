"""The embedded demo corpus: synthetic multi-speaker, multi-dialect speech from espeak-ng.

`generate_corpus` speaks short sentences with several espeak-ng voice variants per "dialect"
(Catalan central / balear / valencia, told apart by their own sentences, pitch and rate) and per
language (pt-br, it, fr, es, de), writes 24 kHz FLAC clips and a `manifest.jsonl` in the schema's
vocabulary, and adds a few deliberately bad files so the skip report has something to count.

The small committed copy lives in `tests/fixtures/demo_corpus/` (tests never need espeak-ng);
`python -m data_prep demo-corpus --out DIR --clips_per_speaker N` makes a bigger one.

`load_demo_dataset` turns the fixture's good clips into a schema `Dataset` without any of the
filtering machinery, for recipe tests that only need valid input.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.audio import decode_audio, write_audio
from data_prep.schema import DEFAULT_SAMPLING_RATE

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "demo_corpus"
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class Dialect:
    label: str  # schema `dialect` value
    language: str  # schema `language` value
    espeak_voice: str
    rate_wpm: int  # espeak -s
    pitch: int  # espeak -p (0-99)
    variants: tuple[str, ...]  # one espeak voice variant per speaker
    sentences: tuple[str, ...]


# Catalan "dialects" share espeak's one Catalan voice; each gets its own lexicon, rate and pitch so a
# model can (and must) tell them apart from the prompt, as it would real dialects.
DIALECTS: tuple[Dialect, ...] = (
    Dialect("central", "ca", "ca", 165, 50, ("m3", "f2", "m1"), (
        "El noi ha anat a l'escola de bon matí.",
        "Aquesta tarda plourà a Barcelona.",
        "Vull un got d'aigua, si us plau.",
        "La meva germana treballa a l'hospital.",
        "Demà anirem a veure el mar.",
        "Els nens juguen a la plaça del poble.",
        "He comprat pa i formatge al mercat.",
        "Quina hora és, si us plau?",
    )),
    Dialect("balear", "ca", "ca", 140, 62, ("f3", "m4", "f1"), (
        "S'al·lot ha anat a s'escola de bon matí.",
        "Aquest horabaixa plourà a Palma.",
        "Vull un tassó d'aigo, per favor.",
        "Sa meva germana fa feina a s'hospital.",
        "Demà anirem a veure sa mar.",
        "Ets al·lots juguen a sa plaça des poble.",
        "He comprat pa i formatge a sa plaça.",
        "Quina hora és, per favor?",
    )),
    Dialect("valencia", "ca", "ca", 185, 40, ("m2", "f4", "m5"), (
        "El xiquet ha anat a l'escola de bon matí.",
        "Esta vesprada plourà a València.",
        "Vull un got d'aigua, per favor.",
        "La meua germana treballa a l'hospital.",
        "Demà anirem a vore la mar.",
        "Els xiquets juguen a la plaça del poble.",
        "He comprat pa i formatge al mercat.",
        "Quina hora és, per favor?",
    )),
    Dialect("pt-br", "pt-br", "pt-br", 160, 50, ("m3", "f2"), (
        "O menino foi para a escola cedo.",
        "Vai chover em São Paulo hoje à tarde.",
        "Eu quero um copo de água, por favor.",
        "Amanhã vamos ver o mar.",
    )),
    Dialect("it", "it", "it", 160, 50, ("m3", "f2"), (
        "Il bambino è andato a scuola presto.",
        "Oggi pomeriggio pioverà a Roma.",
        "Vorrei un bicchiere d'acqua, per favore.",
        "Domani andremo a vedere il mare.",
    )),
    Dialect("fr", "fr", "fr-fr", 160, 50, ("m3", "f2"), (
        "Le garçon est allé à l'école tôt.",
        "Il pleuvra à Paris cet après-midi.",
        "Je voudrais un verre d'eau, s'il vous plaît.",
        "Demain nous irons voir la mer.",
    )),
    Dialect("es", "es", "es", 160, 50, ("m3", "f2"), (
        "El niño fue a la escuela temprano.",
        "Esta tarde lloverá en Madrid.",
        "Quiero un vaso de agua, por favor.",
        "Mañana iremos a ver el mar.",
    )),
    Dialect("de", "de", "de", 160, 50, ("m3", "f2"), (
        "Der Junge ist früh zur Schule gegangen.",
        "Heute Nachmittag regnet es in Berlin.",
        "Ich möchte ein Glas Wasser, bitte.",
        "Morgen fahren wir ans Meer.",
    )),
)

# Defaults for the committed fixture: the Catalan dialects get enough clips per speaker to pass the
# default balancing (min_per_speaker=5); other languages are a handful each, to stay a few MB.
FIXTURE_CLIPS = {"ca": 5, "other": 3}
FIXTURE_SPEAKERS = {"ca": 2, "other": 2}


def _espeak(text: str, voice: str, variant: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: `apt-get install espeak-ng` (or run `make install`).")
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(
            ["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(rate), "-p", str(pitch), "-w", tmp.name, text],
            check=True,
            capture_output=True,
        )
        return decode_audio(tmp.name)


def _pad(samples: np.ndarray, sr: int, lead_s: float = 0.15, tail_s: float = 0.25) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead_s * sr), np.float32), samples, np.zeros(int(tail_s * sr), np.float32)])


def generate_corpus(
    out_dir: str | os.PathLike,
    clips_per_speaker: dict[str, int] | int | None = None,
    speakers_per_dialect: dict[str, int] | int | None = None,
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    with_bad_files: bool = True,
    seed: int = 0,
) -> Path:
    """Synthesize the corpus into `out_dir` (`clips/*.flac` + `manifest.jsonl`). Returns the manifest path.

    Each manifest row: id, audio_path (relative to out_dir), text, speaker, dialect, language,
    duration, and `defect` (None for good clips; a reason for the deliberately bad ones).
    """
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def per(group: dict[str, int] | int | None, default: dict[str, int], dialect: Dialect) -> int:
        if isinstance(group, int):
            return group
        table = group or default
        return table["ca"] if dialect.language == "ca" else table["other"]

    rows: list[dict] = []
    for dialect in DIALECTS:
        n_speakers = min(per(speakers_per_dialect, FIXTURE_SPEAKERS, dialect), len(dialect.variants))
        n_clips = per(clips_per_speaker, FIXTURE_CLIPS, dialect)
        for s, variant in enumerate(dialect.variants[:n_speakers]):
            speaker = f"{dialect.label}_{variant}"
            # rotate sentences per speaker so speakers of one dialect don't all say the same thing
            for c in range(n_clips):
                text = dialect.sentences[(c + 3 * s) % len(dialect.sentences)]
                rate = dialect.rate_wpm + int(rng.integers(-10, 11))
                samples, sr = _espeak(text, dialect.espeak_voice, variant, rate, dialect.pitch)
                samples = _pad(decode_audio((samples, sr), target_sr=sampling_rate)[0], sampling_rate)
                clip_id = f"{speaker}_{c:03d}"
                rel = f"clips/{clip_id}.flac"
                write_audio(out / rel, samples, sampling_rate)
                rows.append({
                    "id": clip_id, "audio_path": rel, "text": text, "speaker": speaker,
                    "dialect": dialect.label, "language": dialect.language,
                    "duration": round(len(samples) / sampling_rate, 3), "defect": None,
                })
    if with_bad_files:
        rows.extend(_write_bad_files(out, rows, sampling_rate))
    manifest = out / MANIFEST_NAME
    with open(manifest, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return manifest


def _write_bad_files(out: Path, good_rows: list[dict], sr: int) -> list[dict]:
    """Clips every loader must skip (and count) rather than crash on."""
    template = next(r for r in good_rows if r["dialect"] == "central")
    good, _ = decode_audio(out / template["audio_path"])
    base = {"speaker": template["speaker"], "dialect": "central", "language": "ca"}
    bad: list[dict] = []

    # 1. truncated: a FLAC cut in the middle of its frames
    data = (out / template["audio_path"]).read_bytes()
    (out / "clips/bad_truncated.flac").write_bytes(data[: len(data) // 3])
    bad.append({**base, "id": "bad_truncated", "audio_path": "clips/bad_truncated.flac", "text": template["text"],
                "duration": template["duration"], "defect": "truncated"})
    # 2. empty transcript
    write_audio(out / "clips/bad_empty_text.flac", good, sr)
    bad.append({**base, "id": "bad_empty_text", "audio_path": "clips/bad_empty_text.flac", "text": "",
                "duration": round(len(good) / sr, 3), "defect": "empty_text"})
    # 3. digital silence with a transcript
    write_audio(out / "clips/bad_silence.flac", np.zeros(3 * sr, np.float32), sr)
    bad.append({**base, "id": "bad_silence", "audio_path": "clips/bad_silence.flac", "text": template["text"],
                "duration": 3.0, "defect": "silence"})
    # 4. 40 s long: speech then a long pause (compresses to little)
    long = np.concatenate([good, np.zeros(40 * sr - len(good), np.float32)])
    write_audio(out / "clips/bad_too_long.flac", long, sr)
    bad.append({**base, "id": "bad_too_long", "audio_path": "clips/bad_too_long.flac", "text": template["text"],
                "duration": 40.0, "defect": "too_long"})
    # 5. a missing file
    bad.append({**base, "id": "bad_missing", "audio_path": "clips/bad_missing.flac", "text": template["text"],
                "duration": 2.0, "defect": "missing"})
    return bad


def read_manifest(corpus_dir: str | os.PathLike = FIXTURE_DIR) -> list[dict]:
    """The corpus manifest rows, with `audio_path` made absolute."""
    corpus = Path(corpus_dir)
    rows = []
    with open(corpus / MANIFEST_NAME, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                row["audio_path"] = str(corpus / row["audio_path"])
                rows.append(row)
    return rows


def load_demo_dataset(
    corpus_dir: str | os.PathLike = FIXTURE_DIR,
    dialects: list[str] | None = None,
    languages: list[str] | None = None,
    speakers: list[str] | None = None,
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
):
    """The corpus' good clips as a schema `Dataset` (audio decoded lazily at `sampling_rate`)."""
    from datasets import Dataset

    from data_prep.schema import schema_features

    rows = [r for r in read_manifest(corpus_dir) if r["defect"] is None]
    if dialects:
        rows = [r for r in rows if r["dialect"] in dialects]
    if languages:
        rows = [r for r in rows if r["language"] in languages]
    if speakers:
        rows = [r for r in rows if r["speaker"] in speakers]
    if not rows:
        raise ValueError(f"no demo clips match dialects={dialects} languages={languages} speakers={speakers}")
    columns = {k: [r[k] for r in rows] for k in ("id", "text", "speaker", "dialect", "duration", "language")}
    columns["audio"] = [r["audio_path"] for r in rows]
    return Dataset.from_dict(columns, features=schema_features(sampling_rate))


# ---- a synthetic long recording: what `from-recordings` and `make voice-demo` start from --------------
# One espeak-ng voice reading sentences with natural-length pauses, like a podcast or an audiobook chapter.
# English at a slow rate: the offline Whisper base (recipes/eval) recognises it best (WER ~0-5 %).
RECORDING_SENTENCES = {
    "en": (
        "The boy went to school early this morning.", "My sister likes to read books in the garden.",
        "It is raining again in the city today.", "Please close the window before you leave the house.",
        "We are going to visit our grandmother on Sunday.", "The train to London leaves at half past nine.",
        "He bought fresh bread and a bottle of milk.", "The children played football in the park after lunch.",
        "She painted the kitchen walls a bright yellow.", "Our teacher told us a story about the sea.",
        "The old dog sleeps next to the fire every night.", "I would like a cup of tea with some honey.",
        "They found a small cat hiding under the car.", "The museum opens at ten o'clock on weekdays.",
        "My father cooks dinner for the whole family.", "The river is very cold at this time of year.",
        "We watched the sun go down behind the hills.", "Remember to water the plants on Friday.",
        "The library has thousands of books about history.", "A strong wind blew the leaves across the road.",
        "He writes a letter to his friend every month.", "The shop on the corner sells fresh fruit.",
        "She learned to play the piano when she was young.", "The bus was late because of the heavy traffic.",
    ),
}


def synthetic_recording(out_path: str | os.PathLike, language: str = "en", *, variant: str = "m1", rate: int = 140,
                        pauses_s: tuple[float, ...] = (0.6, 0.9, 2.2), sampling_rate: int = 24000,
                        sentences: tuple[str, ...] | None = None, noise: float = 3e-4, seed: int = 0) -> list[dict]:
    """Speak `sentences` in one voice with pauses cycling through `pauses_s` (the long ones end a clip at
    segmentation); write one WAV and `<out>.json` with each sentence's start/end/text. Returns that list."""
    from data_prep.audio import resample, write_audio

    sentences = sentences or RECORDING_SENTENCES[language]
    voice = {"en": "en-us"}.get(language, language)
    rng = np.random.default_rng(seed)
    parts, timeline, t = [np.zeros(int(0.8 * sampling_rate), np.float32)], [], 0.8
    for i, text in enumerate(sentences):
        samples, sr = _espeak(text, voice, variant, rate, 50)
        samples = resample(samples, sr, sampling_rate) if sr != sampling_rate else samples
        loud = np.flatnonzero(np.abs(samples) > 0.01)
        samples = samples[loud[0]:loud[-1] + 1] if loud.size else samples
        timeline.append({"start": round(t, 3), "end": round(t + len(samples) / sampling_rate, 3), "text": text})
        gap = pauses_s[i % len(pauses_s)]
        parts += [samples.astype(np.float32), np.zeros(int(gap * sampling_rate), np.float32)]
        t += len(samples) / sampling_rate + int(gap * sampling_rate) / sampling_rate
    audio = np.concatenate(parts)
    audio += (noise * rng.standard_normal(len(audio))).astype(np.float32)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(out_path, audio, sampling_rate)
    out_path.with_suffix(".json").write_text(json.dumps(timeline, indent=1, ensure_ascii=False), encoding="utf-8")
    return timeline
