"""Vision-language models behind an OpenAI-compatible server (vLLM, SGLang, TGI...).

The scale-out path, and the only path for models that need remote or forked
code (PULSE-7B, MAIRA-2, CheXagent, RadFM): they run in their own pinned
environment and this process only speaks HTTP.  Images travel as base64 PNG
``image_url`` parts; ``response_format`` carries the draft JSON schema so that
servers with structured output constrain decoding, and the answer is still
parsed and validated here (one repair turn, then a per-study ModelError).

Requests time out after ``spec.timeout_s``; connection errors, timeouts, 429
and 5xx are retried with exponential backoff (``options.retries``,
``options.backoff_s``); at most ``spec.concurrency`` requests are in flight.
One study never waits longer than ``options.deadline_s`` (default 2 x
``timeout_s``) across its attempts, and after ``options.breaker_failures``
(default 3) studies in a row that found the server unusable the circuit
opens: for ``options.breaker_reset_s`` (default 60 s) studies fail at once
with that reason (and get their fallback draft) instead of each waiting out
the timeouts, so one hung server cannot stall the queue.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from core.config import ModelSpec
from core.errors import ModelError
from models.prompts import Prompt, build_prompt, prompt_options
from models.protocol import ModelInfo, ModelInput, ModelOutput
from models.structured import DRAFT_SCHEMA, chest_labels_apply, parse_draft, repair_messages
from models.weights import sha256_problem

_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def png_data_url(image: npt.NDArray[np.uint8]) -> str:
    """A ``data:image/png;base64,...`` URL (lossless: no JPEG artefacts in a medical image)."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def openai_messages(messages: list[dict[str, Any]], images: Sequence[npt.NDArray[np.uint8]]) -> list[dict[str, Any]]:
    """Our chat turns with image placeholders -> OpenAI chat turns with base64 image parts."""
    it = iter(images)
    out: list[dict[str, Any]] = []
    for turn in messages:
        parts: list[dict[str, Any]] = []
        for c in turn["content"]:
            if c["type"] == "image":
                parts.append({"type": "image_url", "image_url": {"url": png_data_url(next(it))}})
            else:
                parts.append({"type": "text", "text": c["text"]})
        if turn["role"] == "assistant":
            out.append({"role": "assistant", "content": " ".join(p["text"] for p in parts if p["type"] == "text")})
        else:
            out.append({"role": turn["role"], "content": parts})
    return out


