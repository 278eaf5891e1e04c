"""`StateStore` on the Cirrus v2 DynamoDB state table (spec §4), shareable with real Cirrus.

Items have exactly the Cirrus v2 attributes (§4.2). Every write is a conditional
``UpdateItem`` whose condition comes from `cirrus_feed.model.states` and which asks for
``ReturnValuesOnConditionCheckFailure=ALL_OLD``, so a lost race is reported with the current
record without a second read. There is no unconditional write path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws import dynamodb_outbox as outbox
from cirrus_feed.backends.aws import dynamodb_writes as writes
from cirrus_feed.backends.aws.clients import (
    call,
    call_errors_per_entry,
    error_code,
    translate,
)
from cirrus_feed.backends.aws.dynamodb_transact import TransactWrite, transact
from cirrus_feed.backends.aws.dynamodb_writes import Conditional, Expr, attr
from cirrus_feed.backends.base import (
    Claim,
    Finish,
    StatePage,
    StateQuery,
    StateRecord,
    WorkflowEvent,
    WriteResult,
    written,
)
from cirrus_feed.backends.limits import DYNAMODB_MAX_BATCH_GET_KEYS, check_state_key
from cirrus_feed.errors import (
    BackendError,
    BackendUnavailableError,
    ClaimConflictError,
    LimitExceededError,
    PayloadNotFoundError,
    StaleExecutionError,
)
from cirrus_feed.model.payload import key_to_payload_id, payload_id_to_key
from cirrus_feed.model.states import (
    TERMINAL,
    State,
    state_from_state_updated,
)
from cirrus_feed.support.batching import chunks
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock
from cirrus_feed.support.retry import retry_entries

_INDEXES = ("state_updated", "updated")
_UNPROCESSED_ATTEMPTS = 8
_MIN_FILTERED_PAGE = 100  # a FilterExpression thins pages out: read ahead in bigger steps

Item = dict[str, Any]  # a low-level DynamoDB item: attribute name -> {"S": ...} etc.

_KEY_SCHEMA = [
    {"AttributeName": "collections_workflow", "KeyType": "HASH"},
    {"AttributeName": "itemids", "KeyType": "RANGE"},
]
_TABLE_SCHEMA: dict[str, Any] = {  # spec §4.1, as in Cirrus's statedb-schema.json
    "KeySchema": _KEY_SCHEMA,
    "AttributeDefinitions": [
        {"AttributeName": name, "AttributeType": "S"}
        for name in ("collections_workflow", "itemids", *_INDEXES)
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": index,
            "KeySchema": [_KEY_SCHEMA[0], {"AttributeName": index, "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }
        for index in _INDEXES
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


class _LostRaceError(Exception):
    def __init__(self, old: Item | None):
        self.old = old


@dataclass
class _QueryPlan:
    """How a `StateQuery` maps onto a Query (or a Scan when no collections_workflow)."""

    expr: Expr
    index: str | None
    key_condition: str | None
    filter: str | None

    def request(self, table: str) -> dict[str, Any]:
        req: dict[str, Any] = {"TableName": table, **self.expr.kwargs()}
        if self.index:
            req["IndexName"] = self.index
        if self.key_condition:
            req["KeyConditionExpression"] = self.key_condition
        if self.filter:
            req["FilterExpression"] = self.filter
        return req

    def start_key(self, record: StateRecord) -> Item:
        key: Item = {
            "collections_workflow": attr(record.collections_workflow),
            "itemids": attr(record.itemids),
        }
        if self.index == "state_updated":
            key["state_updated"] = attr(record.state_updated)
        elif self.index == "updated":
            key["updated"] = attr(record.updated)
        return key


def _plan(query: StateQuery, now: datetime) -> _QueryPlan:
    """Cirrus ``StateDB.query`` index rules (§4.5); a Scan puts every condition in the filter."""
    expr = Expr()
    index: str | None = None if query.sort_index == "default" else query.sort_index
    range_condition: str | None = None
    if query.since is not None:
        low, high = (now - query.since).isoformat(), now.isoformat()
        if query.state is not None:
            index = "state_updated"
            low, high = f"{query.state.value}_{low}", f"{query.state.value}_{high}"
        else:
            index = "updated"
        range_condition = f"{expr.name(index)} BETWEEN {expr.value(low)} AND {expr.value(high)}"
    elif query.state is not None:
        index = "state_updated"
        range_condition = expr.begins_with_any("state_updated", [query.state.value])
    error_condition = (
        f"begins_with({expr.name('last_error')}, {expr.value(query.error_prefix)})"
        if query.error_prefix
        else None
    )
    if query.collections_workflow is None:
        conditions = [c for c in (range_condition, error_condition) if c]
        return _QueryPlan(expr, None, None, " AND ".join(conditions) or None)
    key_condition = (
        f"{expr.name('collections_workflow')} = {expr.value(query.collections_workflow)}"
    )
    if range_condition:
        key_condition += f" AND {range_condition}"
    return _QueryPlan(expr, index, key_condition, error_condition)


class DynamoDbStateStore:
    """The Cirrus v2 state table (``collections_workflow``/``itemids`` keys, §4.1)."""

    def __init__(self, table: str, *, client: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        self.table = table
        self._client = client
        self.clock = clock

    @staticmethod
    def create_table(client: Any, table: str) -> None:
        """Create ``table`` with the exact Cirrus v2 schema (§4.1); no-op if it exists."""
        try:
            client.create_table(TableName=table, **_TABLE_SCHEMA)
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise translate(exc, f"DynamoDB CreateTable {table!r}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"DynamoDB CreateTable {table!r}") from exc
        client.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    # -- reads ----------------------------------------------------------------------------

    def get(self, payload_id: str) -> StateRecord:
        try:
            key = _key(payload_id)
        except (ValueError, LimitExceededError):  # no record can have this id
            raise PayloadNotFoundError(f"Payload not found: {payload_id}") from None
        response = self._call(
            "get_item",
            f"DynamoDB GetItem payload {payload_id!r}",
            TableName=self.table,
            Key=key,
            ConsistentRead=True,
        )
        if "Item" not in response:
            raise PayloadNotFoundError(f"Payload not found: {payload_id}")
        return _record(payload_id, response["Item"])

    def get_many(self, payload_ids: Iterable[str]) -> dict[str, StateRecord]:
        # Several ids may split to one key (see payload.payload_id_to_key): map back to all.
        wanted: dict[tuple[str, str], list[str]] = {}
        for payload_id in dict.fromkeys(payload_ids):
            try:
                key = payload_id_to_key(payload_id)
                check_state_key(payload_id, key.collections_workflow, key.itemids)
            except (ValueError, LimitExceededError):
                continue  # nothing can be stored under an id without '/workflow-' or too long
            wanted.setdefault((key.collections_workflow, key.itemids), []).append(payload_id)
        found: dict[str, StateRecord] = {}
        for batch in chunks(list(wanted), DYNAMODB_MAX_BATCH_GET_KEYS):
            for item in self._batch_get([_key_of(cw, ids) for cw, ids in batch]):
                key_tuple = (item["collections_workflow"]["S"], item["itemids"]["S"])
                for payload_id in wanted.get(key_tuple, []):
                    found[payload_id] = _record(payload_id, item)
        return found

    def _batch_get(self, keys: list[Item]) -> list[Item]:
        items: list[Item] = []

        def send(pending: Sequence[Item]) -> list[Item]:
            response = self._call(
                "batch_get_item",
                f"DynamoDB BatchGetItem of {len(pending)} payloads",
                RequestItems={self.table: {"Keys": list(pending), "ConsistentRead": True}},
            )
            items.extend(response.get("Responses", {}).get(self.table, []))
            unprocessed: list[Item] = (
                response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
            )
            return unprocessed

        errors: list[BackendError] = []

        def failed_call(pending: Sequence[Item], exc: BackendError) -> None:
            errors.append(exc)

        # A throttled or dropped call is retried like unprocessed keys (backoff, jitter).
        left = retry_entries(
            keys,
            call_errors_per_entry(send, failed_call),
            attempts=_UNPROCESSED_ATTEMPTS,
            sleep=self.clock.sleep,
        )
        if errors and not errors[-1].retryable:
            raise errors[-1]
        if left:
            last = f" (last: {errors[-1]})" if errors else ""
            raise BackendUnavailableError(
                f"DynamoDB BatchGetItem: {len(left)} keys still unprocessed after "
                f"{_UNPROCESSED_ATTEMPTS} attempts{last}"
            )
        return items

    def query(
        self, query: StateQuery, *, limit: int = 100, next_key: str | None = None
    ) -> StatePage:
        """Collect up to ``limit`` records across DynamoDB pages (a filter can thin pages out).

        ``next_key`` is the payload id of the last record of the previous page; the start key
        is rebuilt from its stored record. Without ``collections_workflow`` this is a Scan,
        which DynamoDB cannot sort: records then come in table order.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        plan = _plan(query, self.clock.now())
        request = plan.request(self.table)
        operation = "query" if plan.key_condition else "scan"
        if operation == "query":
            request["ScanIndexForward"] = query.sort_ascending
        if next_key is not None:
            request["ExclusiveStartKey"] = plan.start_key(self.get(next_key))
        records: list[StateRecord] = []
        while True:
            # One more than needed tells whether another page exists.
            wanted = limit - len(records) + 1
            request["Limit"] = max(wanted, _MIN_FILTERED_PAGE) if plan.filter else wanted
            response = self._call(operation, f"DynamoDB {operation.title()} states", **request)
            records.extend(_record_from_item(item) for item in response.get("Items", []))
            if len(records) > limit:
                return StatePage(records[:limit], next_key=records[limit - 1].payload_id)
            if "LastEvaluatedKey" not in response:
                return StatePage(records)
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def count(self, query: StateQuery, *, limit: int | None = None) -> int | str:
        plan = _plan(query, self.clock.now())
        request = plan.request(self.table) | {"Select": "COUNT"}
        operation = "query" if plan.key_condition else "scan"
        total = 0
        while True:
            response = self._call(operation, f"DynamoDB {operation.title()} count", **request)
            total += int(response.get("Count", 0))
            if limit is not None and total > limit:
                return f"{limit}+"
            if "LastEvaluatedKey" not in response:
                return total
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- conditional writes (`dynamodb_writes`; batches: `dynamodb_transact`) ---------------

    def claim(self, payload_id: str, execution_arn: str) -> StateRecord:
        now = self.clock.now().isoformat()
        return self._write(writes.claim(payload_id, execution_arn, now, None))

    def claim_many(self, claims: Sequence[Claim]) -> list[WriteResult]:
        now = self.clock.now().isoformat()
        return self._write_many(
            [writes.claim(c.payload_id, c.execution_arn, now, c) for c in claims]
        )

    def set_processing(self, claimed: StateRecord) -> StateRecord:
        return self._write(writes.set_processing(claimed, self.clock.now().isoformat()))

    def set_processing_many(self, claimed: Sequence[StateRecord]) -> list[WriteResult]:
        now = self.clock.now().isoformat()
        return self._write_many([writes.set_processing(r, now) for r in claimed])

    def finish(
        self,
        current: StateRecord,
        execution_arn: str,
        state: State,
        error: str | None = None,
        *,
        event: WorkflowEvent | None = None,
    ) -> StateRecord:
        """See `StateStore.finish`; a record that no longer exists counts as stale."""
        return written(self.finish_many([Finish(current, execution_arn, state, error, event)])[0])

    def finish_many(self, finishes: Sequence[Finish]) -> list[WriteResult]:
        for f in finishes:
            if f.state not in TERMINAL:
                raise ValueError(
                    f"payload '{f.current.payload_id}': {f.state} is not a terminal state"
                )
        now = self.clock.now().isoformat()
        planned: list[Conditional | Exception] = [
            writes.finish(f, now)
            if f.current.latest_execution == f.execution_arn
            else StaleExecutionError(f.current.payload_id, f.execution_arn, f.current)
            for f in finishes
        ]
        return self._write_many(planned)

    def _write(self, write: Conditional) -> StateRecord:
        """One conditional UpdateItem; a lost race raises the error `_lost` names."""
        try:
            return self._update(
                write.payload_id, write.action, write.update, write.condition, write.expr
            )
        except _LostRaceError as lost:
            raise _lost(write, lost.old) from None

    def _write_many(self, planned: Sequence[Conditional | Exception]) -> list[WriteResult]:
        """The writes in transactions (`dynamodb_transact`); an error in ``planned`` is
        that write's result already."""
        results: list[WriteResult | None] = [
            p if isinstance(p, Exception) else None for p in planned
        ]
        batch: list[TransactWrite[WriteResult]] = []
        slots: list[int] = []
        for index, write in enumerate(planned):
            if isinstance(write, Exception):
                continue
            try:
                key = _key(write.payload_id)
            except (ValueError, LimitExceededError) as exc:
                results[index] = exc
                continue
            batch.append(self._transact_write(write, key))
            slots.append(index)
        for index, result in zip(
            slots, transact(self._client, self.table, batch, sleep=self.clock.sleep), strict=True
        ):
            results[index] = result
        return [r for r in results if r is not None]

    def _transact_write(self, write: Conditional, key: Item) -> TransactWrite[WriteResult]:
        def done() -> WriteResult:
            assert write.record is not None, f"{write.action}: a batch write knows its item"
            return write.record

        def alone() -> WriteResult:
            try:
                return self._write(write)
            except Exception as exc:  # noqa: BLE001 - this write's result
                return exc

        return TransactWrite(
            key=key,
            request=write.request(),
            done=done,
            lost=lambda old: _lost(write, old),
            alone=alone,
        )

    # -- outbox (`dynamodb_outbox`) --------------------------------------------------------

    def pending_events(
        self, payload_ids: Iterable[str] | None = None, *, limit: int = 100
    ) -> list[WorkflowEvent]:
        if payload_ids is None:
            return outbox.pending_any(self._call, self.table, limit=limit)
        keys: dict[tuple[str, str], Item] = {}
        for payload_id in payload_ids:
            try:
                key = _key(payload_id)
            except (ValueError, LimitExceededError):
                continue
            keys[(key["collections_workflow"]["S"], key["itemids"]["S"])] = key
        if not keys:
            return []
        return outbox.pending_of(
            self._call, self.table, list(keys.values()), limit=limit, sleep=self.clock.sleep
        )

    def mark_announced(self, events: Sequence[WorkflowEvent]) -> None:
        by_payload: dict[str, list[WorkflowEvent]] = {}
        for event in events:
            if event.event_id is not None:
                by_payload.setdefault(event.payload_id, []).append(event)
        announced: list[tuple[Item, list[WorkflowEvent]]] = []
        for payload_id, kept in by_payload.items():
            try:
                announced.append((_key(payload_id), kept))
            except (ValueError, LimitExceededError):
                continue
        outbox.remove_all(self._client, self.table, announced, sleep=self.clock.sleep)

    def delete(self, payload_id: str) -> None:
        try:
            key = _key(payload_id)
        except (ValueError, LimitExceededError):
            return  # nothing can be stored under an id without '/workflow-' or too long
        self._call(
            "delete_item",
            f"DynamoDB DeleteItem payload {payload_id!r}",
            TableName=self.table,
            Key=key,
        )

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""

    # -- plumbing -------------------------------------------------------------------------

    def _update(
        self, payload_id: str, action: str, update: str, condition: str, expr: Expr
    ) -> StateRecord:
        """One conditional UpdateItem; raises `_LostRaceError` with the old item on a lost race."""
        try:
            response = self._client.update_item(
                TableName=self.table,
                Key=_key(payload_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **expr.kwargs(),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                old: Item | None = exc.response.get("Item")  # type: ignore[assignment]
                raise _LostRaceError(old) from exc
            raise translate(exc, f"DynamoDB UpdateItem ({action}) payload {payload_id!r}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"DynamoDB UpdateItem ({action}) payload {payload_id!r}") from exc
        return _record(payload_id, response["Attributes"])

    def _call(self, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
        return call(self._client, operation, what, **kwargs)


def _lost(write: Conditional, old: Item | None) -> BackendError:
    """The error of a write whose condition failed on ``old`` (the item as it is)."""
    current = _maybe_record(write.payload_id, old)
    if write.finishing is not None and (
        current is None or current.latest_execution != write.finishing
    ):
        return StaleExecutionError(write.payload_id, write.finishing, current)
    return ClaimConflictError(write.payload_id, current)


# -- item <-> record ----------------------------------------------------------------------


def _key_of(collections_workflow: str, itemids: str) -> Item:
    return {"collections_workflow": {"S": collections_workflow}, "itemids": {"S": itemids}}


def _key(payload_id: str) -> Item:
    """The table key; `LimitExceededError` when over DynamoDB's key sizes (checked here so
    the error is the same as the local store's, not a ValidationException)."""
    key = payload_id_to_key(payload_id)
    check_state_key(payload_id, key.collections_workflow, key.itemids)
    return _key_of(key.collections_workflow, key.itemids)


def _string(item: Item, name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if value and "S" in value else None


def _strings(item: Item, name: str) -> tuple[str, ...] | None:
    value = item.get(name)
    if not value or "L" not in value:
        return None
    return tuple(str(v["S"]) for v in value["L"] if "S" in v)


def _record(payload_id: str, item: Item) -> StateRecord:
    """A `StateRecord` from a stored item; ``COMPLETED_…`` reads as SUCCEEDED."""
    state_updated = _string(item, "state_updated")
    if state_updated is None:
        raise BackendError(f"payload '{payload_id}': state record has no state_updated")
    try:
        state = state_from_state_updated(state_updated)
    except ValueError as exc:
        raise BackendError(f"payload '{payload_id}': {exc}") from exc
    return StateRecord(
        payload_id=payload_id,
        state=state,
        state_updated=state_updated,
        created=_string(item, "created") or "",
        updated=_string(item, "updated") or "",
        claimed_at=_string(item, "claimed_at"),
        executions=_strings(item, "executions") or (),
        last_error=_string(item, "last_error"),
        outputs=_strings(item, "outputs"),
    )


def _record_from_item(item: Item) -> StateRecord:
    cw, itemids = item["collections_workflow"]["S"], item["itemids"]["S"]
    return _record(key_to_payload_id(cw, itemids), item)


def _maybe_record(payload_id: str, item: Item | None) -> StateRecord | None:
    return _record(payload_id, item) if item else None
