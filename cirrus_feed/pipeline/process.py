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

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from cirrus_feed.backends.base import Backends, StateRecord
from cirrus_feed.errors import (
    PERMANENT_RECORD_ERRORS,
    BackendError,
    BackendUnavailableError,
    ClaimConflictError,
    ExecutionAlreadyExistsError,
    PayloadNotFoundError,
    PayloadValidationError,
    StaleExecutionError,
    WorkflowNotFoundError,
    wire_message,
)
from cirrus_feed.model import layout
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.executions import execution_arn, execution_name, name_from_arn
from cirrus_feed.model.payload import ProcessPayload, fits_inline
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.model.states import SKIP_UNLESS_REPLACE, UNCLAIMABLE, State
from cirrus_feed.pipeline.announcer import Announcer
from cirrus_feed.pipeline.invalid import record_invalid
from cirrus_feed.pipeline.isolation import read_records, unexpected
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Intake:
    index: int
    envelope: Envelope
    payload: ProcessPayload


class Processor:
    """Runs the process stage over normalised records (see `envelopes.normalize`)."""

    def __init__(self, backends: Backends, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.b = backends
        self.clock = clock

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
            seen: set[str] = set()
            for intake in accepted:
                payload_id = intake.payload.id
                if payload_id in broken:
                    report.add(self._result(intake, Outcome.FAILED, broken[payload_id]))
                    continue
                try:
                    result = self._one(intake, records, seen, announcer)
                except Exception as exc:  # noqa: BLE001 - fails this record only
                    result = self._result(
                        intake, Outcome.FAILED, unexpected(exc, f"payload {payload_id!r}")
                    )
                report.add(result)
        report.results.sort(key=lambda r: r.index)
        return report

    def _one(
        self,
        intake: _Intake,
        records: dict[str, StateRecord],
        seen: set[str],
        announcer: Announcer,
    ) -> RecordResult:
        payload_id = intake.payload.id
        if payload_id in seen:
            announcer.event(
                "DUPLICATE_ID_ENCOUNTERED",
                payload_id,
                input_url=self._duplicate_input_url(payload_id, records, announcer),
            )
            return self._result(intake, Outcome.DUPLICATE, "duplicate id in batch")
        seen.add(payload_id)
        return self._decide(intake, records.get(payload_id), announcer)

    def _duplicate_input_url(
        self, payload_id: str, records: dict[str, StateRecord], announcer: Announcer
    ) -> str | None:
        """Where the input of this id's execution in this batch is (Cirrus sends it with
        ``DUPLICATE_ID_ENCOUNTERED``): the URL the first occurrence announced, else that of
        the execution planned from the record read before the batch, as Cirrus computes it.
        """
        announced = announcer.input_url_for(payload_id)
        if announced is not None:
            return announced
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

    # -- decision and start sequence ------------------------------------------------------

    def _decide(
        self,
        intake: _Intake,
        record: StateRecord | None,
        announcer: Announcer,
        *,
        retry: bool = True,
    ) -> RecordResult:
        payload = intake.payload
        if record is not None and record.state in SKIP_UNLESS_REPLACE and not payload.replace:
            announcer.already(record)
            return self._result(intake, Outcome.SKIPPED, f"already {record.state.value}")
        if record is not None and record.state is State.CLAIMED:
            # A claim whose execution may or may not have started: resume that execution.
            return self._start(intake, record, announcer)
        name = execution_name(payload.id, record.executions if record else (), self.b.runner.region)
        arn = execution_arn(self.b.runner.base_arn, payload.workflow, name)
        try:
            claimed = self.b.state.claim(payload.id, arn)
        except ClaimConflictError as exc:
            current = exc.current
            if current is not None and current.state is State.CLAIMED:
                return self._start(intake, current, announcer)
            if retry and current is not None and current.state not in UNCLAIMABLE:
                # The history moved on since the batch read (another worker ran it): decide
                # again on the current record, so the next name is derived from it.
                return self._decide(intake, current, announcer, retry=False)
            if current is not None:
                announcer.already(current)
                return self._result(intake, Outcome.SKIPPED, f"already {current.state.value}")
            announcer.event("ALREADY_PROCESSING", payload.id)
            return self._result(intake, Outcome.SKIPPED, "claim refused")
        except BackendError as exc:
            return self._result(intake, Outcome.FAILED, str(exc))
        announcer.event("CLAIMED_PROCESSING", payload.id)
        return self._start(intake, claimed, announcer)

    def _start(self, intake: _Intake, claimed: StateRecord, announcer: Announcer) -> RecordResult:
        payload = intake.payload
        arn = claimed.latest_execution
        assert arn is not None, "a CLAIMED record always has an execution"
        name = arn.rsplit(":", 1)[-1]
        input_url: str | None = None
        resumed = False
        try:
            input_url = self.b.store.put_json(layout.input_key(payload.id, name), payload.to_dict())
            self.b.runner.start(payload.workflow, name, self._execution_input(payload))
        except ExecutionAlreadyExistsError:
            resumed = True  # idempotent restart: someone started this very execution before
        except WorkflowNotFoundError as exc:
            return self._fail(intake, claimed, arn, str(exc), input_url, announcer)
        except BackendUnavailableError as exc:
            # Ambiguous: the start (or an earlier attempt's) may have gone through.
            if self._started(arn) is not True:
                return self._keep_claimed(intake, arn, f"failed starting workflow ({exc})")
            input_url = input_url or self._input_url(payload.id, name)
        except BackendError as exc:
            error = f"failed starting workflow ({exc})"
            started = self._started(arn)
            if started is None:
                return self._keep_claimed(intake, arn, error)
            if not started:
                return self._fail(intake, claimed, arn, error, input_url, announcer)
            input_url = input_url or self._input_url(payload.id, name)
        return self._set_processing(intake, claimed, arn, input_url, announcer, resumed=resumed)

    def _started(self, arn: str) -> bool | None:
        """Whether execution ``arn`` exists (the deterministic name makes it ours); None when
        that cannot be told now."""
        try:
            self.b.runner.describe(arn)
        except PayloadNotFoundError:
            return False
        except BackendError:
            log.warning("could not tell whether %s was started", arn, exc_info=True)
            return None
        return True

    def _input_url(self, payload_id: str, name: str) -> str:
        """Where the started execution's input was put (by the attempt that started it)."""
        return self.b.store.url_for(layout.input_key(payload_id, name))

    def _keep_claimed(self, intake: _Intake, arn: str, error: str) -> RecordResult:
        """Leave the record CLAIMED on ``arn`` and report the message failed: SQS redelivers
        it and the retry resumes this very execution name, so it can never start twice."""
        log.warning(
            "start of %s not confirmed, left CLAIMED: %s",
            arn,
            error,
            extra={"payload_id": intake.payload.id},
        )
        return self._result(intake, Outcome.FAILED, error)

    def _execution_input(self, payload: ProcessPayload) -> dict[str, Any]:
        data = payload.to_dict()
        if fits_inline(data):
            return data
        return {"url": self.b.store.put_json(layout.oversized_key(), data)}

    def _set_processing(
        self,
        intake: _Intake,
        claimed: StateRecord,
        arn: str,
        input_url: str | None,
        announcer: Announcer,
        *,
        resumed: bool,
    ) -> RecordResult:
        try:
            self.b.state.set_processing(claimed)
        except ClaimConflictError as exc:
            current = exc.current
            if current is not None and current.latest_execution == arn:
                if current.state is not State.PROCESSING and not resumed:
                    # Our execution already finished and update-state got there first.
                    return self._result(intake, Outcome.STARTED, f"already {current.state.value}")
                if current.state is not State.PROCESSING:
                    # Another worker started (and finished) this execution: not our start.
                    announcer.already(current)
                    return self._result(intake, Outcome.SKIPPED, "run by another worker")
                announcer.already(current)
                return self._result(intake, Outcome.SKIPPED, "started by another worker")
            if current is not None:
                announcer.already(current)
            return self._result(intake, Outcome.SKIPPED, "claimed again by a newer run")
        except BackendError as exc:
            return self._result(intake, Outcome.FAILED, str(exc))
        announcer.event(
            "STARTED_PROCESSING", intake.payload.id, execution_arn=arn, input_url=input_url
        )
        return self._result(intake, Outcome.STARTED)

    def _fail(
        self,
        intake: _Intake,
        claimed: StateRecord,
        arn: str,
        error: str,
        input_url: str | None,
        announcer: Announcer,
    ) -> RecordResult:
        event = announcer.outbox_event(
            "FAILED", intake.payload.id, input_url=input_url, error=error
        )
        try:
            self.b.state.finish(claimed, arn, State.FAILED, error, event=event)
        except (ClaimConflictError, StaleExecutionError):
            log.warning(
                "payload moved on while failing it", extra={"payload_id": claimed.payload_id}
            )
            event = replace(event, event_id=None)  # not in the outbox: announced as before
        except BackendError:
            log.exception("could not record FAILED", extra={"payload_id": claimed.payload_id})
            event = replace(event, event_id=None)
        announcer.add(event)
        return self._result(intake, Outcome.FAILED, error)

    @staticmethod
    def _result(intake: _Intake, outcome: Outcome, reason: str | None = None) -> RecordResult:
        return RecordResult(
            intake.index, outcome, intake.payload.id, intake.envelope.message_id, reason=reason
        )
