# aqa: `make install demo` sets up and runs the demo; `make test` runs the tests (installing first).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXP ?= deepaq_lora_tiny
ARGS ?=
SHARED ?= ../shared/data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE ?= 1

.PHONY: install system-deps test test-full train eval demo data-demo bench lint clean

install: $(STAMP) system-deps

# torch 2.13.0 first: it is the CPU build this machine provides; asking for anything else pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,metrics]'
	@# pyclarity pulls torchaudio 2.11, a CUDA build whose compiled libraries do not load on CPU-only machines
	@# and then break `import transformers`; its pure-Python parts work without them (shared ENVIRONMENT.md).
	$(BIN)/python -c "import torchaudio" 2>/dev/null || rm -f $(VENV)/lib/python3*/site-packages/torchaudio/lib/*.so
	touch $(STAMP)

# Debian packages the pipeline needs (ffmpeg for the codecs).
system-deps:
	@command -v ffmpeg >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends ffmpeg; }

test: install
	$(BIN)/python -m pytest -m "not slow" -q

test-full: install
	$(BIN)/python -m pytest -q

train: install
	$(BIN)/aqa train $(EXP) $(ARGS)

eval: install
	$(BIN)/aqa eval runs/$(EXP) $(ARGS)

# Demo shards: the five music clips of ../shared/data/clean, 5 s excerpts, every codec/bitrate, mono 24 kHz.
data/codec_demo/manifest.json: | install
	$(BIN)/aqa prep codec --src data_prep/lists/demo_music.csv --root $(SHARED)/clean --out data/codec_demo \
		--excerpt-s 5 --max-excerpts 6 --store-rate 24000 --mono --jobs 2

data-demo: data/codec_demo/manifest.json

demo: install data-demo
	time $(BIN)/aqa train deepaq_lora_tiny overwrite=true logger=csv
	$(BIN)/aqa eval runs/deepaq_lora_tiny

bench: install
	$(BIN)/python tests/benchmarks/bench_train.py
	$(BIN)/python tests/benchmarks/bench_metrics.py
	$(BIN)/python tests/benchmarks/bench_encoders.py

lint: install
	$(BIN)/ruff check aqa data_prep tests

clean:
	rm -rf runs data/codec_demo
