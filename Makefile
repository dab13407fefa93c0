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
# Published encoder weights download on first use (aqa/hub.py); the tests run offline (tests/conftest.py sets
# HF_HUB_OFFLINE=1 too). `aqa download EXPERIMENT` pre-fetches them for machines without internet.

.PHONY: install constraints system-deps test test-full train eval sweep demo demos data-demo data-deepaq-demo data data-import bench lint clean gpu-check gpu-wheels

install: $(STAMP) system-deps

# torch 2.13.0 first: it is the CPU build this machine provides; asking for anything else pulls a CUDA build.
# constraints.txt: the exact versions measured together (pyproject.toml states the compatible ranges).
$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,metrics]'
	@# pyclarity pulls torchaudio 2.11, a CUDA build whose compiled libraries do not load on CPU-only machines
	@# and then break `import transformers`; its pure-Python parts work without them (shared ENVIRONMENT.md).
	$(BIN)/python -c "import torchaudio" 2>/dev/null || rm -f $(VENV)/lib/python3*/site-packages/torchaudio/lib/*.so
	touch $(STAMP)

# Debian packages the pipeline needs: ffmpeg (codecs), fluidsynth + fluid-soundfont-gm (music rendering),
# espeak-ng + sox (speech synthesis). Installed only when one of them is missing.
SYSTEM_PKGS := ffmpeg fluidsynth fluid-soundfont-gm espeak-ng sox
system-deps:
	@missing=; for t in ffmpeg fluidsynth espeak-ng sox; do command -v $$t >/dev/null || missing=1; done; \
	[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing=1; \
	[ -z "$$missing" ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $(SYSTEM_PKGS); }

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" -q

test-full: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

train: install
	$(BIN)/aqa train $(EXP) $(ARGS)

eval: install
	$(BIN)/aqa eval runs/$(EXP) $(ARGS)

# `make sweep SWEEP=configs/sweep/mmmos_tiny.yaml [ARGS="--resume"]`: a grid or random search (aqa/sweep/)
SWEEP ?= configs/sweep/mmmos_tiny.yaml
sweep: install
	$(BIN)/aqa sweep $(SWEEP) $(ARGS)

# Demo shards: the five music clips of ../shared/data/clean, 5 s excerpts, every codec/bitrate, mono 24 kHz.
data/codec_demo/manifest.json: | install
	$(BIN)/aqa prep codec --src data_prep/lists/demo_music.csv --root $(SHARED)/clean --out data/codec_demo \
		--excerpt-s 5 --max-excerpts 6 --versions-per-excerpt 0 --store-rate 24000 --mono --jobs 2 --no-visqol

data-demo: data/codec_demo/manifest.json

# `make demo`'s shards (deepaq_demo_tiny): 60 bright synthetic music pieces (no external tool, 0.2 s each), the
# first 48 for training, the last 12 and the five shared music clips for validation; one 1 s excerpt per piece,
# MP3 at 16/32/64/128 kbit/s (its low-pass falls with the bit rate), mono 24 kHz, no ViSQOL (~20 s on 2 cores).
data/render/bright/render-bright.json: | install
	$(BIN)/aqa prep render --kind bright --out data/render/bright --n 60 --seed 0 --jobs 2

data/lists/deepaq_demo.csv: data/render/bright/render-bright.json
	mkdir -p $(@D)
	{ echo path,split; ls $(abspath data/render/bright)/bright_*.wav | head -n 48 | sed 's/$$/,train/'; \
	  ls $(abspath data/render/bright)/bright_*.wav | tail -n 12 | sed 's/$$/,val/'; \
	  tail -n +2 data_prep/lists/demo_music.csv | cut -d, -f1 | sed 's|^|$(abspath $(SHARED))/clean/|; s|$$|,val|'; } > $@

data/deepaq_demo/manifest.json: data/lists/deepaq_demo.csv | install
	$(BIN)/aqa prep codec --src $< --out data/deepaq_demo --excerpt-s 1 --max-excerpts 1 --versions-per-excerpt 0 \
		--codecs mp3 --bitrates 16,32,64,128 --store-rate 24000 --mono --jobs 2 --no-visqol --no-progress

data-deepaq-demo: data/deepaq_demo/manifest.json

# `make data`: small demo sets for all four systems from the shared real clips plus rendered material.
# Rendered sources (reproducible: fixed seed, capped lengths): Bach chorales (fluidsynth) and espeak-ng speech.
data/render/music/render-music.json: | install
	$(BIN)/aqa prep render --kind music --out data/render/music --n 4 --seed 0 --max-seconds 12 --jobs 2

data/render/speech/render-speech.json: | install
	$(BIN)/aqa prep render --kind speech --out data/render/speech --n 8 --seed 0 --max-seconds 6 --jobs 2

DEMO_SPEECH := 198-209-0000 3436-172162-0000 5703-47212-0000
DEMO_HAAQI_MUSIC := Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra) sorohanro_-_solo-trumpet-06

data/lists/demo_speech.txt: data/render/speech/render-speech.json
	mkdir -p $(@D)
	{ $(foreach f,$(DEMO_SPEECH),echo '$(abspath $(SHARED))/clean/$(f).hq.ogg';) \
	  ls $(abspath data/render/speech)/speech_*.wav; } > $@

# path,split: the trumpet solo is the validation piece (a hash split of 4 pieces could leave val empty)
data/lists/demo_haaqi_music.csv: data/render/music/render-music.json
	mkdir -p $(@D)
	{ echo path,split; $(foreach f,$(DEMO_HAAQI_MUSIC),echo '$(abspath $(SHARED))/clean/$(f).hq.ogg,$(if $(findstring trumpet,$(f)),val,train)';) \
	  ls $(abspath data/render/music)/music_*.wav | head -n 2 | sed 's/$$/,train/'; } > $@

# JSQA: shared + rendered speech mixed with generated noise on a coarse SNR grid.
data/jnd_demo/manifest.json: data/lists/demo_speech.txt | install
	$(BIN)/aqa prep jnd --src $< --out data/jnd_demo --snr-step 2.5 --max-s 6 --jobs 2 --no-progress

# HAAQI-Net: 4 pieces (2 shared, 2 rendered), one 2 s excerpt each x (clean, codec, low-pass, noise), each
# version heard by 2 sampled listeners: 32 HAAQI labels, ~2 min on 2 idle cores (HAAQI ~3.5 CPU-s per label).
data/haaqi_demo/manifest.json: data/lists/demo_haaqi_music.csv | install
	$(BIN)/aqa prep haaqi --src $< --out data/haaqi_demo --excerpt-s 2 --max-excerpts 1 \
		--processings clean,codec,lowpass,noise --audiograms 2 --units-per-shard 2 --jobs 2 --no-progress

# MOS-style demo (MMMOS): one 4 s excerpt per shared music clip, 3 bit rates per codec, ViSQOL v3 MOS-LQO
# labels (a pseudo-MOS standing in for a listening test; ~1 min on 2 cores).
data/mos_demo/manifest.json: | install
	$(BIN)/aqa prep codec --src data_prep/lists/demo_music.csv --root $(SHARED)/clean --out data/mos_demo \
		--excerpt-s 4 --max-excerpts 1 --versions-per-excerpt 0 --bitrates 16,48,128 --store-rate 24000 --mono --jobs 2 --no-progress

# Listening tests: only real ratings are imported (none ship with the repository; MOS labels are never
# invented). Point RATED at an unpacked corpus: make data RATED=~/NISQA_Corpus [RATED_FORMAT=nisqa].
RATED ?=
RATED_FORMAT ?= auto
data-import: | install
	@if [ -n "$(RATED)" ]; then \
		$(BIN)/aqa prep import --src "$(RATED)" --format $(RATED_FORMAT) --out data/import_demo --jobs 2 --no-progress; \
	else echo "make data: no rated listening-test corpus given (RATED=...): the MOS import demo is skipped"; fi

data: data-demo data/jnd_demo/manifest.json data/haaqi_demo/manifest.json data/mos_demo/manifest.json data-import

# DeePAQ learning a bit-rate axis: the validation table before training (epoch 0) and after, matched and
# mismatched-reference SRCC (README, "The demo"); then `aqa eval` of the best checkpoint.
demo: install data-deepaq-demo
	time $(BIN)/aqa train deepaq_demo_tiny overwrite=true logger=csv
	$(BIN)/aqa eval runs/deepaq_demo_tiny
	$(BIN)/aqa eval runs/deepaq_demo_tiny --reference mismatched

# The four systems' tiny demo experiments on the `make data` sets, each trained then evaluated (CPU).
DEMO_EXPS := deepaq_lora_tiny jsqa_jnd_tiny haaqi_net_tiny haaqi_net_student_tiny mmmos_tiny
demos: install data
	@for e in $(DEMO_EXPS); do \
		$(BIN)/aqa train $$e overwrite=true logger=csv && $(BIN)/aqa eval runs/$$e || exit 1; done

bench: install
	$(BIN)/python tests/benchmarks/bench_train.py
	$(BIN)/python tests/benchmarks/bench_metrics.py
	$(BIN)/python tests/benchmarks/bench_dnsmos.py
	$(BIN)/python tests/benchmarks/bench_fad.py
	$(BIN)/python tests/benchmarks/bench_metric_cache.py
	$(BIN)/python tests/benchmarks/bench_encoders.py
	$(BIN)/python tests/benchmarks/bench_data.py
	$(BIN)/python tests/benchmarks/bench_systems.py
	$(BIN)/python tests/benchmarks/bench_scoring.py --out runs/bench/scoring.md
	$(BIN)/python tests/benchmarks/bench_ensemble.py

# GPU check (not part of `make test`): every experiment's full-size architecture, random weights, bf16 on CUDA:
# train a few steps, validate, checkpoint, `aqa eval`, `aqa score`, fp32 CPU vs CUDA, throughput table
# (OUT/gpu_check.md). On a machine without network run `make gpu-wheels` here first and carry .whl along:
# the packages the GPU image lacks are installed from it into /tmp/site (shared/ENVIRONMENT.md).
GPU_PY ?= python3
GPU_OUT ?= $(if $(OUT),$(OUT),runs/gpu_check)
gpu-check:
	@if [ -d .whl ]; then $(GPU_PY) -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl; fi
	HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$(CURDIR) PYTHONUNBUFFERED=1 $(GPU_PY) tests/gpu/gpu_check.py --out $(GPU_OUT) $(ARGS)

GPU_WHEELS := omegaconf==2.3.1 webdataset==1.0.2 braceexpand==0.1.7 soundfile==0.14.0 cffi pycparser \
	transformers==5.23.0 peft==0.21.2
gpu-wheels:
	mkdir -p .whl && grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(GPU_WHEELS)
	$(PYTHON) -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3

# Rewrite constraints.txt from the working .venv (after an upgrade has passed `make test`).
constraints: install
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*$$/\1/'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

lint: install
	$(BIN)/ruff check aqa data_prep tests

clean:
	rm -rf runs data/codec_demo data/deepaq_demo data/jnd_demo data/haaqi_demo data/mos_demo data/import_demo data/render data/lists
