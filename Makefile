# mmdx: the two commands of the README.
#   make demo  - set up .venv and run the pipeline on the bundled samples
#   make test  - set up .venv with test extras + system packages, then lint and run the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PKGS := orthanc orthanc-dicomweb dcmtk dicom3tools postgresql

.PHONY: demo test lint sysdeps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, from the local CPU wheel: a bare 'torch' would pull a multi-GB CUDA build.
$(VENV)/.base-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[ml]'
	touch $@

$(VENV)/.test-installed: $(VENV)/.base-installed
	$(BIN)/pip install --quiet -e '.[ml,test,dev]'
	touch $@

demo: $(VENV)/.base-installed
	$(BIN)/mmdx run samples/ --out output/

sysdeps:
	@missing=""; \
	for b in storescu echoscu dciodvfy Orthanc; do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; \
	done; \
	[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing="$$missing orthanc-dicomweb"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y $(APT_PKGS) || (apt-get update && apt-get install -y $(APT_PKGS)); \
	  else \
	    echo "Integration tests need:$$missing. As root run: apt-get install -y $(APT_PKGS)"; exit 1; \
	  fi; \
	fi

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core store ingest ecg models reports pacs_bridge app
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

test: $(VENV)/.test-installed sysdeps
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var output .pytest_cache .mypy_cache .ruff_cache
