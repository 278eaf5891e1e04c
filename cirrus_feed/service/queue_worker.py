"""Long-running AWS workers: poll an SQS queue, run one stage per batch (ECS/EC2 deployments
that don't use Lambda).

A `QueueWorker` does what the SQS event source mapping and a Lambda do together: receive a
batch (long polling), keep it invisible while the stage works on it (`Heartbeat` extends the
visibility timeout every third of it), then delete exactly the messages that did not fail —
succeeded and invalid ones; failed ones are left for the queue's redrive, like the Lambda's
``batchItemFailures``. A whole-batch failure deletes nothing. ``stop`` is checked between
batches, so SIGTERM lets the batch in hand finish (a long poll ends within ``wait_seconds``).

Two stages: ``process`` on the process queue, ``update-state`` on the queue of EventBridge
execution events (``aws.update_state_queue_url``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from types import TracebackType

from cirrus_feed.app import App
from cirrus_feed.backends.base import PayloadQueue
from cirrus_feed.errors import CirrusFeedError
from cirrus_feed.model.envelopes import Envelope, normalize
from cirrus_feed.model.reports import StageReport
from cirrus_feed.pipeline.announcer import drain_outbox
from cirrus_feed.pipeline.execution_events import apply_execution_events
from cirrus_feed.service.worker import (
    RETRY_MAX_SECONDS,
    RETRY_MIN_SECONDS,
    Pulse,
    WorkTotals,
    as_sqs_event,
    settle,
)
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

Stage = Callable[[Sequence[Envelope]], StageReport]


class Heartbeat:
    """While entered, extends the visibility of ``receipts`` to ``timeout`` seconds every
    ``timeout / 3`` seconds. A failed extension is logged, never raised (the message may then
    be delivered again: the stages are idempotent)."""

    def __init__(self, queue: PayloadQueue, receipts: Sequence[str], timeout: int) -> None:
        self.queue = queue
        self.receipts = list(receipts)
        self.timeout = timeout
        self.extended = 0  # extensions made, for tests and logs
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self.timeout / 3):
            for receipt in self.receipts:
                try:
                    self.queue.change_visibility(receipt, self.timeout)
                except CirrusFeedError as exc:
                    log.warning("heartbeat: visibility not extended: %s", exc)
            self.extended += 1


class QueueWorker:
    """One stage fed by one queue; several may share the queue (threads or hosts)."""

    def __init__(
        self,
        name: str,
        queue: PayloadQueue,
        stage: Stage,
        *,
        batch_size: int = 10,
        wait_seconds: float = 20,
        visibility_timeout: int = 180,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name  # "process" | "update-state"
        self.queue = queue
        self.stage = stage
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.pulse = Pulse(clock)

    def step(self) -> StageReport | None:
        """One batch: receive, run the stage, delete what did not fail. None: queue empty."""
        messages = self.queue.receive(
            self.batch_size,
            visibility_timeout=self.visibility_timeout,
            wait_seconds=self.wait_seconds,
        )
        if not messages:
            self.pulse.beat()
            return None
        started = self.pulse.clock.monotonic()
        with Heartbeat(self.queue, [m.receipt for m in messages], self.visibility_timeout):
            report = self.stage(normalize(as_sqs_event(messages)))
        self.pulse.timed(self.name.replace("-", "_"), started, report)
        settle(self.queue, messages, report)
        failed = report.failed_message_ids()
        if failed:
            log.warning("%s: %d left for redrive: %s", self.name, len(failed), report.counts)
        self.pulse.beat()
        return report

    def drain(self, totals: WorkTotals, stop: threading.Event | None = None) -> None:
        """Work until a receive comes back empty (``--once``) or ``stop`` is set."""
        while stop is None or not stop.is_set():
            report = self.step()
            if report is None:
                return
            self._add(totals, report)

    def run_forever(self, stop: threading.Event, totals: WorkTotals) -> None:
        """Work until ``stop``; a retryable backend error waits and tries again."""
        delay = RETRY_MIN_SECONDS
        while not stop.is_set():
            try:
                report = self.step()
            except CirrusFeedError as exc:
                if not exc.retryable:
                    raise
                log.warning("%s worker: %s; retrying in %.0f s", self.name, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_MIN_SECONDS
            if report is not None:
                self._add(totals, report)

    def _add(self, totals: WorkTotals, report: StageReport) -> None:
        if self.name == "update-state":
            totals.add(StageReport(), report)
        else:
            totals.add(report, StageReport())


def queue_workers(app: App, workers: int) -> list[QueueWorker]:
    """``workers`` process workers on the process queue and, with
    ``aws.update_state_queue_url``, one update-state worker."""
    settings = app.settings.process

    def worker(name: str, queue: PayloadQueue, stage: Stage) -> QueueWorker:
        return QueueWorker(
            name,
            queue,
            stage,
            batch_size=settings.batch_size,
            wait_seconds=settings.wait_seconds,
            visibility_timeout=settings.visibility_timeout,
            clock=app.clock,
        )

    found = [worker("process", app.backends.queue, app.processor.process) for _ in range(workers)]
    if app.update_queue is not None:

        def update(envelopes: Sequence[Envelope]) -> StageReport:
            return apply_execution_events(
                app.updater, app.backends.store, envelopes, clock=app.clock
            )

        found.append(worker("update-state", app.update_queue, update))
    return found


def start_drain(app: App) -> None:
    """Announce what a crashed worker left in the outbox (a Scan on DynamoDB: once, at
    start; afterwards redeliveries of the completions find their own events)."""
    try:
        drain_outbox(app.backends, app.clock)
    except CirrusFeedError as exc:
        log.warning("outbox not drained at start: %s", exc)


def run_queue_workers(
    app: App, workers: int, *, once: bool, stop: threading.Event, keep_results: bool = False
) -> WorkTotals:
    """Run `queue_workers` as threads until drained (``once``) or ``stop`` is set; a crashed
    worker stops the others and marks ``totals.crashed``."""
    totals = WorkTotals(keep_results=keep_results)
    start_drain(app)

    def target(worker: QueueWorker) -> None:
        try:
            if once:
                worker.drain(totals, stop)
            else:
                worker.run_forever(stop, totals)
        except Exception:
            log.exception("%s worker crashed", worker.name)
            totals.crashed = True
            stop.set()

    threads = [
        threading.Thread(target=target, args=(w,), name=f"{w.name}-worker-{i}")
        for i, w in enumerate(queue_workers(app, workers))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return totals
