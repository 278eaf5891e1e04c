"""Many conditional updates of the state table in few ``TransactWriteItems`` calls.

A transaction holds up to 100 items, at most one per key, and is all-or-nothing, so a batch
whose items are independent compare-and-sets is sent like this:

* each item carries its own ``ConditionExpression`` and ``ReturnValuesOnConditionCheckFailure:
  ALL_OLD``; when the transaction is cancelled, ``CancellationReasons`` (one per item, in
  order) say which conditions failed, each with the item as it is: that write lost its race
  (no extra read), and the others are sent again in a new transaction;
* items cancelled through no fault of their own condition (``TransactionConflict`` with
  another writer, throttling) are sent again with backoff, a few times;
* a lone write (a batch of one, or the last one left) is a plain ``UpdateItem``;
* a call that fails as a whole (throttled past botocore's retries, 5xx, a lost response),
  and an item refused for another reason (a validation error), fall back to one
  ``UpdateItem`` each, so every write ends with its own result.

Each call has a fresh ``ClientRequestToken``: botocore's own retries of that call send the
same token, which DynamoDB answers idempotently for ten minutes (a retry of a transaction
that went through is not applied twice, nor refused by its own conditions). After a lost
response the fallback ``UpdateItem`` finds the write done and reports it as a lost race
whose current item is that very write: the stages treat that as they treat a retried write.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import error_code
from cirrus_feed.support.retry import backoff_delay

# Source: DynamoDB developer guide, "TransactWriteItems": up to 100 actions, distinct items.
MAX_TRANSACT_ITEMS = 100
CONTENTION_ATTEMPTS = 4  # transactions of items cancelled by conflicts or throttling
_CONTENDED = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})

Item = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class TransactWrite(Generic[T]):
    """One conditional ``Update`` of a transaction and what its outcomes mean."""

    key: Item
    request: dict[str, Any]  # UpdateExpression, ConditionExpression, placeholders
    done: Callable[[], T]  # the result once the transaction went through
    lost: Callable[[Item | None], T]  # the result when its condition failed (item as is)
    alone: Callable[[], T]  # the same write as one UpdateItem (never raises)


def transact(
    client: Any,
    table: str,
    writes: Sequence[TransactWrite[T]],
    *,
    sleep: Callable[[float], None],
) -> list[T]:
    """Apply ``writes`` (in order: a key written twice is written in two calls); one
    result per write."""
    results: dict[int, T] = {}
    pending = list(range(len(writes)))
    contended_rounds = 0
    while pending:
        batch, later = _distinct(pending, writes)
        if len(batch) == 1:
            # One write is one UpdateItem: as many calls, half the write units of a
            # transaction, and its response carries the item as written.
            results[batch[0]] = writes[batch[0]].alone()
            pending = later
            continue
        again, contended = _send(client, table, writes, batch, results)
        if contended:
            contended_rounds += 1
            if contended_rounds >= CONTENTION_ATTEMPTS:
                for index in contended:
                    results[index] = writes[index].alone()
                contended = []
            else:
                sleep(backoff_delay(contended_rounds))
        pending = sorted(again + contended + later)
    return [results[index] for index in range(len(writes))]


def _distinct(
    pending: list[int], writes: Sequence[TransactWrite[T]]
) -> tuple[list[int], list[int]]:
    """The first up to 100 pending writes with distinct keys; the rest wait for a later call
    (a key's second write must see its first)."""
    batch: list[int] = []
    later: list[int] = []
    keys: set[tuple[tuple[str, str], ...]] = set()
    for index in pending:
        key = tuple(sorted((name, str(value)) for name, value in writes[index].key.items()))
        if key in keys or len(batch) == MAX_TRANSACT_ITEMS:
            later.append(index)
            continue
        keys.add(key)
        batch.append(index)
    return batch, later


def _send(
    client: Any,
    table: str,
    writes: Sequence[TransactWrite[T]],
    batch: list[int],
    results: dict[int, T],
) -> tuple[list[int], list[int]]:
    """One TransactWriteItems of ``batch``: results of the decided writes go in ``results``;
    returns those to send again now, and those to send again after a backoff."""
    items = [
        {
            "Update": {
                "TableName": table,
                "Key": writes[i].key,
                **writes[i].request,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        for i in batch
    ]
    try:
        client.transact_write_items(TransactItems=items, ClientRequestToken=uuid.uuid4().hex)
    except ClientError as exc:
        response: dict[str, Any] = dict(exc.response)
        reasons: list[dict[str, Any]] = list(response.get("CancellationReasons") or ())
        if error_code(exc) != "TransactionCanceledException" or len(reasons) != len(batch):
            return _alone(writes, batch, results)
        return _cancelled(writes, batch, reasons, results)
    except BotoCoreError:
        return _alone(writes, batch, results)
    for index in batch:
        results[index] = writes[index].done()
    return [], []


def _cancelled(
    writes: Sequence[TransactWrite[T]],
    batch: list[int],
    reasons: list[dict[str, Any]],
    results: dict[int, T],
) -> tuple[list[int], list[int]]:
    again: list[int] = []
    contended: list[int] = []
    for index, reason in zip(batch, reasons, strict=True):
        code = reason.get("Code") or "None"
        if code == "ConditionalCheckFailed":
            results[index] = writes[index].lost(reason.get("Item"))
        elif code == "None":
            again.append(index)  # cancelled only because another item was
        elif code in _CONTENDED:
            contended.append(index)
        else:  # e.g. ValidationError: its own UpdateItem reports it
            results[index] = writes[index].alone()
    return again, contended


def _alone(
    writes: Sequence[TransactWrite[T]], batch: list[int], results: dict[int, T]
) -> tuple[list[int], list[int]]:
    for index in batch:
        results[index] = writes[index].alone()
    return [], []
