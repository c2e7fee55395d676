# tts-recipes: one target per reproduction. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= outputs
# Tests and demos never touch the Hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: help install system-deps test slow_test demo quality style clean

help:
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

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

demo: install ## the main job on the embedded demo corpus: data report, then Orpheus dialect pretraining (tiny, CPU)
	$(OFFLINE) $(PY) -m data_prep demo --out $(OUT)/demo

quality: install ## lint
	$(PY) -m ruff check data_prep recipes tests benchmarks 2>/dev/null || $(PY) -m pyflakes data_prep recipes tests benchmarks

clean:
	rm -rf $(OUT) .pytest_cache
