"""Contract of `StateStore` (base.py docstrings, spec §4), run against SQLite and DynamoDB."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

from cirrus_feed.backends.base import StateQuery, StateRecord, StateStore
from cirrus_feed.backends.limits import (
    DYNAMODB_MAX_PARTITION_KEY_BYTES,
    DYNAMODB_MAX_SORT_KEY_BYTES,
)
from cirrus_feed.errors import (
    ClaimConflictError,
    LimitExceededError,
    PayloadNotFoundError,
    StaleExecutionError,
)
from cirrus_feed.model.states import TERMINAL, State

CW = "col1_wf1"
Advance = Callable[[float], datetime]
PutRaw = Callable[[Mapping[str, Any]], None]


def pid(item: int | str, collections: str = "col1") -> str:
    name = f"item-{item:03d}" if isinstance(item, int) else item
    return f"{collections}/workflow-wf1/{name}"


def arn(n: int) -> str:
    return f"arn:aws:states:us-east-1:123456789012:execution:wf1:exec-{n}"


def run_to(
    store: StateStore, payload_id: str, execution: str, state: State, error: str | None = None
) -> StateRecord:
    """claim → set_processing → finish: the normal life of one execution."""
    processing = store.set_processing(store.claim(payload_id, execution))
    return store.finish(processing, execution, state, error)


def all_pages(store: StateStore, query: StateQuery, limit: int) -> list[list[StateRecord]]:
    pages: list[list[StateRecord]] = []
    next_key: str | None = None
    while True:
        page = store.query(query, limit=limit, next_key=next_key)
        pages.append(page.records)
        if page.next_key is None:
            return pages
        assert len(pages) < 50, "paging does not end"
        next_key = page.next_key


def ids(records: list[StateRecord]) -> list[str]:
    return [record.payload_id for record in records]


# -- get / claim ----------------------------------------------------------------------------


def test_state_store_get_missing_raises_not_found(state_store: StateStore) -> None:
    with pytest.raises(PayloadNotFoundError, match="item-001"):
        state_store.get(pid(1))


def test_state_store_claim_creates_claimed_record(
    state_store: StateStore, advance_clock: Advance
) -> None:
    now = advance_clock(0).isoformat()

    claimed = state_store.claim(pid(1), arn(1))

    assert claimed.payload_id == pid(1)
    assert claimed.state is State.CLAIMED
    assert claimed.executions == (arn(1),)
    assert claimed.created == claimed.claimed_at == claimed.updated == now
    assert claimed.state_updated == f"CLAIMED_{now}"
    assert claimed.last_error is None
    assert claimed.outputs is None
    assert state_store.get(pid(1)) == claimed


def test_state_store_claim_twice_conflicts(state_store: StateStore) -> None:
    state_store.claim(pid(1), arn(1))

    with pytest.raises(ClaimConflictError) as info:
        state_store.claim(pid(1), arn(2))

    assert info.value.current is not None
    assert info.value.current.state is State.CLAIMED
    assert state_store.get(pid(1)).executions == (arn(1),)


def test_state_store_claim_while_processing_conflicts(state_store: StateStore) -> None:
    state_store.set_processing(state_store.claim(pid(1), arn(1)))

    with pytest.raises(ClaimConflictError) as info:
        state_store.claim(pid(1), arn(2))

    assert info.value.current is not None
    assert info.value.current.state is State.PROCESSING
    assert state_store.get(pid(1)).executions == (arn(1),)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_state_store_claim_from_terminal_state_appends_execution(
    state_store: StateStore, advance_clock: Advance, terminal: State
) -> None:
    error = "KeyError: boom" if terminal in (State.FAILED, State.INVALID) else None
    first = run_to(state_store, pid(1), arn(1), terminal, error)
    later = advance_clock(60).isoformat()

    claimed = state_store.claim(pid(1), arn(2))

    assert claimed.state is State.CLAIMED
    assert claimed.executions == (arn(1), arn(2))
    assert claimed.last_error is None
    assert claimed.created == first.created
    assert claimed.claimed_at == claimed.updated == later


def test_state_store_claim_removes_outputs(state_store: StateStore, put_raw_state: PutRaw) -> None:
    put_raw_state(
        {
            "collections_workflow": CW,
            "itemids": "with-outputs",
            "state_updated": "SUCCEEDED_2025-01-01T00:00:00+00:00",
            "created": "2025-01-01T00:00:00+00:00",
            "updated": "2025-01-01T00:00:00+00:00",
            "executions": [arn(1)],
            "outputs": ["s3://bucket/item.json"],
        }
    )
    assert state_store.get(pid("with-outputs")).outputs == ("s3://bucket/item.json",)

    claimed = state_store.claim(pid("with-outputs"), arn(2))

    assert claimed.outputs is None
    assert state_store.get(pid("with-outputs")).outputs is None


def test_state_store_legacy_completed_reads_succeeded_and_reclaims(
    state_store: StateStore, put_raw_state: PutRaw
) -> None:
    # A v1 record: COMPLETED instead of SUCCEEDED, no claimed_at.
    put_raw_state(
        {
            "collections_workflow": CW,
            "itemids": "legacy",
            "state_updated": "COMPLETED_2023-05-01T10:00:00+00:00",
            "created": "2023-05-01T09:00:00+00:00",
            "updated": "2023-05-01T10:00:00+00:00",
            "executions": [arn(1)],
        }
    )

    record = state_store.get(pid("legacy"))
    assert record.state is State.SUCCEEDED
    assert record.claimed_at is None

    claimed = state_store.claim(pid("legacy"), arn(2))
    assert claimed.state is State.CLAIMED
    assert claimed.executions == (arn(1), arn(2))
    assert claimed.created == "2023-05-01T09:00:00+00:00"


# -- set_processing -------------------------------------------------------------------------


def test_state_store_set_processing_moves_claimed_to_processing(
    state_store: StateStore, advance_clock: Advance
) -> None:
    claimed = state_store.claim(pid(1), arn(1))
    later = advance_clock(5).isoformat()

    processing = state_store.set_processing(claimed)

    assert processing.state is State.PROCESSING
    assert processing.state_updated == f"PROCESSING_{later}"
    assert processing.updated == later
    assert processing.claimed_at == processing.created == claimed.created
    assert processing.executions == (arn(1),)


def test_state_store_set_processing_without_claim_conflicts(state_store: StateStore) -> None:
    never_claimed = StateRecord(
        payload_id=pid(1),
        state=State.CLAIMED,
        state_updated="CLAIMED_2025-01-01T00:00:00+00:00",
        created="2025-01-01T00:00:00+00:00",
        updated="2025-01-01T00:00:00+00:00",
        executions=(arn(1),),
    )

    with pytest.raises(ClaimConflictError) as info:
        state_store.set_processing(never_claimed)

    assert info.value.current is None
    with pytest.raises(PayloadNotFoundError):
        state_store.get(pid(1))


def test_state_store_set_processing_twice_conflicts(state_store: StateStore) -> None:
    claimed = state_store.claim(pid(1), arn(1))
    state_store.set_processing(claimed)

    with pytest.raises(ClaimConflictError) as info:
        state_store.set_processing(claimed)

    assert info.value.current is not None
    assert info.value.current.state is State.PROCESSING


def test_state_store_set_processing_after_newer_claim_conflicts(state_store: StateStore) -> None:
    old_claim = state_store.claim(pid(1), arn(1))
    state_store.finish(old_claim, arn(1), State.FAILED, "boom")
    state_store.claim(pid(1), arn(2))

    with pytest.raises(ClaimConflictError) as info:
        state_store.set_processing(old_claim)

    assert info.value.current is not None
    assert info.value.current.executions == (arn(1), arn(2))
    assert state_store.get(pid(1)).state is State.CLAIMED


# -- finish ---------------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_state_store_finish_moves_processing_to_terminal(
    state_store: StateStore, advance_clock: Advance, terminal: State
) -> None:
    processing = state_store.set_processing(state_store.claim(pid(1), arn(1)))
    later = advance_clock(30).isoformat()

    finished = state_store.finish(processing, arn(1), terminal)

    assert finished.state is terminal
    assert finished.state_updated == f"{terminal}_{later}"
    assert finished.updated == later
    assert finished.executions == (arn(1),)
    assert state_store.get(pid(1)) == finished


def test_state_store_finish_directly_from_claimed(state_store: StateStore) -> None:
    # A fast workflow may end before `process` marks the payload PROCESSING.
    claimed = state_store.claim(pid(1), arn(1))

    finished = state_store.finish(claimed, arn(1), State.SUCCEEDED)

    assert finished.state is State.SUCCEEDED


def test_state_store_finish_checks_stored_record_not_snapshot(state_store: StateStore) -> None:
    # `current` is the caller's last read; the stored record moved on to PROCESSING since.
    claimed = state_store.claim(pid(1), arn(1))
    state_store.set_processing(claimed)

    finished = state_store.finish(claimed, arn(1), State.SUCCEEDED)

    assert finished.state is State.SUCCEEDED


@pytest.mark.parametrize("state", [State.FAILED, State.INVALID])
def test_state_store_finish_with_error_sets_last_error(
    state_store: StateStore, state: State
) -> None:
    finished = run_to(state_store, pid(1), arn(1), state, error="Timeout: task timed out")

    assert finished.last_error == "Timeout: task timed out"
    assert state_store.get(pid(1)).last_error == "Timeout: task timed out"


@pytest.mark.parametrize("state", [State.SUCCEEDED, State.ABORTED])
def test_state_store_finish_keeps_stale_last_error_until_next_claim(
    state_store: StateStore, put_raw_state: PutRaw, state: State
) -> None:
    # Spec §4.4: SUCCEEDED/ABORTED leave last_error alone; only a claim removes it. Cirrus
    # v2 never clears it otherwise, so such records exist in shared tables.
    put_raw_state(
        {
            "collections_workflow": CW,
            "itemids": "stale-error",
            "state_updated": "PROCESSING_2025-01-01T00:00:00+00:00",
            "created": "2025-01-01T00:00:00+00:00",
            "updated": "2025-01-01T00:00:00+00:00",
            "claimed_at": "2025-01-01T00:00:00+00:00",
            "executions": [arn(1)],
            "last_error": "old error",
        }
    )
    current = state_store.get(pid("stale-error"))

    finished = state_store.finish(current, arn(1), state)

    assert finished.state is state
    assert finished.last_error == "old error"
    assert state_store.claim(pid("stale-error"), arn(2)).last_error is None


def test_state_store_finish_with_older_execution_is_stale(state_store: StateStore) -> None:
    first = run_to(state_store, pid(1), arn(1), State.FAILED, error="boom")
    newer = state_store.set_processing(state_store.claim(pid(1), arn(2)))

    # A late SUCCEEDED event of the first execution must not overwrite the newer run.
    with pytest.raises(StaleExecutionError) as info:
        state_store.finish(first, arn(1), State.SUCCEEDED)

    assert info.value.current is not None
    assert info.value.current.latest_execution == arn(2)
    assert state_store.get(pid(1)) == newer


def test_state_store_finish_with_older_execution_after_newer_finished_is_stale(
    state_store: StateStore,
) -> None:
    first = state_store.claim(pid(1), arn(1))
    state_store.finish(first, arn(1), State.FAILED, "boom")
    newer = run_to(state_store, pid(1), arn(2), State.SUCCEEDED)

    with pytest.raises(StaleExecutionError):
        state_store.finish(first, arn(1), State.FAILED, "late failure")

    assert state_store.get(pid(1)) == newer


def test_state_store_finish_of_never_claimed_payload_is_stale(state_store: StateStore) -> None:
    unknown = StateRecord(
        payload_id=pid(1),
        state=State.PROCESSING,
        state_updated="PROCESSING_2025-01-01T00:00:00+00:00",
        created="2025-01-01T00:00:00+00:00",
        updated="2025-01-01T00:00:00+00:00",
        executions=(arn(1),),
    )

    with pytest.raises(StaleExecutionError):
        state_store.finish(unknown, arn(1), State.SUCCEEDED)

    with pytest.raises(PayloadNotFoundError):
        state_store.get(pid(1))


def test_state_store_finish_twice_conflicts(state_store: StateStore) -> None:
    finished = run_to(state_store, pid(1), arn(1), State.SUCCEEDED)

    with pytest.raises(ClaimConflictError) as info:
        state_store.finish(finished, arn(1), State.FAILED, "late")

    assert info.value.current is not None
    assert info.value.current.state is State.SUCCEEDED
    assert state_store.get(pid(1)) == finished


def test_state_store_delete_is_idempotent(state_store: StateStore) -> None:
    state_store.claim(pid(1), arn(1))

    state_store.delete(pid(1))
    state_store.delete(pid(1))

    with pytest.raises(PayloadNotFoundError):
        state_store.get(pid(1))


# -- get_many -------------------------------------------------------------------------------


def test_state_store_get_many_of_nothing_is_empty(state_store: StateStore) -> None:
    assert state_store.get_many([]) == {}


def test_state_store_get_many_omits_missing_ids(state_store: StateStore) -> None:
    claimed = state_store.claim(pid(1), arn(1))

    found = state_store.get_many([pid(1), pid(2), pid(1)])

    assert found == {pid(1): claimed}


def test_state_store_get_many_reads_more_than_one_batch(state_store: StateStore) -> None:
    # DynamoDB's BatchGetItem takes 100 keys a call: 150 ids, every fifth one stored.
    asked = [pid(n) for n in range(150)]
    stored = asked[::5]
    for payload_id in stored:
        state_store.claim(payload_id, arn(1))

    found = state_store.get_many(asked)

    assert sorted(found) == sorted(stored)
    assert all(record.payload_id == key for key, record in found.items())
    assert {record.state for record in found.values()} == {State.CLAIMED}


# -- query / count --------------------------------------------------------------------------


@pytest.fixture
def twenty_five(state_store: StateStore, advance_clock: Advance) -> list[str]:
    """25 claimed records of CW, created one second apart in an order unlike their ids,
    plus two records of another collections_workflow. Returns CW's ids oldest first."""
    created = [pid((n * 7) % 25) for n in range(25)]
    for payload_id in created:
        advance_clock(1)
        state_store.claim(payload_id, arn(1))
    for other in (pid(1, "col2"), pid(2, "col2")):
        state_store.claim(other, arn(1))
    return created


