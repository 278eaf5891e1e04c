"""Payloads from a template validated once: the same ids, bodies and errors as
`ProcessPayload.from_dict` of the same payload."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.model.prepared import PayloadTemplate, check_prepared_id

PROCESS = [{"workflow": "wf", "upload_options": {"path_template": "/x/${id}"}}]


def full(features: list[Any], process: list[Any] | None = None) -> ProcessPayload:
    data = {"type": "FeatureCollection", "features": features, "process": process or PROCESS}
    return ProcessPayload.from_dict(data)


@pytest.mark.parametrize(
    ("features", "process"),
    [
        ([{"id": "a", "collection": "c"}], PROCESS),
        ([{"id": "a"}], PROCESS),  # no collection: "none"
        ([{"id": "b", "collection": "c"}, {"id": "a", "collection": "d"}], PROCESS),
        ([{"id": "a", "collection": "c"}], [{"workflow": "wf", "collections": "fixed"}]),
        ([{"id": "é/ü", "collection": "c", "properties": {"x": [1.5, None]}}], PROCESS),
        ([{"id": "a", "collection": "c"}], [{"workflow": "wf", "replace": True}]),
        ([{"id": "a", "collection": "c"}], [{"workflow": "wf"}, {"workflow": "next"}]),
        ([{"id": "a", "collection": ""}], PROCESS),  # an empty collection counts as none
        ([{"id": "a", "collection": 5}], PROCESS),
        ([{"id": "a/.b/c.tif", "collection": "c.d"}], PROCESS),
        ([{"id": "/".join(["s" * 200] * 4), "collection": "c"}], PROCESS),  # long, short segments
        ([{"id": "/".join(["ä" * 100] * 3), "collection": "c"}], PROCESS),  # 602 bytes
    ],
)
def test_template_payload_equals_the_validated_payload(
    features: list[Any], process: list[Any]
) -> None:
    expected = full(features, process)

    prepared = PayloadTemplate(process).prepare(features)

    assert prepared.id == expected.id
    assert prepared.body == json.dumps(expected.to_dict())  # the same text, key order kept
    assert prepared.replace is expected.replace
    assert prepared.to_dict() == expected.to_dict()


@pytest.mark.parametrize(
    "features",
    [
        [],
        [{"collection": "c"}],
        [{"id": 7, "collection": "c"}],
        [{"id": "a\nb", "collection": "c"}],
        [{"id": "a", "collection": "c\u2028"}],
        [{"id": "x" * 300, "collection": "c"}],
        [{"id": "ok", "collection": "c"}, {"id": "y" * 1100}],
        [{"id": "", "collection": "c"}],
        [{"id": "a", "collection": "c/workflow-other"}],
        [{"id": "..", "collection": "c"}],
        [{"id": "a/./b", "collection": "c"}],
        [{"id": "a", "collection": "."}],
        [{"id": "ä" * 200, "collection": "c"}],  # one segment of 400 bytes
        [{"id": "/".join(["s" * 200] * 5), "collection": "c"}],  # 1,004 bytes
        [{"id": "a\ud800", "collection": "c"}],
    ],
)
def test_template_rejects_what_from_dict_rejects_with_the_same_field(
    features: list[Any],
) -> None:
    with pytest.raises(PayloadValidationError) as expected:
        full(features)

    with pytest.raises(PayloadValidationError) as got:
        PayloadTemplate(PROCESS).prepare(features)

    assert (got.value.field, str(got.value)) == (expected.value.field, str(expected.value))


def test_template_with_fixed_collections_still_checks_each_item_collection() -> None:
    process = [{"workflow": "wf", "collections": "fixed"}]
    features = [{"id": "a", "collection": "bad\x00"}]
    with pytest.raises(PayloadValidationError) as expected:
        full(features, process)

    with pytest.raises(PayloadValidationError) as got:
        PayloadTemplate(process).prepare(features)

    assert got.value.field == expected.value.field == "features[0].collection"
    assert str(got.value) == str(expected.value)


def test_template_build_hands_a_bad_payload_on_as_its_plain_mapping() -> None:
    template = PayloadTemplate(PROCESS)

    built = template.build([{"id": "a\tb", "collection": "c"}])

    assert built == {
        "type": "FeatureCollection",
        "features": [{"id": "a\tb", "collection": "c"}],
        "process": PROCESS,
    }
    assert isinstance(template.build([{"id": "a"}]), PreparedPayload)


def test_template_with_an_invalid_process_fails_at_once_naming_the_field() -> None:
    with pytest.raises(PayloadValidationError) as caught:
        PayloadTemplate([{"workflow": "wf", "tasks": "not a mapping"}])

    assert caught.value.field == "tasks"


def test_template_does_not_share_the_caller_feature() -> None:
    item = {"id": "a", "collection": "c"}
    prepared = PayloadTemplate(PROCESS).prepare([item])

    item["id"] = "changed"

    assert prepared.to_dict()["features"][0]["id"] == "a"


@pytest.mark.parametrize(
    "payload_id",
    [
        "no-workflow-segment",
        "c/workflow-wf/a\rb",
        "c/workflow-wf/" + "z" * 1100,
        "c/workflow-../a",
        "c/workflow-wf/" + "z" * 256,
        "c/workflow-wf/",
        "/workflow-wf/a",
    ],
)
def test_check_prepared_id_names_the_id(payload_id: str) -> None:
    with pytest.raises(PayloadValidationError) as caught:
        check_prepared_id(payload_id)

    assert caught.value.field == "id"


def test_check_prepared_id_accepts_a_derived_id() -> None:
    check_prepared_id(PayloadTemplate(PROCESS).prepare([{"id": "a", "collection": "c"}]).id)
