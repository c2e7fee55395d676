# tts-recipes: one target per reproduction. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv
OUT ?= outputs
# Tests and demos never touch the Hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: help install install-gpu lock upgrade-check system-deps test slow_test demo eval-demo orpheus-lora-demo f5-demo xtts-demo xtts-ca-demo pocket-demo \
	prove-learning bench bakeoff bakeoff-demo voice voice-demo real-size-smoke gpu-check repro-orpheus repro-orpheus-lora repro-f5 repro-xtts repro-pocket quality clean

help:
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

install: system-deps $(STAMP) ## create .venv and install exactly requirements.lock + system packages (idempotent)

system-deps: ## ffmpeg (torchcodec) and espeak-ng (demo corpus): apt-get when root, else a clear message
	@bash scripts/install_system_deps.sh

# The venv gets exactly the lock: uv (pinned in the lock) is bootstrapped with pip, then `uv pip sync`
# installs every pinned package with its hash and removes anything else. --compile-bytecode writes the .pyc
# files once here: where PYTHONDONTWRITEBYTECODE is set (CI images, containers) every process would otherwise
# recompile the sources on import (measured here: `import torchcodec.decoders, transformers, datasets` took
# 21 s of CPU without the .pyc files, 9 s with them).
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q --no-deps "uv==$$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements.lock)"
	$(UV) pip sync -q --compile-bytecode --python $(PY) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps --config-settings editable_mode=compat -e .
	@touch $(STAMP)

LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header
lock: ## regenerate requirements.lock (+ requirements-gpu.lock) from the ranges; then `make install test`
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q uv; }
	$(UV) pip compile -q $(LOCK_TARGET) requirements.txt requirements-offline-models.txt -o requirements.lock
	$(UV) pip compile -q $(LOCK_TARGET) requirements-gpu.txt -c requirements.lock -o requirements-gpu.lock

upgrade-check: install ## newest versions the ranges allow (known-break bounds lifted) in a scratch venv: what moved, which fast tests break
	$(OFFLINE) $(PY) scripts/upgrade_check.py

install-gpu: install ## GPU extras (flash-attn, bitsandbytes, deepspeed) from requirements-gpu.lock, on top of the lock
	$(UV) pip install --python $(PY) --no-build-isolation -r requirements-gpu.lock

test: install ## offline test suite (excludes `slow`; `gpu` tests skip without CUDA)
	$(OFFLINE) $(PY) -m pytest -m "not slow" -q

slow_test: install ## every test, slow ones included
	$(OFFLINE) $(PY) -m pytest -q

ACCELERATE := $(VENV)/bin/accelerate
CPU_LAUNCH := $(OFFLINE) $(ACCELERATE) launch --cpu --num_processes 1 --mixed_precision no

# ---- demos: tiny models, embedded demo corpus, CPU, offline -------------------------------------------
demo: install ## main job: demo corpus -> dataset + report PNGs -> Orpheus dialect pretraining -> per-dialect WAVs + loss PNG
	$(OFFLINE) $(PY) -m data_prep demo --out $(OUT)/demo
	$(CPU_LAUNCH) recipes/orpheus/pretrain_dialects.py --config recipes/orpheus/configs/demo.yaml \
		--dataset $(OUT)/demo/dataset --output_dir $(OUT)/orpheus/demo \
		--model_name_or_path $(OUT)/orpheus/tiny/model --snac_model $(OUT)/orpheus/tiny/snac
	@echo; echo "Listen: $(OUT)/orpheus/demo/final_samples/*.wav   Plots: $(OUT)/orpheus/demo/loss_curve.png $(OUT)/demo/report/*.png"

eval-demo: install ## after `make demo`: score the demo model per dialect with real offline models from wheels (Whisper base, d-vector)
	$(OFFLINE) $(PY) recipes/evaluate.py --config recipes/eval/configs/offline.yaml --dataset $(OUT)/demo/dataset \
		--model_path $(OUT)/orpheus/demo --output_dir $(OUT)/orpheus/demo_eval

