# Two commands for a fresh machine:  make demo  (train the default recipe)  ·  make test  (run the tests)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED := $(abspath ../shared/datasets)
# Datasets by name (mnist/, cifar10-images/, ...) when the shared folder sits beside the repo.
export DANLU_DATA ?= $(if $(wildcard $(SHARED)),$(SHARED),)

.PHONY: demo test setup lint bench clean federated-setup

setup: $(STAMP)

# Reinstall only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/danlu train digits-mlp

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check danlu tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/mnist.py

# danlu federate's own environment: Flower's pins conflict with the serving stack's (requirements-federated.txt)
FLOWER_VENV := .venv-flower
FLOWER_STAMP := $(FLOWER_VENV)/.installed
federated-setup: $(FLOWER_STAMP)

$(FLOWER_STAMP): requirements-federated.txt pyproject.toml
	test -x $(FLOWER_VENV)/bin/python || $(PY) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/pip install --disable-pip-version-check -q -r requirements-federated.txt
	$(FLOWER_VENV)/bin/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(FLOWER_STAMP)

clean:
	rm -rf $(VENV) $(FLOWER_VENV) runs .pytest_cache
