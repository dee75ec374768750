"""Fixtures for the report tests: the Medplum validator (installed by npm ci when missing) and dciodvfy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reports.fhir_validate import JS_DIR, medplum_ready

DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="session")
def medplum() -> Path:
    """The reports/_js validator folder, with node_modules installed from package-lock.json."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node/npm are required for the second FHIR validator in CI")
        pytest.skip("node/npm not installed")
    if not medplum_ready():  # `make test` installs it; a bare pytest run does it here
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=600)
    return JS_DIR


def dciodvfy_errors(path: Path) -> list[str]:
    """Lines dciodvfy reports as errors for a DICOM file (warnings are not failures)."""
    proc = subprocess.run([DCIODVFY or "dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    out = proc.stdout + proc.stderr
    return [line for line in out.splitlines() if line.startswith("Error") or " Error " in line[:20]]


def dsrdump_errors(path: Path) -> list[str]:
    """DCMTK's SR parser: errors it reports while reading the document tree (exit code != 0 or E: lines)."""
    proc = subprocess.run(["dsrdump", "-Ee", str(path)], capture_output=True, text=True, timeout=60, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("E:")]
    return errors if proc.returncode == 0 else [*errors, f"dsrdump exit {proc.returncode}"]


@pytest.fixture(scope="session")
def dsrdump() -> object:
    if shutil.which("dsrdump") is None:
        if os.environ.get("CI"):
            pytest.fail("dsrdump (dcmtk) is required in CI")
        pytest.skip("dsrdump not installed")
    return dsrdump_errors


@pytest.fixture(scope="session")
def dciodvfy() -> object:
    if DCIODVFY is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy (dicom3tools) is required in CI")
        pytest.skip("dciodvfy not installed")
    return dciodvfy_errors
