"""Stuck payloads: CLAIMED or PROCESSING for longer than a while with no live execution.

A record is stuck when its latest execution is not running any more (the outcome never
reached update-state), was never started (a crash between claim and start), or is
missing altogether. Whether it runs is asked of the workflow runner (Step Functions'
DescribeExecution; the inline runner's execution log), never guessed from the state DB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cirrus_feed.backends.base import StateQuery, StateStore, WorkflowRunner
from cirrus_feed.errors import PayloadNotFoundError
from cirrus_feed.model.records import StateRecord
from cirrus_feed.model.states import ACTIVE
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

PAGE = 100


@dataclass(frozen=True, slots=True)
class StuckRecord:
    """A stuck record and why: ``execution`` is ``"finished"`` (with ``status``),
    ``"missing"`` (the runner does not know it) or ``"none"`` (no execution recorded)."""

    record: StateRecord
    execution: str
    status: str | None = None

    @property
    def reason(self) -> str:
        arn = self.record.latest_execution
        if self.execution == "finished":
            return f"execution {arn} ended {self.status} but the state was not updated"
        if self.execution == "missing":
            return f"execution {arn} was never started"
        return "no execution recorded"

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "payload_id": record.payload_id,
            "state": record.state.value,
            "updated": record.updated,
            "claimed_at": record.claimed_at,
            "execution_arn": record.latest_execution,
            "execution": self.execution,
            "execution_status": self.status,
            "reason": self.reason,
        }


def find_stuck(
    state: StateStore,
    runner: WorkflowRunner,
    older_than: timedelta,
    *,
    collections_workflow: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Iterator[StuckRecord]:
    """Every CLAIMED/PROCESSING record not updated for ``older_than`` whose latest
    execution is not running, CLAIMED ones first. Pages through the state DB lazily."""
    cutoff = clock.now() - older_than
    for active in sorted(ACTIVE):  # CLAIMED, PROCESSING
        query = StateQuery(collections_workflow=collections_workflow, state=active)
        next_key: str | None = None
        while True:
            page = state.query(query, limit=PAGE, next_key=next_key)
            for record in page.records:
                if _older(record, cutoff):
                    found = check(record, runner)
                    if found is not None:
                        yield found
            next_key = page.next_key
            if next_key is None:
                break


def check(record: StateRecord, runner: WorkflowRunner) -> StuckRecord | None:
    """The record as stuck, or None while its latest execution runs."""
    arn = record.latest_execution
    if arn is None:
        return StuckRecord(record, "none")
    try:
        outcome = runner.describe(arn)
    except PayloadNotFoundError:
        return StuckRecord(record, "missing")
    if outcome is None:
        return None
    return StuckRecord(record, "finished", outcome.status)


def _older(record: StateRecord, cutoff: datetime) -> bool:
    try:
        updated = datetime.fromisoformat(record.updated)
    except ValueError:
        return True  # an unreadable stamp: show it rather than hide it
    return (updated if updated.tzinfo else updated.replace(tzinfo=UTC)) <= cutoff
