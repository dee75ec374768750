"""``/metrics`` for Prometheus: what was received and analysed, stage latencies, outbox depth, errors by kind.

Counts come from the database at scrape time (so every process writing to
it, SCP, workers, senders, is counted, and a restart loses nothing); the
HTTP latency histogram is this process's own.  Stage latencies are
histograms over the last day: ``queue`` (job created -> started),
``analysis`` (started -> finished) and ``delivery`` (outbox row created ->
delivered).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.context import AppContext
from store.schema import InstanceRow, JobRow, JobState, OutboxRow, OutboxState, QuarantineRow, StudyRow

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
WINDOW = timedelta(days=1)


def _histogram(name: str, doc: str, samples: dict[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["stage"])
    for stage, values in samples.items():
        cumulative = [(str(b), float(sum(1 for v in values if v <= b))) for b in BUCKETS]
        cumulative.append(("+Inf", float(len(values))))
        family.add_metric([stage], cumulative, sum_value=float(sum(values)))
    return family


def _seconds(pairs: Iterable[tuple[datetime | None, datetime | None]]) -> list[float]:
    return [max(0.0, (b - a).total_seconds()) for a, b in pairs if a is not None and b is not None]


class StoreCollector(Collector):
    """Reads the counters from the database on each scrape."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        since = ctx.clock.now() - WINDOW
        with ctx.db.session(readonly=True) as session:
            instances = session.scalar(select(func.count(InstanceRow.id))) or 0
            studies = session.scalar(select(func.count(StudyRow.id))) or 0
            quarantined = session.scalar(select(func.count(QuarantineRow.id))) or 0
            jobs = dict(session.execute(select(JobRow.state, func.count(JobRow.id)).group_by(JobRow.state)).all())
            depth = dict(
                session.execute(select(OutboxRow.state, func.count(OutboxRow.id)).group_by(OutboxRow.state)).all()
            )
            job_times = session.execute(
                select(JobRow.created_at, JobRow.started_at, JobRow.finished_at).where(
                    JobRow.state == JobState.DONE, JobRow.finished_at >= since
                )
            ).all()
            delivered = session.execute(
                select(OutboxRow.created_at, OutboxRow.updated_at).where(
                    OutboxRow.state == OutboxState.DELIVERED, OutboxRow.updated_at >= since
                )
            ).all()
        received = CounterMetricFamily("mmdx_received_objects", "Objects received and indexed (all time)")
        received.add_metric([], float(instances))
        yield received
        yield GaugeMetricFamily("mmdx_studies", "Studies in the index", value=float(studies))
        analysed = CounterMetricFamily("mmdx_analysed_studies", "Analysis jobs finished (all time)")
        analysed.add_metric([], float(jobs.get(JobState.DONE, 0)))
        yield analysed
        job_gauge = GaugeMetricFamily("mmdx_jobs", "Analysis jobs by state", labels=["state"])
        for state in JobState:
            job_gauge.add_metric([state.value], float(jobs.get(state, 0)))
        yield job_gauge
        outbox_gauge = GaugeMetricFamily("mmdx_outbox_items", "Outbox depth by state", labels=["state"])
        for ostate in OutboxState:
            outbox_gauge.add_metric([ostate.value], float(depth.get(ostate, 0)))
        yield outbox_gauge
        errors = CounterMetricFamily("mmdx_errors", "Errors by kind (all time)", labels=["kind"])
        errors.add_metric(["quarantined_input"], float(quarantined))
        errors.add_metric(["analysis_failed"], float(jobs.get(JobState.FAILED, 0)))
        errors.add_metric(["delivery_dead"], float(depth.get(OutboxState.DEAD, 0)))
        yield errors
        yield _histogram(
            "mmdx_stage_seconds",
            "Per-stage latency over the last day",
            {
                "queue": _seconds((c, s) for c, s, _ in job_times),
                "analysis": _seconds((s, f) for _, s, f in job_times),
                "delivery": _seconds((c, u) for c, u in delivered),
            },
        )


class Metrics:
    """The app's registry: the store collector plus the HTTP request latency histogram."""

    def __init__(self, ctx: AppContext) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(ctx))
        self.http = Histogram(
            "mmdx_http_request_seconds",
            "HTTP request latency by route and status class",
            ["route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpLatency:
    """Pure ASGI middleware observing each request's latency by route template and status class."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", None) or "unmatched"
            self.histogram.labels(path, f"{status[0] // 100}xx").observe(time.perf_counter() - start)
