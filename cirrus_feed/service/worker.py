"""Local workers: drive payloads from the queue through inline workflows to a final state.

One loop iteration = receive a batch (up to `RECEIVES_PER_STEP` receives) → process stage →
delete what was handled, then run pending inline executions → update-state → mark the
executions whose outcome was recorded complete, in one write. An execution is
marked complete only after its outcome is recorded, so a crash re-runs it (at least once,
as Step Functions retries would); the state DB's compare-and-set keeps the result single.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cirrus_feed.app import App
from cirrus_feed.backends.base import LocalExecutor, PayloadQueue, QueueMessage
from cirrus_feed.errors import CirrusFeedError, ConfigError
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.pipeline.announcer import drain_outbox
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

RETRY_MIN_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
# Receives (of ``process.batch_size`` each) gathered into one batch of the local loop.
RECEIVES_PER_STEP = 5


@dataclass
class StageTally:
    """Counts of one stage's outcomes; per-record results only when asked for (a service
    runs for weeks: they would pile up)."""

    counts: Counter[str] = field(default_factory=Counter)
    results: list[RecordResult] | None = None

    def add(self, report: StageReport) -> None:
        self.counts.update(report.counts)
        if self.results is not None:
            self.results.extend(report.results)

    @property
    def ok(self) -> bool:
        return not (self.counts[Outcome.FAILED.value] or self.counts[Outcome.INVALID.value])


class StageObserver(Protocol):
    """Told of every stage call a worker makes (`cirrus_feed.service.metrics`)."""

    def observe_stage(self, stage: str, report: StageReport, seconds: float) -> None: ...


class Pulse:
    """When a worker last finished a loop (clock's monotonic seconds), for ``/healthz``; and
    who hears of its stage calls."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, observer: StageObserver | None = None):
        self.clock = clock
        self.observer = observer
        self.last_beat = clock.monotonic()

    def timed(self, stage: str, started: float, report: StageReport) -> StageReport:
        if self.observer is not None:
            self.observer.observe_stage(stage, report, self.clock.monotonic() - started)
        return report

    def beat(self) -> None:
        self.last_beat = self.clock.monotonic()


class WorkTotals:
    """What a worker (or several) did; thread-safe to add to."""

    def __init__(self, *, keep_results: bool = False) -> None:
        self.process = StageTally(results=[] if keep_results else None)
        self.update = StageTally(results=[] if keep_results else None)
        self.lock = threading.Lock()
        self.crashed = False  # a worker ended with an error (`process` exits 1)

    def add(self, process: StageReport, update: StageReport) -> None:
        with self.lock:
            self.process.add(process)
            self.update.add(update)


def as_sqs_event(messages: Sequence[QueueMessage]) -> dict[str, Any]:
    """Queue messages in the SQS Lambda event shape, so one normaliser reads both."""
    return {
        "Records": [
            {
                "messageId": m.message_id,
                "receiptHandle": m.receipt,
                "body": m.body,
                "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": str(m.receive_count)},
            }
            for m in messages
        ]
    }


def settle(queue: PayloadQueue, messages: Sequence[QueueMessage], report: StageReport) -> None:
    """Delete the messages that did not fail; note why the others failed (their reason goes
    with them to the dead-letter queue once they run out of receives)."""
    failed: dict[str, str] = {}
    for result in report.results:
        if result.outcome is Outcome.FAILED and result.message_id:
            failed.setdefault(result.message_id, result.reason or "failed")
    queue.delete([m.receipt for m in messages if m.message_id not in failed])
    if failed:
        queue.record_failures(
            [(m.receipt, failed[m.message_id]) for m in messages if m.message_id in failed]
        )


