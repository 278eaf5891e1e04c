"""Envelopes of execution events (EventBridge "Step Functions Execution Status Change",
direct or through SQS) → the update-state stage; any other record is kept as invalid.

Shared by the update-state Lambda and the update-state queue worker, so both report the same
per-record outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cirrus_feed.backends.base import PayloadStore
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.pipeline.invalid import record_invalid
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
            reason = envelope.error or f"a {envelope.kind} record is not an execution event"
            url = record_invalid(store, envelope.raw, reason, stage="update-state", clock=clock)
            report.add(
                RecordResult(
                    index, Outcome.INVALID, message_id=envelope.message_id, reason=reason, url=url
                )
            )
    report.results.sort(key=lambda r: r.index)
    return report
