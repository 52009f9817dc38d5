# The one front door. Every target that runs Python depends on $(SETUP): on a bare machine that
# builds .venv/ first; with PYTHON=python3 (Docker image, GPU box) it installs nothing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PYTHON  ?= $(VENV)/bin/python
# torch comes first and alone: on CPU-only machines the CPU build, elsewhere the image's own.
TORCH_SPEC ?= torch==2.13.0
ifeq ($(PYTHON),$(VENV)/bin/python)
SETUP := $(VENV)/.installed
else
SETUP :=
endif

SAMPLE    := data/sample/sample_instruct.jsonl
RECIPE    ?= tiny-cpu
# tiny-cpu on a fresh checkout (no real data yet) trains on the repo's own sample data.
ifeq ($(RECIPE)$(wildcard data/both_rel_instruct_all.jsonl),tiny-cpu)
DATA      ?= $(SAMPLE)
PROCESSED ?= data/processed-sample
endif
DATA      ?= data/both_rel_instruct_all.jsonl
PROCESSED ?= data/processed
GPUS      ?= 1
RESUME    ?=
RUN       ?=
MAX_STEPS ?=
BASE_MODEL ?=
HOST      ?= 127.0.0.1
PORT      ?= 8000
BENCH_ARGS ?= --random-init
# bc5cdr-eval: the official BioCreative V CDR scores (see README, "Official BC5CDR evaluation").
BC5CDR      ?= data/bc5cdr
PREDICTIONS ?= $(if $(RUN),$(RUN)/eval/predictions.jsonl)
PUBTATOR    ?= $(BC5CDR)/CDR_DevelopmentSet.PubTator.txt
LEXICON     ?= $(BC5CDR)/CDR_TrainingSet.PubTator.txt
BC5CDR_OUT  ?= $(if $(PREDICTIONS),$(dir $(PREDICTIONS))bc5cdr)
CTD_CHEMICALS ?=
CTD_DISEASES  ?=
# data-comparable: train on BC5CDR_TRAIN (one or more PubTator files), test on BC5CDR_TEST.
BC5CDR_TRAIN ?= $(BC5CDR)/CDR_TrainingSet.PubTator.txt
BC5CDR_TEST  ?= $(BC5CDR)/CDR_DevelopmentSet.PubTator.txt
COMPARABLE   ?= data/processed-comparable
export AXOLOTL_DO_NOT_TRACK ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help setup data data-comparable build-bc5cdr tiny-model train demo eval eval-base \
        bc5cdr-eval compare merge extract extract-corpus serve test lint docker-build docker-smoke docker-train \
        bench-run bench-train bench-eval bench-recipes \
        bench-scaling bench-profile bench-profile-generate bench-decoding bench-levers bench-table sample-data \
        clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(SETUP)  ## create .venv/ with the pinned stack (idempotent)

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$(TORCH_SPEC)"
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

data: $(SETUP)  ## validate + split DATA into PROCESSED (train/validation/test chat JSONL)
	$(PYTHON) -m preprocessing prepare $(DATA) --out $(PROCESSED)

data-comparable: $(SETUP)  ## the comparable setting: test = BC5CDR_TEST's documents, train/validation from BC5CDR_TRAIN -> COMPARABLE
	$(PYTHON) -m preprocessing prepare-bc5cdr --train $(BC5CDR_TRAIN) --test $(BC5CDR_TEST) \
		--out $(COMPARABLE)

build-bc5cdr: $(SETUP)  ## rebuild the instruction JSONL from BC5CDR PubTator files (BC5CDR=dir)
	$(PYTHON) -m preprocessing build-bc5cdr $(BC5CDR)/CDR_TrainingSet.PubTator.txt \
		$(BC5CDR)/CDR_DevelopmentSet.PubTator.txt --out $(DATA)

tiny-model: $(SETUP)  ## build the local random-init tiny Llama + tokenizer used by tiny-cpu
	$(PYTHON) -m training build-tiny

train: $(SETUP)  ## train RECIPE on DATA (prepares data first when stale); RESUME=runs/<dir>, GPUS=N, OVERRIDE='key=value ...', VERBOSE=1
	$(PYTHON) -m training train $(RECIPE) --data $(DATA) --processed $(PROCESSED) --gpus $(GPUS) \
		$(if $(RESUME),--resume $(RESUME)) $(if $(MAX_STEPS),--max-steps $(MAX_STEPS)) \
		$(if $(BASE_MODEL),--base-model $(BASE_MODEL)) $(foreach o,$(OVERRIDE),--override '$(o)') \
		$(if $(VERBOSE),--verbose)

demo: $(SETUP)  ## no GPU needed: sample data -> tiny-cpu training -> eval report
	$(PYTHON) -m eval demo

eval: $(SETUP)  ## generate on the test split with RUN=runs/<dir> and score it (LIMIT=N rows)
	$(PYTHON) -m eval generate $(if $(RUN),--run $(RUN)) $(if $(LIMIT),--limit $(LIMIT)) \
		$(if $(MERGED),--merged) $(if $(ENGINE),--engine $(ENGINE))

eval-base: $(SETUP)  ## the same on RECIPE's untuned base model
	$(PYTHON) -m eval generate --base $(RECIPE) --processed $(PROCESSED)

