"""Run a reader over one untrusted input in a child process with a memory limit and a time limit.

A parser for a binary or XML format is a large attack surface: a crafted
header can make it allocate terabytes, loop for minutes or raise anything.
Declared sizes are checked where the readers know them, but the class of bug
is closed here: the child's address space is capped (``RLIMIT_AS``,
``limits.parse_memory_bytes``) and the call is abandoned after
``limits.parse_timeout_s`` (the child is killed).  Whatever happens becomes
an :class:`InputRefused` with a PHI-free reason for the quarantine; the run
goes on with the next input.

One child serves every call (started on first use through a ``forkserver``,
so it never inherits this process's threads or open database connections);
a child that was killed or crashed is replaced on the next call.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import multiprocessing
import resource
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from core.errors import MmdxError

T = TypeVar("T")

#: Modules the fork server imports once, so that each child starts with the readers loaded.
_PRELOAD = ["ecg.readers", "ecg.readers.members", "app.ecg_studies"]


class InputRefused(MmdxError):
    """An input could not be read within the limits, or its reader failed; the message is the reason."""


def _limit_memory(memory_bytes: int) -> None:
    """In the child: cap the address space (a too-big allocation is a MemoryError, not a dead machine)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class IsolatedRunner:
    """Calls ``fn(*args)`` in the child; one call at a time (calls from several threads queue)."""

    def __init__(self, *, timeout_s: float, memory_bytes: int) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=context, initializer=_limit_memory, initargs=(self.memory_bytes,)
            )
        return self._pool

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the child; its MmdxError passes through, anything else is :class:`InputRefused`.

        ``fn`` must be a module-level function (it is pickled by name).
        """
        with self._lock:
            future = self._executor().submit(fn, *args)
            try:
                return future.result(timeout=self.timeout_s)
            except concurrent.futures.TimeoutError:
                self._kill()
                raise InputRefused(f"reading took longer than limits.parse_timeout_s ({self.timeout_s:g} s)") from None
            except BrokenProcessPool:
                self._kill()
                raise InputRefused("the reader's process died (crashed or was killed)") from None
            except MmdxError:
                raise
            except MemoryError:
                raise InputRefused(
                    f"reading needs more memory than limits.parse_memory_bytes ({self.memory_bytes})"
                ) from None
            except Exception as exc:  # the class only: a parser's message may quote the input
                raise InputRefused(f"the reader failed ({type(exc).__name__})") from None

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):  # no public way to stop a running call
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the child (also done at exit)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_RUNNERS: dict[tuple[float, int], IsolatedRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner(timeout_s: float, memory_bytes: int) -> IsolatedRunner:
    """The process-wide runner for these limits (its child is reused across runs of one process)."""
    with _RUNNERS_LOCK:
        found = _RUNNERS.get((timeout_s, memory_bytes))
        if found is None:
            found = _RUNNERS[(timeout_s, memory_bytes)] = IsolatedRunner(timeout_s=timeout_s, memory_bytes=memory_bytes)
        return found


@atexit.register
def _close_all() -> None:
    for found in list(_RUNNERS.values()):
        found.close()