def test_state_store_query_pages_newest_first(
    state_store: StateStore, twenty_five: list[str]
) -> None:
    pages = all_pages(state_store, StateQuery(collections_workflow=CW), limit=10)

    assert [len(page) for page in pages] == [10, 10, 5]
    assert [i for page in pages for i in ids(page)] == twenty_five[::-1]


def test_state_store_query_sort_orders(state_store: StateStore, twenty_five: list[str]) -> None:
    ascending = StateQuery(collections_workflow=CW, sort_ascending=True)
    by_item_ids = StateQuery(collections_workflow=CW, sort_index="default", sort_ascending=True)

    listed = [
        [i for page in all_pages(state_store, query, limit=10) for i in ids(page)]
        for query in (ascending, by_item_ids)
    ]

    assert listed == [twenty_five, sorted(twenty_five)]


def test_state_store_query_of_unknown_collections_workflow_is_empty(
    state_store: StateStore,
) -> None:
    state_store.claim(pid(1), arn(1))

    page = state_store.query(StateQuery(collections_workflow="nope_wf1"))

    assert page.records == []
    assert page.next_key is None


def test_state_store_query_without_collections_workflow_lists_all(
    state_store: StateStore, twenty_five: list[str]
) -> None:
    pages = all_pages(state_store, StateQuery(), limit=10)

    listed = [i for page in pages for i in ids(page)]
    assert len(listed) == len(set(listed)) == 27
    assert set(listed) == {*twenty_five, pid(1, "col2"), pid(2, "col2")}