bc5cdr-eval: $(SETUP)  ## official BC5CDR scores of PREDICTIONS= (or RUN=, generating first) vs PUBTATOR= with LEXICON=
	@test -n "$(PREDICTIONS)" || { echo "error: give PREDICTIONS=file.jsonl or RUN=runs/<dir>" >&2; exit 2; }
	$(if $(RUN),test -f $(PREDICTIONS) || $(PYTHON) -m eval generate --run $(RUN))
	$(PYTHON) -m eval bc5cdr $(PREDICTIONS) --pubtator $(PUBTATOR) --lexicon-from $(LEXICON) \
		$(if $(CTD_CHEMICALS),--ctd-chemicals $(CTD_CHEMICALS)) \
		$(if $(CTD_DISEASES),--ctd-diseases $(CTD_DISEASES)) --out $(BC5CDR_OUT)

compare: $(SETUP)  ## one table (+ PNG) over every evaluated run
	$(PYTHON) -m eval compare runs

merge: $(SETUP)  ## merge RUN's adapter into the base weights -> RUN/merged
	@if [ -z "$(RUN)" ]; then \
		echo "error: which run? pass RUN=runs/<dir> (make merge RUN=runs/<dir>)" >&2; \
		ls -dt runs/*/ 2>/dev/null | head -5 | sed 's|/$$||; s|^|  make merge RUN=|' >&2; \
		exit 2; \
	fi
	$(PYTHON) -m training merge $(RUN)

extract: $(SETUP)  ## chemicals, diseases, relations as JSON (stdout: only JSON) from TEXT=file|dir (default stdin)
	@$(PYTHON) -m inference extract $(if $(RUN),--run $(RUN)) --input $(or $(TEXT),-)

extract-corpus: $(SETUP)  ## every abstract of INPUT= (JSONL, .txt folder, PubTator) -> OUT= JSONL; a rerun resumes
	@test -n "$(INPUT)" -a -n "$(OUT)" || { echo "error: give INPUT=file|dir and OUT=results.jsonl" >&2; exit 2; }
	$(PYTHON) -m inference extract $(if $(RUN),--run $(RUN)) --input $(INPUT) --out $(OUT)

serve: $(SETUP)  ## HTTP extraction service for RUN (POST /extract, GET /health, /docs) on HOST:PORT
	$(PYTHON) -m inference serve $(if $(RUN),--run $(RUN)) --host $(HOST) --port $(PORT)

test: $(SETUP)  ## the whole test suite (CPU)
	$(PYTHON) -m ruff check .
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

lint: $(SETUP)  ## ruff check + format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

docker-build:  ## build the training image (docker/Dockerfile)
	docker build -f docker/Dockerfile -t cdr-finetune:latest .

docker-smoke: docker-build  ## build the image, then `make demo` inside it (CPU, offline): the image works
	docker run --rm -e HF_HUB_OFFLINE=1 cdr-finetune:latest make demo PYTHON=python3

docker-train:  ## make train inside the image, all GPUs, data/ runs/ and HF cache mounted
	docker run --rm --gpus all --ipc=host -e HF_TOKEN -e HF_USERNAME -e WANDB_PROJECT \
		-v $(CURDIR)/data:/workspace/cdr/data -v $(CURDIR)/runs:/workspace/cdr/runs \
		-v $${HF_HOME:-$$HOME/.cache/huggingface}:/root/.cache/huggingface \
		cdr-finetune:latest make train PYTHON=python3 RECIPE=$(RECIPE) GPUS=$(GPUS)

bench-run: $(SETUP)  ## GPU: the whole `make train RECIPE=...` timed phase by phase (BENCH_ARGS)
	$(PYTHON) -m bench run --recipe $(or $(filter-out tiny-cpu,$(RECIPE)),llama3b-qlora) $(BENCH_ARGS)

bench-train: $(SETUP)  ## GPU: seed script vs our recipe, same model shape and data (BENCH_ARGS)
	$(PYTHON) -m bench train $(BENCH_ARGS)

bench-eval: $(SETUP)  ## GPU: seed's one-at-a-time sampling loop vs our batched eval
	$(PYTHON) -m bench eval $(BENCH_ARGS)

bench-recipes: $(SETUP)  ## GPU: every GPU recipe for >= 20 steps, then eval on the result
	$(PYTHON) -m bench recipes $(BENCH_ARGS)

bench-scaling: $(SETUP)  ## GPUs: RECIPE on 1 vs GPUS=N GPUs
	$(PYTHON) -m bench scaling $(BENCH_ARGS) $(if $(filter-out 1,$(GPUS)),--gpus $(GPUS))

bench-profile: $(SETUP)  ## GPU: torch.profiler over our recipe's training steps (where the time goes)
	$(PYTHON) -m bench profile $(BENCH_ARGS)

bench-profile-generate: $(SETUP)  ## GPU: our eval's decoding steps at batch 1 and 256, profiled
	$(PYTHON) -m bench profile-generate $(BENCH_ARGS)

bench-decoding: $(SETUP)  ## GPU: our eval's decoding strategies side by side on the test split
	$(PYTHON) -m bench decoding $(BENCH_ARGS)

bench-levers: $(SETUP)  ## GPU: RECIPE's speed levers side by side (LEVERS='--lever NAME KEY=VALUE ...')
	$(PYTHON) -m bench levers --recipe $(RECIPE) $(BENCH_ARGS) $(LEVERS)

bench-table: $(SETUP)  ## render docs/benchmarks.md from bench/results/*.json
	$(PYTHON) -m bench table

sample-data: $(SETUP)  ## rebuild data/sample/sample_instruct.jsonl from its PubTator file
	$(PYTHON) -m preprocessing build-bc5cdr data/sample/sample.PubTator.txt \
		--out data/sample/sample_instruct.jsonl

clean:  ## remove built data, runs and models (keeps .venv)
	rm -rf $(PROCESSED) data/processed-sample $(COMPARABLE) runs models/built bench/work
