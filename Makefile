# Two commands for a fresh machine:  make demo  (train the default recipe)  ·  make test  (run the tests)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED := $(abspath ../shared/datasets)
# Datasets by name (mnist/, cifar10-images/, ...) when the shared folder sits beside the repo.
export DANLU_DATA ?= $(if $(wildcard $(SHARED)),$(SHARED),)

.PHONY: demo test setup lint docs bench clean federated-setup mlflow-server fonts

setup: $(STAMP) fonts

# A CJK font for Chinese class names in figures (Debian/Ubuntu; skipped elsewhere or without root)
fonts:
	@ls /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc >/dev/null 2>&1 || \
	  (command -v apt-get >/dev/null && apt-get install -y -qq fonts-noto-cjk >/dev/null) || \
	  echo "note: no CJK font installed (apt-get install fonts-noto-cjk); Chinese labels draw as boxes"

# The MLflow tracking server the tracking tests start: full mlflow in its own venv, apart from danlu's pins
# (danlu itself needs only mlflow-skinny)
mlflow-server: .venv-mlflow/bin/mlflow
.venv-mlflow/bin/mlflow:
	test -x .venv-mlflow/bin/python || $(PY) -m venv .venv-mlflow
	.venv-mlflow/bin/pip install --disable-pip-version-check -q mlflow==3.17.2

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

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or anchor fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

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
	rm -rf $(VENV) $(FLOWER_VENV) .venv-mlflow runs .pytest_cache site