class LocalWorker:
    """Runs the whole local loop; several may share the same files (threads or processes)."""

    def __init__(self, app: App) -> None:
        runner = app.backends.runner
        if not isinstance(runner, LocalExecutor):
            raise ConfigError("local workers need the local backend (inline workflows)")
        self.app = app
        self.runner = runner
        self.batch_size = app.settings.process.batch_size
        self.wait_seconds = app.settings.process.wait_seconds
        self.pulse = Pulse(app.clock)

    def step(self, *, wait: bool = False) -> tuple[StageReport, StageReport]:
        """One batch from the queue and the executions it (or anyone) left pending, after
        announcing what a crashed run left in the outbox."""
        drain_outbox(self.app.backends, self.app.clock)
        queue = self.app.backends.queue
        messages = self.receive(queue, wait=wait)
        processed = StageReport()
        if messages:
            started = self.pulse.clock.monotonic()
            processed = self.app.processor.process(normalize(as_sqs_event(messages)))
            self.pulse.timed("process", started, processed)
            settle(queue, messages, processed)
        updated = self.run_pending(self.batch_size * RECEIVES_PER_STEP)
        self.pulse.beat()
        return processed, updated

    def receive(self, queue: PayloadQueue, *, wait: bool) -> list[QueueMessage]:
        """Up to `RECEIVES_PER_STEP` receives of ``batch_size``, as one batch: the stages
        write once per batch, so a bigger one costs less per payload. Only the first waits;
        a short receive means the queue is drained for now."""
        messages = queue.receive(self.batch_size, wait_seconds=self.wait_seconds if wait else 0)
        for _ in range(RECEIVES_PER_STEP - 1):
            if len(messages) < self.batch_size:
                break
            more = queue.receive(self.batch_size)
            if not more:
                break
            messages += more
        return messages

    def run_pending(self, max_count: int = 10) -> StageReport:
        """Run the due executions, ``max_count`` at a time: execute, update-state, then mark
        complete (in one write) those whose outcome was recorded."""
        report = StageReport()
        while pending := self.runner.claim_pending(max_count):
            started = self.pulse.clock.monotonic()
            outcomes = [self.runner.execute(p) for p in pending]
            self.pulse.timed("workflow", started, StageReport())
            started = self.pulse.clock.monotonic()
            updated = self.pulse.timed("update_state", started, self.app.updater.update(outcomes))
            self.runner.complete_many(
                [
                    outcome
                    for outcome, result in zip(outcomes, updated.results, strict=True)
                    if result.outcome is not Outcome.FAILED
                ]
            )
            report.extend(updated)
            if len(pending) < max_count:
                break  # the rest is due later (or leased by another worker)
        return report

    def drain(self, totals: WorkTotals, stop: threading.Event | None = None) -> None:
        """Work until the queue is empty and nothing is pending (``process --once``), or
        until ``stop`` is set."""
        while stop is None or not stop.is_set():
            processed, updated = self.step()
            totals.add(processed, updated)
            if not processed.results and not updated.results:
                return

    def run_forever(self, stop: threading.Event, totals: WorkTotals) -> None:
        """Work until ``stop``; a retryable backend error (throttling, a busy database) waits
        and tries again instead of ending the worker."""
        delay = RETRY_MIN_SECONDS
        while not stop.is_set():
            try:
                processed, updated = self.step(wait=True)
            except CirrusFeedError as exc:
                if not exc.retryable:
                    raise
                log.warning("worker: %s; retrying in %.0f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_MIN_SECONDS
            totals.add(processed, updated)


def run_workers(
    app: App,
    workers: int,
    *,
    once: bool,
    stop: threading.Event,
    keep_results: bool = False,
    processes: bool = False,
) -> WorkTotals:
    """Run ``workers`` local workers as threads (or, with ``processes``, OS processes:
    `cirrus_feed.service.worker_processes`) until drained (``once``) or ``stop`` is set.
    Off the local backend: the queue workers of `cirrus_feed.service.queue_worker`."""
    if app.settings.backend != "local":
        from cirrus_feed.service.queue_worker import run_queue_workers

        return run_queue_workers(app, workers, once=once, stop=stop, keep_results=keep_results)
    if processes:
        from cirrus_feed.service.worker_processes import run_worker_processes

        return run_worker_processes(app, workers, once=once, stop=stop, keep_results=keep_results)
    totals = WorkTotals(keep_results=keep_results)

    def target() -> None:
        try:
            worker = LocalWorker(app)
            if once:
                worker.drain(totals, stop)
            else:
                worker.run_forever(stop, totals)
        except Exception:
            log.exception("worker crashed")
            totals.crashed = True
            stop.set()

    threads = [threading.Thread(target=target, name=f"worker-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return totals
