"""``mmdx serve`` in one process: the SCP, analysis workers and the outbox sender beside the HTTP service.

A small hospital runs one command; a larger site runs ``mmdx scp``, ``mmdx
worker`` and ``mmdx send`` as separate processes and sets ``service.run_scp:
false``, ``service.workers: 0``, ``service.run_sender: false``.  Each part runs
in its own thread; one that crashes is logged and restarted after a short
back-off (doubling to a minute), and ``/readyz`` reports each part's state
through :attr:`Supervisor.components`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.context import AppContext
from app.worker import run_forever
from ingest.orders.mllp import MllpServer
from pacs_bridge.loop import OutboxLoop

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
RETENTION_EVERY_S = 3600.0  #: how often mmdx serve applies the retention policy


@dataclass(frozen=True, slots=True)
class Parts:
    """What to run beside HTTP (from ``service`` in the config, CLI flags override)."""

    scp: bool
    workers: int
    sender: bool


class Supervisor:
    """Starts, watches and stops the parts; ``components`` maps each part to whether it is running now."""

    def __init__(self, ctx: AppContext, parts: Parts) -> None:
        self.ctx = ctx
        self.parts = parts
        self.stop_event = threading.Event()
        self.components: dict[str, bool] = {}
        self._threads: list[threading.Thread] = []
        self._server: object | None = None
        self._listener: MllpServer | None = None
        self.scp_address: tuple[str, int] | None = None

    def _keep_running(self, name: str, body: Callable[[], None]) -> None:
        """Run ``body`` until stopped; restart it with back-off when it raises or returns early."""
        backoff = 1.0
        while not self.stop_event.is_set():
            self.components[name] = True
            try:
                body()
            except Exception:
                log.exception("%s crashed; restarting in %.0f s", name, backoff)
            self.components[name] = False
            if self.stop_event.wait(backoff):
                break
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _spawn(self, name: str, body: Callable[[], None]) -> None:
        self.components[name] = False
        thread = threading.Thread(target=self._keep_running, args=(name, body), name=f"mmdx-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> None:
        """Start the configured parts (the SCP first: a port in use stops start-up with the error)."""
        ctx = self.ctx
        if self.parts.scp:
            from ingest.scp import StorageServer

            server = StorageServer(ctx.settings, ctx.db)
            server.start()
            self._server = server
            self.scp_address = (server.host, server.port)
            self.components["scp"] = True
            log.info("SCP %s listening on %s:%d", server.ae_title, server.host, server.port)
        for i in range(self.parts.workers):
            self._spawn(f"worker-{i + 1}", lambda: self._work())
        storage = ctx.settings.storage
        if storage.retention_days is not None or storage.output_retention_days is not None:
            self._spawn("retention", self._retain)
        if self.parts.sender and ctx.settings.destinations:
            self._spawn("sender", lambda: OutboxLoop(ctx.db, ctx.settings, ctx.clock).run_forever(self.stop_event))
        if ctx.settings.orders.run_listener:  # HL7 orders beside the service (orders.mllp_host/mllp_port)
            from app.orders import hl7_handler

            listener = MllpServer((ctx.settings.orders.mllp_host, ctx.settings.orders.mllp_port), hl7_handler(ctx))
            listener.start()
            self._listener = listener
            self.components["orders-mllp"] = True
            log.info("HL7 order listener on %s:%d", ctx.settings.orders.mllp_host, listener.port)

    def _retain(self) -> None:
        from app.retention import apply_retention

        while not self.stop_event.is_set():
            apply_retention(self.ctx)
            self.stop_event.wait(RETENTION_EVERY_S)

    def _work(self) -> None:
        handled = run_forever(self.ctx, stop=self.stop_event, send=False)
        log.info("worker stopped after %d job(s)", handled)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every part: threads finish their current job or pass, then the SCP closes."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self.components["scp"] = False
        if self._listener is not None:
            self._listener.shutdown()
            self._listener.server_close()
            self.components["orders-mllp"] = False


class DropQueryString(logging.Filter):
    """Access log lines without the query string: a search (``?patient_id=...``) must not put PHI in a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:  # uvicorn: client, method, path, version, status
            args = list(record.args)
            args[2] = str(args[2]).split("?", 1)[0]
            record.args = tuple(args)
        return True


def run_service(ctx: AppContext, *, host: str, port: int, parts: Parts) -> None:
    """HTTP in the foreground (uvicorn handles SIGINT/SIGTERM), the parts beside it; all stop together."""
    import uvicorn

    from app.service import create_app, settle_heap

    supervisor = Supervisor(ctx, parts)
    # uvicorn re-raises SIGINT/SIGTERM to the handlers found at its start once it has shut down: ours only sets
    # the stop event, so the parts below still stop cleanly (SCP closed, the current job finished)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop_event.set())
    supervisor.start()
    logging.getLogger("uvicorn.access").addFilter(DropQueryString())
    try:
        app = create_app(ctx, components=supervisor.components)
        settle_heap()
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        supervisor.stop()