orpheus-lora-demo: install ## after `make demo`: LoRA of the demo model to one demo speaker; save, merge, generate both forms
	@test -d $(OUT)/orpheus/demo || { echo "run 'make demo' first: the LoRA demo adapts its model"; exit 2; }
	$(OFFLINE) $(PY) recipes/orpheus/finetune_voice_lora.py --config recipes/orpheus/configs/voice_lora_demo.yaml \
		--model_name_or_path $(OUT)/orpheus/demo --snac_model $(OUT)/orpheus/tiny/snac --output_dir $(OUT)/orpheus/voice_lora_demo
	$(OFFLINE) $(PY) recipes/orpheus/generate.py --model $(OUT)/orpheus/voice_lora_demo --text "Bon dia." --out $(OUT)/orpheus/voice_lora_demo/adapter.wav
	$(OFFLINE) $(PY) recipes/orpheus/generate.py --model $(OUT)/orpheus/voice_lora_demo/merged --text "Bon dia." --out $(OUT)/orpheus/voice_lora_demo/merged.wav

f5-demo: install ## F5-TTS: tiny base -> pt-BR fine-tune (step 0, text front end, EMA model selection) -> voice clone via upstream inference -> an intelligible learned sentence
	rm -rf $(OUT)/f5-demo-base $(OUT)/f5-demo
	$(OFFLINE) $(PY) recipes/f5/finetune.py --config recipes/f5/configs/demo_base.yaml --output_dir $(OUT)/f5-demo-base
	$(OFFLINE) $(PY) recipes/f5/finetune.py --config recipes/f5/configs/demo.yaml --output_dir $(OUT)/f5-demo \
		--init_checkpoint $(OUT)/f5-demo-base/model_last.pt --vocab_file $(OUT)/f5-demo-base/vocab.txt
	$(OFFLINE) $(PY) recipes/f5/generate.py --model $(OUT)/f5-demo --vocoder griffin-lim --nfe_step 8 \
		--voice tests/fixtures/demo_corpus/clips/pt-br_f2_000.flac --ref_text "Amanhã vamos ver o mar." \
		--text "Ônibus às 3 horas da tarde." --out $(OUT)/f5-demo/generated.wav
	@# 70 steps of a tiny model only show the pipeline runs; a sentence it has learned is intelligible (issue 19):
	$(OFFLINE) $(PY) scripts/prove_learning.py --only f5 --out $(OUT)/prove_learning
	@echo; echo "Pipeline run: $(OUT)/f5-demo/generated.wav (unseen text, 70 tiny steps: noise-like)"
	@echo "Listen: $(OUT)/prove_learning/f5_griffin_lim.wav (a learned sentence through generate.py + Griffin-Lim)"

xtts-demo: install ## XTTS-v2 LoRA adapter on a tiny random XTTS: train, merge, synthesise
	$(CPU_LAUNCH) recipes/xtts/train_adapter.py --config recipes/xtts/configs/demo.yaml --output_dir $(OUT)/xtts-demo
	$(OFFLINE) $(PY) recipes/xtts/generate.py --model $(OUT)/xtts-demo/final --text "O menino foi para a escola às 7h." \
		--voice tests/fixtures/demo_corpus/clips/pt-br_f2_000.flac --out $(OUT)/xtts-demo/sample.wav --max_new_tokens 60

xtts-ca-demo: install ## XTTS for a language it doesn't speak (Catalan + dialect tags): extend vocab, train, export, synthesise
	$(CPU_LAUNCH) recipes/xtts/train_adapter.py --config recipes/xtts/configs/ca_demo.yaml --output_dir $(OUT)/xtts-ca-demo
	for voice in balear_f3 central_f2 valencia_f4; do \
		$(OFFLINE) $(PY) recipes/xtts/generate.py --model $(OUT)/xtts-ca-demo/final --text "Bon dia a tothom." \
			--language ca --dialect $${voice%_*} --voice tests/fixtures/demo_corpus/clips/$${voice}_000.flac \
			--out $(OUT)/xtts-ca-demo/sample_$${voice%_*}.wav --max_new_tokens 60 || exit 1; \
	done

