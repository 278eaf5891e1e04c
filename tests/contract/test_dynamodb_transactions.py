"""The DynamoDB state store's batch writes in ``TransactWriteItems`` (`dynamodb_transact`),
against moto's server: how many calls a batch takes, and what happens when a transaction is
cancelled for one item, fails as a call, or loses its response. Failures are injected with
botocore hooks on the store's own client; the writes themselves are moto's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore
from cirrus_feed.backends.base import Claim, Finish, StateRecord, WorkflowEvent
from cirrus_feed.errors import ClaimConflictError
from cirrus_feed.model.states import State
from cirrus_feed.support.clock import FakeClock
from tests.contract.conftest import unique
from tests.contract.test_state_store import arn, pid

pytestmark = pytest.mark.aws

TRANSACT = "TransactWriteItems"


@dataclass
class _Status:
    status_code: int


@dataclass
class Hooks:
    """Counts the store client's calls; ``replies`` are answered instead of the next
    TransactWriteItems calls (an error code and, for a cancellation, its reasons)."""

    calls: Counter[str] = field(default_factory=Counter)
    replies: list[tuple[str, list[str] | None]] = field(default_factory=list)
    lose_responses: int = 0  # TransactWriteItems performed, then their response lost

    def install(self, client: Any) -> None:
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb.TransactWriteItems", self._after)

    def _before(self, model: Any, **_: Any) -> tuple[_Status, dict[str, Any]] | None:
        self.calls[model.name] += 1
        if model.name != TRANSACT or not self.replies:
            return None
        code, reasons = self.replies.pop(0)
        parsed: dict[str, Any] = {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}},
        }
        if reasons is not None:
            parsed["CancellationReasons"] = [{"Code": r} for r in reasons]
        return _Status(400), parsed

    def _after(self, http_response: Any, **_: Any) -> None:
        if self.lose_responses and http_response.status_code < 300:
            self.lose_responses -= 1
            raise ReadTimeoutError(endpoint_url="moto")


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def store(
    aws_client: Callable[[str], Any], clock: FakeClock, hooks: Hooks
) -> Iterator[DynamoDbStateStore]:
    client = aws_client("dynamodb")
    table = unique("state-")
    DynamoDbStateStore.create_table(client, table)
    hooks.install(client)
    yield DynamoDbStateStore(table, client=client, clock=clock)
    client.delete_table(TableName=table)


def claims(*numbers: int) -> list[Claim]:
    return [Claim(pid(n), arn(n)) for n in numbers]


def records(results: list[Any]) -> list[StateRecord]:
    assert all(isinstance(r, StateRecord) for r in results), results
    return list(results)


def test_a_batch_is_one_transaction_and_a_lost_race_needs_no_read(
    store: DynamoDbStateStore, hooks: Hooks
) -> None:
    busy = store.claim(pid(2), arn(9))
    hooks.calls.clear()

    one, two, three = store.claim_many(
        [Claim(pid(1), arn(1)), Claim(pid(2), arn(2), busy), Claim(pid(3), arn(3))]
    )

    # the cancelled transaction, then the two others again; no read, no UpdateItem
    assert hooks.calls == Counter({TRANSACT: 2})
    assert isinstance(two, ClaimConflictError)
    assert two.current == busy  # from the cancellation reason
    assert records([one, three]) == [store.get(pid(1)), store.get(pid(3))]


def test_more_than_100_writes_take_one_transaction_per_100(
    store: DynamoDbStateStore, hooks: Hooks
) -> None:
    claimed = records(store.claim_many(claims(*range(150))))

    assert hooks.calls == Counter({TRANSACT: 2})
    assert store.get(pid(149)) == claimed[149]


def test_items_cancelled_by_a_transaction_conflict_are_sent_again(
    store: DynamoDbStateStore, hooks: Hooks
) -> None:
    hooks.replies = [("TransactionCanceledException", ["None", "TransactionConflict", "None"])]

    claimed = records(store.claim_many(claims(1, 2, 3)))

    assert hooks.calls == Counter({TRANSACT: 2})
    assert claimed == [store.get(pid(n)) for n in (1, 2, 3)]


def test_items_cancelled_by_conflicts_every_time_are_written_alone(
    store: DynamoDbStateStore, hooks: Hooks
) -> None:
    hooks.replies = [("TransactionCanceledException", ["ThrottlingError", "None"])] * 4

    claimed = records(store.claim_many(claims(1, 2)))

    # 4 rounds cancelled for the first item (it is then written alone), the second item
    # sent again with it each time, then alone too
    assert hooks.calls == Counter({TRANSACT: 4, "UpdateItem": 2})
    assert claimed == [store.get(pid(1)), store.get(pid(2))]


def test_an_item_refused_for_another_reason_is_written_alone(
    store: DynamoDbStateStore, hooks: Hooks
) -> None:
    hooks.replies = [("TransactionCanceledException", ["None", "None", "ValidationError"])]

    claimed = records(store.claim_many(claims(1, 2, 3)))

    # the refused one alone at once, the two others in a transaction again
    assert hooks.calls == Counter({TRANSACT: 2, "UpdateItem": 1})
    assert claimed == [store.get(pid(n)) for n in (1, 2, 3)]


def test_a_batch_of_one_is_one_update_item(store: DynamoDbStateStore, hooks: Hooks) -> None:
    [claimed] = records(store.claim_many(claims(1)))

    assert hooks.calls == Counter({"UpdateItem": 1})
    assert claimed == store.get(pid(1))


def test_a_failed_transaction_call_falls_back_to_one_update_each(
    store: DynamoDbStateStore, hooks: Hooks
) -> None:
    hooks.replies = [("InternalServerError", None)]
    busy = store.set_processing(store.claim(pid(2), arn(9)))
    hooks.calls.clear()

    one, two, three = store.claim_many(
        [Claim(pid(1), arn(1)), Claim(pid(2), arn(2), busy), Claim(pid(3), arn(3))]
    )

    assert hooks.calls == Counter({TRANSACT: 1, "UpdateItem": 3})
    assert isinstance(two, ClaimConflictError)
    assert two.current == busy
    assert records([one, three]) == [store.get(pid(1)), store.get(pid(3))]


def test_a_lost_response_reads_as_a_race_lost_to_the_write_itself(
    store: DynamoDbStateStore, hooks: Hooks
) -> None:
    """The transaction went through but its response never came: each record's fallback
    UpdateItem finds the write done, which the stages treat as a retried write."""
    claimed = records(store.claim_many(claims(1, 2)))
    hooks.lose_responses = 1

    results = store.set_processing_many(claimed)

    for result, record in zip(results, claimed, strict=True):
        assert isinstance(result, ClaimConflictError)
        assert result.current is not None
        assert result.current.state is State.PROCESSING
        assert result.current.latest_execution == record.latest_execution


def test_mark_announced_clears_a_batch_in_one_call_and_skips_a_deleted_record(
    store: DynamoDbStateStore, hooks: Hooks
) -> None:
    claimed = records(store.claim_many(claims(1, 2, 3)))
    events = [
        WorkflowEvent("SUCCEEDED", r.payload_id, "2025-03-31T21:36:41+00:00", event_id=f"e{i}")
        for i, r in enumerate(claimed)
    ]
    store.finish_many(
        [
            Finish(r, r.latest_execution or "", State.SUCCEEDED, event=e)
            for r, e in zip(claimed, events, strict=True)
        ]
    )
    store.delete(pid(2))
    hooks.calls.clear()

    store.mark_announced(events)

    assert store.pending_events([pid(1), pid(2), pid(3)]) == []
    assert hooks.calls[TRANSACT] == 2  # the one whose record is gone cancelled the first
    assert hooks.calls["UpdateItem"] == 0
