"""Running a feeder: its payloads go through dedupe, pacing and enqueue; runs are recorded.

The feeder yields; this module decides what reaches the queue. A checkpoint's cursor is
saved only after every payload yielded before it was enqueued (or deliberately skipped), so
a crash or a failed send re-reads from the last safe point and nothing is lost.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import IO, Any, Protocol

from cirrus_feed.backends.base import Backends, FeedRun, RunStatus
from cirrus_feed.errors import CirrusFeedError, PayloadValidationError
from cirrus_feed.feeding.contract import (
    FLUSH_SIZE,
    Checkpoint,
    Feeder,
    FeedRequest,
    Skipped,
    SourceRejection,
    Tagged,
)
from cirrus_feed.feeding.pacing import InFlight, QueueDepthGate, TokenBucket
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.model.reports import Outcome
from cirrus_feed.model.states import SKIP_UNLESS_REPLACE
from cirrus_feed.pipeline.enqueue import Enqueueable, Enqueuer, Unreadable
from cirrus_feed.support.clock import Clock

log = logging.getLogger(__name__)

COUNTS = ("seen", "filtered", "enqueued", "duplicate", "invalid", "failed")


@dataclass
class FeedResult:
    """What one run did; ``counts`` keys: seen, filtered (and ``filtered:<kind>``),
    enqueued, duplicate, invalid, failed."""

    run: FeedRun
    counts: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(COUNTS, 0)))

    @property
    def ok(self) -> bool:
        return self.run.status == "succeeded" and not (
            self.counts["failed"] or self.counts["invalid"]
        )


class Pipeline(Protocol):
    """What a feed runs against (`cirrus_feed.app.App` is one): the backends, the enqueue
    stage and the clock."""

    @property
    def backends(self) -> Backends: ...

    @property
    def enqueuer(self) -> Enqueuer: ...

    @property
    def clock(self) -> Clock: ...


class FeedRunner:
    """Runs feeders against a pipeline's backends."""

    def __init__(
        self,
        app: Pipeline,
        *,
        clock: Clock | None = None,
        progress: Callable[[Mapping[str, int]], None] | None = None,
        deadline: datetime | None = None,
    ) -> None:
        self.app = app
        self.clock = clock or app.clock  # run stamps and how pacing waits
        self.progress = progress
        self.deadline = deadline  # past it (on `clock`), `stop` at the next checkpoint
        self.stopping = False  # set by `stop`: run on to the next checkpoint, then stop
        self.aborting = False  # `stop(now=True)`: stop after the current item

    def run(
        self,
        name: str,
        feeder: Feeder[Any],
        request: FeedRequest,
        *,
        output: IO[str] | None = None,
    ) -> FeedResult:
        """Feed ``name`` once. Dry runs write payloads (NDJSON) to ``output`` and send none."""
        feeds = self.app.backends.feeds
        if request.cursor is None and feeds is not None and not request.dry_run:
            request = replace(request, cursor=feeds.get_cursor(name))
        result = FeedResult(
            FeedRun(
                run_id=str(uuid.uuid4()),
                feeder=name,
                started=self.clock.now().isoformat(),
                request=_describe(request),
            )
        )
        self.save_run(result)
        batch = _Batch(self, name, feeder, result, request, output)
        try:
            for item in feeder.feed(request):
                batch.take(item)
                if self.deadline is not None and not self.stopping:
                    self._check_deadline(name)
                # Stop at a checkpoint, so what was sent is covered and nothing is re-sent.
                if self.stopping and (isinstance(item, Checkpoint) or self.aborting):
                    break
            batch.flush()
            status: RunStatus = "interrupted" if self.stopping else "succeeded"
            result.run = replace(result.run, status=status)
        except CirrusFeedError as exc:
            # Nothing pending is sent: no checkpoint covers it, the next run reads it again.
            log.exception("feed %s failed", name)
            result.run = replace(result.run, status="failed", error=str(exc))
        except BaseException as exc:
            # A bug (or an untranslated library error): still close the run record, then
            # let it propagate. Nothing is flushed: the cursor stays at the last checkpoint.
            self._finish(result, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        self._finish(result)
        return result

    def _finish(self, result: FeedResult, **changes: Any) -> None:
        result.run = replace(
            result.run, finished=self.clock.now().isoformat(), counts=dict(result.counts), **changes
        )
        self.save_run(result)

    def _check_deadline(self, name: str) -> None:
        assert self.deadline is not None
        if self.clock.now() >= self.deadline:
            log.info(
                "feed %s: deadline %s passed, stopping at the next checkpoint", name, self.deadline
            )
            self.stop()

    def stop(self, *, now: bool = False) -> None:
        """Ask a running feed to stop at its next checkpoint (``now``: at once; what was sent
        since the last checkpoint is then sent again by the next run)."""
        self.aborting = self.aborting or now
        self.stopping = True

    def save_run(self, result: FeedResult) -> None:
        if self.app.backends.feeds is not None:
            self.app.backends.feeds.save_run(result.run)


_Pending = tuple[str | None, Enqueueable]  # (source tag, payload or unreadable record)


class _Batch:
    """The payloads between two flushes of one run, and the checkpoint they lead up to."""

    def __init__(
        self,
        runner: FeedRunner,
        name: str,
        feeder: Feeder[Any],
        result: FeedResult,
        request: FeedRequest,
        output: IO[str] | None,
    ) -> None:
        self.runner, self.name, self.result = runner, name, result
        self.request, self.output = request, output
        self.items: list[_Pending] = []
        self.failed_tags: set[str] = set()  # source records that failed since the checkpoint
        self.cursor_blocked = False  # a failed send: never move the cursor past it
        config = feeder.config
        self.bucket = TokenBucket(config.max_rate, clock=runner.clock) if config.max_rate else None
        self.in_flight = (
            InFlight(runner.app.backends.state, config.max_in_flight, clock=runner.clock)
            if config.max_in_flight
            else None
        )
        self.queue_gate = (
            QueueDepthGate(runner.app.backends.queue, config.max_queue_depth, clock=runner.clock)
            if config.max_queue_depth
            else None
        )
        self.flush_size = min(FLUSH_SIZE, config.max_in_flight or FLUSH_SIZE)

    def take(self, item: Any) -> None:
        if isinstance(item, Checkpoint):
            self.flush()
            self._checkpoint(item)
            return
        if isinstance(item, Skipped):
            self.result.counts["filtered"] += 1
            self.result.counts[f"filtered:{item.kind}"] += 1
            log.info("feed %s: skipped %s (%s): %s", self.name, item.tag, item.kind, item.reason)
            return
        if isinstance(item, SourceRejection):
            self.items.append((item.tag, Unreadable(item.raw, item.reason)))
            if item.retry and item.tag is not None:
                self.failed_tags.add(item.tag)
        else:
            if self.request.limit is not None and self.result.counts["seen"] >= self.request.limit:
                return
            self.result.counts["seen"] += 1
            if isinstance(item, Tagged):
                self.items.append((item.tag, item.payload))
            else:
                self.items.append((None, item))
        if len(self.items) >= self.flush_size:
            self.flush()

    def flush(self) -> None:
        items, self.items = self.items, []
        if not items:
            return
        if self.request.dry_run:
            self._write(item for _, item in items)
            return
        fresh = self._dedupe(items)
        if self.in_flight is not None:
            self.in_flight.wait_for_room(len(fresh), lambda: self.runner.stopping)
        if self.queue_gate is not None:
            self.queue_gate.wait(lambda: self.runner.stopping)
        if self.bucket is not None and fresh:
            self.bucket.acquire(len(fresh))
        report = self.runner.app.enqueuer.enqueue(item for _, item in fresh)
        queued = [
            r.payload_id for r in report.results if r.outcome is Outcome.QUEUED and r.payload_id
        ]
        if self.in_flight is not None:
            self.in_flight.add(queued)
        counts = self.result.counts
        counts["enqueued"] += len(queued)
        for outcome in (Outcome.DUPLICATE, Outcome.INVALID, Outcome.FAILED):
            counts[outcome.value] += sum(r.outcome is outcome for r in report.results)
        for result in report.results:
            tag = fresh[result.index][0]
            if result.outcome is Outcome.FAILED and tag is not None:
                self.failed_tags.add(tag)
        if counts["failed"]:
            self.cursor_blocked = True
        if self.runner.progress is not None:
            self.runner.progress(dict(counts))

    def _dedupe(self, items: list[_Pending]) -> list[_Pending]:
        """Drop payloads already done (`SKIP_UNLESS_REPLACE`) unless they ask for ``replace``."""
        parsed: list[_Pending] = []
        for tag, item in items:
            if isinstance(item, Unreadable | ProcessPayload):
                parsed.append((tag, item))
                continue
            try:
                parsed.append((tag, ProcessPayload.from_dict(item)))
            except PayloadValidationError:
                parsed.append((tag, item))  # enqueue records it as invalid, with the reason
        ids = {p.id for _, p in parsed if isinstance(p, ProcessPayload) and not p.replace}
        records = self.runner.app.backends.state.get_many(ids) if ids else {}
        fresh: list[_Pending] = []
        for tag, item in parsed:
            record = records.get(item.id) if isinstance(item, ProcessPayload) else None
            if record is not None and record.state in SKIP_UNLESS_REPLACE:
                self.result.counts["duplicate"] += 1
            else:
                fresh.append((tag, item))
        return fresh

    def _write(self, items: Iterable[Enqueueable]) -> None:
        for item in items:
            if isinstance(item, Unreadable):
                self.result.counts["invalid"] += 1
                log.warning("feed %s: %s", self.name, item.reason)
                continue
            data = item.to_dict() if isinstance(item, ProcessPayload) else item
            if self.output is not None:
                self.output.write(json.dumps(data) + "\n")
            self.result.counts["written"] += 1

    def _checkpoint(self, checkpoint: Checkpoint) -> None:
        if checkpoint.commit is not None and not self.request.dry_run:
            failed, self.failed_tags = frozenset(self.failed_tags), set()
            checkpoint.commit(failed)
        feeds = self.runner.app.backends.feeds
        if (
            self.request.dry_run
            or self.cursor_blocked
            or feeds is None
            or checkpoint.cursor is None
        ):
            return
        feeds.set_cursor(self.name, dict(checkpoint.cursor))
        self.result.run = replace(
            self.result.run, checkpoint=checkpoint.label or None, counts=dict(self.result.counts)
        )
        self.runner.save_run(self.result)


def _describe(request: FeedRequest) -> dict[str, Any]:
    described = asdict(request)
    for key in ("since", "until"):
        if described[key] is not None:
            described[key] = described[key].isoformat()
    return {k: v for k, v in described.items() if v not in (None, False)}