@pytest.fixture
def mixed(state_store: StateStore, advance_clock: Advance) -> dict[str, list[str]]:
    """Records in several states, two hours apart in two groups; ids per group, oldest first.

    old: 3 FAILED (Timeout) + 2 SUCCEEDED; recent: 2 FAILED (Timeout), 1 FAILED (KeyError),
    1 SUCCEEDED, 1 CLAIMED; plus one recent FAILED (Timeout) in another collections_workflow.
    """
    groups: dict[str, list[str]] = {"old": [], "recent": []}
    plan = {
        "old": [
            (State.FAILED, "Timeout: a"),
            (State.SUCCEEDED, None),
            (State.FAILED, "Timeout: b"),
            (State.FAILED, "Timeout: c"),
            (State.SUCCEEDED, None),
        ],
        "recent": [
            (State.FAILED, "Timeout: d"),
            (State.SUCCEEDED, None),
            (State.FAILED, "KeyError: e"),
            (State.CLAIMED, None),
            (State.FAILED, "Timeout: f"),
        ],
    }
    n = 0
    for group, steps in plan.items():
        advance_clock(2 * 3600)
        for state, error in steps:
            advance_clock(1)
            n += 1
            if state is State.CLAIMED:
                state_store.claim(pid(n), arn(1))
            else:
                run_to(state_store, pid(n), arn(1), state, error)
            groups[group].append(pid(n))
    run_to(state_store, pid(1, "col2"), arn(1), State.FAILED, "Timeout: g")
    advance_clock(60)
    return groups


