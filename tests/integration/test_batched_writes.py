"""The stages write the state DB once per step of a batch, not once per payload (issue 12):
process claims a batch in one write and marks it PROCESSING in one, update-state finishes
it in one and clears the outbox in one; on SQLite each of those is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cirrus_feed.backends.base import Backends, Claim, PayloadStore, StateStore
from cirrus_feed.backends.local.sqlite_state import SqliteStateStore
from cirrus_feed.model.executions import execution_arn, execution_name
from cirrus_feed.model.states import State

from .conftest import Harness, LocalHarness, by_id, make_payload, outcomes_of, payload_id

WRITES = (
    "claim",
    "claim_many",
    "set_processing",
    "set_processing_many",
    "finish",
    "finish_many",
    "mark_announced",
)


class CountingWrites:
    """The real store, noting each write call and how many records it carried."""

    def __init__(self, real: StateStore) -> None:
        self.real = real
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)
        if name not in WRITES:
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            first = args[0] if args else None
            size = (
                len(first)
                if isinstance(first, Sequence) and name.endswith(("_many", "announced"))
                else 1
            )
            self.calls.append((name, size))
            return method(*args, **kwargs)

        return counted


def test_a_batch_of_ten_takes_one_write_per_step(harness: Harness) -> None:
    counting = CountingWrites(harness.b.state)
    harness.use_state(counting)
    bodies = [make_payload(f"item-{i}") for i in range(10)]

    report = harness.process(*bodies)
    processed, counting.calls = counting.calls, []
    updated = harness.finish_all()

    assert outcomes_of(report) == ["started"] * 10
    assert processed == [("claim_many", 10), ("set_processing_many", 10)]
    assert outcomes_of(updated) == ["updated"] * 10
    assert counting.calls == [("finish_many", 10), ("mark_announced", 10)]
    records = harness.b.state.get_many(payload_id(f"item-{i}") for i in range(10))
    assert {r.state for r in records.values()} == {State.SUCCEEDED}
    assert harness.b.state.pending_events() == []


def test_sqlite_batch_write_is_one_transaction(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    statements: list[str] = []
    store._db.connection().set_trace_callback(statements.append)

    results = store.claim_many([Claim(payload_id(f"item-{i}"), f"arn:{i}") for i in range(10)])

    assert len(results) == 10
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    store.close()


class CountingPuts:
    """The real payload store, noting how many objects each put call carried."""

    def __init__(self, real: PayloadStore) -> None:
        self.real = real
        self.calls: list[tuple[str, int]] = []

    def put_json(self, key: str, obj: Any) -> str:
        self.calls.append(("put_json", 1))
        return self.real.put_json(key, obj)

    def put_many(self, objects: Sequence[tuple[str, Any]]) -> list[str]:
        self.calls.append(("put_many", len(objects)))
        return self.real.put_many(objects)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_inline_starts_and_outputs_of_a_batch_are_one_put_each(tmp_path: Path) -> None:
    """Local runner: a batch's inputs are one put and its starts one `start_many`, outputs
    one put; a record whose execution exists already resumes it and an unknown workflow
    fails its record only (Q5), each decided per record."""
    harness = LocalHarness(tmp_path)
    resumed = payload_id("item-0")
    name = execution_name(resumed, (), harness.b.runner.region)
    harness.b.state.claim(resumed, execution_arn(harness.b.runner.base_arn, "test-workflow1", name))
    harness.b.runner.start("test-workflow1", name, {**make_payload("item-0"), "id": resumed})
    counting = CountingPuts(harness.b.store)
    b = harness.b
    harness.b = Backends(b.state, b.queue, counting, b.runner, b.notifier)
    harness.use_state(b.state)
    bodies = [make_payload(f"item-{i}") for i in range(5)]
    bodies.append(make_payload("item-x", workflow="no-such-workflow"))

    report = harness.process(*bodies)
    processed, counting.calls = counting.calls, []
    updated = harness.finish_all()

    assert by_id(report) == {
        **{payload_id(f"item-{i}"): "started" for i in range(5)},
        payload_id("item-x", workflow="no-such-workflow"): "failed",
    }
    # The unknown workflow's record is then started alone (its put repeated), and fails.
    assert processed == [("put_many", 6), ("put_json", 1)]
    assert harness.state_of(payload_id("item-x", workflow="no-such-workflow")) is State.FAILED
    assert harness.executions("test-workflow1") == 5
    assert outcomes_of(updated) == ["updated"] * 5
    assert counting.calls == [("put_many", 5)]
    records = harness.b.state.get_many(payload_id(f"item-{i}") for i in range(5))
    assert {r.state for r in records.values()} == {State.SUCCEEDED}