pocket-demo: install ## Pocket TTS: tiny shared fr/es/de/it/pt-br teacher -> CFG/depth distillation -> student spoken by pocket_tts
	$(OFFLINE) $(PY) recipes/pocket/finetune_multilingual.py --config recipes/pocket/configs/demo.yaml --output_dir $(OUT)/pocket-demo
	$(OFFLINE) $(PY) recipes/pocket/distill.py --config recipes/pocket/configs/distill_demo.yaml \
		--teacher $(OUT)/pocket-demo/pocket_tts --output_dir $(OUT)/pocket-demo-distill
	$(OFFLINE) $(PY) recipes/pocket/generate.py --model $(OUT)/pocket-demo-distill/pocket_tts --language fr --text "Bonjour tout le monde." \
		--voice tests/fixtures/demo_corpus/clips/fr_f2_000.flac --out $(OUT)/pocket-demo-distill/bonjour.wav
	$(OFFLINE) $(PY) recipes/pocket/eos_sweep.py --model $(OUT)/pocket-demo-distill/pocket_tts --dataset demo --max_texts 5

prove-learning: install ## each recipe overfits a few demo clips, then its own inference regenerates them (CPU, offline)
	$(OFFLINE) $(PY) scripts/prove_learning.py --out $(OUT)/prove_learning
	@echo; echo "Results: $(OUT)/prove_learning/results.md  Plot: $(OUT)/prove_learning/loss_curves.png  Listen: $(OUT)/prove_learning/f5_griffin_lim.wav"

# ---- pipelines: the bake-off and recordings -> published voice (recipes/pipelines/) -------------------
# LANG= is the issue-style name for the language code, but the environment's LANG is the locale: take it only
# from the command line, and give the child processes a real locale back.
LANG_CODE := $(if $(filter command line,$(origin LANG)),$(LANG))
PIPELINE_ENV := env LANG=C.UTF-8
bakeoff: install ## train each recipe that takes LANG on DATA and score all alike: make bakeoff DATA=<prepared dataset> LANG=<code> [DIALECTS="a b"] [RECIPES=orpheus,f5,xtts,pocket]
	@test -n "$(DATA)" -a -n "$(LANG_CODE)" || { echo "set DATA=<prepared dataset folder> and LANG=<language code>"; exit 2; }
	$(PIPELINE_ENV) $(PY) recipes/pipelines/bakeoff.py --config recipes/pipelines/configs/bakeoff.yaml --dataset $(DATA) --language $(LANG_CODE) \
		$(if $(DIALECTS),--dialects $(DIALECTS)) $(if $(RECIPES),--recipes $(RECIPES))

bakeoff-demo: install ## offline bake-off on the demo corpus (tiny models, CPU): outputs/bakeoff/demo/results.md + charts
	@test -d $(OUT)/demo/dataset || $(OFFLINE) $(PY) -m data_prep demo --out $(OUT)/demo
	$(OFFLINE) $(PY) recipes/pipelines/bakeoff.py --config recipes/pipelines/configs/bakeoff_demo.yaml \
		--dataset $(OUT)/demo/dataset --output_root $(OUT)/bakeoff

voice: install ## recordings -> dataset -> voice fine-tune -> evaluation -> card [-> Hub]: make voice RECORDINGS=<folder> NAME=<voice> LANG=<code> RECIPE=<orpheus-lora|f5|xtts> [PUSH=<user/repo>]
	@test -n "$(RECORDINGS)" -a -n "$(NAME)" -a -n "$(LANG_CODE)" -a -n "$(RECIPE)" || { echo "set RECORDINGS=, NAME=, LANG= and RECIPE="; exit 2; }
	$(PIPELINE_ENV) $(PY) recipes/pipelines/voice.py --config recipes/pipelines/configs/voice.yaml --recordings $(RECORDINGS) \
		--name $(NAME) --language $(LANG_CODE) --recipe $(RECIPE) $(if $(PUSH),--push $(PUSH))

