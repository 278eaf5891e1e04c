"""The process stage's decision table (Q1-Q8, see `cirrus_feed.pipeline.process`) over a
batch, with the state writes of each step made for the whole batch at once.

Every job (a payload's first occurrence in the batch) is decided on the record read before
the batch: skipped, resumed (CLAIMED) or claimed. The claims are one `StateStore.claim_many`
(a claim lost to a moved-on history is decided once more on the current record, in a second
call); the starts run together (`process_start`); the records whose start cannot be made
are one `StateStore.finish_many` (FAILED, each with its event in the outbox), the started
ones one `StateStore.set_processing_many`. Each record's result and events are its own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from cirrus_feed.backends.base import Backends, Claim, Finish, StateRecord, WriteResult
from cirrus_feed.errors import BackendError, ClaimConflictError, StaleExecutionError
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.executions import execution_arn, execution_name
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.model.reports import Outcome, RecordResult
from cirrus_feed.model.states import SKIP_UNLESS_REPLACE, UNCLAIMABLE, State
from cirrus_feed.pipeline.announcer import Announcer
from cirrus_feed.pipeline.isolation import unexpected, write_each
from cirrus_feed.pipeline.process_start import Started, StartRequest, start_all

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Intake:
    index: int
    envelope: Envelope
    payload: ProcessPayload


@dataclass(slots=True)
class Job:
    """One payload of the batch (its first occurrence) on its way through the writes."""

    intake: Intake
    events: Announcer  # this record's events, announced in record order
    record: StateRecord | None  # as last read
    retry: bool = True  # a lost claim may be decided once more on the current record
    result: RecordResult | None = None


class BatchRun:
    """The decision table (Q1-Q8) of every job, with the state writes of each step made for
    the whole batch at once: claims, then starts, then FAILED records, then PROCESSING."""

    def __init__(self, backends: Backends, jobs: list[Job], start_threads: int) -> None:
        self.b = backends
        self.jobs = jobs
        self.start_threads = start_threads
        self.to_start: list[tuple[Job, StateRecord]] = []

    def run(self) -> None:
        to_claim = self.jobs
        while to_claim:  # a claim that lost to a moved-on history is decided once more
            to_claim = self._claim(
                [job for job in to_claim if self._guard(job, functools.partial(self._decide, job))]
            )
        self._start()

    def _guard(self, job: Job, step: Callable[[], bool]) -> bool:
        """Run one record's step; an unexpected error fails that record only."""
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - fails this record only
            self._done(job, Outcome.FAILED, unexpected(exc, f"payload {job.intake.payload.id!r}"))
            return False

    def _done(self, job: Job, outcome: Outcome, reason: str | None = None) -> None:
        job.result = result_of(job.intake, outcome, reason)

    def _decide(self, job: Job) -> bool:
        """Skip, resume or plan a claim; True when the job is to be claimed."""
        record, payload = job.record, job.intake.payload
        if record is not None and record.state in SKIP_UNLESS_REPLACE and not payload.replace:
            job.events.already(record)
            self._done(job, Outcome.SKIPPED, f"already {record.state.value}")
            return False
        if record is not None and record.state is State.CLAIMED:
            # A claim whose execution may or may not have started: resume that execution.
            self.to_start.append((job, record))
            return False
        return True

    def _claim(self, jobs: list[Job]) -> list[Job]:
        """Claim ``jobs`` in one write; returns those to decide again."""
        claims: list[Claim] = []
        claiming = [
            job for job in jobs if self._guard(job, functools.partial(self._plan, job, claims))
        ]
        again = []
        for job, result in zip(claiming, write_each(self.b.state.claim_many, claims), strict=True):
            if self._guard(job, functools.partial(self._claimed, job, result)):
                again.append(job)
        return again

    def _plan(self, job: Job, claims: list[Claim]) -> bool:
        """Add the claim of the execution named after the history read."""
        payload, record = job.intake.payload, job.record
        history = record.executions if record else ()
        name = execution_name(payload.id, history, self.b.runner.region)
        arn = execution_arn(self.b.runner.base_arn, payload.workflow, name)
        claims.append(Claim(payload.id, arn, record))
        return True

    def _claimed(self, job: Job, result: WriteResult) -> bool:
        """Act on one claim's result; True when the job is to be decided again."""
        payload_id = job.intake.payload.id
        if isinstance(result, StateRecord):
            job.events.event("CLAIMED_PROCESSING", payload_id)
            self.to_start.append((job, result))
            return False
        if isinstance(result, ClaimConflictError):
            current = result.current
            if current is not None and current.state is State.CLAIMED:
                self.to_start.append((job, current))
                return False
            if job.retry and current is not None and current.state not in UNCLAIMABLE:
                # The history moved on since the batch read (another worker ran it): decide
                # again on the current record, so the next name is derived from it.
                job.record, job.retry = current, False
                return True
            if current is not None:
                job.events.already(current)
                self._done(job, Outcome.SKIPPED, f"already {current.state.value}")
            else:
                job.events.event("ALREADY_PROCESSING", payload_id)
                self._done(job, Outcome.SKIPPED, "claim refused")
            return False
        if isinstance(result, BackendError):
            self._done(job, Outcome.FAILED, str(result))  # Q7: no second write
            return False
        raise result

    def _start(self) -> None:
        requests = [
            StartRequest(job.intake.payload, claimed.latest_execution or "")
            for job, claimed in self.to_start
        ]
        started = start_all(self.b, requests, threads=self.start_threads)
        failing: list[tuple[Job, StateRecord, Started]] = []
        processing: list[tuple[Job, StateRecord, Started]] = []
        for (job, claimed), outcome in zip(self.to_start, started, strict=True):
            if isinstance(outcome, Exception):
                self._done(
                    job, Outcome.FAILED, unexpected(outcome, f"payload {job.intake.payload.id!r}")
                )
            elif outcome.kind == "keep":
                self._keep_claimed(job, claimed, outcome.error or "")
            elif outcome.kind == "fail":
                failing.append((job, claimed, outcome))
            else:
                processing.append((job, claimed, outcome))
        self._fail(failing)
        self._set_processing(processing)

    def _keep_claimed(self, job: Job, claimed: StateRecord, error: str) -> None:
        """Leave the record CLAIMED on its execution and report the message failed: SQS
        redelivers it and the retry resumes this very execution name, so it can never
        start twice."""
        log.warning(
            "start of %s not confirmed, left CLAIMED: %s",
            claimed.latest_execution,
            error,
            extra={"payload_id": job.intake.payload.id},
        )
        self._done(job, Outcome.FAILED, error)

    def _fail(self, failing: list[tuple[Job, StateRecord, Started]]) -> None:
        """Record FAILED (with its event in the outbox) each start that cannot be made."""
        finishes, events = [], []
        for job, claimed, outcome in failing:
            event = job.events.outbox_event(
                "FAILED", job.intake.payload.id, input_url=outcome.input_url, error=outcome.error
            )
            arn = claimed.latest_execution or ""
            finishes.append(Finish(claimed, arn, State.FAILED, outcome.error, event))
            events.append(event)
        results = write_each(self.b.state.finish_many, finishes)
        for (job, claimed, outcome), event, result in zip(failing, events, results, strict=True):
            if isinstance(result, (ClaimConflictError, StaleExecutionError)):
                log.warning(
                    "payload moved on while failing it", extra={"payload_id": claimed.payload_id}
                )
                event = replace(event, event_id=None)  # not in the outbox: announced as before
            elif isinstance(result, Exception):
                log.error(
                    "could not record FAILED: %s", result, extra={"payload_id": claimed.payload_id}
                )
                event = replace(event, event_id=None)
            job.events.add(event)
            self._done(job, Outcome.FAILED, outcome.error)

    def _set_processing(self, processing: list[tuple[Job, StateRecord, Started]]) -> None:
        results = write_each(self.b.state.set_processing_many, [c for _, c, _ in processing])
        for (job, claimed, outcome), result in zip(processing, results, strict=True):
            self._guard(job, functools.partial(self._processing, job, claimed, outcome, result))

    def _processing(
        self, job: Job, claimed: StateRecord, outcome: Started, result: WriteResult
    ) -> bool:
        arn = claimed.latest_execution
        if isinstance(result, ClaimConflictError):
            current = result.current
            if current is not None and current.latest_execution == arn:
                if current.state is not State.PROCESSING and outcome.kind != "resumed":
                    # Our execution already finished and update-state got there first.
                    self._done(job, Outcome.STARTED, f"already {current.state.value}")
                    return False
                job.events.already(current)
                if current.state is not State.PROCESSING:
                    # Another worker started (and finished) this execution: not our start.
                    self._done(job, Outcome.SKIPPED, "run by another worker")
                else:
                    self._done(job, Outcome.SKIPPED, "started by another worker")
                return False
            if current is not None:
                job.events.already(current)
            self._done(job, Outcome.SKIPPED, "claimed again by a newer run")
            return False
        if isinstance(result, BackendError):
            self._done(job, Outcome.FAILED, str(result))
            return False
        if isinstance(result, Exception):
            raise result
        job.events.event(
            "STARTED_PROCESSING",
            job.intake.payload.id,
            execution_arn=arn,
            input_url=outcome.input_url,
        )
        self._done(job, Outcome.STARTED)
        return False


def result_of(intake: Intake, outcome: Outcome, reason: str | None = None) -> RecordResult:
    return RecordResult(
        intake.index, outcome, intake.payload.id, intake.envelope.message_id, reason=reason
    )
