"""A small OpenAI-compatible chat-completions server of our own, for testing the remote backend.

It listens on a free loopback port in a thread and answers ``POST
/v1/chat/completions`` and ``GET /v1/models``.  In ``model`` mode it decodes
the base64 images and runs a tiny local VLM (through ``models.local_vlm``) on
the conversation; other modes return a valid draft, fail a number of times
first, answer slowly, or answer garbage once then valid JSON.  Every request
body is kept for assertions, with the peak number of requests in flight.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

VALID_DRAFT = {
    "findings": [
        {
            "label": "effusion",
            "text": "Small left pleural effusion",
            "site": "pleura",
            "laterality": "left",
            "presence": "present",
            "certainty": 0.8,
        },
        {"label": "pneumothorax", "text": "No pneumothorax", "presence": "absent"},
    ],
    "impression": "Small left pleural effusion.",
    "recommendation": "Follow-up radiograph after treatment.",
}


@dataclass
class ServerState:
    mode: str = "valid"  #: model | valid | flaky | slow | garbage_once | http400 | http500
    fail_first: int = 0
    delay_s: float = 0.0
    answer: str = json.dumps(VALID_DRAFT)
    backend: Any = None  #: a loaded LocalVlmBackend for ``model`` mode
    served_model: str = "tiny"
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _decode_image(url: str) -> np.ndarray:
    from PIL import Image

    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def _answer_with_model(state: ServerState, messages: list[dict[str, Any]]) -> str:
    ours, images = [], []
    for m in messages:
        if isinstance(m["content"], str):
            ours.append({"role": m["role"], "content": [{"type": "text", "text": m["content"]}]})
            continue
        parts = []
        for p in m["content"]:
            if p["type"] == "image_url":
                images.append(_decode_image(p["image_url"]["url"]))
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": p["text"]})
        ours.append({"role": m["role"], "content": parts})
    be = state.backend
    with state.lock:  # one generation at a time, as one GPU would
        return str(be._generate([be._conversation(ours, images)])[0])


def make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": state.served_model, "object": "model"}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": "not found"})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                n = len(state.requests)
                state.in_flight += 1
                state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            try:
                if state.delay_s:
                    time.sleep(state.delay_s)
                if state.mode == "flaky" and n <= state.fail_first:
                    self._send(503, {"error": "overloaded"})
                    return
                if state.mode == "http400":
                    self._send(400, {"error": "bad request"})
                    return
                if state.mode == "http500":
                    self._send(500, {"error": "internal server error"})
                    return
                if state.mode == "model":
                    text = _answer_with_model(state, body["messages"])
                elif state.mode == "garbage_once" and n == 1:
                    text = "The lungs look fine to me."
                else:
                    text = state.answer
                self._send(
                    200,
                    {
                        "id": f"cmpl-{n}",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                    },
                )
            finally:
                with state.lock:
                    state.in_flight -= 1

    return Handler


class OpenAIServer:
    """Context manager: start on a free port, stop (shutdown + join) on exit."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="openai-test-server", daemon=True)

    @property
    def url(self) -> str:
        port = self.httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> OpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
