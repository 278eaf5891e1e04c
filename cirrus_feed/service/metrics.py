"""Prometheus metrics of one ``serve`` process, in a registry of its own (never the global
one: two apps in one process, as in the tests, must not share counts).

Counted as they happen: records per stage and outcome (`observe_stage`, told by the workers),
feed runs and their counts per feeder (`observe_feed`), scheduler lag and events. Read from
the backends at each scrape (`_BackendCollector`): queue depth, age of the oldest message,
dead letters, and payload states per ``collections_workflow`` (from the status page's cached
scan, so a scrape never costs a scan of its own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cirrus_feed.backends.base import PayloadQueue
from cirrus_feed.errors import CirrusFeedError
from cirrus_feed.model.reports import StageReport

if TYPE_CHECKING:
    from cirrus_feed.feeding.runner import FeedResult
    from cirrus_feed.service.state_summary import StateSummary

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: an inline workflow or a batch of 10 payloads takes from milliseconds to minutes.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LAG_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


class ServiceMetrics:
    """The metrics of one service; `render` is the ``/metrics`` body."""

    def __init__(
        self,
        queues: dict[str, PayloadQueue] | None = None,
        summary: Callable[[], StateSummary | None] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.payloads = Counter(
            "cirrus_feed_payloads",
            "Records handled by a pipeline stage, by outcome.",
            ["stage", "outcome"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "cirrus_feed_stage_seconds",
            "Duration of one stage call (one batch): process, workflow (inline), update_state.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.feed_runs = Counter(
            "cirrus_feed_feed_runs",
            "Feed runs, by feeder and status.",
            ["feeder", "status"],
            registry=r,
        )
        self.feed_records = Counter(
            "cirrus_feed_feed_records",
            "What feed runs counted (seen, enqueued, duplicate, filtered, invalid, failed).",
            ["feeder", "count"],
            registry=r,
        )
        self.feed_seconds = Histogram(
            "cirrus_feed_feed_run_seconds",
            "Duration of a feed run.",
            ["feeder"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.feed_finished = Gauge(
            "cirrus_feed_feed_last_finished_timestamp_seconds",
            "When the feeder's last run in this process ended (Unix time).",
            ["feeder"],
            registry=r,
        )
        self.scheduler_lag = Histogram(
            "cirrus_feed_scheduler_lag_seconds",
            "How late a scheduled job started after its due time (jitter included).",
            ["job"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.scheduler_events = Counter(
            "cirrus_feed_scheduler_events",
            "Scheduler trouble: a job raised (error), missed its grace time (missed), or was "
            "skipped because its previous run still went on (max_instances).",
            ["kind"],
            registry=r,
        )
        r.register(_BackendCollector(queues or {}, summary or (lambda: None)))

    def observe_stage(self, stage: str, report: StageReport, seconds: float) -> None:
        for outcome, count in report.counts.items():
            self.payloads.labels(stage, outcome).inc(count)
        self.stage_seconds.labels(stage).observe(seconds)

    def observe_feed(self, name: str, result: FeedResult, seconds: float, finished: float) -> None:
        self.feed_runs.labels(name, result.run.status).inc()
        for count, value in result.counts.items():
            if value:
                self.feed_records.labels(name, count).inc(value)
        self.feed_seconds.labels(name).observe(seconds)
        self.feed_finished.labels(name).set(finished)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _BackendCollector(Collector):
    """Gauges read at scrape time; a backend that does not answer is ``cirrus_feed_up 0``."""

    def __init__(
        self, queues: dict[str, PayloadQueue], summary: Callable[[], StateSummary | None]
    ) -> None:
        self.queues = queues
        self.summary = summary

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "cirrus_feed_up", "1 when the part answered this scrape.", labels=["part"]
        )
        yield from self._queues(up)
        yield from self._states(up)
        yield up

    def _queues(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "cirrus_feed_queue_messages",
            "Messages on a queue: visible (waiting) or in_flight (received, not deleted).",
            labels=["queue", "kind"],
        )
        age = GaugeMetricFamily(
            "cirrus_feed_queue_oldest_message_age_seconds",
            "Age of the oldest message on the queue (when the backend knows it).",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "cirrus_feed_dead_letters",
            "Messages in the queue's dead-letter queue (table locally).",
            labels=["queue"],
        )
        for name, queue in self.queues.items():
            try:
                depth = queue.depth()
            except (CirrusFeedError, OSError) as exc:
                log.warning("metrics: queue %s did not answer: %s", name, exc)
                up.add_metric([f"queue:{name}"], 0)
                continue
            up.add_metric([f"queue:{name}"], 1)
            messages.add_metric([name, "visible"], depth.visible)
            messages.add_metric([name, "in_flight"], depth.in_flight)
            if depth.oldest_age is not None:
                age.add_metric([name], depth.oldest_age)
            if depth.dead is not None:
                dead.add_metric([name], depth.dead)
        yield from (messages, age, dead)

    def _states(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "cirrus_feed_payload_states",
            "Payloads in the state DB by collections_workflow and state (from the status "
            "scan; see cirrus_feed_payload_states_scan_truncated).",
            labels=["collections_workflow", "state"],
        )
        truncated = GaugeMetricFamily(
            "cirrus_feed_payload_states_scan_truncated",
            "1 when the state scan stopped at http.status_scan_limit records.",
        )
        try:
            summary = self.summary()
        except (CirrusFeedError, OSError) as exc:
            log.warning("metrics: state DB did not answer: %s", exc)
            up.add_metric(["state"], 0)
            return
        if summary is None:
            return
        up.add_metric(["state"], 1)
        for workflow, counts in sorted(summary.states.items()):
            for state, count in sorted(counts.items()):
                states.add_metric([workflow, state], count)
        truncated.add_metric([], int(summary.truncated))
        yield from (states, truncated)
