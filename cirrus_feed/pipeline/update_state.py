"""The update-state stage: record how each workflow execution ended (spec §5).

Outcome mapping and ``last_error`` text are Cirrus v2's. Deliberate changes:

* A completion whose execution is not the payload's latest execution is *stale*: it is
  reported and logged and changes nothing (Cirrus overwrote the newer run's state).
* A repeated completion for an already finished execution is a no-op (``duplicate``).
* Side effects of success (output archive, item publishing, chaining) happen *before* the
  state moves to SUCCEEDED, so a crash in between is retried instead of losing the items.
* An output payload that breaks the payload contract ends FAILED with the reason, instead of
  leaving the record PROCESSING forever. So does one with an item too large to publish
  (SNS: 256 KiB): only that completion fails, the batch's other items are published.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from cirrus_feed.backends.base import (
    Backends,
    ExecutionOutcome,
    Finish,
    StateRecord,
    WorkflowEvent,
    WriteResult,
)
from cirrus_feed.backends.limits import SNS_MAX_MESSAGE_BYTES
from cirrus_feed.errors import (
    PERMANENT_RECORD_ERRORS,
    BackendError,
    ClaimConflictError,
    InvalidRecordError,
    PayloadTooLargeError,
    StaleExecutionError,
    wire_message,
)
from cirrus_feed.model import layout
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.model.states import TERMINAL, State
from cirrus_feed.pipeline.announcer import Announcer
from cirrus_feed.pipeline.chaining import next_payloads
from cirrus_feed.pipeline.enqueue import Enqueuer
from cirrus_feed.pipeline.invalid import record_invalid
from cirrus_feed.pipeline.isolation import read_records, unexpected, write_each
from cirrus_feed.pipeline.outcomes import INVALID_ERRORS as INVALID_ERRORS
from cirrus_feed.pipeline.outcomes import NO_CAUSE as NO_CAUSE
from cirrus_feed.pipeline.outcomes import classify
from cirrus_feed.pipeline.outcomes import error_text as error_text
from cirrus_feed.pipeline.process_start import parallel_calls
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Completion:
    index: int
    outcome: ExecutionOutcome
    payload: ProcessPayload


@dataclass(slots=True)
class _CompletionPlan:
    """What one completion will do once the batch's items and children are sent."""

    completion: _Completion
    record: StateRecord
    state: State
    event_type: str
    error: str | None
    name: str  # execution name
    output_url: str | None = None
    items: list[Any] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)


