# Two newcomer commands: `make demo` (main job end to end on embedded defaults) and `make test`.
# Both create/reuse the virtualenv in .venv. torch goes in first, pinned, so pip takes the CPU wheel.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SPARK_LOCAL_IP ?= 127.0.0.1
export HF_HUB_OFFLINE := 1
export PYARROW_IGNORE_TIMEZONE := 1

.PHONY: install demo test test-slow test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m feed.setup_env
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/feed demo

test: $(STAMP)
	bash scripts/run_tests.sh -m "not slow"

# The long tests (served home, DAG runs, end-to-end flows, browser); CI runs them after `make test`.
test-slow: $(STAMP)
	bash scripts/run_tests.sh -m slow

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not integration" -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf data artifacts .pytest_cache
