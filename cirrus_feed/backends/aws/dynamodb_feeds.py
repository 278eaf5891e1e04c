"""`FeedStore` on one DynamoDB table (``aws.feed_table``) with a generic ``pk``/``sk`` key.

Every item of a feeder shares ``pk = "feeder#<name>"``:

* its cursor: ``sk = "cursor"``, ``cursor`` (JSON text) and ``updated``;
* its runs: ``sk = "run#<started>#<run_id>"``, so a Query on ``begins_with(sk, "run#")``
  read backwards lists them newest first.

The `remember` cache lives beside them: ``pk = "seen#<name>"``, ``sk = <key>`` and
``expires_at`` (a Number, epoch seconds), which doubles as the table's DynamoDB TTL
attribute (enable TTL on ``expires_at`` to have expired keys deleted for free). Each key is
one conditional PutItem (``attribute_not_exists(pk) OR expires_at <= :now``): 1 WCU per key,
refused or not. That is the cheapest atomic put-if-absent DynamoDB offers: BatchWriteItem
takes no conditions, and TransactWriteItems costs 2 WCU per key and fails as a whole.

``request``/``counts``/``cursor`` are stored as JSON strings (DynamoDB numbers would come
back as Decimals and lose float/int distinctions); the other fields are plain ``S``
attributes, left out when None. Writes are unconditional puts: a run saved again (progress
updates) replaces its item, as long as its ``started`` does not change. A running run also
has a marker ``sk = "live#<run_id>"`` (``run_sk``: its run item's key), put before each
running save and deleted after the final one, so `abandon` reads the running runs only, not
a history that grows with every Lambda push; it marks each expired one with a conditional
UpdateItem (still ``running`` with the same ``lease_until``): a heartbeat in between wins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast, get_args

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import call, error_code, translate
from cirrus_feed.backends.base import FeedRun, RunStatus, abandoned
from cirrus_feed.backends.limits import DYNAMODB_MAX_SORT_KEY_BYTES, check_seen_keys
from cirrus_feed.errors import BackendError
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

Item = dict[str, Any]  # a low-level DynamoDB item: attribute name -> {"S": ...}

_TABLE_SCHEMA: dict[str, Any] = {
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
_CURSOR_SK = "cursor"
_RUN_PREFIX = "run#"
_LIVE_PREFIX = "live#"  # one marker per running run: what `abandon` reads
_OPTIONAL = ("finished", "checkpoint", "error", "lease_until")
_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))


def _pk(feeder: str) -> str:
    return f"feeder#{feeder}"


def _seen_pk(feeder: str) -> str:
    return f"seen#{feeder}"


def _dump(value: Mapping[str, Any], what: str) -> str:
    """``value`` as strict JSON; ValueError naming ``what`` when it is not JSON-able."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-able: {exc}") from exc


