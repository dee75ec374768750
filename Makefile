# mmdx: the two commands of the README.
#   make demo  - set up .venv and run the pipeline on the bundled samples
#   make test  - set up .venv with test extras + system packages, then lint and run the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PKGS := orthanc orthanc-dicomweb dcmtk dicom3tools postgresql nodejs npm fonts-dejavu-core fonts-droid-fallback

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
	# constrained decoding for the structured-output tests, without triton (~1 GB, GPU only)
	$(BIN)/pip install --quiet --no-deps xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
	touch $@

demo: $(VENV)/.base-installed
	$(BIN)/mmdx run samples/ --out output/

sysdeps:
	@missing=""; \
	for b in storescu echoscu dsrdump dciodvfy Orthanc node npm; do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; \
	done; \
	[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing="$$missing orthanc-dicomweb"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	[ -e /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || missing="$$missing fonts-droid-fallback"; \
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

# the second, independent FHIR validator (Medplum) runs under node
reports/_js/node_modules/.package-lock.json: reports/_js/package-lock.json
	cd reports/_js && npm ci --no-audit --no-fund

test: $(VENV)/.test-installed sysdeps reports/_js/node_modules/.package-lock.json
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var output .pytest_cache .mypy_cache .ruff_cache