def _listed(store: StateStore, query: StateQuery) -> list[str]:
    return [i for page in all_pages(store, query, limit=4) for i in ids(page)]


def test_state_store_query_filters(state_store: StateStore, mixed: dict[str, list[str]]) -> None:
    # One test for all filters: building the data set is the slow part on moto.
    old, recent = mixed["old"], mixed["recent"]
    hour = timedelta(hours=1)
    failed = StateQuery(collections_workflow=CW, state=State.FAILED)
    queries = {
        "state": failed,
        "since": StateQuery(collections_workflow=CW, since=hour),
        "since+state": StateQuery(collections_workflow=CW, state=State.FAILED, since=hour),
        "error_prefix": StateQuery(collections_workflow=CW, error_prefix="Timeout"),
        "state+since+error_prefix": StateQuery(
            collections_workflow=CW, state=State.FAILED, since=hour, error_prefix="Timeout"
        ),
        "state+ascending": StateQuery(
            collections_workflow=CW, state=State.FAILED, sort_ascending=True
        ),
    }
    expected = {
        "state": [recent[4], recent[2], recent[0], old[3], old[2], old[0]],
        "since": recent[::-1],
        "since+state": [recent[4], recent[2], recent[0]],
        "error_prefix": [recent[4], recent[0], old[3], old[2], old[0]],
        "state+since+error_prefix": [recent[4], recent[0]],
        "state+ascending": [old[0], old[2], old[3], recent[0], recent[2], recent[4]],
    }

    listed = {name: _listed(state_store, query) for name, query in queries.items()}

    assert listed == expected


