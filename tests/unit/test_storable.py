"""Validation guarantees storability: ids and their parts are clean text within every
store's key limits, and the error names the field and the limit."""

from __future__ import annotations

from typing import Any

import pytest

from cirrus_feed.backends.local.files import FilePayloadStore
from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.model import layout, storable
from cirrus_feed.model.executions import execution_name
from cirrus_feed.model.payload import ProcessPayload


def payload(item_id: str = "a", collection: str = "c1", **process: Any) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "id": item_id, "collection": collection}],
        "process": [{"workflow": "wf1", **process}],
    }


def refused(data: dict[str, Any]) -> PayloadValidationError:
    with pytest.raises(PayloadValidationError) as caught:
        ProcessPayload.from_dict(data)
    return caught.value


@pytest.mark.parametrize(
    ("item_id", "shown"),
    [
        ("a\nforged line", "U+000A (a control character) at character 1"),
        ("a\rb", "U+000D (a control character)"),
        ("tab\there", "U+0009 (a control character)"),
        ("nul\x00", "U+0000 (a control character)"),
        ("c1\x85", "U+0085 (a control character)"),
        ("x\ud800", "U+D800 (a lone surrogate)"),
        ("x\u2028y", "U+2028 (a line separator)"),
    ],
)
def test_item_id_with_unsafe_character_is_invalid_naming_the_field(
    item_id: str, shown: str
) -> None:
    error = refused(payload(item_id))

    assert error.field == "features[0].id"
    assert shown in str(error)
    assert "\n" not in str(error)
    assert "\r" not in str(error)
    assert error.payload_id is not None
    assert storable.unsafe_character(error.payload_id) is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (payload(collection="c\x1b1"), "features[0].collection"),
        (payload(collection="c\n1"), "id"),  # Cirrus's id rule comes first: '.' is no newline
        (payload(collections="c\x1b[31m"), "process[0].collections"),
        ({**payload(), "id": "c1/workflow-wf1/a\nb"}, "id"),
        ({**payload(), "id": "c\ud83d/workflow-wf1/a"}, "id"),
    ],
)
def test_collections_and_explicit_ids_with_unsafe_characters_are_invalid(
    data: dict[str, Any], field: str
) -> None:
    error = refused(data)

    assert error.field == field
    assert storable.unsafe_character(str(error)) is None


def test_a_valid_astral_character_is_fine() -> None:
    valid = ProcessPayload.from_dict(payload("tile-\U0001f600"))

    assert valid.id == "c1/workflow-wf1/tile-\U0001f600"


def test_itemids_over_the_dynamodb_range_key_limit_names_field_and_limit() -> None:
    data = payload("a" * 200)
    data["features"] += [{"id": f"{i}" + "b" * 200, "collection": "c1"} for i in range(5)]

    error = refused(data)

    assert error.field == "features[*].id"
    assert "itemids (the state DB's DynamoDB range key) is 1,210 bytes" in str(error)
    assert "over the limit of 1,024 bytes" in str(error)


def test_collections_over_the_dynamodb_hash_key_limit_names_field_and_limit() -> None:
    collections = "/".join(f"c{i}" + "x" * 200 for i in range(11))

    error = refused(payload(collections=collections))

    assert error.field == "process[0].collections"
    assert "collections_workflow (the state DB's DynamoDB hash key)" in str(error)
    assert "over the limit of 2,048 bytes" in str(error)


def test_an_explicit_id_over_the_limits_is_named_and_cut_short_in_messages() -> None:
    data = {**payload(), "id": "c1/workflow-wf1/" + "/".join(["x" * 200] * 440)}  # ~88 KB

    error = refused(data)

    assert error.field == "id"
    assert "over the limit of 1,024 bytes" in str(error)
    assert len(str(error)) < 400
    assert error.payload_id is not None
    assert error.payload_id.endswith("bytes)")


def test_a_path_segment_over_the_file_name_limit_is_invalid() -> None:
    error = refused(payload("x" * 256))

    assert error.field == "features[0].id"
    assert "path segment 1 is 256 bytes, over the local file name limit of 255 bytes" in str(error)


@pytest.mark.parametrize("item_id", ["..", "a/../b", "."])
def test_dot_segments_are_invalid(item_id: str) -> None:
    assert "which no payload store path may hold" in str(refused(payload(item_id)))


def test_the_longest_valid_id_is_stored_by_the_local_payload_store(tmp_path: Any) -> None:
    """The id limit is the S3 key of the execution output: the longest id that passes
    validation is written, under the default root, without a limit error."""
    room = storable.MAX_PAYLOAD_ID_BYTES - len("c1/workflow-wf1/")
    item_ids = ["x" * 250 + f"{i:02d}" for i in range(room // 253)]
    item_ids.append("y" * (room - 253 * len(item_ids)))
    data = payload(item_ids[0])
    data["features"] = [{"id": i, "collection": "c1"} for i in item_ids]

    valid = ProcessPayload.from_dict(data)
    assert len(valid.id.encode()) == storable.MAX_PAYLOAD_ID_BYTES
    store = FilePayloadStore(tmp_path)
    name = execution_name(valid.id, [], "us-east-1")
    store.put_json(layout.output_key(valid.id, name), valid.to_dict())

    data["features"].append({"id": "z", "collection": "c1"})
    assert "the payload id (part of the S3 keys" in str(refused(data))
