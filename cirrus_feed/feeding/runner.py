"""Running a feeder: its payloads go through dedupe, pacing and enqueue; runs are recorded.

The feeder yields; this module decides what reaches the queue. A checkpoint's cursor is
saved only after every payload yielded before it was enqueued (or deliberately skipped), so
a crash or a failed send re-reads from the last safe point and nothing is lost.

Run records: a run is saved ``running`` with a lease (``lease_until``) and re-saved (a
heartbeat) at every checkpoint and at least every quarter of the feeder's
``lease_seconds``; a run still ``running`` past its lease belongs to a dead process and is
marked ``abandoned`` when the feeder next starts. Dry runs write nothing to the backend:
no run record, no cursor, no seen keys. A ``--limit`` run stops at the first checkpoint
at or after the limit, so the cursor covers exactly what was sent.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Protocol

from cirrus_feed.backends.base import Backends, FeedRun, FeedStore, RunStatus
from cirrus_feed.errors import BackendError, CirrusFeedError, PayloadValidationError
from cirrus_feed.feeding.contract import (
    DUPLICATE_KINDS,
    FILTER_KINDS,
    Checkpoint,
    Counted,
    Feeder,
    FeedRequest,
    Skipped,
    SourceRejection,
    Tagged,
)
from cirrus_feed.feeding.pacing import InFlight, QueueDepthGate, TokenBucket
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.model.reports import Outcome, RecordResult
from cirrus_feed.model.states import SKIP_UNLESS_REPLACE
from cirrus_feed.pipeline.enqueue import Enqueueable, Enqueuer, Unreadable
from cirrus_feed.support.clock import Clock

log = logging.getLogger(__name__)

COUNTS = ("seen", "filtered", "skipped", "enqueued", "duplicate", "invalid", "failed")


@dataclass
class FeedResult:
    """What one run did; ``counts`` keys: seen (payloads the feeder yielded), filtered,
    skipped and duplicate (each also ``<key>:<kind>``, see `contract.FILTER_KINDS`),
    enqueued, invalid, failed; dry runs: written."""

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
        feeds = None if request.dry_run else self.app.backends.feeds  # dry: write nothing
        if feeds is not None:
            abandon_expired(feeds, name, self.clock)
            if request.cursor is None:
                request = replace(request, cursor=feeds.get_cursor(name))
        result = FeedResult(
            FeedRun(
                run_id=str(uuid.uuid4()),
                feeder=name,
                started=self.clock.now().isoformat(),
                request=_describe(request),
            )
        )
        lease = _Lease(self, feeds, result, float(feeder.config.lease_seconds))
        lease.beat()
        batch = _Batch(self, name, feeder, result, request, output, lease)
        try:
            for item in feeder.feed(request):
                batch.take(item)
                if self.deadline is not None and not self.stopping:
                    self._check_deadline(name)
                # Stop at a checkpoint, so what was sent is covered and nothing is re-sent.
                if isinstance(item, Checkpoint) and batch.limit_reached:
                    break
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
            lease.finish(status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        lease.finish()
        _log_left_out(name, result.counts)
        return result

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


def abandon_expired(feeds: FeedStore, name: str, clock: Clock) -> list[FeedRun]:
    """Mark the runs of ``name`` whose lease expired (their process died) ``abandoned``."""
    marked = feeds.abandon(name, now=_iso(clock.now()))
    for run in marked:
        log.warning("feed %s: run %s abandoned: %s", name, run.run_id, run.error)
    return marked


class _Lease:
    """One run's record in the feed store: saved with a lease, renewed by `beat` (at
    checkpoints, and by `due` when a quarter of the lease passed), closed by `finish`."""

    def __init__(
        self, runner: FeedRunner, feeds: FeedStore | None, result: FeedResult, seconds: float
    ) -> None:
        self.runner, self.feeds, self.result = runner, feeds, result
        self.seconds = seconds
        self.next_beat = 0.0  # monotonic

    def due(self) -> None:
        if self.runner.clock.monotonic() < self.next_beat:
            return
        try:
            self.beat()
        except BackendError as exc:  # the feed goes on; the next heartbeat tries again
            log.warning("feed %s: heartbeat failed: %s", self.result.run.feeder, exc)

    def beat(self, **changes: Any) -> None:
        clock = self.runner.clock
        self.next_beat = clock.monotonic() + self.seconds / 4
        until = _iso(clock.now() + timedelta(seconds=self.seconds))
        self.result.run = replace(
            self.result.run, counts=dict(self.result.counts), lease_until=until, **changes
        )
        self._save()

    def finish(self, **changes: Any) -> None:
        self.result.run = replace(
            self.result.run,
            finished=self.runner.clock.now().isoformat(),
            counts=dict(self.result.counts),
            lease_until=None,
            **changes,
        )
        self._save()

    def _save(self) -> None:
        if self.feeds is not None:
            self.feeds.save_run(self.result.run)


def _iso(when: datetime) -> str:
    """Lease stamps: always with microseconds, so they compare as strings."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _count_keys(kind: str) -> tuple[str, str]:
    """The counts a left-out record of ``kind`` adds to (see `contract.FILTER_KINDS`)."""
    if kind in FILTER_KINDS:
        return "filtered", f"filtered:{kind}"
    if kind in DUPLICATE_KINDS:
        return "duplicate", f"duplicate:{kind}"
    return "skipped", f"skipped:{kind}"