def _load_object(item: Item, name: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(item[name]["S"])
    except (KeyError, ValueError) as exc:
        raise BackendError(f"{what}: {name} is missing or not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BackendError(f"{what}: {name} is not a JSON object")
    return value


def _run_item(run: FeedRun) -> Item:
    what = f"feed run {run.run_id!r}"
    item: Item = {
        "pk": {"S": _pk(run.feeder)},
        "sk": {"S": f"{_RUN_PREFIX}{run.started}#{run.run_id}"},
        "run_id": {"S": run.run_id},
        "feeder": {"S": run.feeder},
        "started": {"S": run.started},
        "status": {"S": run.status},
        "request": {"S": _dump(run.request, f"{what}: request")},
        "counts": {"S": _dump(run.counts, f"{what}: counts")},
    }
    for name in _OPTIONAL:
        value = getattr(run, name)
        if value is not None:
            item[name] = {"S": value}
    return item


def _run(item: Item) -> FeedRun:
    what = f"feed run item {item.get('sk', {}).get('S')!r}"
    try:
        plain = {name: item[name]["S"] for name in ("run_id", "feeder", "started", "status")}
        optional = {name: item[name]["S"] for name in _OPTIONAL if name in item}
    except KeyError as exc:
        raise BackendError(f"{what}: attribute {exc} is missing or not a string") from exc
    if plain["status"] not in _STATUSES:
        raise BackendError(f"{what}: unknown status {plain['status']!r}")
    return FeedRun(
        run_id=plain["run_id"],
        feeder=plain["feeder"],
        started=plain["started"],
        status=cast("RunStatus", plain["status"]),  # checked against RunStatus above
        finished=optional.get("finished"),
        request=_load_object(item, "request", what),
        counts=_load_object(item, "counts", what),
        checkpoint=optional.get("checkpoint"),
        error=optional.get("error"),
        lease_until=optional.get("lease_until"),
    )


class DynamoDbFeedStore:
    """Feed runs and cursors in the ``pk``/``sk`` table ``table``; see `base.FeedStore`.

    Reads are strongly consistent, so a cursor set by one process is what the next run
    reads. botocore errors are translated with `clients.translate` (throttling and 5xx
    become `BackendUnavailableError` after botocore's own retries).
    """

    def __init__(self, table: str, *, client: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        self.table = table
        self.clock = clock
        self._client = client

    @staticmethod
    def create_table(client: Any, table: str) -> None:
        """Create ``table`` (on-demand, keys ``pk``/``sk``); no-op if it exists."""
        what = f"DynamoDB CreateTable {table!r}"
        try:
            client.create_table(TableName=table, **_TABLE_SCHEMA)
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise translate(exc, what) from exc
        except BotoCoreError as exc:
            raise translate(exc, what) from exc
        try:
            client.get_waiter("table_exists").wait(
                TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, what) from exc

    def save_run(self, run: FeedRun) -> None:
        item = _run_item(run)
        live = {"pk": item["pk"], "sk": {"S": f"{_LIVE_PREFIX}{run.run_id}"}}
        what = f"DynamoDB PutItem feed run {run.run_id!r}"
        if run.status == "running":  # the marker first: a running run always has one
            self._call("put_item", what, Item=live | {"run_sk": item["sk"]})
            self._call("put_item", what, Item=item)
        else:
            self._call("put_item", what, Item=item)
            self._call("delete_item", f"DynamoDB DeleteItem live marker {run.run_id!r}", Key=live)

    def list_runs(self, feeder: str, *, limit: int = 20) -> list[FeedRun]:
        runs: list[FeedRun] = []
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": _pk(feeder)},
                ":prefix": {"S": _RUN_PREFIX},
            },
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        # A page stops at 1 MB before reaching Limit: keep reading until enough or done.
        while len(runs) < limit:
            response = self._call(
                "query",
                f"DynamoDB Query feed runs of {feeder!r}",
                Limit=limit - len(runs),
                **request,
            )
            runs.extend(_run(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return runs

    def abandon(self, feeder: str, *, now: str) -> list[FeedRun]:
        """Reads only the feeder's ``live#`` markers (its running runs), never its history."""
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": _pk(feeder)},
                ":prefix": {"S": _LIVE_PREFIX},
            },
            "ConsistentRead": True,
        }
        markers: list[Item] = []
        while True:
            response = self._call("query", f"DynamoDB Query running runs of {feeder!r}", **request)
            markers += response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        marked: list[FeedRun] = []
        for marker in markers:
            key = {"pk": marker["pk"], "sk": marker["run_sk"]}
            found = self._call(
                "get_item", f"DynamoDB GetItem feed run {key['sk']}", Key=key, ConsistentRead=True
            ).get("Item")
            if found is None:
                continue  # a run being saved right now: its own puts follow
            run = _run(found)
            if run.status == "running" and run.lease_until is not None and run.lease_until >= now:
                continue
            if run.status == "running":
                done = self._abandon(found)
                if done is None:
                    continue  # it heartbeated meanwhile
                marked.append(done)
            what = f"DynamoDB DeleteItem live marker {run.run_id!r}"
            self._call("delete_item", what, Key={"pk": marker["pk"], "sk": marker["sk"]})
        return marked

    def _abandon(self, item: Item) -> FeedRun | None:
        """Mark one expired run, unless it heartbeated (or finished) since it was read."""
        run = _run(item)
        marked = abandoned(run)
        condition = "#status = :running AND " + (
            "lease_until = :lease" if run.lease_until else "attribute_not_exists(lease_until)"
        )
        values: Item = {
            ":running": {"S": "running"},
            ":abandoned": {"S": marked.status},
            ":error": {"S": marked.error or ""},
        }
        if run.lease_until:
            values[":lease"] = {"S": run.lease_until}
        try:
            self._client.update_item(
                TableName=self.table,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET #status = :abandoned, #error = :error REMOVE lease_until",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise translate(exc, f"DynamoDB UpdateItem feed run {run.run_id!r}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"DynamoDB UpdateItem feed run {run.run_id!r}") from exc
        return marked

    def get_cursor(self, feeder: str) -> dict[str, Any] | None:
        response = self._call(
            "get_item",
            f"DynamoDB GetItem cursor of {feeder!r}",
            Key=self._cursor_key(feeder),
            ConsistentRead=True,
        )
        if "Item" not in response:
            return None
        return _load_object(response["Item"], "cursor", f"cursor of feeder {feeder!r}")

    def set_cursor(self, feeder: str, cursor: Mapping[str, Any]) -> None:
        item: Item = {
            **self._cursor_key(feeder),
            "cursor": {"S": _dump(cursor, f"cursor of feeder {feeder!r}")},
            "updated": {"S": self.clock.now().isoformat()},
        }
        self._call("put_item", f"DynamoDB PutItem cursor of {feeder!r}", Item=item)

    def clear_cursor(self, feeder: str) -> None:
        self._call(
            "delete_item",
            f"DynamoDB DeleteItem cursor of {feeder!r}",
            Key=self._cursor_key(feeder),
        )

    def remember(self, feeder: str, keys: Sequence[str], ttl_seconds: int) -> set[str]:
        """One conditional put per distinct key; a refused condition means "seen"."""
        if ttl_seconds <= 0:
            raise ValueError(f"remember for feeder {feeder!r}: ttl_seconds must be positive")
        check_seen_keys(feeder, keys)  # before any put: all or nothing, as locally
        now = int(self.clock.time())
        seen: set[str] = set()
        for key in dict.fromkeys(keys):
            if not self._put_if_absent(feeder, key, now, now + ttl_seconds):
                seen.add(key)
        return seen

    def _put_if_absent(self, feeder: str, key: str, now: int, expires_at: int) -> bool:
        what = f"DynamoDB PutItem seen key {key!r} of {feeder!r}"
        try:
            self._client.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": _seen_pk(feeder)},
                    "sk": {"S": key},
                    "expires_at": {"N": str(expires_at)},
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, what) from exc
        except BotoCoreError as exc:
            raise translate(exc, what) from exc
        return True

    def forget(self, feeder: str, keys: Sequence[str]) -> None:
        """One DeleteItem per key (failures are rare; no batch bookkeeping needed)."""
        for key in dict.fromkeys(keys):
            if len(key.encode()) > DYNAMODB_MAX_SORT_KEY_BYTES:
                continue  # cannot have been remembered; DynamoDB would refuse the key
            self._call(
                "delete_item",
                f"DynamoDB DeleteItem seen key {key!r} of {feeder!r}",
                Key={"pk": {"S": _seen_pk(feeder)}, "sk": {"S": key}},
            )

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""

    def _cursor_key(self, feeder: str) -> Item:
        return {"pk": {"S": _pk(feeder)}, "sk": {"S": _CURSOR_SK}}

    def _call(self, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
        return call(self._client, operation, what, TableName=self.table, **kwargs)
