# slimgate — the two set-up commands (`make demo`, `make test`) and a few more.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config.toml
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: install test demo demo-fast serve bench lint clean

# torch is installed first and pinned: any other version pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[distill,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/slimgate demo $(DEMO_ARGS)

demo-fast: $(STAMP)
	$(BIN)/slimgate demo --fast

serve: $(STAMP)
	$(BIN)/slimgate serve --config $(CONFIG)

bench: $(STAMP)
	$(BIN)/python bench/gateway_overhead.py
	$(BIN)/python bench/tail_latency.py  # says "skipped" and goes on without wrk and nginx
	$(BIN)/python bench/distill_bench.py
	$(BIN)/python bench/discovery_bench.py
	$(BIN)/python bench/recording_bench.py  # SQLite only without PostgreSQL on 127.0.0.1:5432

lint: $(STAMP)
	$(BIN)/ruff check gateway distill policies tests bench
	$(BIN)/mypy gateway policies

clean:
	rm -rf $(VENV) .pytest_cache
