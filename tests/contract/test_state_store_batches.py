"""Contract of the batch writes of `StateStore` (``claim_many``, ``set_processing_many``,
``finish_many``), run against SQLite and DynamoDB: one result per write, in order, each
write compare-and-set on its own, and every returned record the one stored."""

from __future__ import annotations

import pytest

from cirrus_feed.backends.base import Claim, Finish, StateRecord, StateStore, WorkflowEvent
from cirrus_feed.backends.limits import DYNAMODB_MAX_SORT_KEY_BYTES
from cirrus_feed.errors import ClaimConflictError, LimitExceededError, StaleExecutionError
from cirrus_feed.model.states import State
from tests.contract.test_state_store import arn, pid, run_to


def claimed_records(store: StateStore, claims: list[Claim]) -> list[StateRecord]:
    results = store.claim_many(claims)
    assert all(isinstance(r, StateRecord) for r in results), results
    return [r for r in results if isinstance(r, StateRecord)]


def event(payload_id: str, event_id: str) -> WorkflowEvent:
    return WorkflowEvent("SUCCEEDED", payload_id, "2025-03-31T21:36:41+00:00", event_id=event_id)


def test_claim_many_reports_a_conflict_in_the_middle_and_claims_the_others(
    state_store: StateStore,
) -> None:
    busy = state_store.set_processing(state_store.claim(pid(2), arn(9)))
    claims = [Claim(pid(i), arn(i), busy if i == 2 else None) for i in (1, 2, 3)]

    first, middle, last = state_store.claim_many(claims)

    assert isinstance(middle, ClaimConflictError)
    assert middle.current == busy
    assert isinstance(first, StateRecord)
    assert isinstance(last, StateRecord)
    stored = state_store.get_many([pid(1), pid(2), pid(3)])
    assert stored == {pid(1): first, pid(2): busy, pid(3): last}
    assert [(r.state, r.executions) for r in (first, last)] == [
        (State.CLAIMED, (arn(1),)),
        (State.CLAIMED, (arn(3),)),
    ]


def test_claim_many_conflicts_when_the_history_moved_on_since_the_read(
    state_store: StateStore,
) -> None:
    """A claim names its execution after the history it read: another history refuses it,
    and so does a record where none was read."""
    failed = run_to(state_store, pid(1), arn(1), State.FAILED, "boom")
    refailed = run_to(state_store, pid(1), arn(2), State.FAILED, "boom again")
    run_to(state_store, pid(2), arn(3), State.ABORTED)

    stale, unread, fresh = state_store.claim_many(
        [Claim(pid(1), arn(4), failed), Claim(pid(2), arn(5), None), Claim(pid(3), arn(6))]
    )

    assert isinstance(stale, ClaimConflictError)
    assert stale.current == refailed
    assert isinstance(unread, ClaimConflictError)
    assert unread.current is not None
    assert unread.current.state is State.ABORTED
    assert isinstance(fresh, StateRecord)
    assert state_store.get(pid(1)) == refailed


def test_claim_many_keeps_created_and_appends_to_the_history_read(
    state_store: StateStore,
) -> None:
    failed = run_to(state_store, pid(1), arn(1), State.FAILED, "boom")

    [claimed] = claimed_records(state_store, [Claim(pid(1), arn(2), failed)])

    assert claimed == state_store.get(pid(1))
    assert claimed.executions == (arn(1), arn(2))
    assert claimed.created == failed.created
    assert claimed.last_error is None


def test_claim_many_writes_one_payload_twice_in_order(state_store: StateStore) -> None:
    """The second claim of one id in a batch sees the first (DynamoDB: another call)."""
    first, second = state_store.claim_many([Claim(pid(1), arn(1)), Claim(pid(1), arn(2))])

    assert isinstance(first, StateRecord)
    assert isinstance(second, ClaimConflictError)
    assert second.current == first == state_store.get(pid(1))


def test_claim_many_refuses_an_oversize_key_alone(state_store: StateStore) -> None:
    too_long = pid("x" * (DYNAMODB_MAX_SORT_KEY_BYTES + 1))

    refused, claimed = state_store.claim_many([Claim(too_long, arn(1)), Claim(pid(1), arn(2))])

    assert isinstance(refused, LimitExceededError)
    assert isinstance(claimed, StateRecord)
    assert claimed == state_store.get(pid(1))


def test_set_processing_many_moves_the_claimed_and_reports_the_moved_on(
    state_store: StateStore,
) -> None:
    one, two, three = claimed_records(state_store, [Claim(pid(i), arn(i)) for i in (1, 2, 3)])
    finished = state_store.finish(two, arn(2), State.FAILED, "fast failure")

    results = state_store.set_processing_many([one, two, three])

    assert isinstance(results[1], ClaimConflictError)
    assert results[1].current == finished
    for result, payload_id in ((results[0], pid(1)), (results[2], pid(3))):
        assert isinstance(result, StateRecord)
        assert result.state is State.PROCESSING
        assert result == state_store.get(payload_id)


def test_finish_many_writes_each_with_its_event_and_reports_stale_and_finished(
    state_store: StateStore,
) -> None:
    processing = state_store.set_processing_many(
        claimed_records(state_store, [Claim(pid(i), arn(i)) for i in (1, 2, 3)])
    )
    one, two, three = (r for r in processing if isinstance(r, StateRecord))
    done = state_store.finish(three, arn(3), State.SUCCEEDED)

    results = state_store.finish_many(
        [
            Finish(one, arn(1), State.FAILED, "X: boom", event(pid(1), "e1")),
            Finish(two, arn(7), State.SUCCEEDED, None, event(pid(2), "e2")),  # stale
            Finish(three, arn(3), State.SUCCEEDED, None, event(pid(3), "e3")),  # finished
        ]
    )

    assert isinstance(results[0], StateRecord)
    assert results[0] == state_store.get(pid(1))
    assert (results[0].state, results[0].last_error) == (State.FAILED, "X: boom")
    assert isinstance(results[1], StaleExecutionError)
    assert isinstance(results[2], ClaimConflictError)
    assert results[2].current == done
    assert state_store.get(pid(2)) == two
    assert [e.event_id for e in state_store.pending_events([pid(1), pid(2), pid(3)])] == ["e1"]


def test_finish_many_refuses_a_non_terminal_state_before_any_write(
    state_store: StateStore,
) -> None:
    [claimed] = claimed_records(state_store, [Claim(pid(1), arn(1))])

    with pytest.raises(ValueError, match="not a terminal state"):
        state_store.finish_many(
            [Finish(claimed, arn(1), State.FAILED, "x"), Finish(claimed, arn(1), State.CLAIMED)]
        )

    assert state_store.get(pid(1)) == claimed


def test_batch_writes_of_nothing_do_nothing(state_store: StateStore) -> None:
    assert state_store.claim_many([]) == []
    assert state_store.set_processing_many([]) == []
    assert state_store.finish_many([]) == []
