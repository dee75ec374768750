"""The audit rows of API reads, written by one thread in batches (group commit) while the requests wait.

Every report view leaves an audit row, committed before its answer is sent.  Written one by one from the
thread pool, each view took the process's audit lock in turn, and under load a thread holding it waited for
the GIL: the views queued behind each other (p99 of hundreds of ms).  Here a request hands its row to the
writer thread and awaits it on the event loop; the writer commits everything pending in one transaction
(:func:`store.audit.append_many`), then wakes each request (or raises the error in each).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import datetime
from typing import Any

from store import audit
from store.db import Database

#: The writer thread ends after this long without work (a new row starts it again).
IDLE_S = 5.0


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():  # the request was cancelled (client gone); its row is written all the same
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


class ViewLog:
    """Group-committing audit writer of one app (``app.state.view_log``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None], asyncio.AbstractEventLoop]] = []
        self._cond = threading.Condition()
        self._running = False

    async def write(
        self, *, actor: str, action: str, study_uid: str | None, detail: str, at: datetime, origin: str | None
    ) -> None:
        """Append one entry; returns once it is committed (raises what the store raised)."""
        entry = {"actor": actor, "action": action, "study_uid": study_uid, "detail": detail, "at": at}
        entry["origin"] = origin
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._pending.append((entry, fut, loop))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="mmdx-view-log", daemon=True).start()
            self._cond.notify()
        await asyncio.shield(fut)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.wait(IDLE_S)
                if not self._pending:
                    self._running = False
                    return
                batch, self._pending = self._pending, []
            error: BaseException | None = None
            try:
                audit.append_many(self.db, [entry for entry, _, _ in batch])
            except Exception as exc:
                error = exc
            for _, fut, loop in batch:
                with contextlib.suppress(RuntimeError):  # that loop is closed (a test client gone): nobody waits
                    loop.call_soon_threadsafe(_settle, fut, error)
