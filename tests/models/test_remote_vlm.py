"""Remote VLM backend against our own OpenAI-compatible server on loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from core.config import ModelSpec
from core.errors import ModelError
from core.records import Presence
from models.local_vlm import LocalVlmBackend
from models.remote_vlm import RemoteVlmBackend
from models.vocabulary import BY_KEY

from .conftest import cxr_input
from .openai_server import OpenAIServer, ServerState

SHA = "ab" * 32


def _remote(url: str, **kw: Any) -> RemoteVlmBackend:
    opts = {"retries": 2, "backoff_s": 0.01, **kw.pop("options", {})}
    return RemoteVlmBackend(
        "remote",
        ModelSpec(
            backend="remote_vlm",
            family="gemma3",
            url=url,
            served_model="tiny",
            sha256=SHA,
            max_new_tokens=12,
            options=opts,
            **kw,
        ),
    )


def test_valid_json_becomes_coded_findings_with_provenance() -> None:
    state = ServerState(mode="valid")
    with OpenAIServer(state) as srv:
        be = _remote(srv.url)
        assert be.probe() == []
        (out,) = be.predict([cxr_input("1.2.826.0.2.1")])
    assert out.ok, out.error
    eff, ptx = out.findings
    assert eff.concept == BY_KEY["effusion"].code and eff.presence is Presence.PRESENT
    assert eff.laterality.value == "left" and eff.probability == 0.8
    assert ptx.presence is Presence.ABSENT and not ptx.critical
    assert all(f.producer.digest == SHA for f in out.findings)
    assert out.provenance["repair_used"] == "false"
    body = state.requests[0]
    assert body["response_format"]["type"] == "json_schema"
    images = [p for p in body["messages"][0]["content"] if p["type"] == "image_url"]
    assert len(images) == 2 and images[0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_one_repair_turn_recovers_a_prose_answer() -> None:
    state = ServerState(mode="garbage_once")
    with OpenAIServer(state) as srv:
        (out,) = _remote(srv.url).predict([cxr_input("1.2.826.0.2.2")])
    assert out.ok and out.provenance["repair_used"] == "true"
    repair = state.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "The lungs look fine to me."}
    assert "invalid" in repair[-1]["content"][0]["text"]


def test_retries_503_with_backoff_then_succeeds() -> None:
    state = ServerState(mode="flaky", fail_first=2)
    with OpenAIServer(state) as srv:
        (out,) = _remote(srv.url).predict([cxr_input("1.2.826.0.2.3")])
    assert out.ok and len(state.requests) == 3


def test_gives_up_after_retries_and_fails_only_that_study() -> None:
    state = ServerState(mode="flaky", fail_first=100)
    with OpenAIServer(state) as srv:
        outs = _remote(srv.url).predict([cxr_input("1.2.826.0.2.4")])
    assert "gave up after 3 attempts: HTTP 503" in str(outs[0].error)
    assert outs[0].findings == ()


def test_timeout_is_a_model_error() -> None:
    state = ServerState(mode="valid", delay_s=0.6)
    with OpenAIServer(state) as srv:
        be = _remote(srv.url, timeout_s=0.2, options={"retries": 1})
        t0 = time.perf_counter()
        (out,) = be.predict([cxr_input("1.2.826.0.2.5")])
    assert "timed out after 0.2 s" in str(out.error)
    assert time.perf_counter() - t0 < 3


def test_concurrency_limit_is_respected() -> None:
    state = ServerState(mode="valid", delay_s=0.1)
    with OpenAIServer(state) as srv:
        outs = _remote(srv.url, concurrency=2).predict([cxr_input(f"1.2.826.0.2.{10 + i}") for i in range(6)])
    assert all(o.ok for o in outs)
    assert state.peak_in_flight == 2


def test_client_error_is_not_retried() -> None:
    state = ServerState(mode="http400")
    with OpenAIServer(state) as srv:
        (out,) = _remote(srv.url).predict([cxr_input("1.2.826.0.2.6")])
    assert "HTTP 400" in str(out.error) and len(state.requests) == 1


def test_tiny_model_behind_the_server_garbage_becomes_model_error(tiny_vlms: dict[str, Path]) -> None:
    local = LocalVlmBackend(
        "tiny",
        ModelSpec(
            backend="local_vlm",
            family="gemma3",
            path=tiny_vlms["gemma3"],
            max_new_tokens=12,
            options={"constrained": False},
        ),
    )
    local.load()
    state = ServerState(mode="model", backend=local)
    with OpenAIServer(state) as srv:
        (out,) = _remote(srv.url).predict([cxr_input("1.2.826.0.2.7")])
    assert isinstance(out.error, ModelError) and "after one repair" in str(out.error)
    assert len(state.requests) == 2  # the answer, then exactly one repair


def test_without_weights_hash_it_refuses_to_run() -> None:
    be = RemoteVlmBackend("r", ModelSpec(backend="remote_vlm", url="http://127.0.0.1:9", served_model="x"))
    assert "sha256" in be.describe().missing[0]
    with pytest.raises(ModelError, match="cannot run"):
        be.predict([cxr_input("1.2.826.0.2.8")])


def test_ecg_printout_and_measurements_reach_an_ecg_capable_server() -> None:
    import numpy as np

    from models.protocol import ModelInput

    page = np.full((200, 400, 3), 250, dtype=np.uint8)
    page[100, :, :] = 0  # a baseline
    inp = ModelInput(study_instance_uid="1.2.826.0.2.9", modality="ECG", ecg_printout=page,
                     ecg_measurements_text="HR 61/min; PR 161 ms; QRS 75 ms; QT 368 ms")  # fmt: skip
    state = ServerState(mode="valid")
    with OpenAIServer(state) as srv:
        (out,) = _remote(srv.url).predict([inp])
    assert out.ok
    parts = state.requests[0]["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]
    assert "PR 161 ms" in parts[1]["text"] and "12-lead ECG" in parts[1]["text"]
