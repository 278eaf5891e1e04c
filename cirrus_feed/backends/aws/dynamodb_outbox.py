"""The state table's outbox: workflow events kept on the state item until announced.

DynamoDB and SNS cannot share a transaction, so the event goes into the very ``UpdateItem``
that records the state change: a string-set attribute ``outbox`` (one JSON text per event,
`WorkflowEvent.to_outbox`) that ``ADD`` grows and ``DELETE`` shrinks without reading it
first; DynamoDB drops the attribute when its set becomes empty. Cirrus reads only its own
attributes, so the table stays shareable with it.

A crash between the write and the announcement leaves the event on the item. It is found
again by the redelivery of the completion that wrote it (update-state reads the outbox of a
record it finds already finished by that execution) and by the AWS queue workers' drain at
start (a Scan filtered on ``attribute_exists(outbox)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import BATCH_ATTEMPTS, error_code, translate
from cirrus_feed.backends.aws.dynamodb_transact import TransactWrite, transact
from cirrus_feed.backends.base import WorkflowEvent
from cirrus_feed.backends.limits import DYNAMODB_MAX_BATCH_GET_KEYS
from cirrus_feed.errors import BackendError, BackendUnavailableError
from cirrus_feed.support.batching import chunks
from cirrus_feed.support.retry import retry_entries

ATTRIBUTE = "outbox"
_UNPROCESSED_ATTEMPTS = 8

Item = dict[str, Any]
Call = Callable[..., dict[str, Any]]  # (operation, what, **request) -> response


def add_clause(event: WorkflowEvent, names: dict[str, str], values: dict[str, Any]) -> str:
    """The ``ADD`` clause putting ``event`` in the outbox (placeholders added to the maps)."""
    names["#outbox"] = ATTRIBUTE
    values[":outbox_event"] = {"SS": [event.to_outbox()]}
    return "ADD #outbox :outbox_event"


def _events(items: Iterable[Item]) -> list[WorkflowEvent]:
    texts = [text for item in items for text in item.get(ATTRIBUTE, {}).get("SS", [])]
    return [WorkflowEvent.from_outbox(text) for text in texts]


def pending_of(
    call: Call,
    table: str,
    keys: list[Item],
    *,
    limit: int,
    sleep: Callable[[float], None],
) -> list[WorkflowEvent]:
    """The outbox events on the items of ``keys`` (BatchGetItem of only the outbox)."""
    items: list[Item] = []

    def send(pending: Sequence[Item]) -> list[Item]:
        response = call(
            "batch_get_item",
            f"DynamoDB BatchGetItem of the outbox of {len(pending)} payloads",
            RequestItems={
                table: {
                    "Keys": list(pending),
                    "ConsistentRead": True,
                    "ProjectionExpression": "#outbox",
                    "ExpressionAttributeNames": {"#outbox": ATTRIBUTE},
                }
            },
        )
        items.extend(response.get("Responses", {}).get(table, []))
        unprocessed: list[Item] = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        return unprocessed

    for batch in chunks(keys, DYNAMODB_MAX_BATCH_GET_KEYS):
        if left := retry_entries(batch, send, attempts=_UNPROCESSED_ATTEMPTS, sleep=sleep):
            raise BackendUnavailableError(
                f"DynamoDB BatchGetItem (outbox): {len(left)} keys still unprocessed"
            )
    return _events(items)[:limit]


def pending_any(call: Call, table: str, *, limit: int) -> list[WorkflowEvent]:
    """Outbox events on any item: a Scan filtered on the attribute, until ``limit``."""
    request: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "attribute_exists(#outbox)",
        "ProjectionExpression": "#outbox",
        "ExpressionAttributeNames": {"#outbox": ATTRIBUTE},
    }
    events: list[WorkflowEvent] = []
    while len(events) < limit:
        response = call("scan", "DynamoDB Scan for outbox events", **request)
        events += _events(response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            break
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return events[:limit]


def remove_request(events: Sequence[WorkflowEvent]) -> dict[str, Any]:
    """The update taking ``events`` (all of one item) out of its outbox; absent ones change
    nothing, nor does a record deleted meanwhile (the condition keeps the update from
    recreating it)."""
    return {
        "UpdateExpression": "DELETE #outbox :done",
        "ConditionExpression": "attribute_exists(itemids)",
        "ExpressionAttributeNames": {"#outbox": ATTRIBUTE},
        "ExpressionAttributeValues": {":done": {"SS": [e.to_outbox() for e in events]}},
    }


def remove(client: Any, table: str, key: Item, events: Sequence[WorkflowEvent]) -> None:
    """`remove_request` as one UpdateItem."""
    try:
        client.update_item(TableName=table, Key=key, **remove_request(events))
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise translate(exc, "DynamoDB UpdateItem (outbox announced)") from exc
    except BotoCoreError as exc:
        raise translate(exc, "DynamoDB UpdateItem (outbox announced)") from exc


def remove_all(
    client: Any,
    table: str,
    announced: Sequence[tuple[Item, Sequence[WorkflowEvent]]],
    *,
    sleep: Callable[[float], None],
) -> None:
    """`remove` the events of each item (key, events): one transaction per 100 items; an
    item deleted meanwhile fails only its own condition and is left alone, a failed call
    falls back to one UpdateItem an item, and those retried with backoff.

    Raises: BackendError when some items still hold their events."""
    errors: list[BackendError] = []

    def alone(index: int) -> BackendError | None:
        key, events = announced[index]
        try:
            remove(client, table, key, events)
        except BackendError as exc:
            return exc
        return None

    first = transact(
        client,
        table,
        [
            TransactWrite[BackendError | None](
                key=key,
                request=remove_request(events),
                done=lambda: None,
                lost=lambda old: None,
                alone=functools.partial(alone, index),
            )
            for index, (key, events) in enumerate(announced)
        ],
        sleep=sleep,
    )

    def send(pending: Sequence[int]) -> list[int]:
        failed = []
        for index in pending:  # every item is tried, whatever failed before it
            if (exc := alone(index)) is not None:
                errors.append(exc)
                if exc.retryable:
                    failed.append(index)
        return failed

    errors += [e for e in first if e is not None]
    retry = [i for i, e in enumerate(first) if e is not None and e.retryable]
    left = retry_entries(retry, send, attempts=BATCH_ATTEMPTS - 1, sleep=sleep)
    if left or any(not e.retryable for e in errors):
        raise BackendError(
            f"DynamoDB outbox: {len(left)} records still holding announced events; "
            f"last error: {errors[-1]}"
        )