def _log_left_out(name: str, counts: Mapping[str, int]) -> None:
    """One line per run for what was left out on purpose, so an all-skipped batch never
    looks like empty input."""
    reasons = [f"{n} {key}" for key, n in sorted(counts.items()) if ":" in key and n]
    if reasons:
        log.info("feed %s: left out %s", name, ", ".join(reasons))


_Pending = tuple[str | None, Enqueueable]  # (source tag, payload or unreadable record)
_PAYLOADS = frozenset({Tagged, PreparedPayload, ProcessPayload, dict})  # exact types
_WITH_ID = (ProcessPayload, PreparedPayload)
_PARSED = (Unreadable, ProcessPayload, PreparedPayload)
_COUNTED = frozenset({Outcome.DUPLICATE, Outcome.INVALID, Outcome.FAILED})


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
        lease: _Lease,
    ) -> None:
        self.runner, self.name, self.result = runner, name, result
        self.request, self.output, self.lease = request, output, lease
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
        self.flush_size = config.flush()

    @property
    def limit_reached(self) -> bool:
        limit = self.request.limit
        return limit is not None and self.result.counts["seen"] >= limit

    def take(self, item: Any) -> None:
        self.lease.due()
        if type(item) in _PAYLOADS:  # the common case, without the checks below
            self.result.counts["seen"] += 1
            self.items.append((item.tag, item.payload) if type(item) is Tagged else (None, item))
            if len(self.items) >= self.flush_size:
                self.flush()
            return
        if isinstance(item, Checkpoint):
            self.flush()
            self._checkpoint(item)
            return
        if isinstance(item, Skipped):
            self._left_out(item.kind, 1)
            log.info("feed %s: skipped %s (%s): %s", self.name, item.tag, item.kind, item.reason)
            return
        if isinstance(item, Counted):
            for kind, number in item.counts.items():
                self._left_out(kind, number)
            return
        if isinstance(item, SourceRejection):
            self.items.append((item.tag, Unreadable(item.raw, item.reason)))
            if item.retry and item.tag is not None:
                self.failed_tags.add(item.tag)
        else:
            # Past ``limit`` (a feeder that overshoots it) payloads are still sent: the run
            # stops at the next checkpoint, whose cursor covers them.
            self.result.counts["seen"] += 1
            if isinstance(item, Tagged):
                self.items.append((item.tag, item.payload))
            else:
                self.items.append((None, item))
        if len(self.items) >= self.flush_size:
            self.flush()

    def _left_out(self, kind: str, number: int) -> None:
        for key in _count_keys(kind):
            self.result.counts[key] += number

    def _waiting(self) -> bool:
        """Polled while pacing waits: heartbeat, and tell whether to stop waiting."""
        self.lease.due()
        return self.runner.stopping

    def flush(self) -> None:
        items, self.items = self.items, []
        if not items:
            return
        if self.request.dry_run:
            self._write(item for _, item in items)
            return
        fresh = self._dedupe(items)
        if self.in_flight is not None:
            self.in_flight.wait_for_room(len(fresh), self._waiting)
        if self.queue_gate is not None:
            self.queue_gate.wait(self._waiting)
        if self.bucket is not None and fresh:
            self.bucket.acquire(len(fresh))
        report = self.runner.app.enqueuer.enqueue(item for _, item in fresh)
        self._count(report.results, fresh)
        if self.runner.progress is not None:
            self.runner.progress(dict(self.result.counts))

    def _count(self, results: list[RecordResult], fresh: list[_Pending]) -> None:
        """Add a flush's outcomes to the counts, note failed tags and in-flight ids."""
        queued = [r.payload_id for r in results if r.outcome is Outcome.QUEUED and r.payload_id]
        if self.in_flight is not None:
            self.in_flight.add(queued)
        counts = self.result.counts
        counts["enqueued"] += len(queued)
        for result in results:
            outcome = result.outcome
            if outcome is Outcome.QUEUED:
                continue
            if outcome in _COUNTED:
                counts[outcome.value] += 1
            tag = fresh[result.index][0]
            if outcome is Outcome.FAILED and tag is not None:
                self.failed_tags.add(tag)
        if counts["failed"]:
            self.cursor_blocked = True

    def _dedupe(self, items: list[_Pending]) -> list[_Pending]:
        """Drop payloads already done (`SKIP_UNLESS_REPLACE`) unless they ask for ``replace``:
        one state query for the whole flush."""
        parsed: list[_Pending] = []
        for tag, item in items:
            if isinstance(item, _PARSED):
                parsed.append((tag, item))
                continue
            try:
                parsed.append((tag, ProcessPayload.from_dict(item)))
            except PayloadValidationError:
                parsed.append((tag, item))  # enqueue records it as invalid, with the reason
        ids = {p.id for _, p in parsed if isinstance(p, _WITH_ID) and not p.replace}
        records = self.runner.app.backends.state.get_many(ids) if ids else {}
        if not records:
            return parsed
        fresh: list[_Pending] = []
        for tag, item in parsed:
            record = records.get(item.id) if isinstance(item, _WITH_ID) else None
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
            if self.output is not None:
                text = (
                    item.body
                    if isinstance(item, PreparedPayload)
                    else json.dumps(item.to_dict() if isinstance(item, ProcessPayload) else item)
                )
                self.output.write(text + "\n")
            self.result.counts["written"] += 1

    def _checkpoint(self, checkpoint: Checkpoint) -> None:
        if checkpoint.commit is not None and not self.request.dry_run:
            failed, self.failed_tags = frozenset(self.failed_tags), set()
            checkpoint.commit(failed)
        feeds = self.lease.feeds  # None on dry runs
        if (
            self.request.dry_run
            or self.cursor_blocked
            or feeds is None
            or checkpoint.cursor is None
        ):
            return
        feeds.set_cursor(self.name, dict(checkpoint.cursor))
        self.lease.beat(checkpoint=checkpoint.label or None)


def _describe(request: FeedRequest) -> dict[str, Any]:
    described = asdict(request)
    for key in ("since", "until"):
        if described[key] is not None:
            described[key] = described[key].isoformat()
    return {k: v for k, v in described.items() if v not in (None, False)}
