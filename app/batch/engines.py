"""Where the items run: a local process pool, or a Ray cluster (``--engine ray --address``).

Both engines call the same :func:`app.batch.work.run_task` and hand each
:class:`Outcome` back to the parent as it finishes, which stores it; a bounded
number of items is in flight (``batch.in_flight_per_worker`` per worker), so the parent's memory stays
flat however large the run, and decoding of the next item overlaps the
analysis of the others.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from app.batch.work import Outcome, Task, WorkConfig, init_worker, run_task
from core.errors import ConfigError, MmdxError

log = logging.getLogger(__name__)

OnOutcome = Callable[[Outcome], None]
#: How often a broken local pool is replaced before the run stops (its items stay pending for --resume).
MAX_POOL_RESTARTS = 3


def run_local(
    tasks: Iterable[Task], config: WorkConfig, workers: int, on_outcome: OnOutcome, *, in_flight: int = 2
) -> None:
    """Run ``tasks`` on ``workers`` processes (spawned: no inherited database connections or threads).

    A worker that dies (killed, out of memory) breaks the pool: a new pool takes
    over the items that were in flight, at most :data:`MAX_POOL_RESTARTS` times.
    """
    if workers < 1:
        raise ConfigError(f"--workers: expected at least 1, got {workers}")
    it = iter(tasks)
    retry: list[Task] = []
    for _attempt in range(MAX_POOL_RESTARTS + 1):
        retry = _pool_round(it, retry, config, workers, on_outcome, in_flight * workers)
        if not retry:
            return
        log.warning("a batch worker process died; %d item(s) in flight are run again", len(retry))
    raise MmdxError(f"batch workers died {MAX_POOL_RESTARTS + 1} times; {len(retry)} item(s) left pending")


def _pool_round(
    it: Iterator[Task], first: list[Task], config: WorkConfig, workers: int, on_outcome: OnOutcome, queued: int
) -> list[Task]:
    """Run until ``it`` is exhausted; the tasks in flight when the pool broke, else []."""
    mp = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=init_worker, initargs=(config,)) as pool:
        pending: dict[Future[Outcome], Task] = {}
        for task in [*first, *_take(it, max(queued - len(first), 0))]:
            pending[pool.submit(run_task, config, task)] = task
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task = pending.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    return [task, *pending.values()]
                on_outcome(outcome)
            for task in _take(it, len(done)):
                try:
                    pending[pool.submit(run_task, config, task)] = task
                except BrokenProcessPool:
                    return [task, *pending.values()]
    return []


def _take(it: Iterator[Task], n: int) -> list[Task]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_ray(
    tasks: Iterable[Task],
    config: WorkConfig,
    workers: int,
    on_outcome: OnOutcome,
    address: str | None,
    *,
    in_flight: int = 2,
) -> None:
    """Run ``tasks`` as Ray tasks (one CPU each, ``workers`` in flight per round, twice that queued).

    ``address`` is a running cluster (``ray://host:10001`` or ``host:6379``);
    None starts a local one for the duration. Workers read the inputs and write
    the outputs through paths every node must see (shared storage).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs the optional extra: pip install 'mmdx[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        init: Any = ray.init
        init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            **({} if address else {"num_cpus": workers}),
        )
    try:
        remote: Any = ray.remote(num_cpus=1, max_retries=0)(run_task)
        config_ref = ray.put(config)
        pending: list[Any] = []
        it = iter(tasks)
        for task in _take(it, in_flight * workers):
            pending.append(remote.remote(config_ref, task))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                on_outcome(ray.get(ref))
            for task in _take(it, len(done)):
                pending.append(remote.remote(config_ref, task))
    finally:
        if started_here:
            ray.shutdown()
