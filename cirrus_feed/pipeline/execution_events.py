"""Envelopes of execution events (EventBridge "Step Functions Execution Status Change",
direct or through SQS) → the update-state stage; any other record is kept as invalid.

Shared by the update-state Lambda and the update-state queue worker, so both report the same
per-record outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cirrus_feed.backends.base import PayloadStore
from cirrus_feed.errors import BackendError
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.pipeline.invalid import record_invalid
from cirrus_feed.pipeline.isolation import unexpected
from cirrus_feed.pipeline.update_state import StateUpdater
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock


def apply_execution_events(
    updater: StateUpdater,
    store: PayloadStore,
    envelopes: Sequence[Envelope],
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> StageReport:
    """Apply every execution envelope; record the others invalid. One result per envelope."""
    positions = [i for i, e in enumerate(envelopes) if e.kind == "execution"]
    executions = [envelopes[i] for i in positions]
    report = StageReport()
    updated = updater.update([e.body for e in executions], [e.message_id for e in executions])
    # the updater numbers its results among the executions: number them among all envelopes
    report.results.extend(replace(r, index=positions[r.index]) for r in updated.results)
    for index, envelope in enumerate(envelopes):
        if envelope.kind != "execution":
            report.add(_not_an_execution(store, index, envelope, clock))
    report.results.sort(key=lambda r: r.index)
    return report


def _not_an_execution(
    store: PayloadStore, index: int, envelope: Envelope, clock: Clock
) -> RecordResult:
    """Kept as invalid; if it cannot be kept, failed (and retried), never dropped."""
    reason = envelope.error or f"a {envelope.kind} record is not an execution event"
    try:
        url = record_invalid(store, envelope.raw, reason, stage="update-state", clock=clock)
    except BackendError as exc:
        failed = f"{reason}; and it could not be recorded: {exc}"
        return RecordResult(index, Outcome.FAILED, message_id=envelope.message_id, reason=failed)
    except Exception as exc:  # noqa: BLE001 - fails this record only
        reason = unexpected(exc, f"update-state record {index}")
        return RecordResult(index, Outcome.FAILED, message_id=envelope.message_id, reason=reason)
    return RecordResult(
        index, Outcome.INVALID, message_id=envelope.message_id, reason=reason, url=url
    )
