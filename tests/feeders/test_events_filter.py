"""The events feeder's ``filter``: CQL2 text on the item, message attributes, S3 record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cirrus_feed.app import feeder_configs
from cirrus_feed.config import load_settings
from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.model.envelopes import Envelope, NotifiedObject
from feeders.events.filter import MessageFilter

ITEM = {
    "type": "Feature",
    "id": "S2B_X",
    "collection": "sentinel-2-l2a",
    "geometry": {"type": "Point", "coordinates": [-40.5, 60.3]},
    "properties": {
        "eo:cloud_cover": 12.5,
        "platform": "sentinel-2b",
        "tags": ["a", "b"],
        "datetime": "2024-04-30T14:28:02.345Z",
    },
}
ENVELOPE = Envelope(
    kind="s3-object",
    body=NotifiedObject("b", "a b/é.tif", 10, "e", "s", None, "ObjectCreated:Put", None),
    raw={},
    source="sns-sqs",
    message_id="m",
    attributes={"status": "created", "cloud_cover": "12.5", "bbox.ll_lat": "60.3", "bbox": "x"},
)


@pytest.mark.parametrize(
    ("expression", "keeps"),
    [
        # item fields: top level, properties by bare name or under properties.
        ("id = 'S2B_X' AND collection = 'sentinel-2-l2a'", True),
        ("properties.platform = 'sentinel-2b' AND platform <> 'sentinel-2a'", True),
        ("s3.event_name LIKE 'ObjectCreated%' AND \"eo:cloud_cover\" < 50", True),
        ("eo:cloud_cover >= 12.5 AND NOT (id = 'other')", True),
        ('"eo:cloud_cover" BETWEEN 20 AND 30', False),
        ("platform IN ('sentinel-2a', 'sentinel-2b')", True),
        ("platform NOT IN ('sentinel-2a')", True),
        ("A_CONTAINS(tags, ('b')) AND tags.0 = 'a'", True),
        ("CASEI(platform) = CASEI('SENTINEL-2B')", True),
        ("S_INTERSECTS(geometry, BBOX(-180, 60, 180, 90))", True),
        ("datetime >= TIMESTAMP('2024-04-01T00:00:00Z')", True),
        ("id NOT LIKE 'S2A%' AND (false OR true)", True),
        # message attributes: strings, dotted names nested (the shorter name wins a clash).
        ("attributes.status = 'created' AND attributes.status IS NOT NULL", True),
        ("attributes.status IN ('updated', 'deleted')", False),
        ("attributes.cloud_cover < '2'", True),  # two strings compare as strings
        ("attributes.bbox = 'x'", True),  # not bbox.ll_lat's parent: the shorter name won
        ("attributes.nope IS NULL", True),
        # the S3 record and the envelope.
        ("s3.key LIKE '%é.tif' AND s3.size BETWEEN 1 AND 100 AND s3.bucket = 'b'", True),
        ("envelope.source = 'sns' OR envelope.source = 'sns-sqs'", True),
        # undecided (missing property, mixed types) drops the item.
        ("missing = 1", False),
        ("missing IS NULL", True),
        ("missing < 5 OR missing > 5", False),
        ("NOT (missing = 1)", False),
        ("platform > 5", False),
    ],
)
def test_message_filter_semantics(expression: str, keeps: bool) -> None:
    assert MessageFilter.parse(expression).keeps(ENVELOPE, ITEM) is keeps


def test_message_filter_dotted_attribute_names_nest() -> None:
    envelope = Envelope("payload", {}, {}, "sns", attributes={"bbox.ll_lat": "60.3"})
    message_filter = MessageFilter.parse("attributes.bbox.ll_lat = '60.3'")

    assert message_filter.keeps(envelope, ITEM)


def test_message_filter_drops_an_item_the_expression_fails_on() -> None:
    # A datetime that is no timestamp comes from the message: never an exception.
    item = {**ITEM, "properties": {"datetime": "yesterday"}}
    message_filter = MessageFilter.parse("datetime > TIMESTAMP('2024-01-01T00:00:00Z')")

    assert message_filter.keeps(ENVELOPE, item) is False


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "at 1:1: expected Expr"),
        ("id = ", "at 1:6: expected GEOMETRY, Identifier"),
        ("(id = 'a'", "at 1:10: expected"),
        ("id = 'a' 'b'", "at 1:10: expected EOI"),
        ("id = 'a' ; drop", "at 1:10"),
        ("__import__('os')", "at 1:1"),
        ("id", "is not valid under any of the schemas"),  # not a boolean
        ("id LIKE 5", "is not valid under any of the schemas"),
        ("attributes.cloud_cover < 20", "message attributes are strings: compare attributes.c"),
        ("id = 'a' OR attributes.n IN (1, 2)", "compare attributes.n with a quoted value"),
    ],
)
def test_message_filter_rejects_bad_expressions(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        MessageFilter.parse(expression)

    assert f"filter {expression!r}: " in str(caught.value)


def test_events_config_bad_filter_names_the_field_expression_and_cause(tmp_path: Path) -> None:
    # Given a config file whose events feeder has a broken filter
    feeder = {"type": "events", "mapper": "stac-item", "process": {"workflow": "w"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"feeders": {"up": {**feeder, "filter": "id =="}}}))
    settings = load_settings(path, env={})

    # When its feeders are validated, then the error names all three
    with pytest.raises(ConfigError) as caught:
        feeder_configs(settings, FeederRegistry())

    assert "feeders.up: filter: " in str(caught.value)
    assert "filter 'id ==': at 1:5: expected GEOMETRY" in str(caught.value)
