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

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import error_code, translate
from cirrus_feed.backends.base import WorkflowEvent
from cirrus_feed.backends.limits import DYNAMODB_MAX_BATCH_GET_KEYS
from cirrus_feed.errors import BackendUnavailableError
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


def remove(client: Any, table: str, key: Item, events: Sequence[WorkflowEvent]) -> None:
    """Take ``events`` (all of one item) out of its outbox; absent ones change nothing, nor
    does a record deleted meanwhile (the condition keeps the update from recreating it)."""
    try:
        client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="DELETE #outbox :done",
            ConditionExpression="attribute_exists(itemids)",
            ExpressionAttributeNames={"#outbox": ATTRIBUTE},
            ExpressionAttributeValues={":done": {"SS": [e.to_outbox() for e in events]}},
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise translate(exc, "DynamoDB UpdateItem (outbox announced)") from exc
    except BotoCoreError as exc:
        raise translate(exc, "DynamoDB UpdateItem (outbox announced)") from exc
