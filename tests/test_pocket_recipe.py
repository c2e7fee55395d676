"""Pocket TTS recipe: configs, data (manifests, prompts, EOS frame), export loaded by upstream
`pocket_tts`, the Synthesizer protocol, and a short demo run with resume."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "recipes" / "pocket" / "configs").glob("*.yaml") if not p.name.startswith("distill_"))


@pytest.fixture(scope="module")
def demo_splits():
    from recipes.pocket.data import attach_prompt_candidates, load_recipe_dataset

    data = load_recipe_dataset("demo", languages=["fr", "de", "pt-br"])
    train, _ = attach_prompt_candidates(data["train"], 30.0)
    validation, _ = attach_prompt_candidates(data["validation"], 30.0, what="validation", pool=train)
    return train, validation


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, demo_splits):
    from recipes.pocket.train_tokenizer import tokenizer_texts, train_tokenizer

    train, _ = demo_splits
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    return str(train_tokenizer(tokenizer_texts(train, True), str(out), vocab_size=96,
                               user_symbols=["<fr>", "<de>", "<pt-br>"]))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses(config, monkeypatch):
    from trl import TrlParser

    from recipes.pocket.finetune_multilingual import make_parser_types

    # The real configs ask for bf16, which TrainingArguments refuses on a machine with no GPU.
    no_gpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    monkeypatch.setattr(sys, "argv", ["finetune_multilingual.py", "--config", str(config), *no_gpu])
    script_args, training_args = TrlParser(make_parser_types()).parse_args_and_config()
    text = config.read_text()
    assert text.startswith("#") and "Hardware:" in text[:1500] and "Global batch" in text[:1500]
    assert training_args.remove_unused_columns is False
    assert training_args.adam_beta2 == 0.95 and training_args.weight_decay == 0.1
    if config.name != "demo.yaml":
        assert script_args.base_model == "english_2026-04_24l" and script_args.pretrained_weights == "base"
        assert training_args.learning_rate == 2e-4
        assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps >= 8
        # the official new-language budget: 250k steps at constant lr; the validated w(s,t) init
        assert training_args.max_steps == 250_000 and training_args.lr_scheduler_type == "constant_with_warmup"
        assert script_args.time_weighting_init == "official" and "250k steps" in text[:2000]


def test_help_works():
    result = subprocess.run([sys.executable, "recipes/pocket/finetune_multilingual.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--flow_batch_multiplier" in result.stdout and "--use_language_tag" in result.stdout


def test_prompts_come_from_other_clips_of_the_same_speaker(demo_splits):
    train, validation = demo_splits
    for split in (train, validation):
        for row in split.remove_columns("audio"):
            assert row["prompt_candidates"]
            for j in row["prompt_candidates"]:
                assert train[j]["speaker"] == row["speaker"] and train[j]["id"] != row["id"]


def test_speaker_without_second_clip_is_counted_not_silently_dropped(tmp_path):
    from datasets import Dataset

    from data_prep.schema import schema_features
    from recipes.pocket.data import attach_prompt_candidates

    tone = str(tmp_path / "a.wav")
    from data_prep.audio import write_audio

    write_audio(tone, np.sin(np.arange(24000) / 10).astype(np.float32) * 0.3, 24000)
    rows = {"id": ["a", "b", "c", "d"], "audio": [tone] * 4, "text": ["Un.", "Deux.", "Trois.", "  "],
            "speaker": ["s1", "s1", "s2", "s1"], "dialect": ["fr"] * 4, "duration": [1.0] * 4, "language": ["fr"] * 4}
    data, skipped = attach_prompt_candidates(Dataset.from_dict(rows, features=schema_features()), 30.0)
    assert data["id"] == ["a", "b"] and data["prompt_candidates"] == [[1], [0]]
    assert skipped == {"speaker has no other clip for a voice prompt": 1, "empty text": 1}


def test_manifest_round_trip(tmp_path, demo_splits):
    from recipes.pocket.data import load_recipe_dataset, write_manifest

    train, _ = demo_splits
    path = write_manifest(train.select(range(6)), str(tmp_path / "export"))
    rows = json.loads(path.read_text())
    assert set(rows[0]) >= {"audio_path", "text", "language", "duration"}
    data = load_recipe_dataset(str(path), validation_fraction=0.2)
    again = data["train"].select_columns(["text", "language", "speaker"]).to_list() + \
        data["validation"].select_columns(["text", "language", "speaker"]).to_list()
    assert sorted(r["text"] for r in again) == sorted(r["text"] for r in rows)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"audio_path": "x.wav", "text": "hola"}]))
    with pytest.raises(ValueError, match=r"row 0 lacks \['language', 'duration'\]"):
        load_recipe_dataset(str(bad))


def test_collator_trims_silence_and_leaves_an_eos_frame(demo_splits, tokenizer):
    from recipes.pocket.data import PocketCollator, trim_trailing_silence

    wave = np.concatenate([0.5 * np.sin(np.arange(24000) / 5), np.zeros(48000)]).astype(np.float32)
    trimmed = trim_trailing_silence(wave, 24000)
    assert 24000 <= len(trimmed) <= 24000 + int(0.2 * 24000) + 480

    train, _ = demo_splits
    batch = PocketCollator(train, tokenizer, use_language_tag=True)([train[i] for i in range(4)])
    frames = -(-batch["audio_lengths"] // 1920)
    assert batch["audio"].shape[-1] // 1920 >= int(frames.max()) + 1  # the longest clip too has an EOS target
    assert batch["audio"].shape[-1] % 1920 == 0
    assert torch.all(batch["text_lengths"] > 1) and batch["prompt_audio"].shape[0] == 4
    for i in range(4):  # prompts end on the short pause pocket_tts' end_on_pause leaves
        assert batch["prompt_audio"][i, 0, batch["prompt_lengths"][i] - 1900: batch["prompt_lengths"][i]].abs().max() == 0


def test_training_text_gets_the_base_configs_character_replacements(demo_splits, tokenizer):
    """pocket_tts' generate_audio applies the config's replace_characters (english_2026-04_24l, the base of
    every real config: curly apostrophes -> "'") before tokenising; the collator and the tokenizer's
    training texts must read the same string, or the model trains on pieces inference never produces."""
    import sentencepiece
    from pocket_tts.models.text_chunking import prepare_text_prompt

    from recipes.pocket.data import PocketCollator, normalize_text, text_options
    from recipes.pocket.modeling import load_base_config
    from recipes.pocket.train_tokenizer import tokenizer_texts

    config = load_base_config("english_2026-04_24l")
    assert config.replace_characters.get("\u2019") == "'"
    options = text_options(config)
    text = "l\u2019\u00e9cole est ferm\u00e9e"
    at_inference, _ = prepare_text_prompt(text, config.pad_with_spaces_for_short_inputs, config.remove_semicolons,
                                          config.append_terminal_punctuation, config.capitalize_first_letter,
                                          config.replace_characters)
    assert normalize_text(text, "fr", False, options) == at_inference == "L'\u00e9cole est ferm\u00e9e."

    train, _ = demo_splits
    row = {**train[0], "text": text, "language": "fr"}
    batch = PocketCollator(train, tokenizer, text_options=options)([row])
    expected = sentencepiece.SentencePieceProcessor(model_file=tokenizer).encode(at_inference, out_type=int)
    assert batch["text_ids"][0, : batch["text_lengths"][0]].tolist() == expected
    assert tokenizer_texts(train.select([0]).map(lambda r: {"text": text}), False, options) == [at_inference]


def test_every_generated_chunk_of_a_long_sentence_carries_the_language_tag(tokenizer, monkeypatch):
    """pocket_tts generates a text of more than 50 pieces chunk by chunk; a multilingual model must read its
    <lang> tag at the start of every chunk, not only the first."""
    import sentencepiece
    from pocket_tts.models import tts_model as upstream

    from recipes.pocket import modeling
    from recipes.pocket.generate import speak

    n_bins = sentencepiece.SentencePieceProcessor(model_file=tokenizer).vocab_size()
    config = modeling.with_tokenizer(modeling.load_base_config(modeling.TINY_MODEL_CONFIG), tokenizer, n_bins)
    torch.manual_seed(0)
    model = modeling.inference_model(modeling.PocketTTSForTraining(modeling.build_tts_model(config, pretrained_weights=None)))
    generated = []
    original = upstream.prepare_text_prompt

    def recording(text, *args, **kwargs):
        generated.append(text)
        return original(text, *args, **kwargs)

    monkeypatch.setattr(upstream, "prepare_text_prompt", recording)
    state = model.get_state_for_audio_prompt(torch.zeros(1, 24000))
    sentence = ", ".join(["bonjour tout le monde"] * 8) + "."
    assert len(model.flow_lm.conditioner.tokenizer(sentence)[0]) > 50
    speak(model, state, sentence, "fr", True)
    assert len(generated) >= 2
    assert all(text.startswith("<fr> ") for text in generated), generated


def test_teacher_forced_rows_match_pocket_tts_streaming_inference(tokenizer, demo_splits):
    """The per-frame conditioning z the loss trains on equals what pocket_tts computes when it generates:
    voice prompt state (bos_before_voice + speaker_proj(latents)), then text, then BOS and the previous frames."""
    import sentencepiece
    from pocket_tts.data.audio_utils import end_on_pause

    from data_prep.audio import decode_audio
    from recipes.pocket import modeling
    from recipes.pocket.data import normalize_text

    n_bins = sentencepiece.SentencePieceProcessor(model_file=tokenizer).vocab_size()
    config = modeling.with_tokenizer(modeling.load_base_config(modeling.TINY_MODEL_CONFIG), tokenizer, n_bins)
    torch.manual_seed(0)
    model = modeling.PocketTTSForTraining(modeling.build_tts_model(config, pretrained_weights=None)).eval()
    with torch.no_grad():  # non-trivial weights and latent statistics, so every path carries signal
        for p in model.flow_lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.flow_lm.emb_mean.normal_()
        model.flow_lm.emb_std.uniform_(0.5, 2.0)
    tts = modeling.inference_model(model)
    fl = tts.flow_lm
    train, _ = demo_splits
    target = torch.from_numpy(decode_audio(train[0]["audio"], target_sr=24000)[0])
    prompt = end_on_pause(torch.from_numpy(decode_audio(train[1]["audio"], target_sr=24000)[0])[None], 24000)[0]
    ids = fl.conditioner.tokenizer(normalize_text(train[0]["text"], "fr", True))

    def padded(wave, extra):
        out = torch.zeros(1, 1, (-(-len(wave) // 1920) + extra) * 1920)
        out[0, 0, : len(wave)] = wave
        return out

    with torch.no_grad():
        latents, frames = model.encode(padded(target, 1), torch.tensor([len(target)]))
        voice, voice_frames = model.encode(padded(prompt, 0), torch.tensor([len(prompt)]))
        normalized = (latents - fl.emb_mean) / fl.emb_std
        inputs, prefix = model.build_rows(normalized, voice, voice_frames, ids, torch.tensor([ids.shape[1]]),
                                          keep_voice=torch.tensor([True]), keep_text=torch.tensor([True]))
        n = int(frames[0])
        z_training = model.backbone(inputs, prefix, latents.shape[1])[0, :n]

        state = tts.get_state_for_audio_prompt(prompt[None])
        tts._expand_kv_cache(state, sequence_length=tts._flow_lm_current_end(state) + ids.shape[1] + n + 1)
        tts._run_flow_lm_and_increment_step(model_state=state, text_tokens=ids)
        captured, backbone = [], fl.backbone

        def recording(*args, **kwargs):
            out = backbone(*args, **kwargs)
            captured.append(out[:, -1])
            return out

        fl.backbone = recording
        previous = torch.full((1, 1, fl.ldim), float("nan"))  # NaN = BOS, as in pocket_tts' generation loop
        for t in range(n):
            tts._run_flow_lm_and_increment_step(model_state=state, backbone_input_latents=previous)
            previous = normalized[:, t : t + 1]
    z_inference = torch.cat(captured)
    assert n > 10 and z_inference.shape == z_training.shape
    torch.testing.assert_close(z_training, z_inference, rtol=1e-3, atol=1e-3)


def test_export_loads_and_speaks_in_pocket_tts(tmp_path, tokenizer, demo_splits):
    import sentencepiece
    from pocket_tts import TTSModel

    from data_prep.audio import decode_audio
    from recipes.common import Synthesizer
    from recipes.pocket import modeling
    from recipes.pocket.generate import load_synthesizer

    n_bins = sentencepiece.SentencePieceProcessor(model_file=tokenizer).vocab_size()
    config = modeling.with_tokenizer(modeling.load_base_config(modeling.TINY_MODEL_CONFIG), tokenizer, n_bins)
    torch.manual_seed(0)
    model = modeling.PocketTTSForTraining(modeling.build_tts_model(config, pretrained_weights=None))
    ema = modeling.WeightEMA(model.flow_lm)
    for p in model.flow_lm.parameters():  # make the EMA differ from the live weights
        p.data.add_(1.0)
    export = modeling.export_pocket_model(model, ema, str(tmp_path / "export"), tokenizer,
                                          languages=["de", "fr", "pt-br"], use_language_tag=True, hub_repo_id="me/pocket")
    threads = torch.get_num_threads()
    loaded = TTSModel.load_model(config=str(export / "config.yaml"))
    torch.set_num_threads(threads)
    exported = loaded.flow_lm.state_dict()
    for name, value in ema.shadow.items():
        assert torch.equal(exported[name], value), name  # the export holds the EMA weights
    assert not any(k.startswith("time_weighting") or "w_s_t" in k for k in loaded.state_dict())
    assert "hf://me/pocket/model.safetensors" in (export / "config_hub.yaml").read_text()

    train, _ = demo_splits
    wave, sr = decode_audio(train[0]["audio"])
    torch.manual_seed(0)
    state = loaded.get_state_for_audio_prompt(torch.from_numpy(wave)[None])
    audio = loaded.generate_audio(state, "<fr> Bonjour.")
    assert audio.ndim == 1 and audio.numel() >= 1920 and torch.isfinite(audio).all()

    synth = load_synthesizer(str(export))
    assert isinstance(synth, Synthesizer) and synth.needs_reference and synth.sampling_rate == 24000
    outs = synth.synthesize(["Guten Tag. Wie geht es?", "Olá."], languages=["de", "pt-br"],
                            reference_audio=[(wave, sr), (wave, sr)])
    assert len(outs) == 2 and all(o.dtype == np.float32 and o.size >= 1920 for o in outs)
    with pytest.raises(ValueError, match="reference_audio"):
        synth.synthesize(["Hallo."], languages=["de"])

    # Minimal config: only non-default keys, so older pocket_tts versions' strict schema accepts it; a full
    # 4.x dump carries keys (default_eos_threshold, flow.type, ...) that they reject.
    import yaml

    written = yaml.safe_load((export / "config.yaml").read_text())
    full = model.pocket_config.model_dump(mode="json")
    newer = {"default_eos_threshold", "default_temperature", "weights_path_without_voice_cloning",
             "model_recommended_frames_after_eos"}
    assert newer <= set(full) and not newer & set(written)
    assert "type" in full["flow_lm"]["flow"] and "type" not in written["flow_lm"]["flow"]
    assert "rank" not in written["flow_lm"]["lookup_table"] and "decoder_seanet" not in written["mimi"]
    assert written["flow_lm"]["insert_bos_before_voice"] is True  # non-default values stay

    # An intermediate checkpoint, loaded by pocket_tts' own --checkpoint path (prefixed keys, EMA overlaid).
    from recipes.pocket.modeling import write_training_checkpoint

    pt = write_training_checkpoint(model, ema, str(tmp_path / "checkpoint-7"), tokenizer)
    payload = torch.load(pt, weights_only=True)
    assert all(k.startswith(("flow_lm.", "mimi.")) for k in payload["model"])
    assert all(k.startswith("flow_lm.") for k in payload["ema"])
    from_checkpoint = TTSModel.load_model(config=str(pt.parent / "config.yaml"), checkpoint=str(pt))
    torch.set_num_threads(threads)
    for name, value in ema.shadow.items():
        assert torch.equal(from_checkpoint.flow_lm.state_dict()[name], value), name
    for name, value in model.mimi.state_dict().items():
        assert torch.equal(from_checkpoint.mimi.state_dict()[name], value), name
    torch.manual_seed(0)
    state = from_checkpoint.get_state_for_audio_prompt(torch.from_numpy(wave)[None])
    assert from_checkpoint.generate_audio(state, "<fr> Bonjour.").numel() >= 1920


def _run_demo(tmp_path, max_steps, extra=()):
    from trl import TrlParser

    from recipes.pocket.finetune_multilingual import main, make_parser_types

    argv = ["x", "--config", str(ROOT / "recipes/pocket/configs/demo.yaml"), "--output_dir", str(tmp_path / "run"),
            "--languages", "fr", "es", "--max_steps", str(max_steps), "--save_steps", "2", "--eval_steps", "3",
            "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--logging_steps", "1",
            "--report_to", "tensorboard", *extra]
    old = sys.argv
    sys.argv = argv
    try:
        script_args, training_args = TrlParser(make_parser_types()).parse_args_and_config()
    finally:
        sys.argv = old
    return main(script_args, training_args)


def test_demo_trains_resumes_exports_and_logs_samples(tmp_path, monkeypatch):
    import recipes.common

    pushed = {}

    def fake_push(folder, repo_id, **kwargs):
        pushed.update(repo_id=repo_id, config=(Path(folder) / "config.yaml").read_text(),
                      files=sorted(p.name for p in Path(folder).iterdir()))
        return f"https://huggingface.co/{repo_id}"

    monkeypatch.setattr(recipes.common, "push_folder_to_hub", fake_push)
    first = _run_demo(tmp_path, 2, ["--eval_strategy", "no"])
    assert first.state.global_step == 2 and (tmp_path / "run/checkpoint-2/ema.safetensors").exists()
    assert {"pocket_tts.pt", "config.yaml", "tokenizer.model"} <= {p.name for p in (tmp_path / "run/checkpoint-2").iterdir()}
    assert not pushed
    second = _run_demo(tmp_path, 3, ["--push_to_hub", "true", "--hub_model_id", "me/pocket-demo"])
    assert pushed["repo_id"] == "me/pocket-demo" and "hf://me/pocket-demo/model.safetensors" in pushed["config"]
    assert {"README.md", "model.safetensors", "tokenizer.model", "tts_recipes.json"} <= set(pushed["files"])
    assert second.state.global_step == 3
    steps = [e["step"] for e in second.state.log_history if "loss" in e]
    assert steps[-1] == 3 and 1 in steps and 2 in steps  # history restored from checkpoint-2
    logged = [e for e in second.state.log_history if "train/flow_diag" in e]
    assert logged and all(np.isfinite(e["loss"]) for e in logged)
    samples = sorted((tmp_path / "run/samples/step-3").glob("*.wav"))
    assert [p.stem for p in samples] == ["samples_es_0", "samples_fr_0"]
    export = tmp_path / "run/pocket_tts"
    assert {"config.yaml", "model.safetensors", "tokenizer.model", "README.md", "tts_recipes.json"} <= {
        p.name for p in export.iterdir()}
    card = (export / "README.md").read_text()
    assert "pocket-tts" in card and "eval_loss" in card
    assert list((tmp_path / "run/runs").rglob("events.out.tfevents*"))


def test_real_config_offline_fails_with_a_clear_message(tmp_path):
    from trl import TrlParser

    from recipes.pocket.finetune_multilingual import main, make_parser_types

    argv = ["x", "--config", str(ROOT / "recipes/pocket/configs/fr.yaml"), "--dataset", "demo", "--use_cpu", "true",
            "--bf16", "false", "--output_dir", str(tmp_path / "fr"), "--vocab_size", "128"]
    old, sys.argv = sys.argv, argv
    try:
        script_args, training_args = TrlParser(make_parser_types()).parse_args_and_config()
    finally:
        sys.argv = old
    with pytest.raises(SystemExit, match=r"(?s)kyutai/pocket-tts.*configs/demo.yaml"):
        main(script_args, training_args)


@pytest.mark.slow
def test_two_process_ddp_smoke(tmp_path):
    """Two CPU ranks over gloo (torchrun), as `accelerate launch --multi_gpu` would run them on GPUs."""
    import os

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "recipes/pocket/finetune_multilingual.py",
           "--config", "recipes/pocket/configs/demo.yaml", "--output_dir", str(tmp_path / "ddp"), "--max_steps", "2",
           "--per_device_train_batch_size", "2", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp/pocket_tts/model.safetensors").exists()


def _real_config_step(base, device, tokenizer, demo_splits, autocast_dtype=None):
    import sentencepiece

    from recipes.pocket import modeling
    from recipes.pocket.data import PocketCollator

    n_bins = sentencepiece.SentencePieceProcessor(model_file=tokenizer).vocab_size()
    config = modeling.with_tokenizer(modeling.load_base_config(base), tokenizer, n_bins)
    torch.manual_seed(0)
    model = modeling.PocketTTSForTraining(modeling.build_tts_model(config, pretrained_weights=None),
                                          distill_prob=1.0).to(device)
    train, _ = demo_splits
    batch = PocketCollator(train, tokenizer, use_language_tag=True)([train[i] for i in range(2)])
    batch = {k: v.to(device) for k, v in batch.items()}
    model.train()
    with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype or torch.float32,
                        enabled=autocast_dtype is not None):
        loss, metrics = model(**batch)
    loss.backward()
    assert torch.isfinite(loss) and "flow_distill" in metrics
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    return model


@pytest.mark.slow
def test_released_6_layer_architecture_trains_a_step_on_cpu(tokenizer, demo_splits):
    """The real `french` architecture (89 M flow LM, full-size Mimi), random weights."""
    model = _real_config_step("french", "cpu", tokenizer, demo_splits)
    assert sum(p.numel() for p in model.flow_lm.parameters()) > 80e6


@pytest.mark.gpu
def test_24_layer_teacher_bf16_step_on_gpu(tokenizer, demo_splits):
    """The config the real recipes start from (english_2026-04_24l), bf16 autocast, random weights."""
    torch.cuda.reset_peak_memory_stats()
    model = _real_config_step("english_2026-04_24l", "cuda", tokenizer, demo_splits, torch.bfloat16)
    assert sum(p.numel() for p in model.flow_lm.parameters()) > 300e6
    print(f"peak GPU memory for 2 clips: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def test_collator_vad_trims_a_noisy_target_to_the_eos_point(tmp_path, demo_splits, tokenizer):
    """Pocket targets: a noisy (20 dB SNR) clip with 1.5 s of tail keeps ~0.2 s after its last speech, so EOS is
    learned where speech stops (the energy trim kept the whole noisy tail)."""
    from datasets import Dataset

    from data_prep.audio import write_audio
    from data_prep.schema import schema_features
    from recipes.pocket.data import PocketCollator
    from tests.test_trim import SR, noisy_clip

    clip, start, end = noisy_clip(20)
    write_audio(tmp_path / "noisy.wav", clip, SR)
    rows = Dataset.from_dict({"id": ["a", "b"], "audio": [str(tmp_path / "noisy.wav")] * 2, "text": ["Bonjour."] * 2,
                              "speaker": ["s"] * 2, "dialect": ["fr"] * 2, "duration": [len(clip) / SR] * 2,
                              "language": ["fr"] * 2}, features=schema_features())
    rows = rows.add_column("prompt_candidates", [[1], [0]])
    kept = {}
    for mode in ("vad", "energy"):
        batch = PocketCollator(rows, tokenizer, trim=mode)([rows[0]])
        kept[mode] = int(batch["audio_lengths"][0]) / SR
    assert 0.15 + (end - start) < kept["vad"] < 0.45 + (end - start), kept  # lead <= 0.1 s + tail ~0.2 s
    assert kept["energy"] > kept["vad"] + 1.0, kept


@pytest.mark.slow
def test_kill_9_and_rerun_matches_the_uninterrupted_run(tmp_path):
    """SIGKILL during checkpoint-4's save (weights written, trainer_state.json not yet), rerun the same command:
    it falls back to checkpoint-2, and every logged loss, the weight EMA and the latent statistics equal the
    uninterrupted run's (prompt choice, distillation branch and stats counter are all resumable state)."""
    from safetensors.torch import load_file

    from tests.kill_resume import losses, straight_and_killed

    argv = ["--config", str(ROOT / "recipes/pocket/configs/demo.yaml"), "--languages", "fr", "es",
            "--max_steps", "6", "--save_steps", "2", "--eval_strategy", "no", "--per_device_train_batch_size", "2",
            "--logging_steps", "1", "--report_to", "none", "--lsd_distill_prob", "0.5"]
    straight, resumed, log = straight_and_killed("recipes.pocket.finetune_multilingual", argv, tmp_path,
                                                 "mid_save", 4)
    assert "Skipping" in log and "checkpoint-4: no trainer_state.json" in log
    assert sorted(losses(straight)) == list(range(1, 7))
    assert losses(resumed) == losses(straight)
    diagnostics = [{e["step"]: e.get("train/flow_diag") for e in s["log_history"]} for s in (straight, resumed)]
    assert diagnostics[0] == diagnostics[1]
    exports = [load_file(str(tmp_path / name / "pocket_tts" / "model.safetensors")) for name in ("straight", "killed")]
    assert exports[0].keys() == exports[1].keys()
    assert any(k.endswith("emb_mean") for k in exports[0])  # the latent statistics are exported
    for key in exports[0]:
        assert torch.equal(exports[0][key], exports[1][key]), key
