"""The process stage: claim each payload in the state DB and start its workflow once.

Decision table and start sequence of cirrus-geo v2 (spec §3.4-3.5), with its quirks fixed:

* Q1  CLAIMED recovery resumes the *latest* execution, not the oldest.
* Q2  ``ALREADY_*`` events carry the URLs of the real latest execution.
* Q3  losing the set-processing race to a finished execution is not a crash.
* Q4  an unreadable ``{"url"}`` pointer fails (or rejects) only its own record.
* Q5  an unknown workflow is recorded FAILED *and* reported failed, so the message is
      retried and ends in the dead-letter queue instead of vanishing.
* Q7  a non-conditional state-DB error on claim does not attempt a second write.
* Q8  exactly-once start: a start that fails ambiguously (timeout, reset, throttle, 5xx) is
      resolved by describing the deterministically named execution before any state is
      written. It exists → PROCESSING with that ARN; it does not (or cannot be told) → the
      record stays CLAIMED and the message is reported failed, so the redelivery resumes the
      same name. ``ExecutionAlreadyExists`` is "already started". A CLAIMED record is never
      turned FAILED while its execution may exist (a permanent error is checked the same way).

Every record ends in exactly one outcome (see `reports.Outcome`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cirrus_feed.backends.base import Backends, Claim, Finish, StateRecord, WriteResult
from cirrus_feed.errors import (
    PERMANENT_RECORD_ERRORS,
    BackendError,
    ClaimConflictError,
    PayloadValidationError,
    StaleExecutionError,
    wire_message,
)
from cirrus_feed.model import layout
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.executions import execution_arn, execution_name, name_from_arn
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.model.states import SKIP_UNLESS_REPLACE, UNCLAIMABLE, State
from cirrus_feed.pipeline import process_start
from cirrus_feed.pipeline.announcer import Announcer
from cirrus_feed.pipeline.invalid import record_invalid
from cirrus_feed.pipeline.isolation import read_records, unexpected, write_each
from cirrus_feed.pipeline.process_start import Started, StartRequest, start_all
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Intake:
    index: int
    envelope: Envelope
    payload: ProcessPayload


@dataclass(slots=True)
class _Job:
    """One payload of the batch (its first occurrence) on its way through the writes."""

    intake: _Intake
    events: Announcer  # this record's events, announced in record order
    record: StateRecord | None  # as last read
    retry: bool = True  # a lost claim may be decided once more on the current record
    result: RecordResult | None = None


class Processor:
    """Runs the process stage over normalised records (see `envelopes.normalize`)."""

    def __init__(
        self, backends: Backends, *, clock: Clock = SYSTEM_CLOCK, start_threads: int | None = None
    ) -> None:
        self.b = backends
        self.clock = clock
        # Starts of one batch run side by side unless the runner executes in this process.
        self.start_threads = start_threads or process_start.start_threads(backends)

    def process(self, envelopes: Sequence[Envelope]) -> StageReport:
        report = StageReport()
        with Announcer.for_backends(self.b, self.clock) as announcer:
            accepted: list[_Intake] = []
            for index, envelope in enumerate(envelopes):
                try:
                    intake = self._intake(index, envelope, report, announcer)
                except Exception as exc:  # noqa: BLE001 - fails this record only
                    reason = unexpected(exc, f"record {index} ({envelope.message_id})")
                    report.add(
                        RecordResult(
                            index, Outcome.FAILED, message_id=envelope.message_id, reason=reason
                        )
                    )
                    continue
                if intake is not None:
                    accepted.append(intake)
            try:
                records, broken = read_records(self.b.state, (i.payload.id for i in accepted))
            except BackendError as exc:
                for intake in accepted:
                    report.add(self._result(intake, Outcome.FAILED, str(exc)))
                accepted, records, broken = [], {}, {}
            announcer.drain_finished(records.values())
            self._run(accepted, records, broken, report, announcer)
        report.results.sort(key=lambda r: r.index)
        return report

    def _run(
        self,
        accepted: list[_Intake],
        records: dict[str, StateRecord],
        broken: dict[str, str],
        report: StageReport,
        announcer: Announcer,
    ) -> None:
        """Decide every record, then write the batch's claims, starts, failures and
        set-processings in bulk (one state-store call each); each record's events are
        announced in record order."""
        jobs: list[_Job] = []
        first: dict[str, _Job] = {}
        duplicates: list[tuple[_Intake, Announcer]] = []
        slots: list[Announcer] = []
        for intake in accepted:
            events = announcer.child()
            slots.append(events)
            payload_id = intake.payload.id
            if payload_id in broken:
                report.add(self._result(intake, Outcome.FAILED, broken[payload_id]))
            elif payload_id in first:
                duplicates.append((intake, events))
            else:
                job = _Job(intake, events, records.get(payload_id))
                first[payload_id] = job
                jobs.append(job)
        batch = _Batch(self, jobs)
        batch.run()
        for job in jobs:
            report.add(job.result or self._result(job.intake, Outcome.FAILED, "not decided"))
        for intake, events in duplicates:
            source = first[intake.payload.id]
            payload_id = intake.payload.id
            url = source.events.input_url_for(payload_id) or announcer.input_url_for(payload_id)
            events.event(
                "DUPLICATE_ID_ENCOUNTERED",
                payload_id,
                input_url=url or self._planned_input_url(payload_id, records),
            )
            report.add(self._result(intake, Outcome.DUPLICATE, "duplicate id in batch"))
        announcer.adopt(slots)

    def _planned_input_url(self, payload_id: str, records: dict[str, StateRecord]) -> str:
        """Where the input of this id's execution in this batch is (Cirrus sends it with
        ``DUPLICATE_ID_ENCOUNTERED``) when the first occurrence announced none: that of the
        execution planned from the record read before the batch, as Cirrus computes it."""
        record = records.get(payload_id)
        if record is not None and record.state is State.CLAIMED and record.latest_execution:
            name = name_from_arn(record.latest_execution)
        else:
            history = record.executions if record else ()
            name = execution_name(payload_id, history, self.b.runner.region)
        return self.b.store.url_for(layout.input_key(payload_id, name))

    # -- intake ---------------------------------------------------------------------------

    def _intake(
        self, index: int, envelope: Envelope, report: StageReport, announcer: Announcer
    ) -> _Intake | None:
        if envelope.kind == "ignored":
            report.add(RecordResult(index, Outcome.IGNORED, message_id=envelope.message_id))
            return None
        if envelope.kind == "error":
            self._reject(
                index,
                envelope,
                envelope.error or "unreadable record",
                None,
                report,
                announcer,
                "RECORD_EXTRACT_FAILED",
                wire=envelope.reason,
            )
            return None
        if envelope.kind != "payload":
            self._reject(
                index,
                envelope,
                f"a {envelope.kind} event is not a process payload",
                None,
                report,
                announcer,
                "NOT_A_PROCESS_PAYLOAD",
            )
            return None
        body: Any = envelope.body
        try:
            if isinstance(body, dict) and "url" in body:
                body = self.b.store.get_json(str(body["url"]))
            return _Intake(index, envelope, ProcessPayload.from_dict(body))
        except PERMANENT_RECORD_ERRORS as exc:
            payload_id = exc.payload_id if isinstance(exc, PayloadValidationError) else None
            self._reject(
                index,
                envelope,
                str(exc),
                payload_id,
                report,
                announcer,
                "NOT_A_PROCESS_PAYLOAD",
                wire=wire_message(exc),
            )
        except BackendError as exc:  # transient read failure: retry this record only
            report.add(
                RecordResult(index, Outcome.FAILED, message_id=envelope.message_id, reason=str(exc))
            )
        return None

    def _reject(
        self,
        index: int,
        envelope: Envelope,
        reason: str,
        payload_id: str | None,
        report: StageReport,
        announcer: Announcer,
        event_type: str,
        *,
        wire: str | None = None,
    ) -> None:
        """Record ``envelope`` as invalid with the full ``reason`` (naming the record); the
        event's ``error`` is ``wire``, the bare cause Cirrus would announce."""
        try:
            url = record_invalid(
                self.b.store,
                envelope.raw,
                reason,
                stage="process",
                payload_id=payload_id,
                clock=self.clock,
            )
        except BackendError as exc:
            report.add(
                RecordResult(
                    index,
                    Outcome.FAILED,
                    payload_id,
                    envelope.message_id,
                    reason=f"{reason}; and it could not be recorded: {exc}",
                )
            )
            return
        announcer.event(event_type, payload_id or "unknown", input_url=url, error=wire or reason)
        report.add(
            RecordResult(
                index, Outcome.INVALID, payload_id, envelope.message_id, reason=reason, url=url
            )
        )

    @staticmethod
    def _result(intake: _Intake, outcome: Outcome, reason: str | None = None) -> RecordResult:
        return RecordResult(
            intake.index, outcome, intake.payload.id, intake.envelope.message_id, reason=reason
        )


