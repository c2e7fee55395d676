"""The pretraining script end to end (tiny model, pre-tokenised rows), resume, generation, configs, CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recipes.orpheus import layout

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "recipes" / "orpheus" / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from recipes.orpheus.build_tiny import build_tiny_orpheus

    return build_tiny_orpheus(tmp_path_factory.getbasetemp() / "orpheus_tiny")


def tokenized_rows(tiny, folder):
    """What tokenize_dataset.py writes, with random audio codes instead of SNAC encoding (speed)."""
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    from recipes.orpheus.tokenize_dataset import build_rows

    tokenizer = AutoTokenizer.from_pretrained(tiny["model"])
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 8), ("validation", 4)):
        encoded = {"id": [], "text": [], "speaker": [], "dialect": [], "duration": [], "audio_tokens": [],
                   "frames_removed": []}
        for i in range(n):
            frames = int(rng.integers(3, 8))
            encoded["id"].append(f"{split}{i}")
            encoded["text"].append(f"frase {i}")
            encoded["speaker"].append(f"s{i % 4}")
            encoded["dialect"].append(["balear", "central"][i % 2])
            encoded["duration"].append(frames * 2048 / 24000)
            encoded["audio_tokens"].append(layout.codes_to_tokens(*(rng.integers(0, 4096, k * frames)
                                                                     for k in (1, 2, 4))).tolist())
            encoded["frames_removed"].append(0)
        splits[split] = build_rows(Dataset.from_dict(encoded), tokenizer, "dialect", 8192)[0]
    DatasetDict(splits).save_to_disk(str(folder))
    return str(folder)


def run_script(argv):
    from recipes.orpheus import pretrain_dialects

    saved = sys.argv
    try:
        return pretrain_dialects.main(*pretrain_dialects.make_parser_args(argv))
    finally:
        sys.argv = saved


def test_pretrain_script_trains_resumes_and_generates(tiny, tmp_path):
    out = tmp_path / "run"
    common = ["--config", str(REPO / "recipes/orpheus/configs/demo.yaml"), "--model_name_or_path", tiny["model"],
              "--build_tiny_model", "false", "--snac_model", tiny["snac"],
              "--tokenized_dataset", tokenized_rows(tiny, tmp_path / "rows"), "--output_dir", str(out),
              "--save_steps", "2", "--eval_steps", "100", "--logging_steps", "1", "--sample_every_n_steps", "2",
              "--sample_max_new_tokens", "21", "--sample_min_new_tokens", "0", "--report_to", "tensorboard", "--disable_tqdm", "true"]
    first = run_script(common + ["--max_steps", "2"])
    assert first.state.global_step == 2 and (out / "checkpoint-2").is_dir()
    second = run_script(common + ["--max_steps", "3"])  # picks up checkpoint-2 by itself
    assert second.state.global_step == 3
    losses = [h for h in second.state.log_history if "loss" in h]
    assert [h["step"] for h in losses][-1] == 3 and np.isfinite([h["loss"] for h in losses]).all()
    eval_keys = {k for h in second.state.log_history for k in h if k.endswith("_loss") and k.startswith("eval_")}
    assert {"eval_all_loss", "eval_balear_loss", "eval_central_loss"} <= eval_keys
    for dialect in ("balear", "central"):
        assert (out / "final_samples" / f"{dialect}.wav").is_file()
        assert (out / "samples" / "step-2" / f"samples_{dialect}.wav").is_file()
    assert (out / "loss_curve.png").stat().st_size > 1000
    card = (out / "README.md").read_text()
    assert "balear" in card and "{label}: {text}" in card and "llama3.2" in card
    # the base is a local folder: the Hub rejects a push whose card metadata names one as base_model
    assert "base_model" not in card.split("---")[1] and tiny["model"] in card
    assert json.loads((out / "orpheus_recipe.json").read_text())["snac_model"] == tiny["snac"]
    assert list((out / "runs").rglob("events.out.tfevents*"))

    # the saved folder is a Synthesizer for recipes/evaluate.py
    from recipes.common import Synthesizer
    from recipes.orpheus.generate import load_synthesizer

    synthesizer = load_synthesizer(str(out), device="cpu", max_new_tokens=35, seed=0)
    assert isinstance(synthesizer, Synthesizer) and synthesizer.sampling_rate == 24000
    waves = synthesizer.synthesize(["Bon dia", "Bona nit a tothom"], dialects=["balear", "central"])
    assert all(len(w) % 2048 == 0 and len(w) <= 5 * 2048 and w.dtype == np.float32 for w in waves)
    assert synthesizer.last_discarded_tokens == [0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_save", "mid_save"])
def test_kill_9_and_rerun_matches_the_uninterrupted_run(tiny, tmp_path, point):
    """SIGKILL after checkpoint-2 (or during checkpoint-4's save, leaving it without trainer_state.json), rerun
    the same command: every logged loss and the final weights equal the uninterrupted run's."""
    from safetensors.torch import load_file

    from tests.kill_resume import losses, straight_and_killed

    argv = ["--config", str(REPO / "recipes/orpheus/configs/demo.yaml"), "--model_name_or_path", tiny["model"],
            "--build_tiny_model", "false", "--snac_model", tiny["snac"],
            "--tokenized_dataset", tokenized_rows(tiny, tmp_path / "rows"), "--max_steps", "6", "--save_steps", "2",
            "--eval_steps", "100", "--logging_steps", "1", "--sample_every_n_steps", "1000",
            "--sample_max_new_tokens", "7", "--report_to", "none", "--disable_tqdm", "true"]
    straight, resumed, log = straight_and_killed("recipes.orpheus.pretrain_dialects", argv, tmp_path, point,
                                                 2 if point == "after_save" else 4)
    if point == "mid_save":
        assert "Skipping" in log and "checkpoint-4: no trainer_state.json" in log
    assert sorted(losses(straight)) == list(range(1, 7))
    assert losses(resumed) == losses(straight)  # exact: same packed batches and order after the resume
    weights = [load_file(str(tmp_path / name / "model.safetensors")) for name in ("straight", "killed")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_generation_stops_at_end_of_speech_and_decodes_every_frame(tiny):
    from recipes.orpheus.generate import OrpheusSynthesizer, load_model_and_tokenizer
    from recipes.orpheus.tokenize_dataset import SnacAudioTokenizer, load_snac

    model, tokenizer, _ = load_model_and_tokenizer(tiny["model"], device="cpu")
    # Make the model always say: two all-zero frames, then end of speech (code 0 and the first frame matter).
    script = layout.codes_to_tokens(np.zeros(2, int), np.zeros(4, int), np.zeros(8, int)).tolist()
    script.append(layout.END_OF_SPEECH)

    class Scripted(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config, self.generation_config = inner, inner.config, inner.generation_config
            self.device = inner.device

        def generate(self, input_ids, **kwargs):
            return torch.cat([input_ids, torch.tensor([script] * len(input_ids))], dim=1)

    synthesizer = OrpheusSynthesizer(Scripted(model), tokenizer, SnacAudioTokenizer(load_snac(tiny["snac"], "cpu")))
    waves = synthesizer.synthesize(["hola"], dialects=["balear"])
    assert waves[0].shape == (2 * 2048,)
    # the real sampler: constrained to the layout, every emitted token decodes
    synthesizer = OrpheusSynthesizer(model, tokenizer, synthesizer.audio_tokenizer, max_new_tokens=28, seed=0)
    tokens = synthesizer.generate_audio_tokens(["balear: hola"])[0]
    assert len(tokens) % 7 == 0 and synthesizer.last_discarded_tokens == [0]
    layout.tokens_to_codes(tokens)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses(config, monkeypatch):
    if config.name.startswith("voice_lora"):
        from recipes.orpheus.finetune_voice_lora import make_parser_args
    else:
        from recipes.orpheus.pretrain_dialects import make_parser_args
    monkeypatch.setattr(sys, "argv", ["x"])
    cpu_overrides = [] if torch.cuda.is_available() else ["--bf16", "false"]  # real configs ask for bf16 GPUs
    # the real voice config leaves the voice to the launch command (--speakers), so name one here
    voice = ["--speakers", "some_client_id"] if config.name == "voice_lora.yaml" else []
    parsed = make_parser_args(["--config", str(config), *cpu_overrides, *voice])
    training_args = parsed[-1]
    assert training_args.output_dir and training_args.remove_unused_columns is False


def test_real_voice_config_without_speakers_says_what_to_set(monkeypatch):
    from recipes.orpheus.finetune_voice_lora import make_parser_args

    monkeypatch.setattr(sys, "argv", ["x"])
    with pytest.raises(ValueError, match="set speakers"):
        make_parser_args(["--config", str(REPO / "recipes/orpheus/configs/voice_lora.yaml"), "--bf16", "false"])


def test_catalan_config_states_hardware_and_dialects():
    text = (REPO / "recipes/orpheus/configs/catalan_dialects.yaml").read_text()
    assert "global batch" in text.lower() and "H100" in text
    for dialect in ("central", "balear", "valencia", "nord-occidental", "septentrional"):
        assert dialect in text


def cli(*args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_and_offline_default_config_points_to_demo(tmp_path):
    result = cli("recipes/orpheus/pretrain_dialects.py", "--help")
    assert result.returncode == 0 and "--packing" in result.stdout and "--loss_on" in result.stdout
    result = cli("recipes/orpheus/pretrain_dialects.py")  # the real Catalan config
    assert result.returncode != 0 and "configs/demo.yaml" in result.stderr
    if torch.cuda.is_available():
        assert "canopylabs/orpheus-3b-0.1-pretrained" in result.stderr
    # offline, the missing base model is named and the demo offered
    result = cli("recipes/orpheus/pretrain_dialects.py", "--bf16", "false", "--output_dir", str(tmp_path / "x"))
    assert result.returncode != 0
    assert "canopylabs/orpheus-3b-0.1-pretrained" in result.stderr and "configs/demo.yaml" in result.stderr


def test_bf16_defaults_off_for_cpu_runs_on_a_gpu_machine(monkeypatch, tmp_path):
    from recipes.orpheus.pretrain_dialects import OrpheusTrainingArguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    # demo.yaml sets use_cpu and leaves bf16 unset: its fp32 tiny model must not be loaded in bf16 just
    # because the machine has a GPU it does not use
    assert OrpheusTrainingArguments(output_dir=str(tmp_path), use_cpu=True).bf16 is False


def test_recipe_file_of_a_hub_model_is_read(monkeypatch, tmp_path):
    import huggingface_hub

    from recipes.orpheus import generate

    saved = tmp_path / "download" / generate.RECIPE_FILE
    saved.parent.mkdir()
    saved.write_text(json.dumps({"voice": "maria", "prompt_label": "none", "snac_model": "hubertsiuzdak/snac_24khz"}))
    asked = []

    def fake_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        if repo_id != "someone/orpheus-voice-maria":
            raise huggingface_hub.errors.EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(saved)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    # the card's command `generate.py --model <adapter repo>` needs the voice label stored in the repo
    assert generate._read_recipe_file("someone/orpheus-voice-maria")["voice"] == "maria"
    assert generate._read_recipe_file("canopylabs/orpheus-3b-0.1-ft") == {}  # not trained here: defaults
    assert generate._read_recipe_file(str(tmp_path)) == {} and len(asked) == 2  # a local folder never asks the Hub


def test_push_leaves_out_the_snac_cache_and_checkpoints():
    from huggingface_hub.utils import filter_repo_objects

    from recipes.orpheus.pretrain_dialects import HUB_IGNORE_PATTERNS

    # what output_dir holds after a run with the default snac_cache_dir
    files = ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md",
             "orpheus_recipe.json", "loss_curve.png", "final_samples/balear.wav",
             "snac_cache/train-0123456789abcdef/shard-00000/data-00000-of-00001.arrow",
             "snac_cache/train-0123456789abcdef/skipped.jsonl", "checkpoint-500/optimizer.pt",
             "checkpoint-500/model.safetensors", "runs/Nov22/events.out.tfevents.1"]
    pushed = set(filter_repo_objects(files, ignore_patterns=HUB_IGNORE_PATTERNS))
    assert pushed == {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md",
                      "orpheus_recipe.json", "loss_curve.png", "final_samples/balear.wav"}


def test_pretokenised_rows_with_another_prompt_label_are_refused(tiny, tmp_path):
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from recipes.orpheus.tokenize_dataset import check_row_prompts

    rows_dir = tokenized_rows(tiny, tmp_path / "rows")  # built with prompt_label dialect
    tokenizer = AutoTokenizer.from_pretrained(tiny["model"])
    check_row_prompts(load_from_disk(rows_dir)["train"], tokenizer, "dialect")
    # training them as `speaker` rows would write prompt_label speaker into orpheus_recipe.json and the card,
    # and generation would then use prompts the model never saw
    with pytest.raises(ValueError, match=r"prompt 'balear: frase 0'.*prompt_label='speaker' gives 's0: frase 0'"):
        run_script(["--config", str(REPO / "recipes/orpheus/configs/demo.yaml"), "--model_name_or_path", tiny["model"],
                    "--build_tiny_model", "false", "--snac_model", tiny["snac"], "--tokenized_dataset", rows_dir,
                    "--prompt_label", "speaker", "--output_dir", str(tmp_path / "run"), "--max_steps", "1",
                    "--report_to", "none", "--disable_tqdm", "true"])


def test_card_metadata_names_only_hub_ids(tmp_path):
    from recipes.orpheus.training import hub_repo_id

    assert hub_repo_id("canopylabs/orpheus-3b-0.1-pretrained") == "canopylabs/orpheus-3b-0.1-pretrained"
    assert hub_repo_id("projecte-aina/festcat") == "projecte-aina/festcat"
    for local in ("outputs/orpheus/catalan_dialects", "outputs/data/commonvoice_ca/dataset", str(tmp_path),
                  "./model", "/abs/model", None, ""):
        assert hub_repo_id(local) is None, local


# --- generate.py: one CLI shape, long text, missing end-of-speech, sharded sampling (issue 13.5, 13.6) -------
def test_generate_cli_out_is_a_file_or_a_folder(tiny, tmp_path):
    import soundfile as sf

    from recipes.orpheus.generate import main

    common = ["--model", tiny["model"], "--snac_model", tiny["snac"], "--dialect", "balear", "--max_new_tokens", "14",
              "--device", "cpu"]
    main([*common, "--text", "Bon dia.", "--out", str(tmp_path / "one.wav")])
    assert (tmp_path / "one.wav").is_file() and sf.info(tmp_path / "one.wav").samplerate == 24000
    main([*common, "--text", "Bon dia.", "--text", "Bona nit.", "--out", str(tmp_path / "many")])
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["000.wav", "001.wav"]
    with pytest.raises(ValueError, match="names one WAV file but 2 texts"):
        main([*common, "--text", "a", "--text", "b", "--out", str(tmp_path / "two.wav")])
    # --voice keeps its Orpheus meaning: the literal prompt label
    result = cli("recipes/orpheus/generate.py", "--help")
    assert result.returncode == 0 and "literal prompt label" in result.stdout and "--max_chunk_chars" in result.stdout


class ScriptedGenerate(torch.nn.Module):
    """Stands in for the model: appends the same tokens to every prompt and records generate()'s options."""

    def __init__(self, inner, script):
        super().__init__()
        self.inner, self.config, self.generation_config = inner, inner.config, inner.generation_config
        self.script, self.calls = script, []

    def generate(self, input_ids, **kwargs):
        self.calls.append({"prompts": len(input_ids), **kwargs})
        return torch.cat([input_ids, torch.tensor([self.script] * len(input_ids))], dim=1)


def test_long_text_is_split_into_sentences_joined_with_pauses(tiny, caplog):
    import logging

    from recipes.orpheus.generate import OrpheusSynthesizer, load_model_and_tokenizer, split_sentences

    text = "Bon dia a tothom. Avui fa sol i anirem al port! Després, si plou, tornarem a casa?"
    assert split_sentences(text, 30) == ["Bon dia a tothom.", "Avui fa sol i anirem al port!",
                                         "Després, si plou,", "tornarem a casa?"]
    assert split_sentences(text, 1000) == [text]
    model, tokenizer, _ = load_model_and_tokenizer(tiny["model"], device="cpu")
    two_frames = layout.codes_to_tokens(np.zeros(2, int), np.zeros(4, int), np.zeros(8, int)).tolist()

    class Codec:
        def decode(self, tokens):
            return np.ones(len(tokens) // 7 * 2048, dtype=np.float32)

    scripted = ScriptedGenerate(model, two_frames + [layout.END_OF_SPEECH])
    synthesizer = OrpheusSynthesizer(scripted, tokenizer, Codec(), max_chunk_chars=40, pause_s=0.1)
    wave = synthesizer.synthesize([text], dialects=["balear"])[0]
    pause = int(0.1 * 24000)
    assert scripted.calls[0]["prompts"] == 3  # three chunks, one batched pass
    assert len(wave) == 3 * 2 * 2048 + 2 * pause and (wave[2 * 2048:2 * 2048 + pause] == 0).all()
    assert len(OrpheusSynthesizer(scripted, tokenizer, Codec(), split_sentences=False).synthesize([text], dialects=["balear"])[0]) \
        == 2 * 2048

    # no end-of-speech: the cap was hit; say so, with the text and the cap
    capped = OrpheusSynthesizer(ScriptedGenerate(model, two_frames), tokenizer, Codec(), max_new_tokens=14)
    with caplog.at_level(logging.WARNING):
        capped.synthesize(["Una frase molt llarga."], dialects=["balear"])
    assert capped.last_capped == [True]
    assert "max_new_tokens=14" in caplog.text and "balear: Una frase molt llarga." in caplog.text


def test_sharded_models_generate_with_synced_gpus(tiny, monkeypatch):
    import torch.distributed as dist
    from torch.distributed.fsdp import FSDPModule

    from recipes.orpheus.generate import OrpheusSynthesizer, load_model_and_tokenizer, needs_synced_gpus

    model, tokenizer, _ = load_model_and_tokenizer(tiny["model"], device="cpu")
    assert not needs_synced_gpus(model)  # no process group
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    assert not needs_synced_gpus(model)  # DDP: every rank holds the whole model
    layer = model.model.layers[0]
    layer.__class__ = type("FSDPLlamaDecoderLayer", (FSDPModule, type(layer)), {})  # what fully_shard does
    assert needs_synced_gpus(model)
    scripted = ScriptedGenerate(model, [layout.END_OF_SPEECH])
    OrpheusSynthesizer(scripted, tokenizer, None, max_new_tokens=7).generate_audio_tokens(["balear: hola"])
    assert scripted.calls[0]["synced_gpus"] is True
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 1)
    assert not needs_synced_gpus(model)
    plain, _, _ = load_model_and_tokenizer(tiny["model"], device="cpu")
    next(plain.parameters()).ds_id = 0  # DeepSpeed ZeRO-3 marks its partitioned parameters
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    assert needs_synced_gpus(plain)
