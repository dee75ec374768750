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


class RayWorker:
    """A Ray actor: one worker process that keeps the app context, and so its loaded models, across items.

    Made remote with the run's resource request (``batch.ray_gpus_per_worker``): Ray places each actor on a
    node with that share of a GPU free and sets ``CUDA_VISIBLE_DEVICES`` for it, so a model configured with
    ``device: cuda`` loads on the GPU Ray gave it, once per actor.
    """

    def __init__(self, config: WorkConfig) -> None:
        init_worker(config)
        self._config = config

    def run(self, task: Task) -> Outcome:
        return run_task(self._config, task)

    def gpu_ids(self) -> list[Any]:
        """The GPUs Ray assigned to this actor (empty: CPU only)."""
        import ray

        return list(ray.get_gpu_ids())


def ray_workers(cluster_gpus: float, workers: int, gpus_per_worker: float) -> int:
    """How many actors to start: ``workers``, or as many as the cluster's GPUs hold; ConfigError if none fits.

    Ray would keep an actor whose request no node can meet pending for ever: the run would hang.
    """
    if gpus_per_worker <= 0:
        return workers
    fits = int(cluster_gpus / gpus_per_worker + 1e-9)
    if fits < 1:
        raise ConfigError(
            f"batch.ray_gpus_per_worker: each worker asks for {gpus_per_worker:g} GPU, the Ray cluster has "
            f"{cluster_gpus:g}; set it to 0 to run on CPUs"
        )
    if fits < workers:
        log.warning("the Ray cluster's %g GPU(s) hold %d of %d workers: %d run", cluster_gpus, fits, workers, fits)
    return min(workers, fits)


def run_ray(
    tasks: Iterable[Task],
    config: WorkConfig,
    workers: int,
    on_outcome: OnOutcome,
    address: str | None,
    *,
    in_flight: int = 2,
    gpus_per_worker: float = 0.0,
) -> list[list[Any]]:
    """Run ``tasks`` on a pool of :class:`RayWorker` actors (one CPU and ``gpus_per_worker`` GPU each).

    ``address`` is a running cluster (``ray://host:10001`` or ``host:6379``); None starts a local one for the
    duration.  Workers read the inputs and write the outputs through paths every node must see (shared
    storage).  Returns the GPU ids each actor was given.
    """
    try:
        import ray
        from ray.util import ActorPool
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
        resources: Any = ray.cluster_resources
        count = ray_workers(float(resources().get("GPU", 0.0)), workers, gpus_per_worker)
        actor: Any = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0)(RayWorker)
        config_ref = ray.put(config)
        actors = [actor.remote(config_ref) for _ in range(count)]
        gpus: list[list[Any]] = ray.get([a.gpu_ids.remote() for a in actors])
        pool: Any = ActorPool(actors)
        it = iter(tasks)
        for task in _take(it, in_flight * count):
            pool.submit(lambda a, t: a.run.remote(t), task)
        while pool.has_next():
            on_outcome(pool.get_next_unordered())
            for task in _take(it, 1):
                pool.submit(lambda a, t: a.run.remote(t), task)
        return gpus
    finally:
        if started_here:
            ray.shutdown()