def test_state_store_query_all_collections_by_state(
    state_store: StateStore, mixed: dict[str, list[str]]
) -> None:
    listed = _listed(state_store, StateQuery(state=State.FAILED))

    assert len(listed) == len(set(listed)) == 7
    assert pid(1, "col2") in listed


def test_state_store_count(state_store: StateStore, advance_clock: Advance) -> None:
    for n in range(26):
        advance_clock(1)
        state_store.finish(state_store.claim(pid(n), arn(1)), arn(1), State.FAILED, "boom")
    for n in range(26, 29):
        advance_clock(1)
        state_store.finish(state_store.claim(pid(n), arn(1)), arn(1), State.SUCCEEDED)
    state_store.claim(pid(1, "col2"), arn(1))
    failed = StateQuery(collections_workflow=CW, state=State.FAILED)
    cases: dict[str, tuple[StateQuery, int | None]] = {
        "failed": (failed, None),
        "failed over limit": (failed, 15),
        "failed at limit": (failed, 26),
        "failed under limit": (failed, 100),
        "succeeded": (StateQuery(collections_workflow=CW, state=State.SUCCEEDED), None),
        "all states": (StateQuery(collections_workflow=CW), None),
        "error prefix": (StateQuery(collections_workflow=CW, error_prefix="boom"), None),
        "all collections": (StateQuery(), None),
        "all collections over limit": (StateQuery(), 29),
        "unknown": (StateQuery(collections_workflow="nope_wf1"), None),
    }

    counts = {name: state_store.count(query, limit=limit) for name, (query, limit) in cases.items()}

    assert counts == {
        "failed": 26,
        "failed over limit": "15+",
        "failed at limit": 26,
        "failed under limit": 26,
        "succeeded": 3,
        "all states": 29,
        "error prefix": 26,
        "all collections": 30,
        "all collections over limit": "29+",
        "unknown": 0,
    }


