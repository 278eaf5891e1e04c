"""Contract of the state store's outbox (`StateStore.finish(event=...)`, `pending_events`,
`mark_announced`), run against SQLite and DynamoDB; and the event log's one copy per id."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirrus_feed.backends.base import StateStore, WorkflowEvent
from cirrus_feed.backends.local.event_log import EventLogNotifier
from cirrus_feed.errors import PayloadNotFoundError, StaleExecutionError
from cirrus_feed.model.states import State

PID = "col1/workflow-wf1/item-001"
OTHER = "col1/workflow-wf1/item-002"


def event(payload_id: str, event_id: str, event_type: str = "SUCCEEDED") -> WorkflowEvent:
    return WorkflowEvent(
        event_type,
        payload_id,
        "2026-01-01T00:00:00+00:00",
        input_payload_url="s3://bucket/in.json",
        error="boom" if event_type == "FAILED" else None,
        event_id=event_id,
    )


def finished(store: StateStore, payload_id: str, arn: str, ev: WorkflowEvent) -> None:
    claimed = store.claim(payload_id, arn)
    store.finish(claimed, arn, State.SUCCEEDED, event=ev)


def test_outbox_keeps_the_event_of_a_finish_until_marked_announced(state_store: StateStore) -> None:
    ev = event(PID, "e1")
    finished(state_store, PID, "arn:1", ev)
    finished(state_store, OTHER, "arn:2", event(OTHER, "e2"))

    assert state_store.pending_events([PID]) == [ev]
    assert sorted(e.event_id or "" for e in state_store.pending_events()) == ["e1", "e2"]

    state_store.mark_announced([ev])

    assert state_store.pending_events([PID]) == []
    assert [e.event_id for e in state_store.pending_events()] == ["e2"]
    assert state_store.get(PID).state is State.SUCCEEDED  # the record is untouched


def test_outbox_keeps_every_unannounced_event_of_a_record(state_store: StateStore) -> None:
    """A rerun finishing before the first event was announced does not overwrite it."""
    finished(state_store, PID, "arn:1", event(PID, "e1"))
    finished(state_store, PID, "arn:2", event(PID, "e2", "FAILED"))

    pending = state_store.pending_events([PID])

    assert sorted(e.event_id or "" for e in pending) == ["e1", "e2"]
    assert {e.event_type for e in pending} == {"SUCCEEDED", "FAILED"}


def test_outbox_gets_nothing_from_a_refused_finish(state_store: StateStore) -> None:
    claimed = state_store.claim(PID, "arn:1")
    with pytest.raises(StaleExecutionError):
        state_store.finish(claimed, "arn:old", State.SUCCEEDED, event=event(PID, "e1"))

    assert state_store.pending_events() == []


def test_outbox_mark_announced_ignores_unknown_events_and_deleted_records(
    state_store: StateStore,
) -> None:
    ev = event(PID, "e1")
    finished(state_store, PID, "arn:1", ev)
    state_store.delete(PID)

    state_store.mark_announced([ev, event(OTHER, "never-kept")])

    with pytest.raises(PayloadNotFoundError):  # not recreated by the outbox update
        state_store.get(PID)
    assert state_store.pending_events([OTHER]) == []


def test_outbox_pending_events_honours_the_limit(state_store: StateStore) -> None:
    for i in range(5):
        payload_id = f"col1/workflow-wf1/item-{i:03d}"
        finished(state_store, payload_id, f"arn:{i}", event(payload_id, f"e{i}"))

    assert len(state_store.pending_events(limit=3)) == 3
    assert len(state_store.pending_events()) == 5


def test_event_log_keeps_one_copy_of_an_event_announced_twice(tmp_path: Path) -> None:
    """Local: a re-announcement from the outbox (after a crash between the announcement and
    its marking) is not logged again; events without an id always are."""
    notifier = EventLogNotifier(tmp_path / "events.sqlite")
    ev = event(PID, "e1")
    plain = WorkflowEvent("CLAIMED_PROCESSING", PID, "2026-01-01T00:00:00+00:00")

    notifier.announce([ev, plain])
    notifier.announce([ev, plain])

    assert [e.event_type for e in notifier.events()] == [
        "SUCCEEDED",
        "CLAIMED_PROCESSING",
        "CLAIMED_PROCESSING",
    ]
    notifier.close()


def test_workflow_event_outbox_text_round_trips() -> None:
    ev = event(PID, "e1", "FAILED")
    assert WorkflowEvent.from_outbox(ev.to_outbox()) == ev
    assert WorkflowEvent.from_outbox(ev.to_outbox()).to_outbox() == ev.to_outbox()
    assert "event_id" not in ev.to_message()  # the id never travels in the message
