"""The DynamoDB state table is shared with Cirrus itself: its schema and items must be
byte-for-byte what cirrus-geo v2 reads and writes (spec §4.1, §4.2). AWS only."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cirrus_feed.backends.base import StateStore
from cirrus_feed.model.states import State

pytestmark = pytest.mark.aws

PAYLOAD_ID = "col1/workflow-wf1/item1/item2"
KEY = {"collections_workflow": {"S": "col1_wf1"}, "itemids": {"S": "item1/item2"}}
ARN_1 = "arn:aws:states:us-east-1:123456789012:execution:wf1:exec-1"
ARN_2 = "arn:aws:states:us-east-1:123456789012:execution:wf1:exec-2"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00"


@pytest.fixture
def dynamodb(aws_client: Callable[[str], Any]) -> Any:
    return aws_client("dynamodb")


@pytest.fixture
def table(dynamodb: Any) -> Iterator[str]:
    from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore

    name = f"state-{uuid.uuid4().hex[:10]}"
    DynamoDbStateStore.create_table(dynamodb, name)
    yield name
    dynamodb.delete_table(TableName=name)


@pytest.fixture
def store(dynamodb: Any, table: str) -> Iterator[StateStore]:
    from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore

    state_store = DynamoDbStateStore(table, client=dynamodb)
    yield state_store
    state_store.close()


def raw_item(dynamodb: Any, table: str) -> dict[str, Any]:
    item: dict[str, Any] = dynamodb.get_item(TableName=table, Key=KEY, ConsistentRead=True)["Item"]
    return item


def test_dynamodb_item_format_table_has_cirrus_schema(dynamodb: Any, table: str) -> None:
    description = dynamodb.describe_table(TableName=table)["Table"]

    assert description["KeySchema"] == [
        {"AttributeName": "collections_workflow", "KeyType": "HASH"},
        {"AttributeName": "itemids", "KeyType": "RANGE"},
    ]
    assert sorted(
        (d["AttributeName"], d["AttributeType"]) for d in description["AttributeDefinitions"]
    ) == [("collections_workflow", "S"), ("itemids", "S"), ("state_updated", "S"), ("updated", "S")]
    indexes = {
        index["IndexName"]: (index["KeySchema"], index["Projection"]["ProjectionType"])
        for index in description["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        name: (
            [
                {"AttributeName": "collections_workflow", "KeyType": "HASH"},
                {"AttributeName": name, "KeyType": "RANGE"},
            ],
            "ALL",
        )
        for name in ("state_updated", "updated")
    }


def test_dynamodb_item_format_failed_item(dynamodb: Any, table: str, store: StateStore) -> None:
    processing = store.set_processing(store.claim(PAYLOAD_ID, ARN_1))
    store.finish(processing, ARN_1, State.FAILED, "Timeout: task timed out")

    item = raw_item(dynamodb, table)

    assert set(item) == {
        "collections_workflow",
        "itemids",
        "state_updated",
        "created",
        "updated",
        "claimed_at",
        "executions",
        "last_error",
    }
    assert item["collections_workflow"] == {"S": "col1_wf1"}
    assert item["itemids"] == {"S": "item1/item2"}
    assert re.fullmatch(f"FAILED_{TIMESTAMP}", item["state_updated"]["S"])
    for name in ("created", "updated", "claimed_at"):
        assert re.fullmatch(TIMESTAMP, item[name]["S"]), name
    assert item["state_updated"]["S"] == f"FAILED_{item['updated']['S']}"
    assert item["executions"] == {"L": [{"S": ARN_1}]}
    assert item["last_error"] == {"S": "Timeout: task timed out"}


def test_dynamodb_item_format_reclaim_appends_and_removes_error(
    dynamodb: Any, table: str, store: StateStore
) -> None:
    claimed = store.claim(PAYLOAD_ID, ARN_1)
    store.finish(claimed, ARN_1, State.FAILED, "boom")

    store.claim(PAYLOAD_ID, ARN_2)
    item = raw_item(dynamodb, table)

    assert "last_error" not in item
    assert item["executions"] == {"L": [{"S": ARN_1}, {"S": ARN_2}]}
    assert re.fullmatch(f"CLAIMED_{TIMESTAMP}", item["state_updated"]["S"])
    assert item["claimed_at"] == item["updated"]


def test_dynamodb_item_format_reads_cirrus_written_item(
    dynamodb: Any, table: str, store: StateStore
) -> None:
    # Exactly what cirrus-geo v2's update-state leaves after a success.
    dynamodb.put_item(
        TableName=table,
        Item={
            **KEY,
            "state_updated": {"S": "SUCCEEDED_2025-03-31T21:36:41.123456+00:00"},
            "created": {"S": "2025-03-31T21:30:00+00:00"},
            "updated": {"S": "2025-03-31T21:36:41.123456+00:00"},
            "claimed_at": {"S": "2025-03-31T21:30:00+00:00"},
            "executions": {"L": [{"S": ARN_1}]},
            "outputs": {"L": [{"S": "s3://bucket/col1/item1.json"}]},
        },
    )

    record = store.get(PAYLOAD_ID)

    assert record.payload_id == PAYLOAD_ID
    assert record.state is State.SUCCEEDED
    assert record.state_updated == "SUCCEEDED_2025-03-31T21:36:41.123456+00:00"
    assert record.created == record.claimed_at == "2025-03-31T21:30:00+00:00"
    assert record.updated == "2025-03-31T21:36:41.123456+00:00"
    assert record.executions == (ARN_1,)
    assert record.outputs == ("s3://bucket/col1/item1.json",)
    assert record.last_error is None