class RemoteVlmBackend:
    """A model served at ``spec.url`` (the server root; ``/v1/chat/completions`` is appended)."""

    def __init__(self, name: str, spec: ModelSpec, *, transport: httpx.BaseTransport | None = None) -> None:
        if not spec.url:
            raise ModelError(f"model {name!r}: remote_vlm needs a url")
        self.name = name
        self.spec = spec
        self.retries = int(spec.options.get("retries", 3))
        self.backoff_s = float(spec.options.get("backoff_s", 0.5))
        self.structured_output = bool(spec.options.get("structured_output", True))
        self.deadline_s = float(spec.options.get("deadline_s", 2 * spec.timeout_s))
        self.breaker_failures = int(spec.options.get("breaker_failures", 3))
        self.breaker_reset_s = float(spec.options.get("breaker_reset_s", 60.0))
        self._breaker = threading.Lock()
        self._failures_in_row = 0
        self._open_until = 0.0
        headers = {}
        if key := spec.options.get("api_key"):
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            base_url=spec.url.rstrip("/"),
            timeout=httpx.Timeout(spec.timeout_s, connect=min(10.0, spec.timeout_s)),
            headers=headers,
            transport=transport,
            limits=httpx.Limits(max_connections=spec.concurrency),
        )

    def close(self) -> None:
        self._client.close()

    def describe(self) -> ModelInfo:
        missing = []
        if not self.spec.sha256:
            missing.append("no sha256 of the served weights configured (findings need the weights hash)")
        elif problem := sha256_problem(self.spec.sha256):
            missing.append(problem + " of the served weights")
        digest = None if missing else (self.spec.sha256 or "").strip().lower().removeprefix("sha256:")
        if not self.spec.served_model:
            missing.append("no served_model name configured")
        return ModelInfo(
            name=self.name,
            backend="remote_vlm",
            family=self.spec.family,
            version=str(self.spec.options.get("version", self.spec.served_model or "remote")),
            weights_sha256=digest,
            modalities=tuple(self.spec.options.get("modalities", ("CR", "DX", "CT", "MR", "ECG"))),
            licence=self.spec.licence,
            location=self.spec.url,
            missing=tuple(missing),
        )

    def probe(self, *, request: bool = False) -> list[str]:
        """Problems reaching the server: ``GET /v1/models`` must list the served model; with ``request``, one
        one-token chat completion must answer 200 with text (no retries: a probe reports, it does not wait)."""
        try:
            r = self._client.get("/v1/models", timeout=min(10.0, self.spec.timeout_s))
        except httpx.HTTPError as exc:
            return [f"{self.spec.url}: server not reachable ({type(exc).__name__}); is it running, is the URL right?"]
        if r.status_code != 200:
            return [f"{self.spec.url}: GET /v1/models answered HTTP {r.status_code}; the server is not ready"]
        try:
            ids = [m.get("id") for m in r.json().get("data", [])]
        except (ValueError, AttributeError):
            return [f"{self.spec.url}: GET /v1/models gave no model list; is this an OpenAI-compatible server?"]
        if self.spec.served_model not in ids:
            return [f"{self.spec.url}: serves {ids}, not {self.spec.served_model!r} (check served_model)"]
        if not request:
            return []
        body = {
            "model": self.spec.served_model,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Reply with {}."}]}],
            "max_tokens": 1,
            "temperature": 0.0,
        }
        try:
            r = self._client.post("/v1/chat/completions", json=body, timeout=min(30.0, self.spec.timeout_s))
        except httpx.TimeoutException:
            return [f"{self.spec.url}: a one-token request timed out; the server is overloaded or hung"]
        except httpx.HTTPError as exc:
            return [f"{self.spec.url}: a one-token request failed ({type(exc).__name__})"]
        if r.status_code != 200:
            return [f"{self.spec.url}: a one-token request answered HTTP {r.status_code}; see the server's log"]
        try:
            r.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            return [f"{self.spec.url}: the answer to a one-token request is not a chat completion"]
        return []

    # ------------------------------------------------------------------ protocol

    def predict(self, batch: Sequence[ModelInput]) -> list[ModelOutput]:
        producer = self.describe().runnable_producer()
        with ThreadPoolExecutor(max_workers=self.spec.concurrency, thread_name_prefix=f"mmdx-{self.name}") as pool:
            return list(pool.map(lambda inp: self._one(inp, producer), batch))

    def _one(self, inp: ModelInput, producer: Any) -> ModelOutput:
        t0 = time.perf_counter()
        try:
            prompt = build_prompt(inp, self.spec.prompt_template, **prompt_options(self.spec.options))
        except ModelError as exc:
            return ModelOutput.failed(inp.study_instance_uid, producer, exc)
        prov = self._provenance(prompt)
        deadline = time.monotonic() + self.deadline_s
        try:
            text = self.complete(openai_messages(prompt.messages, prompt.images), deadline=deadline)
        except ModelError as exc:
            return ModelOutput.failed(inp.study_instance_uid, producer, exc, provenance=prov)
        repair_used = False
        try:
            draft = parse_draft(text)
        except ModelError as first:
            repair_used = True
            msgs = prompt.messages + repair_messages(text, first)
            try:
                text = self.complete(openai_messages(msgs, prompt.images), deadline=deadline)
                draft = parse_draft(text)
            except ModelError as exc:
                err = ModelError(
                    f"study {inp.study_instance_uid}: model {self.name!r} gave no valid draft after one repair: {exc}"
                )
                return ModelOutput.failed(
                    inp.study_instance_uid, producer, err, raw_text=text, provenance={**prov, "repair_used": "true"}
                )
        return ModelOutput(
            study_instance_uid=inp.study_instance_uid,
            producer=producer,
            findings=draft.to_findings(producer, coded=chest_labels_apply(inp.modality, inp.body_part)),
            sections=draft.to_sections(),
            raw_text=text,
            timings_s={"request": time.perf_counter() - t0},
            provenance={**prov, "repair_used": str(repair_used).lower()},
        )

    # ------------------------------------------------------------------ HTTP

    def request_body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.served_model,
            "messages": messages,
            "max_tokens": self.spec.max_new_tokens,
            "temperature": float(self.spec.options.get("temperature", 0.0)),
            "seed": int(self.spec.options.get("seed", 0)),
        }
        if self.structured_output:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "mmdx_draft", "schema": DRAFT_SCHEMA, "strict": True},
            }
        return body

    def _server_failed(self, failed: bool) -> None:
        with self._breaker:
            self._failures_in_row = self._failures_in_row + 1 if failed else 0
            if self._failures_in_row >= self.breaker_failures:
                self._open_until = time.monotonic() + self.breaker_reset_s

    def complete(self, messages: list[dict[str, Any]], *, deadline: float | None = None) -> str:
        """One chat completion with retries; the assistant's text, or ModelError saying what failed.

        ``deadline`` (``time.monotonic()`` value) bounds all attempts together.
        """
        with self._breaker:
            wait = self._open_until - time.monotonic()
        if wait > 0:
            raise ModelError(
                f"model {self.name!r} at {self.spec.url}: server unavailable ({self._failures_in_row} studies in a row "
                f"failed; not asked again for {wait:.0f} s)"
            )
        deadline = deadline if deadline is not None else time.monotonic() + self.deadline_s
        body = self.request_body(messages)
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(max(0.0, min(self.backoff_s * 2 ** (attempt - 1), deadline - time.monotonic())))
            left = deadline - time.monotonic()
            if left <= 0:
                last += f"; per-study deadline of {self.deadline_s:g} s reached"
                break
            try:
                r = self._client.post("/v1/chat/completions", json=body, timeout=min(self.spec.timeout_s, left))
            except httpx.TimeoutException:
                if left < self.spec.timeout_s:  # cut short by the deadline
                    last = (
                        "timed out" if attempt == 0 else last
                    ) + f"; per-study deadline of {self.deadline_s:g} s reached"
                    break
                last = f"timed out after {self.spec.timeout_s:g} s"
                continue
            except httpx.HTTPError as exc:  # connection refused/reset, protocol errors
                last = f"request failed ({type(exc).__name__})"
                continue
            if r.status_code in _RETRY_STATUS:
                last = f"HTTP {r.status_code}"
                continue
            if r.status_code != 200:
                raise ModelError(f"model {self.name!r} at {self.spec.url}: HTTP {r.status_code}: {r.text[:200]}")
            try:
                choice = r.json()["choices"][0]
                content = choice["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise ModelError(f"model {self.name!r} at {self.spec.url}: response is not a chat completion") from None
            if not isinstance(content, str):
                raise ModelError(f"model {self.name!r}: completion has no text content")
            self._server_failed(False)
            return content
        self._server_failed(True)
        tries = f"{attempt + 1} attempt" + ("s" if attempt else "")
        raise ModelError(f"model {self.name!r} at {self.spec.url}: gave up after {tries}: {last}")

    def _provenance(self, prompt: Prompt) -> dict[str, str]:
        return {
            "prompt_template": prompt.template_name,
            "prompt_sha256": prompt.sha256,
            "decoding": json.dumps(
                {
                    "temperature": float(self.spec.options.get("temperature", 0.0)),
                    "max_tokens": self.spec.max_new_tokens,
                },
                sort_keys=True,
            ),
            "constrained": "server json_schema" if self.structured_output else "parse+repair",
            "endpoint": f"{self.spec.url}/v1/chat/completions",
        }
