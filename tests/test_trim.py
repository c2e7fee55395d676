"""VAD silence trimming (data_prep/trim.py) on noisy synthetic speech, and its data_prep processing step.

Clips: espeak-ng speech (the committed demo-corpus clip when espeak-ng is absent: it is espeak-ng output too)
between 0.6 s of silence before and 1.5 s after, plus white noise at a given SNR. The energy trim the
recipes used before keeps the whole noisy tail at SNR <= 35 dB; the VAD trim must leave ~0.2 s after the
last speech (the EOS point) and a small margin before the first.
"""

import json
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from data_prep.audio import decode_audio, resample, write_audio

SR = 24_000
LEAD_S, TAIL_S = 0.6, 1.5


def _speech() -> np.ndarray:
    if shutil.which("espeak-ng"):
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            subprocess.run(["espeak-ng", "-v", "fr", "-w", f.name, "Bonjour tout le monde, il fait beau."],
                           check=True, capture_output=True)
            wave, sr = decode_audio(f.name)
    else:
        from data_prep.demo_corpus import FIXTURE_DIR

        wave, sr = decode_audio(str(FIXTURE_DIR / "clips" / "fr_f2_000.flac"))
    return resample(wave, sr, SR).astype(np.float32)


def _speech_span(clean: np.ndarray) -> tuple[float, float]:
    """First/last 10 ms frame within 40 dB of the loudest one, in the noise-free clip (the ground truth)."""
    frame = SR // 100
    n = len(clean) // frame
    rms = np.sqrt(np.mean(clean[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-12
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -40)[0]
    return loud[0] * frame / SR, (loud[-1] + 1) * frame / SR


def noisy_clip(snr_db: float, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """(clip, speech start s, speech end s): silence-padded espeak speech plus white noise at `snr_db`."""
    speech = _speech()
    clean = np.concatenate([np.zeros(int(LEAD_S * SR)), speech, np.zeros(int(TAIL_S * SR))]).astype(np.float32)
    start, end = _speech_span(clean)
    power = float(np.mean(speech[int((start - LEAD_S) * SR): int((end - LEAD_S) * SR)] ** 2))
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(clean))
    return (clean + noise).astype(np.float32), start, end


@pytest.mark.parametrize("snr_db", [10, 20, 30, 40])
def test_vad_trim_leaves_about_0_2_s_after_speech_at_every_snr(snr_db):
    from data_prep.trim import trim_silence

    clip, start, end = noisy_clip(snr_db)
    trimmed, result = trim_silence(clip, SR)
    kept_start = result.start_cut_s
    kept_end = (len(clip) / SR) - result.end_cut_s
    tail, lead = kept_end - end, start - kept_start
    print(f"SNR {snr_db} dB: tail {TAIL_S + 0.0:.2f} s -> {tail:.3f} s kept after speech, lead {LEAD_S:.2f} s -> "
          f"{lead:.3f} s; cut {result.start_cut_s:.2f} s + {result.end_cut_s:.2f} s")
    assert result.speech and len(trimmed) == int(round((kept_end - kept_start) * SR))
    assert 0.15 <= tail <= 0.3, tail  # the EOS point: ~0.2 s after the last speech
    assert -0.05 <= lead <= 0.25, lead  # the start is trimmed too, without cutting into the speech


def test_energy_trim_keeps_a_noisy_tail_the_vad_removes():
    """Why the VAD: the old energy trim (relative to the peak) keeps the whole 1.5 s tail at 20 dB SNR."""
    from recipes.pocket.data import trim_clip

    clip, _, end = noisy_clip(20)
    _, energy_end = trim_clip(clip, SR, "energy")
    _, vad_end = trim_clip(clip, SR, "vad")
    assert energy_end / SR - end > 1.2
    assert vad_end / SR - end < 0.3


def test_no_speech_is_left_untouched():
    from data_prep.trim import trim_silence, trimming_summary

    noise = np.random.default_rng(0).normal(0, 0.01, 2 * SR).astype(np.float32)
    out, result = trim_silence(noise, SR)
    assert len(out) == len(noise) and not result.speech and result.cut_s == 0
    summary = trimming_summary([(0.5, 1.2, True), (0.0, 0.0, False), (0.0, 0.0, True)])
    assert summary == {"clips": 3, "clips_trimmed": 1, "seconds_trimmed": 1.7, "seconds_trimmed_start": 0.5,
                       "seconds_trimmed_end": 1.2, "clips_without_speech": 1}


def test_data_prep_trim_step_trims_and_counts_in_the_report(tmp_path):
    from data_prep.outputs import write_outputs
    from data_prep.processing import ProcessingConfig, prepare
    from data_prep.sources import from_manifest

    rows, spans = [], {}
    for i, snr in enumerate((10, 20, 30, 40)):
        clip, start, end = noisy_clip(snr, seed=i)
        write_audio(tmp_path / f"c{i}.wav", clip, SR)
        rows.append({"audio_path": f"c{i}.wav", "text": "Bonjour tout le monde, il fait beau.", "id": f"c{i}"})
        spans[f"c{i}"] = (len(clip) / SR, end - start)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    source = from_manifest(tmp_path / "m.jsonl", speaker="s", dialect="fr")

    untouched = prepare(source, ProcessingConfig(min_per_speaker=1, validation_fraction=0.25))
    assert untouched.trimming is None
    prepared = prepare(source, ProcessingConfig(min_per_speaker=1, validation_fraction=0.25, trim_silence=True))
    t = prepared.trimming
    assert t["clips"] == 4 and t["clips_trimmed"] == 4 and t["clips_without_speech"] == 0
    assert 4 * 1.1 < t["seconds_trimmed_end"] < 4 * 1.8 and 4 * 0.3 < t["seconds_trimmed_start"] < 4 * 0.6
    for split in prepared.dataset.values():
        for clip_id, duration in zip(split["id"], split["duration"]):
            speech = spans[clip_id][1]
            assert speech < duration < speech + 0.55, (clip_id, duration, speech)
    report = write_outputs(prepared, tmp_path / "out", verbose=False)
    saved = json.loads((tmp_path / "out/report/report.json").read_text())
    assert saved["trimming"] == t and saved["processing"]["trim_silence"] is True
    assert "Silence trimming (VAD): 4 of 4 clips trimmed" in report["summary"]
    assert "Silence trimming" in (tmp_path / "out/report/report.txt").read_text()
