"""Contract of `Notifier` (base.py docstrings, spec §6.1/§6.2), run on the event log and SNS.

On AWS, messages are read back from SQS queues subscribed to the topics without raw
delivery, so the SNS envelope (body + message attributes) is what is checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from cirrus_feed.backends.base import Notifier, WorkflowEvent
from cirrus_feed.backends.limits import SNS_MAX_MESSAGE_BYTES, sns_message_size
from cirrus_feed.errors import PayloadTooLargeError
from cirrus_feed.model.executions import console_url
from cirrus_feed.model.item_attributes import item_attributes

Delivered = tuple[dict[str, Any], dict[str, tuple[str, str]]]
Read = Callable[[], list[Delivered]]

PAYLOAD_ID = "col1/workflow-wf1/item1"
ARN = "arn:aws:states:us-east-1:123456789012:execution:wf1:3c1b7a8e"
INPUT_URL = f"s3://payloads/cirrus/executions/{PAYLOAD_ID}/3c1b7a8e/input.json"
OUTPUT_URL = f"s3://payloads/cirrus/executions/{PAYLOAD_ID}/3c1b7a8e/output.json"
TIMESTAMP = "2025-03-31T21:36:41.123456+00:00"


def lifecycle() -> list[WorkflowEvent]:
    """Eleven events (one more than an SNS batch) of every shape the pipeline sends."""
    execution = console_url(ARN, "us-east-1")
    events = [
        WorkflowEvent("CLAIMED_PROCESSING", PAYLOAD_ID, TIMESTAMP),
        WorkflowEvent(
            "STARTED_PROCESSING",
            PAYLOAD_ID,
            TIMESTAMP,
            input_payload_url=INPUT_URL,
            execution=execution,
        ),
        WorkflowEvent(
            "FAILED",
            PAYLOAD_ID,
            TIMESTAMP,
            input_payload_url=INPUT_URL,
            execution=execution,
            error="States.TaskFailed: boom",
        ),
        WorkflowEvent(
            "SUCCEEDED",
            PAYLOAD_ID,
            TIMESTAMP,
            input_payload_url=INPUT_URL,
            output_payload_url=OUTPUT_URL,
            execution=execution,
        ),
        WorkflowEvent("RECORD_EXTRACT_FAILED", "unknown", TIMESTAMP, error="not JSON"),
        WorkflowEvent("ALREADY_CLAIMED", PAYLOAD_ID, TIMESTAMP, extra={"note": "rerun"}),
    ]
    events += [
        WorkflowEvent("CLAIMED_PROCESSING", f"col2/workflow-wf2/item{n}", TIMESTAMP)
        for n in range(5)
    ]
    return events


ITEM = {
    "type": "Feature",
    "stac_version": "1.0.0",
    "id": "item1",
    "collection": "col1",
    "bbox": [-105.1, 39.5, -104.9, 39.75],
    "geometry": None,
    "properties": {
        "datetime": "2025-01-01T10:00:00Z",
        "eo:cloud_cover": 12.5,
        "created": "2025-01-02T00:00:00Z",
        "updated": "2025-01-02T00:00:00Z",
    },
    "links": [],
    "assets": {},
}
ITEM_ATTRIBUTES = {
    "collection": ("String", "col1"),
    "bbox.ll_lon": ("Number", "-105.1"),
    "bbox.ll_lat": ("Number", "39.5"),
    "bbox.ur_lon": ("Number", "-104.9"),
    "bbox.ur_lat": ("Number", "39.75"),
    "start_datetime": ("String", "2025-01-01T10:00:00Z"),
    "end_datetime": ("String", "2025-01-01T10:00:00Z"),
    "datetime": ("String", "2025-01-01T10:00:00Z"),
    "cloud_cover": ("Number", "12.5"),
    "status": ("String", "created"),
}
ITEM_ALT = {
    **ITEM,
    "id": "item-alt",
    "properties": {
        "datetime": None,
        "start_datetime": "2025-01-01T00:00:00Z",
        "end_datetime": "2025-01-31T00:00:00Z",
        "created": "2025-01-02T00:00:00Z",
        "updated": "2025-02-02T00:00:00Z",
    },
}
ITEM_ALT_ATTRIBUTES = {
    **{k: v for k, v in ITEM_ATTRIBUTES.items() if k.startswith(("collection", "bbox"))},
    "start_datetime": ("String", "2025-01-01T00:00:00Z"),
    "end_datetime": ("String", "2025-01-31T00:00:00Z"),
    "status": ("String", "updated"),
}
ITEM_NO_PROPERTIES = {k: v for k, v in ITEM.items() if k != "properties"} | {"id": "bare"}


def test_notifier_announces_events_in_order(notifier: Notifier, delivered_events: Read) -> None:
    events = lifecycle()

    notifier.announce(events)

    bodies = [body for body, _ in delivered_events()]
    assert bodies == [event.to_message() for event in events]
    assert bodies[0] == {
        "event_type": "CLAIMED_PROCESSING",
        "payload_id": PAYLOAD_ID,
        "isotimestamp": TIMESTAMP,
    }
    assert bodies[5]["note"] == "rerun"


def test_notifier_keeps_order_across_calls(notifier: Notifier, delivered_events: Read) -> None:
    first, second = lifecycle()[:3], lifecycle()[3:]

    notifier.announce(first)
    notifier.announce(second)

    assert [body["event_type"] for body, _ in delivered_events()] == [
        event.event_type for event in [*first, *second]
    ]


def test_notifier_publishes_items_with_attributes(
    notifier: Notifier, delivered_items: Read
) -> None:
    notifier.publish_items([ITEM, ITEM_ALT, ITEM_NO_PROPERTIES])

    delivered = delivered_items()

    assert [body for body, _ in delivered] == [ITEM, ITEM_ALT, ITEM_NO_PROPERTIES]
    assert [attributes for _, attributes in delivered] == [
        ITEM_ATTRIBUTES,
        ITEM_ALT_ATTRIBUTES,
        {k: v for k, v in ITEM_ATTRIBUTES.items() if k.startswith(("collection", "bbox"))},
    ]


def test_notifier_publishes_one_message_per_item(notifier: Notifier, delivered_items: Read) -> None:
    items = [ITEM | {"id": f"item{n}"} for n in range(11)]

    notifier.publish_items(items)

    assert [body["id"] for body, _ in delivered_items()] == [f"item{n}" for n in range(11)]


def test_notifier_sends_nothing_for_empty_batches(
    notifier: Notifier, delivered_events: Read, delivered_items: Read
) -> None:
    notifier.announce([])
    notifier.publish_items([])

    assert delivered_events() == []
    assert delivered_items() == []


@pytest.mark.aws
@pytest.mark.parametrize("backend", ["aws"], indirect=True)
def test_notifier_event_message_attributes(notifier: Notifier, delivered_events: Read) -> None:
    events = lifecycle()

    notifier.announce(events)

    attributes = [attrs for _, attrs in delivered_events()]
    assert attributes[0] == {
        "event_type": ("String", "CLAIMED_PROCESSING"),
        "workflow": ("String", "wf1"),
        "collections": ("String", "col1"),
    }
    assert attributes[2]["error"] == ("String", "States.TaskFailed: boom")
    # An id that does not parse has no workflow/collections attributes.
    assert attributes[4] == {
        "event_type": ("String", "RECORD_EXTRACT_FAILED"),
        "error": ("String", "not JSON"),
    }
    assert attributes[6]["collections"] == ("String", "col2")


@pytest.mark.aws
def test_notifier_without_topics_sends_nothing() -> None:
    from cirrus_feed.backends.aws.clients import make_client
    from cirrus_feed.backends.aws.sns import SnsNotifier

    # Nothing listens there: any attempt to publish would fail.
    client = make_client("sns", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    notifier = SnsNotifier(client=client, region="us-east-1")

    notifier.announce(lifecycle())
    notifier.publish_items([ITEM])
    notifier.close()


# -- limits (SNS's, on every backend: see `Notifier` and `backends.limits`) -------------------


def big_item(item_id: str, size: int) -> dict[str, Any]:
    """``ITEM`` padded so its JSON body is about ``size`` bytes."""
    properties = ITEM["properties"]
    assert isinstance(properties, dict)
    return ITEM | {"id": item_id, "properties": {**properties, "pad": "x" * size}}


def test_notifier_refuses_only_oversize_items(notifier: Notifier, delivered_items: Read) -> None:
    items = [
        ITEM | {"id": "before"},
        big_item("huge", SNS_MAX_MESSAGE_BYTES),
        ITEM | {"id": "after"},
    ]

    with pytest.raises(PayloadTooLargeError) as raised:
        notifier.publish_items(items)

    assert raised.value.indexes == (1,)
    assert [body["id"] for body, _ in delivered_items()] == ["before", "after"]


def test_notifier_counts_attributes_in_the_message_size(
    notifier: Notifier, delivered_items: Read
) -> None:
    # A body under 256 KiB whose attributes push the message over it.
    body_size = len(json.dumps(big_item("edge", 0)).encode())
    edge = big_item("edge", SNS_MAX_MESSAGE_BYTES - body_size)
    assert len(json.dumps(edge).encode()) <= SNS_MAX_MESSAGE_BYTES
    assert sns_message_size(json.dumps(edge), item_attributes(edge)) > SNS_MAX_MESSAGE_BYTES

    with pytest.raises(PayloadTooLargeError) as raised:
        notifier.publish_items([edge])

    assert raised.value.indexes == (0,)
    assert delivered_items() == []


def test_notifier_splits_big_messages_across_batches(
    notifier: Notifier, delivered_items: Read
) -> None:
    # Three 100 KiB items cannot share one 256 KiB PublishBatch.
    items = [big_item(f"big{n}", 100 * 1024) for n in range(3)]

    notifier.publish_items(items)

    assert [body["id"] for body, _ in delivered_items()] == ["big0", "big1", "big2"]


def test_notifier_refuses_only_oversize_events(notifier: Notifier, delivered_events: Read) -> None:
    events = lifecycle()[:3]
    huge = WorkflowEvent("FAILED", PAYLOAD_ID, TIMESTAMP, error="E" * SNS_MAX_MESSAGE_BYTES)

    with pytest.raises(PayloadTooLargeError) as raised:
        notifier.announce([events[0], huge, *events[1:]])

    assert raised.value.indexes == (1,)
    assert [body for body, _ in delivered_events()] == [e.to_message() for e in events]