# -- claim of an execution already in the history ---------------------------------------------


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_state_store_claim_of_execution_in_history_conflicts(
    state_store: StateStore, terminal: State
) -> None:
    # The caller derived its execution name from a stale history: another worker already
    # ran that attempt, so appending it again would make two runs share one execution.
    error = "KeyError: boom" if terminal in (State.FAILED, State.INVALID) else None
    before = run_to(state_store, pid(1), arn(1), terminal, error)

    with pytest.raises(ClaimConflictError) as info:
        state_store.claim(pid(1), arn(1))

    assert info.value.current == before
    assert state_store.get(pid(1)) == before


def test_state_store_claim_of_older_execution_in_history_conflicts(
    state_store: StateStore,
) -> None:
    run_to(state_store, pid(1), arn(1), State.FAILED, "KeyError: first")
    before = run_to(state_store, pid(1), arn(2), State.FAILED, "KeyError: second")
    assert before.executions == (arn(1), arn(2))

    with pytest.raises(ClaimConflictError) as info:
        state_store.claim(pid(1), arn(1))

    assert info.value.current == before
    assert state_store.get(pid(1)) == before
    assert state_store.claim(pid(1), arn(3)).executions == (arn(1), arn(2), arn(3))


# -- limits (DynamoDB key sizes, on every backend: see `StateStore`) ------------------------

LONG_COLLECTIONS = "c" * DYNAMODB_MAX_PARTITION_KEY_BYTES  # + "_wf1": over 2048 bytes
LONG_ITEMIDS = "i" * (DYNAMODB_MAX_SORT_KEY_BYTES + 1)
TOO_LONG_IDS = [
    f"{LONG_COLLECTIONS}/workflow-wf1/item",
    pid(LONG_ITEMIDS),
    pid("é" * (DYNAMODB_MAX_SORT_KEY_BYTES // 2 + 1)),  # under 1024 characters, over in bytes
]


@pytest.mark.parametrize("payload_id", TOO_LONG_IDS, ids=["partition", "sort", "utf8"])
def test_state_store_claim_of_too_long_id_exceeds_limit(
    state_store: StateStore, payload_id: str
) -> None:
    with pytest.raises(LimitExceededError, match="over the DynamoDB limit"):
        state_store.claim(payload_id, arn(1))

    with pytest.raises(PayloadNotFoundError):
        state_store.get(payload_id)
    assert state_store.get_many([payload_id, pid(1)]) == {}
    state_store.delete(payload_id)  # nothing to delete: no error


def test_state_store_accepts_keys_at_the_limit(state_store: StateStore) -> None:
    collections = "c" * (DYNAMODB_MAX_PARTITION_KEY_BYTES - len("_wf1"))
    payload_id = f"{collections}/workflow-wf1/{'i' * DYNAMODB_MAX_SORT_KEY_BYTES}"

    claimed = state_store.claim(payload_id, arn(1))

    assert state_store.get(payload_id) == claimed
    assert state_store.get_many([payload_id]) == {payload_id: claimed}
