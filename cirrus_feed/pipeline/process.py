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

Every record ends in exactly one outcome (see `reports.Outcome`). The decisions are made
per record, the state writes per batch (`process_batch`: one claim, one FAILED and one
set-processing write a batch), the starts side by side (`process_start`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from cirrus_feed.backends.base import Backends, StateRecord
from cirrus_feed.errors import (
    PERMANENT_RECORD_ERRORS,
    BackendError,
    PayloadValidationError,
    wire_message,
)
from cirrus_feed.model import layout
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.executions import execution_name, name_from_arn
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.model.states import State
from cirrus_feed.pipeline import process_start
from cirrus_feed.pipeline.announcer import Announcer
from cirrus_feed.pipeline.invalid import record_invalid
from cirrus_feed.pipeline.isolation import read_records, unexpected
from cirrus_feed.pipeline.process_batch import BatchRun, Intake, Job, result_of
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


class Processor:
    """Runs the process stage over normalised records (see `envelopes.normalize`)."""

    def __init__(
        self, backends: Backends, *, clock: Clock = SYSTEM_CLOCK, start_threads: int | None = None
    ) -> None:
        self.b = backends
        self.clock = clock
        # Starts of one batch run side by side unless the runner executes in this process.
        self.start_threads = start_threads or process_start.parallel_calls(backends)

    def process(self, envelopes: Sequence[Envelope]) -> StageReport:
        report = StageReport()
        with Announcer.for_backends(self.b, self.clock) as announcer:
            accepted: list[Intake] = []
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
        accepted: list[Intake],
        records: dict[str, StateRecord],
        broken: dict[str, str],
        report: StageReport,
        announcer: Announcer,
    ) -> None:
        """Decide every record, then write the batch's claims, starts, failures and
        set-processings in bulk (one state-store call each); each record's events are
        announced in record order."""
        jobs: list[Job] = []
        first: dict[str, Job] = {}
        duplicates: list[tuple[Intake, Announcer]] = []
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
                job = Job(intake, events, records.get(payload_id))
                first[payload_id] = job
                jobs.append(job)
        BatchRun(self.b, jobs, self.start_threads).run()
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
    ) -> Intake | None:
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
            return Intake(index, envelope, ProcessPayload.from_dict(body))
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
    def _result(intake: Intake, outcome: Outcome, reason: str | None = None) -> RecordResult:
        return result_of(intake, outcome, reason)
