# tts-recipes: one target per reproduction. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= outputs
# Tests and demos never touch the Hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: help install system-deps test slow_test demo eval-demo orpheus-lora-demo f5-demo xtts-demo pocket-demo \
	bench repro-orpheus repro-orpheus-lora repro-f5 repro-xtts repro-pocket quality clean

help:
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

install: system-deps $(STAMP) ## create .venv and install system + Python dependencies (idempotent)

system-deps: ## ffmpeg (torchcodec) and espeak-ng (demo corpus): apt-get when root, else a clear message
	@bash scripts/install_system_deps.sh

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --config-settings editable_mode=compat -e .
	@touch $(STAMP)

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

eval-demo: install ## after `make demo`: score the demo model per dialect (tiny random ASR/speaker models: numbers NOT meaningful)
	$(OFFLINE) $(PY) recipes/evaluate.py --config recipes/eval/configs/demo.yaml --dataset $(OUT)/demo/dataset \
		--model_path $(OUT)/orpheus/demo --output_dir $(OUT)/orpheus/demo_eval

orpheus-lora-demo: install ## after `make demo`: LoRA of the demo model to one demo speaker; save, merge, generate both forms
	@test -d $(OUT)/orpheus/demo || { echo "run 'make demo' first: the LoRA demo adapts its model"; exit 2; }
	$(OFFLINE) $(PY) recipes/orpheus/finetune_voice_lora.py --config recipes/orpheus/configs/voice_lora_demo.yaml \
		--model_name_or_path $(OUT)/orpheus/demo --snac_model $(OUT)/orpheus/tiny/snac --output_dir $(OUT)/orpheus/voice_lora_demo
	$(OFFLINE) $(PY) recipes/orpheus/generate.py --model $(OUT)/orpheus/voice_lora_demo --text "Bon dia." --out $(OUT)/orpheus/voice_lora_demo/adapter.wav
	$(OFFLINE) $(PY) recipes/orpheus/generate.py --model $(OUT)/orpheus/voice_lora_demo/merged --text "Bon dia." --out $(OUT)/orpheus/voice_lora_demo/merged.wav

f5-demo: install ## F5-TTS: tiny base -> pt-BR fine-tune (step 0, vocab + Ô) -> voice clone via upstream inference
	rm -rf $(OUT)/f5-demo-base $(OUT)/f5-demo
	$(OFFLINE) $(PY) recipes/f5/finetune.py --config recipes/f5/configs/demo_base.yaml --output_dir $(OUT)/f5-demo-base
	$(OFFLINE) $(PY) recipes/f5/finetune.py --config recipes/f5/configs/demo.yaml --output_dir $(OUT)/f5-demo \
		--init_checkpoint $(OUT)/f5-demo-base/model_last.pt --vocab_file $(OUT)/f5-demo-base/vocab.txt
	$(OFFLINE) $(PY) recipes/f5/generate.py --model_path $(OUT)/f5-demo --vocoder_path random --nfe_step 8 \
		--ref_audio tests/fixtures/demo_corpus/clips/pt-br_f2_000.flac --ref_text "Amanhã vamos ver o mar." \
		--text "Ônibus às três horas da tarde." --out $(OUT)/f5-demo/generated.wav

xtts-demo: install ## XTTS-v2 LoRA adapter on a tiny random XTTS: train, merge, synthesise
	$(CPU_LAUNCH) recipes/xtts/train_adapter.py --config recipes/xtts/configs/demo.yaml --output_dir $(OUT)/xtts-demo
	$(OFFLINE) $(PY) recipes/xtts/generate.py --model_path $(OUT)/xtts-demo/final --text "O menino foi para a escola." \
		--reference tests/fixtures/demo_corpus/clips/pt-br_f2_000.flac --output_file $(OUT)/xtts-demo/sample.wav --max_new_tokens 60

pocket-demo: install ## Pocket TTS: tiny shared fr/es/de/it/pt-br model, exported and spoken by pocket_tts
	$(OFFLINE) $(PY) recipes/pocket/finetune_multilingual.py --config recipes/pocket/configs/demo.yaml --output_dir $(OUT)/pocket-demo
	$(OFFLINE) $(PY) recipes/pocket/generate.py --model $(OUT)/pocket-demo/pocket_tts --language fr --text "Bonjour tout le monde." \
		--voice tests/fixtures/demo_corpus/clips/fr_f2_000.flac --output $(OUT)/pocket-demo/bonjour.wav

bench: install ## benchmarks: each prints figures next to a baseline measured in the same run
	$(OFFLINE) $(PY) benchmarks/orpheus_throughput.py
	$(OFFLINE) $(PY) benchmarks/f5_throughput.py

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

repro-pocket: install ## Pocket TTS shared multilingual model (8 GPUs, DDP)
	$(ACCELERATE) launch --config_file accelerate_configs/ddp.yaml recipes/pocket/finetune_multilingual.py \
		--config recipes/pocket/configs/multilingual.yaml $(if $(DATA),--dataset $(DATA))

quality: install ## lint (pyflakes-level checks: undefined names, unused imports, syntax)
	$(PY) -m ruff check --select F,E9 data_prep recipes tests benchmarks

clean:
	rm -rf $(OUT) .pytest_cache
