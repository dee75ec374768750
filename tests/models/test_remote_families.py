"""Families served remotely (Phi-4 multimodal, PULSE, MAIRA-2, CheXagent) from the documented example
configuration, against the loopback OpenAI-compatible server; per-study deadline and circuit breaker."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.config import PROJECT_CONFIG_DIR, RouteRule
from models.orchestrate import analyse, analyse_batch
from models.protocol import ModelInput
from models.registry import Registry, read_registry_file

from .conftest import cxr_input
from .openai_server import OpenAIServer, ServerState

SHA = "ef" * 32
EXAMPLES = read_registry_file(PROJECT_CONFIG_DIR / "models.yaml")


def _served(name: str, url: str, **options: object) -> Registry:
    spec = EXAMPLES[name]
    spec = spec.model_copy(update={"url": url, "sha256": SHA, "options": {**spec.options, "retries": 0, **options}})
    return Registry.from_specs({name: spec})


@pytest.mark.parametrize("name", ["phi4-multimodal", "maira-2", "chexagent"])
def test_remote_chest_radiograph_family_drafts_from_its_example_config(name: str) -> None:
    state = ServerState(mode="valid", served_model=EXAMPLES[name].served_model or "")
    with OpenAIServer(state) as srv:
        reg = _served(name, srv.url, escalate="always")
        assert reg.describe(name).available, reg.describe(name).missing
        res = analyse(cxr_input("1.2.826.0.9.1"), reg, [RouteRule(modality="DX", models=[name])])
    assert not res.errors and res.sections and res.findings
    assert state.requests[0]["model"] == EXAMPLES[name].served_model
    (call,) = res.calls
    assert call.producer.name == name and call.producer.digest == SHA and call.prompt_template == "cxr"


def test_pulse_reads_the_ecg_printout() -> None:
    state = ServerState(mode="valid", served_model="pulse-7b")
    printout = np.full((120, 300, 3), 255, dtype=np.uint8)
    inp = ModelInput(
        study_instance_uid="1.2.826.0.9.2",
        modality="ECG",
        ecg_printout=printout,
        ecg_measurements_text="HR 72 /min, QRS 96 ms",
    )
    with OpenAIServer(state) as srv:
        res = analyse(
            inp, _served("pulse-ecg", srv.url, escalate="always"), [RouteRule(kind="ecg", models=["pulse-ecg"])]
        )
    assert not res.errors and res.sections
    text = str(state.requests[0]["messages"])
    assert "12-lead ECG" in text and "QRS 96 ms" in text and "image_url" in text
    assert res.calls[0].prompt_template == "ecg"


def test_a_hung_server_opens_the_circuit_and_stops_stalling_the_queue() -> None:
    state = ServerState(mode="valid", delay_s=1.0)
    with OpenAIServer(state) as srv:
        reg = _served("chexagent", srv.url, escalate="always", breaker_failures=2, breaker_reset_s=60)
        reg.specs["chexagent"] = reg.specs["chexagent"].model_copy(update={"timeout_s": 0.2, "concurrency": 1})
        inputs = [cxr_input(f"1.2.826.0.9.1{i}") for i in range(5)]
        t0 = time.perf_counter()
        results = analyse_batch(inputs, reg, [RouteRule(modality="DX", models=["chexagent"])])
        elapsed = time.perf_counter() - t0
    assert all(r.failed and r.sections == () for r in results)
    assert "timed out" in results[0].errors[0]
    assert all("server unavailable" in r.errors[0] for r in results[2:])
    assert len(state.requests) == 2 and elapsed < 1.5, (len(state.requests), elapsed)


def test_the_per_study_deadline_bounds_the_retries() -> None:
    state = ServerState(mode="valid", delay_s=1.0)
    with OpenAIServer(state) as srv:
        reg = _served("maira-2", srv.url, escalate="always", retries=5, backoff_s=0.01, deadline_s=0.5)
        reg.specs["maira-2"] = reg.specs["maira-2"].model_copy(update={"timeout_s": 0.2})
        t0 = time.perf_counter()
        res = analyse(cxr_input("1.2.826.0.9.3"), reg, [RouteRule(modality="DX", models=["maira-2"])])
        elapsed = time.perf_counter() - t0
    assert res.failed and "deadline of 0.5 s" in res.errors[0]
    assert elapsed < 1.0 and len(state.requests) <= 3