class StateUpdater:
    """Applies execution outcomes to the state DB, archives outputs, publishes and chains."""

    def __init__(self, backends: Backends, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.b = backends
        self.clock = clock
        self.enqueuer = Enqueuer(backends.queue, backends.store, clock=clock)
        self.threads = parallel_calls(backends)

    def update(
        self,
        outcomes: Sequence[ExecutionOutcome],
        message_ids: Sequence[str | None] | None = None,
    ) -> StageReport:
        """Apply each outcome; ``message_ids`` (parallel to ``outcomes``) tag the results so
        a queue-fed handler can report exactly the failed messages."""
        report = StageReport()
        with Announcer.for_backends(self.b, self.clock) as announcer:
            completions = []
            for index, outcome in enumerate(outcomes):
                try:
                    completion = self._intake(index, outcome, report)
                except Exception as exc:  # noqa: BLE001 - fails this record only
                    reason = unexpected(exc, f"execution {outcome.execution_arn}")
                    report.add(RecordResult(index, Outcome.FAILED, reason=reason))
                    continue
                if completion is not None:
                    completions.append(completion)
            plans = self._plans(completions, report, announcer)
            ready = self._publish_and_chain(plans, report)
            report.results += self._finish_all(ready, announcer)
            self._announce(announcer, report)
        report.results.sort(key=lambda r: r.index)
        if message_ids is not None:
            report.results = [replace(r, message_id=message_ids[r.index]) for r in report.results]
        return report

    def _plans(
        self, completions: list[_Completion], report: StageReport, announcer: Announcer
    ) -> list[_CompletionPlan]:
        """Read the batch's records and plan each completion; a completion its record says
        is already applied has its announcement drained from the outbox (a crash, or the
        topic down, may have kept it from being announced)."""
        try:
            records, broken = read_records(self.b.state, (c.payload.id for c in completions))
        except BackendError as exc:
            for c in completions:
                report.add(self._result(c, Outcome.FAILED, str(exc)))
            return []
        plans, applied = [], []
        readable = []
        for completion in completions:
            if completion.payload.id in broken:
                report.add(self._result(completion, Outcome.FAILED, broken[completion.payload.id]))
            else:
                readable.append(completion)
        for completion, planned in zip(readable, self._plan_all(readable, records), strict=True):
            payload_id = completion.payload.id
            if isinstance(planned, _CompletionPlan):
                plans.append(planned)
                continue
            report.add(planned)
            if planned.outcome is Outcome.DUPLICATE:
                applied.append(payload_id)
        if applied:
            try:
                announcer.drain(applied)
            except BackendError as exc:
                # Their events may still wait in the outbox: fail them, so the redelivery
                # drains it again (a success here would let the queue drop the message).
                log.warning("outbox of %d finished payloads not read: %s", len(applied), exc)
                reason = f"workflow event may be unannounced (outbox not read: {exc})"
                report.results = [
                    replace(r, outcome=Outcome.FAILED, reason=reason)
                    if r.payload_id in applied and r.outcome is Outcome.DUPLICATE
                    else r
                    for r in report.results
                ]
        return plans

    def _announce(self, announcer: Announcer, report: StageReport) -> None:
        """Flush the batch's events; a completion whose announcement was not delivered is
        reported failed, so its redelivery announces it from the outbox."""
        undelivered = {e.payload_id for e in announcer.flush()}
        if not undelivered:
            return
        report.results = [
            replace(r, outcome=Outcome.FAILED, reason="workflow event not announced (kept)")
            if r.payload_id in undelivered and r.outcome in (Outcome.UPDATED, Outcome.DUPLICATE)
            else r
            for r in report.results
        ]

    def _crashed(self, completion: _Completion, exc: Exception) -> RecordResult:
        reason = unexpected(exc, f"execution {completion.outcome.execution_arn}")
        return self._result(completion, Outcome.FAILED, reason)

    def _intake(
        self, index: int, outcome: ExecutionOutcome, report: StageReport
    ) -> _Completion | None:
        try:
            if not outcome.input_included:
                raise InvalidRecordError("Input details not included in EventBridge event")
            return _Completion(index, outcome, self._load(outcome.input, derive_id=False))
        except PERMANENT_RECORD_ERRORS as exc:
            reason = f"execution {outcome.execution_arn}: {exc}"
            raw = {
                "execution_arn": outcome.execution_arn,
                "status": outcome.status,
                "input": outcome.input,
            }
            try:
                url = record_invalid(
                    self.b.store, raw, reason, stage="update-state", clock=self.clock
                )
            except BackendError as store_exc:
                report.add(RecordResult(index, Outcome.FAILED, reason=str(store_exc)))
                return None
            report.add(RecordResult(index, Outcome.INVALID, reason=reason, url=url))
        except BackendError as exc:
            report.add(RecordResult(index, Outcome.FAILED, reason=str(exc)))
        return None

    def _load(self, document: Any, *, derive_id: bool) -> ProcessPayload:
        if isinstance(document, dict) and "url" in document and "process" not in document:
            document = self.b.store.get_json(str(document["url"]))
        return ProcessPayload.from_dict(document, derive_id=derive_id)

    def _plan_all(
        self, completions: list[_Completion], records: dict[str, StateRecord]
    ) -> list[_CompletionPlan | RecordResult]:
        """`_plan` each completion; side by side (output archives are a write each) when
        the runner is remote, else with the outputs archived in one `put_many`."""
        local = self.threads <= 1 and len(completions) > 1
        archives: list[tuple[int, str, dict[str, Any]]] = []

        def plan(completion: _Completion) -> _CompletionPlan | RecordResult:
            try:
                return self._plan(
                    completion, records.get(completion.payload.id), archives if local else None
                )
            except Exception as exc:  # noqa: BLE001 - fails this record only
                return self._crashed(completion, exc)

        if self.threads <= 1 or len(completions) <= 1:
            planned: list[_CompletionPlan | RecordResult] = []
            for completion in completions:
                archives_before = len(archives)
                planned.append(plan(completion))
                if len(archives) > archives_before and not isinstance(planned[-1], _CompletionPlan):
                    del archives[archives_before:]  # planning failed after the output was read
                elif len(archives) > archives_before:
                    archives[-1] = (len(planned) - 1, *archives[-1][1:])
            self._archive_all(planned, archives)
            return planned
        with ThreadPoolExecutor(max_workers=min(self.threads, len(completions))) as pool:
            return list(pool.map(plan, completions))

    def _archive_all(
        self,
        planned: list[_CompletionPlan | RecordResult],
        archives: list[tuple[int, str, dict[str, Any]]],
    ) -> None:
        """Put the outputs `_archive` left for the batch in one write; when that fails,
        each alone, a failed put failing its completion only."""
        if not archives:
            return
        try:
            urls = self.b.store.put_many([(key, output) for _, key, output in archives])
        except Exception:  # noqa: BLE001 - each output then takes its own put, as if alone
            log.warning("archiving %d outputs failed; one at a time", len(archives))
            for index, key, output in archives:
                plan = planned[index]
                assert isinstance(plan, _CompletionPlan)
                try:
                    plan.output_url = self.b.store.put_json(key, output)
                except BackendError as exc:
                    planned[index] = self._result(plan.completion, Outcome.FAILED, str(exc))
                except Exception as exc:  # noqa: BLE001 - fails this record only
                    planned[index] = self._crashed(plan.completion, exc)
            return
        for (index, _, _), url in zip(archives, urls, strict=True):
            plan = planned[index]
            assert isinstance(plan, _CompletionPlan)
            plan.output_url = url

    def _plan(
        self,
        completion: _Completion,
        record: StateRecord | None,
        archives: list[tuple[int, str, dict[str, Any]]] | None = None,
    ) -> _CompletionPlan | RecordResult:
        """Decide what the completion does; on success archive the output and gather its
        items and chained children (sent for the whole batch at once, before any state moves).
        """
        arn = completion.outcome.execution_arn
        if record is None or record.latest_execution != arn:
            return self._stale(completion, record)
        if record.state in TERMINAL:
            return self._result(completion, Outcome.DUPLICATE, f"already {record.state.value}")
        state, event_type, error = classify(completion.outcome)
        name = completion.outcome.name or arn.rsplit(":", 1)[-1]
        plan = _CompletionPlan(completion, record, state, event_type, error, name)
        if state is State.SUCCEEDED:
            try:
                self._archive(plan, archives)
            except PERMANENT_RECORD_ERRORS as exc:
                log.warning(
                    "output payload rejected: %s", exc, extra={"payload_id": record.payload_id}
                )
                plan.state, plan.event_type = State.FAILED, "FAILED"
                plan.error = f"InvalidOutput: output payload rejected: {wire_message(exc)}"
                plan.items, plan.children = [], []
            except BackendError as exc:
                return self._result(completion, Outcome.FAILED, str(exc))
        return plan

    def _archive(
        self, plan: _CompletionPlan, archives: list[tuple[int, str, dict[str, Any]]] | None
    ) -> None:
        """Store the output payload (or leave it in ``archives`` for the batch's one write)
        and gather its items and next-hop children."""
        payload_id = plan.completion.payload.id
        if plan.completion.outcome.output is None:
            log.warning("execution succeeded without output", extra={"payload_id": payload_id})
            return
        output = self._load(plan.completion.outcome.output, derive_id=False).to_dict()
        children = next_payloads(output)  # a broken chain is the output's fault: FAILED
        key = layout.output_key(payload_id, plan.name)
        if archives is None:
            plan.output_url = self.b.store.put_json(key, output)
        else:
            archives.append((-1, key, output))  # its index in the batch: set by _plan_all
        plan.items = list(output.get("features") or [])
        for child in children:
            if child.filtered_out:
                log.info(
                    "chain branch %d matched no feature; not enqueued",
                    child.branch,
                    extra={"payload_id": payload_id},
                )
            else:
                plan.children.append(child.payload)

    def _publish_and_chain(
        self, plans: list[_CompletionPlan], report: StageReport
    ) -> list[_CompletionPlan]:
        """Publish every item and enqueue every child of the batch in bulk; the plans that
        may now be finished. If that fails, the completions that had something to send
        fail (and are retried) and the others go on."""
        sending = [p for p in plans if p.items or p.children]
        try:
            self._send(sending)
        except BackendError as exc:
            for plan in sending:
                report.add(self._result(plan.completion, Outcome.FAILED, str(exc)))
            return [p for p in plans if not (p.items or p.children)]
        except Exception:  # noqa: BLE001 - one plan's items broke the call: find which
            log.warning("publishing %d completions failed; one at a time", len(sending))
            sent = []
            for plan in sending:
                try:
                    self._send([plan])
                except BackendError as exc:
                    report.add(self._result(plan.completion, Outcome.FAILED, str(exc)))
                except Exception as exc:  # noqa: BLE001 - fails this completion only
                    report.add(self._crashed(plan.completion, exc))
                else:
                    sent.append(plan)
            return [p for p in plans if not (p.items or p.children)] + sent
        return plans

    def _send(self, sending: list[_CompletionPlan]) -> None:
        """Publish the items and enqueue the children of ``sending`` in bulk."""
        self._publish(sending)
        chained = self.enqueuer.enqueue(
            (child for p in sending for child in p.children), send_ids=False
        )
        if chained.counts.get(Outcome.FAILED.value):
            # Invalid children are already in the invalid store; failed sends retry.
            raise BackendError(f"chaining failed: {chained.counts}")

    def _publish(self, sending: list[_CompletionPlan]) -> None:
        """Publish the items of every plan in one call. A plan with an item the notifier
        refuses as too large ends FAILED (its output cannot be published, however often it
        is retried) and is not chained; the other plans go on."""
        owners = [(plan, item) for plan in sending for item in plan.items]
        if not owners:
            return
        try:
            self.b.notifier.publish_items([item for _, item in owners])
        except PayloadTooLargeError as exc:
            if not exc.indexes:
                raise
            for index in exc.indexes:
                plan, item = owners[index]
                item_id = item.get("id") if isinstance(item, dict) else None
                plan.state, plan.event_type = State.FAILED, "FAILED"
                plan.error = (
                    f"InvalidOutput: output item {item_id!r} cannot be published: over the "
                    f"SNS message limit of {SNS_MAX_MESSAGE_BYTES} bytes"
                )
                plan.children = []

    def _finish_all(self, plans: list[_CompletionPlan], announcer: Announcer) -> list[RecordResult]:
        """Record every plan's end in one state-store write, each with its event in the
        outbox; one result per plan."""
        results: list[RecordResult] = []
        planned: list[tuple[_CompletionPlan, WorkflowEvent]] = []
        for plan in plans:
            try:
                planned.append((plan, self._event(plan, announcer)))
            except Exception as exc:  # noqa: BLE001 - fails this record only
                results.append(self._crashed(plan.completion, exc))
        finishes = [
            Finish(p.record, p.completion.outcome.execution_arn, p.state, p.error, event)
            for p, event in planned
        ]
        drain: list[str] = []
        for (plan, event), written in zip(
            planned, write_each(self.b.state.finish_many, finishes), strict=True
        ):
            try:
                results.append(self._finished(plan, event, written, announcer, drain))
            except Exception as exc:  # noqa: BLE001 - fails this record only
                results.append(self._crashed(plan.completion, exc))
        if drain:
            try:
                announcer.drain(drain)
            except BackendError as exc:
                results = [
                    replace(r, outcome=Outcome.FAILED, reason=str(exc))
                    if r.payload_id in drain and r.outcome is Outcome.DUPLICATE
                    else r
                    for r in results
                ]
        return results

    def _event(self, plan: _CompletionPlan, announcer: Announcer) -> WorkflowEvent:
        payload_id = plan.completion.payload.id
        return announcer.outbox_event(
            plan.event_type,
            payload_id,
            execution_arn=plan.completion.outcome.execution_arn,
            input_url=self.b.store.url_for(layout.input_key(payload_id, plan.name)),
            output_url=plan.output_url,
            error=plan.error,
        )

    def _finished(
        self,
        plan: _CompletionPlan,
        event: WorkflowEvent,
        written: WriteResult,
        announcer: Announcer,
        drain: list[str],
    ) -> RecordResult:
        """The result of one finish; ``drain`` gets the ids whose outbox is to be read."""
        completion, arn = plan.completion, plan.completion.outcome.execution_arn
        if isinstance(written, StaleExecutionError):
            return self._stale(completion, written.current)
        if isinstance(written, ClaimConflictError):
            if written.current is not None and written.current.latest_execution == arn:
                # Finished by this execution: maybe by this very write, whose response was
                # lost and whose retry found it done. Its event may be in the outbox.
                drain.append(completion.payload.id)
            current = written.current.state.value if written.current else "absent"
            return self._result(completion, Outcome.DUPLICATE, f"already {current}")
        if isinstance(written, BackendError):
            return self._result(completion, Outcome.FAILED, str(written))
        if isinstance(written, Exception):
            raise written
        announcer.add(event)
        return self._result(completion, Outcome.UPDATED, plan.state.value)

    def _stale(self, completion: _Completion, record: StateRecord | None) -> RecordResult:
        latest = record.latest_execution if record else None
        log.warning(
            "stale completion ignored: execution %s is not the latest (%s)",
            completion.outcome.execution_arn,
            latest,
            extra={"payload_id": completion.payload.id},
        )
        return self._result(completion, Outcome.STALE, f"execution is not the latest ({latest})")

    @staticmethod
    def _result(
        completion: _Completion, outcome: Outcome, reason: str | None = None
    ) -> RecordResult:
        return RecordResult(completion.index, outcome, completion.payload.id, reason=reason)