voice-demo: install ## offline: synthetic English long recording -> segments + offline Whisper -> tiny XTTS adapter -> evaluated card
	$(OFFLINE) $(PY) recipes/pipelines/voice.py --config recipes/pipelines/configs/voice_demo.yaml --output_root $(OUT)/voice

bench: install ## benchmarks: each prints figures next to a baseline measured in the same run
	$(OFFLINE) $(PY) benchmarks/orpheus_throughput.py
	$(OFFLINE) $(PY) benchmarks/f5_throughput.py
	$(OFFLINE) $(PY) benchmarks/pocket_distill_rtf.py

real-size-smoke: install ## every recipe at its real architecture (random weights), 2 steps each on CPU -> outputs/real_size/results.md
	$(OFFLINE) $(PY) benchmarks/real_size_smoke.py --out $(OUT)/real_size

gpu-check: install ## run first on a GPU (<= 8 min, offline): throughput, MFU, memory of every recipe -> outputs/gpu_check/
	$(OFFLINE) $(PY) benchmarks/gpu_check.py --out $(OUT)/gpu_check

# ---- real runs (GPU, real base weights; DATA=<prepared dataset> overrides the config's dataset) ---------
repro-orpheus: install ## Orpheus-3B Catalan dialect pretraining (8 GPUs, FSDP2)
	$(ACCELERATE) launch --config_file accelerate_configs/fsdp2.yaml recipes/orpheus/pretrain_dialects.py \
		--config recipes/orpheus/configs/catalan_dialects.yaml $(if $(DATA),--dataset $(DATA))

repro-orpheus-lora: install ## Orpheus single-voice LoRA (1 GPU); SPEAKER=<speaker id> required
	@test -n "$(SPEAKER)" || { echo "set SPEAKER=<id from the dataset's speaker column>"; exit 2; }
	$(ACCELERATE) launch --config_file accelerate_configs/single_gpu.yaml recipes/orpheus/finetune_voice_lora.py \
		--config recipes/orpheus/configs/voice_lora.yaml --speakers $(SPEAKER) $(if $(DATA),--dataset $(DATA))

repro-f5: install ## F5-TTS pt-BR fine-tune from firstpixel/F5-TTS-pt-br (1 GPU)
	$(ACCELERATE) launch --config_file accelerate_configs/single_gpu.yaml recipes/f5/finetune.py \
		--config recipes/f5/configs/pt_br.yaml $(if $(DATA),--dataset $(DATA))

repro-xtts: install ## XTTS-v2 pt LoRA adapter (1 GPU)
	$(ACCELERATE) launch --config_file accelerate_configs/single_gpu.yaml recipes/xtts/train_adapter.py \
		--config recipes/xtts/configs/pt_adapter.yaml $(if $(DATA),--dataset $(DATA))

repro-pocket: install ## Pocket TTS shared multilingual model (8 GPUs, DDP): 24-layer teacher, then 6-layer CFG/depth distillation
	$(ACCELERATE) launch --config_file accelerate_configs/ddp.yaml recipes/pocket/finetune_multilingual.py \
		--config recipes/pocket/configs/multilingual.yaml $(if $(DATA),--dataset $(DATA))
	$(ACCELERATE) launch --config_file accelerate_configs/ddp.yaml recipes/pocket/distill.py \
		--config recipes/pocket/configs/distill_multilingual.yaml $(if $(DATA),--dataset $(DATA))

quality: install ## lint (pyflakes-level checks: undefined names, unused imports, syntax)
	$(PY) -m ruff check --select F,E9 data_prep recipes tests benchmarks

clean:
	rm -rf $(OUT) .pytest_cache