class _Batch:
    """The decision table (Q1-Q8) of every job, with the state writes of each step made for
    the whole batch at once: claims, then starts, then FAILED records, then PROCESSING."""

    def __init__(self, processor: Processor, jobs: list[_Job]) -> None:
        self.p = processor
        self.b = processor.b
        self.jobs = jobs
        self.to_start: list[tuple[_Job, StateRecord]] = []

    def run(self) -> None:
        to_claim = self.jobs
        while to_claim:  # a claim that lost to a moved-on history is decided once more
            to_claim = self._claim(
                [job for job in to_claim if self._guard(job, functools.partial(self._decide, job))]
            )
        self._start()

    def _guard(self, job: _Job, step: Callable[[], bool]) -> bool:
        """Run one record's step; an unexpected error fails that record only."""
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - fails this record only
            self._done(job, Outcome.FAILED, unexpected(exc, f"payload {job.intake.payload.id!r}"))
            return False

    def _done(self, job: _Job, outcome: Outcome, reason: str | None = None) -> None:
        job.result = self.p._result(job.intake, outcome, reason)

    def _decide(self, job: _Job) -> bool:
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

    def _claim(self, jobs: list[_Job]) -> list[_Job]:
        """Claim ``jobs`` in one write; returns those to decide again."""
        claims = []
        for job in jobs:
            payload, record = job.intake.payload, job.record
            history = record.executions if record else ()
            name = execution_name(payload.id, history, self.b.runner.region)
            arn = execution_arn(self.b.runner.base_arn, payload.workflow, name)
            claims.append(Claim(payload.id, arn, record))
        again = []
        for job, result in zip(jobs, write_each(self.b.state.claim_many, claims), strict=True):
            if self._guard(job, functools.partial(self._claimed, job, result)):
                again.append(job)
        return again

    def _claimed(self, job: _Job, result: WriteResult) -> bool:
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
        started = start_all(self.b, requests, threads=self.p.start_threads)
        failing: list[tuple[_Job, StateRecord, Started]] = []
        processing: list[tuple[_Job, StateRecord, Started]] = []
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

    def _keep_claimed(self, job: _Job, claimed: StateRecord, error: str) -> None:
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

    def _fail(self, failing: list[tuple[_Job, StateRecord, Started]]) -> None:
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

    def _set_processing(self, processing: list[tuple[_Job, StateRecord, Started]]) -> None:
        results = write_each(self.b.state.set_processing_many, [c for _, c, _ in processing])
        for (job, claimed, outcome), result in zip(processing, results, strict=True):
            self._guard(job, functools.partial(self._processing, job, claimed, outcome, result))

    def _processing(
        self, job: _Job, claimed: StateRecord, outcome: Started, result: WriteResult
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
