# Two commands a new user needs:  `make run` (set up + main job)  and  `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# Stage commands (`mtlflow ...` in dvc.yaml) resolve from the project's venv.
export PATH := $(abspath $(BIN)):$(PATH)
export MLFLOW_DISABLE_TELEMETRY ?= true
export GIT_PYTHON_REFRESH ?= quiet

.PHONY: setup run test test-quick lint ui clean example

setup: $(BIN)/.installed

# constraints.txt pins every package (the standard torch build: CPU and CUDA); README "Install by hand".
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

run: setup
	$(BIN)/dvc repro
	$(BIN)/mtlflow summary

# One of examples/: penguins, multimnist, signals, flowers, transfer (README "Examples");
# an example with several steps has a run.sh
EXAMPLE ?= penguins
example: setup
	cd examples/$(EXAMPLE) && if [ -f run.sh ]; then bash run.sh; else mtlflow run; fi

test: setup
	$(BIN)/python -m pytest

# the quick layer: everything but the end-to-end tests marked slow
test-quick: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check mtl_models pipelines tests benchmarks

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --workers 1

clean:
	rm -rf data models reports mlruns mlartifacts mlflow.db .dvc/cache .dvc/tmp
