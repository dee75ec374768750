# mmdx: the two commands of the README.
#   make demo  - set up .venv and run the pipeline on the bundled samples
#   make test  - set up .venv with test extras + system packages, then lint and run the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet -c constraints.txt
# System packages the tests need, as CHECK:PACKAGE pairs: CHECK is a command (or an absolute path, or a glob)
# that the package provides. Only the packages whose check fails are installed, so a machine that already has
# Node.js and npm from another source is left alone; Debian's npm is never asked for (apt refuses it beside
# such a Node.js, and this machine kind ships both).
SYSDEPS := storescu:dcmtk echoscu:dcmtk dsrdump:dcmtk wlmscpfs:dcmtk dciodvfy:dicom3tools Orthanc:orthanc \
  /usr/share/orthanc/plugins/libOrthancDicomWeb.so:orthanc-dicomweb \
  '/usr/lib/postgresql/*/bin/initdb':postgresql node:nodejs \
  /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core \
  /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf:fonts-droid-fallback \
  /usr/bin/chromium:chromium wrk:wrk

.PHONY: demo test lint sysdeps lock fhir-validator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, from the local CPU wheel: a bare 'torch' would pull a multi-GB CUDA build.
# Every install is pinned by constraints.txt (see `make lock`).
$(VENV)/.base-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) torch==2.13.0
	$(PIP) -e '.[ml]'
	# constrained decoding of model drafts (docs/models.md), without triton (~1 GB, GPU only)
	$(PIP) --no-deps xgrammar apache-tvm-ffi
	touch $@

$(VENV)/.test-installed: $(VENV)/.base-installed
	$(PIP) -e '.[ml,test,dev]'
	$(PIP) --no-deps xgrammar apache-tvm-ffi
	touch $@

# Upgrade on purpose: resolve pyproject.toml afresh in a scratch venv and rewrite constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet torch==2.13.0
	.lock-venv/bin/pip install --quiet '.[ml,test,dev]'
	.lock-venv/bin/pip install --quiet --no-deps xgrammar apache-tvm-ffi
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^mmdx' \
	  | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/'; } > constraints.txt.new && mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

demo: $(VENV)/.base-installed
	$(BIN)/mmdx run samples/ --out output/

sysdeps:
	@missing=""; \
	for pair in $(SYSDEPS); do \
	  check="$${pair%%:*}"; pkg="$${pair##*:}"; \
	  case "$$check" in \
	    /*) compgen -G "$$check" >/dev/null || missing="$$missing $$pkg" ;; \
	    *) command -v "$$check" >/dev/null 2>&1 || [ -x "/usr/sbin/$$check" ] || missing="$$missing $$pkg" ;; \
	  esac; \
	done; \
	missing="$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' ')"; \
	if [ -n "$${missing// /}" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y $$missing || (apt-get update && apt-get install -y $$missing); \
	  else \
	    echo "Integration tests need the Debian packages:$$missing. As root run: apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core store ingest ecg models reports pacs_bridge app
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

# the second, independent FHIR validator (Medplum) runs under node; installed here, never at run time
reports/_js/node_modules/.package-lock.json: reports/_js/package-lock.json
	cd reports/_js && npm ci --no-audit --no-fund

fhir-validator: reports/_js/node_modules/.package-lock.json

# the bridge tests' FHIR server (Medplum's FHIR router, in-memory repository)
tests/peers/medplum/node_modules/.package-lock.json: tests/peers/medplum/package-lock.json
	cd tests/peers/medplum && npm ci --no-audit --no-fund

test: $(VENV)/.test-installed sysdeps reports/_js/node_modules/.package-lock.json tests/peers/medplum/node_modules/.package-lock.json
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var output .pytest_cache .mypy_cache .ruff_cache
