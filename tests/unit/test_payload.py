"""The Cirrus Process Payload: validation (spec §1.2), ids (§1.3), sizes (§1.6)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.model.payload import (
    MAX_INLINE_BYTES,
    ProcessPayload,
    derive_payload_id,
    double_encoded_size,
    fits_inline,
    key_to_payload_id,
    parse_payload_id,
    payload_id_to_key,
    split_collections_workflow,
)

PAYLOAD_ID = "c1/workflow-wf1/a"
ID_RULE = "Payload 'id' field must match '${COLLECTIONS}/workflow-${WORKFLOW_NAME}/${ITEMIDS}: "


def valid() -> dict[str, Any]:
    return {
        "id": PAYLOAD_ID,
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "id": "a", "collection": "c1"}],
        "process": [{"workflow": "wf1"}],
    }


def with_definition(**keys: Any) -> dict[str, Any]:
    data = valid()
    data["process"][0].update(keys)
    return data


def rejection(data: Any, *, derive_id: bool = True) -> PayloadValidationError:
    with pytest.raises(PayloadValidationError) as info:
        ProcessPayload.from_dict(data, derive_id=derive_id)
    return info.value


# -- §1.2 validation: one case per rule, in Cirrus's order ----------------------------------

RULES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "process-type",
        valid() | {"process": "wf1"},
        "process",
        "unable to parse 'process': must be type list",
    ),
    (
        "process-first-element",
        valid() | {"process": ["wf1"]},
        "process[0]",
        "unable to parse 'process': the first element of the list must be type dict",
    ),
    (
        "workflow-options",
        with_definition(workflow_options=[]),
        "workflow_options",
        "unable to parse 'workflow_options': must be type dict",
    ),
    (
        "tasks-type",
        with_definition(tasks="copy-assets"),
        "tasks",
        "unable to parse 'tasks': must be type dict or type list (deprecated)",
    ),
    (
        "task-options",
        with_definition(tasks={"copy-assets": ["data"]}),
        "tasks.copy-assets",
        "unable to parse options for task 'copy-assets': must be type dict",
    ),
    (
        "task-options-list-form",
        with_definition(tasks=[{"name": "publish", "parameters": "x"}]),
        "tasks.publish",
        "unable to parse options for task 'publish': must be type dict",
    ),
    (
        "upload-options",
        with_definition(upload_options="s3://bucket"),
        "upload_options",
        "unable to parse 'upload_options': must be type dict",
    ),
    (
        "upload-options-collections",
        with_definition(upload_options={"collections": ["c1"]}),
        "upload_options.collections",
        "unable to parse 'collections': must be type dict",
    ),
    (
        "features",
        valid() | {"features": {"id": "a"}},
        "features",
        "unable to parse 'features': must be type list",
    ),
    (
        "collection-matchers-type",
        with_definition(collection_matchers={"type": "catch_all"}),
        "collection_matchers",
        "unable to parse 'collection_matchers': must be type list",
    ),
    (
        "collection-matchers-element",
        with_definition(collection_matchers=["catch_all"]),
        "collection_matchers",
        "unable to parse 'collection_matchers': each matcher must be type dict",
    ),
    (
        "collection-options",
        with_definition(collection_options=["c1"]),
        "collection_options",
        "unable to parse 'collection_options': must be type dict",
    ),
    (
        "matchers-and-legacy-collections",
        with_definition(
            collection_matchers=[{"type": "catch_all", "collection_name": "c1"}],
            upload_options={"collections": {"c1": ".*"}},
        ),
        "collection_matchers",
        "A payload must not contain both 'collection_matchers' and the legacy "
        "'upload_options.collections'",
    ),
    (
        "process-missing",
        {k: v for k, v in valid().items() if k != "process"},
        "process",
        "Payload must contain a 'process' array of process definitions",
    ),
    (
        "process-bare-dict",
        valid() | {"process": {"workflow": "wf1"}},
        "process",
        "Payload 'process' field must be an array with at least one process definition",
    ),
    (
        "process-empty",
        valid() | {"process": []},
        "process",
        "Payload 'process' field must be an array with at least one process definition",
    ),
    (
        "workflow-missing",
        valid() | {"process": [{"description": "no workflow"}]},
        "process[0].workflow",
        "Payload must contain a 'workflow' field specifying the workflow name",
    ),
    ("id-format", valid() | {"id": "c1-wf1-a"}, "id", ID_RULE + "c1-wf1-a"),
    ("id-without-items", valid() | {"id": "c1/workflow-wf1"}, "id", ID_RULE + "c1/workflow-wf1"),
]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [pytest.param(data, field, message, id=name) for name, data, field, message in RULES],
)
def test_payload_validation_rule_message(data: dict[str, Any], field: str, message: str) -> None:
    error = rejection(data, derive_id=False)
    assert error.reason == message
    assert error.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [pytest.param(data, field, id=name) for name, data, field, _ in RULES if field != "id"],
)
def test_payload_validation_error_names_payload_and_field(data: dict[str, Any], field: str) -> None:
    error = rejection(data, derive_id=False)
    assert error.payload_id == PAYLOAD_ID
    assert error.field == field
    assert str(error).startswith(f"payload '{PAYLOAD_ID}': ")
    assert f"'{field}'" in error.reason or str(error) == (
        f"payload '{PAYLOAD_ID}': {field}: {error.reason}"
    )


def test_payload_validation_reports_rules_in_cirrus_order() -> None:
    """Start from a payload breaking every rule; each repair reveals the next rule."""
    data: dict[str, Any] = {"id": "bad", "features": "a", "process": "wf1"}
    repairs: list[tuple[str, Any]] = [
        ("unable to parse 'process': must be type list", ["wf1"]),
        (
            "unable to parse 'process': the first element of the list must be type dict",
            [
                {
                    "workflow_options": 1,
                    "tasks": "t",
                    "upload_options": 1,
                    "collection_matchers": 1,
                    "collection_options": 1,
                }
            ],
        ),
    ]
    definition_repairs: list[tuple[str, str, Any]] = [
        ("unable to parse 'workflow_options': must be type dict", "workflow_options", {}),
        (
            "unable to parse 'tasks': must be type dict or type list (deprecated)",
            "tasks",
            {"t": 1},
        ),
        ("unable to parse options for task 't': must be type dict", "tasks", {"t": {}}),
        (
            "unable to parse 'upload_options': must be type dict",
            "upload_options",
            {"collections": 1},
        ),
        (
            "unable to parse 'collections': must be type dict",
            "upload_options",
            {"collections": {"c1": ".*"}},
        ),
    ]
    for message, process in repairs:
        assert rejection(data, derive_id=False).reason == message
        data["process"] = process
    for message, key, value in definition_repairs:
        assert rejection(data, derive_id=False).reason == message
        data["process"][0][key] = value
    assert (
        rejection(data, derive_id=False).reason == "unable to parse 'features': must be type list"
    )
    data["features"] = [{"id": "a"}]
    for message, value in [
        ("unable to parse 'collection_matchers': must be type list", [1]),
        ("unable to parse 'collection_matchers': each matcher must be type dict", [{"type": "x"}]),
    ]:
        assert rejection(data, derive_id=False).reason == message
        data["process"][0]["collection_matchers"] = value
    assert rejection(data, derive_id=False).reason == (
        "unable to parse 'collection_options': must be type dict"
    )
    data["process"][0]["collection_options"] = {}
    assert rejection(data, derive_id=False).reason.startswith("A payload must not contain both")
    data["process"][0]["upload_options"] = {}
    assert rejection(data, derive_id=False).reason == (
        "Payload must contain a 'workflow' field specifying the workflow name"
    )
    data["process"][0]["workflow"] = "wf1"
    assert rejection(data, derive_id=False).field == "id"
    data["id"] = "none/workflow-wf1/a"
    assert ProcessPayload.from_dict(data, derive_id=False).id == "none/workflow-wf1/a"


def test_payload_validation_stac_task_checks_come_before_process_presence() -> None:
    error = rejection({"id": PAYLOAD_ID, "features": "a"}, derive_id=False)
    assert error.reason == "unable to parse 'features': must be type list"


def test_payload_validation_not_an_object() -> None:
    error = rejection(["not", "a", "payload"])
    assert (error.payload_id, error.field) == (None, "(root)")
    assert str(error).startswith("payload 'unknown': ")


def test_payload_validation_list_form_tasks_accepted() -> None:
    data = with_definition(tasks=[{"name": "publish", "parameters": {"public": True}}])
    assert ProcessPayload.from_dict(data).id == PAYLOAD_ID


def test_payload_q6_id_workflow_must_match_process_workflow() -> None:
    error = rejection(valid() | {"id": "c1/workflow-other/a"})
    assert error.field == "process[0].workflow"
    assert error.payload_id == "c1/workflow-other/a"
    assert "'wf1'" in error.reason
    assert "'other'" in error.reason


# -- §1.3 id derivation ---------------------------------------------------------------------


def derivable(features: list[dict[str, Any]], **definition: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features, "process": [definition]}


@pytest.mark.parametrize(
    ("data", "payload_id"),
    [
        pytest.param(
            derivable(
                [{"id": "S2B_17HQD_20201103_0_L2A", "collection": "sentinel-s2-l2a"}],
                workflow="cog-archive",
            ),
            "sentinel-s2-l2a/workflow-cog-archive/S2B_17HQD_20201103_0_L2A",
            id="test-payload",
        ),
        pytest.param(
            derivable(
                [{"id": "tiles-17-H-QD-2020-11-3-0", "collection": "sentinel-s2-l2a-aws"}],
                workflow="publish-sentinel",
                input_collections=["ignored"],
            ),
            "sentinel-s2-l2a-aws/workflow-publish-sentinel/tiles-17-H-QD-2020-11-3-0",
            id="sqs-event-input-collections-ignored",
        ),
        pytest.param(
            derivable(
                [{"id": "test-01_2024-10-01-07-01-48", "collection": "sar-test"}],
                workflow="test-workflow",
            ),
            "sar-test/workflow-test-workflow/test-01_2024-10-01-07-01-48",
            id="management-mock-payload",
        ),
        pytest.param(
            derivable(
                [{"id": "b", "collection": "c3"}, {"id": "a", "collection": "c3"}], workflow="wf1"
            ),
            "c3/workflow-wf1/a/b",
            id="two-items-sorted",
        ),
        pytest.param(derivable([{"id": "x"}], workflow="wf"), "none/workflow-wf/x", id="none"),
        pytest.param(
            derivable([{"id": "a", "collection": "c1"}], workflow="wf", collections="override"),
            "override/workflow-wf/a",
            id="collections-override",
        ),
        pytest.param(
            derivable([{"id": "a"}], workflow="wf", collections=7),
            "7/workflow-wf/a",
            id="collections-override-stringified",
        ),
        pytest.param(
            derivable(
                [{"id": "a", "collection": "c"}, {"id": "a", "collection": "c"}], workflow="wf"
            ),
            "c/workflow-wf/a/a",
            id="duplicates-kept",
        ),
        pytest.param(
            derivable([{"id": i} for i in ["b", "a", "_", "B", "é", "Z9"]], workflow="wf"),
            "none/workflow-wf/B/Z9/_/a/b/é",
            id="code-point-sort",
        ),
        pytest.param(
            derivable(
                [
                    {"id": "1", "collection": "c2"},
                    {"id": "2", "collection": "c1"},
                    {"id": "3"},
                    {"id": "4", "collection": "c2"},
                ],
                workflow="wf",
            ),
            "c1/c2/workflow-wf/1/2/3/4",
            id="collections-sorted-set",
        ),
    ],
)
def test_payload_id_derivation(data: dict[str, Any], payload_id: str) -> None:
    assert derive_payload_id(data) == payload_id


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        pytest.param(
            derivable([], workflow="wf"),
            "features",
            "Payload has no 'id' specified and one cannot be constructed without 'features'.",
            id="no-features",
        ),
        pytest.param(
            {"process": [{"workflow": "wf"}]},
            "features",
            "Payload has no 'id' specified and one cannot be constructed without 'features'.",
            id="features-absent",
        ),
        pytest.param(
            derivable([{"id": "a"}], description="no workflow"),
            "process[0].workflow",
            "Payload has no 'id' specified and one cannot be constructed without 'workflow' "
            "in the process definition.",
            id="no-workflow",
        ),
        pytest.param(
            derivable([{"id": "a"}, {"collection": "c"}], workflow="wf"),
            "features[1].id",
            "an item has no 'id'",
            id="item-without-id",
        ),
    ],
)
def test_payload_id_derivation_errors(data: dict[str, Any], field: str, message: str) -> None:
    error = rejection(data)
    assert (error.reason, error.field) == (message, field)
    assert str(error).startswith("payload 'unknown': ")


def test_payload_derived_id_is_appended_and_keys_keep_their_order() -> None:
    data = {
        "type": "FeatureCollection",
        "zzz-custom": {"nested": [1, 2]},
        "features": [{"id": "a", "collection": "c1", "x-extra": True}],
        "process": [{"workflow": "wf1", "unknown-option": 1}],
        "aaa-custom": None,
    }
    original = copy.deepcopy(data)
    payload = ProcessPayload.from_dict(data)
    assert payload.id == PAYLOAD_ID
    assert list(payload.to_dict()) == [*data, "id"]
    assert payload.to_dict() == original | {"id": PAYLOAD_ID}
    assert json.loads(payload.to_json()) == original | {"id": PAYLOAD_ID}
    assert data == original  # the input mapping is not modified


def test_payload_explicit_id_keeps_position_and_is_not_rederived() -> None:
    data = {"id": "custom/workflow-wf1/anything", **valid()} | {"id": "custom/workflow-wf1/x"}
    payload = ProcessPayload.from_dict(data)
    assert payload.id == "custom/workflow-wf1/x"
    assert next(iter(payload.to_dict())) == "id"


def test_payload_without_id_and_no_derivation_is_rejected() -> None:
    data = {k: v for k, v in valid().items() if k != "id"}
    assert rejection(data, derive_id=False).field == "id"


def test_payload_properties_read_process_zero() -> None:
    payload = ProcessPayload.from_dict(
        with_definition(replace=True, collections="c1", custom_key={"k": "v"})
    )
    assert (payload.workflow, payload.replace, payload.collections_workflow) == (
        "wf1",
        True,
        "c1_wf1",
    )
    assert payload.definition.collections == "c1"
    assert payload.definition.model_extra == {"custom_key": {"k": "v"}}


def test_payload_with_replace_copies() -> None:
    payload = ProcessPayload.from_dict(valid())
    rerun = payload.with_replace()
    assert (payload.replace, rerun.replace) == (False, True)
    assert rerun.to_dict()["process"][0] == {"workflow": "wf1", "replace": True}


# -- id parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload_id", "key", "collections_workflow"),
    [
        ("c1/workflow-wf1/a/b", ("c1", "wf1", "a/b"), "c1_wf1"),
        (
            "sentinel-s2-l2a/workflow-cog-archive/S2B_1",
            ("sentinel-s2-l2a", "cog-archive", "S2B_1"),
            "sentinel-s2-l2a_cog-archive",
        ),
        ("col/workflow-wf", ("col", "wf", ""), "col_wf"),
        (
            "my_collection_v2/workflow-my-workflow/x",
            ("my_collection_v2", "my-workflow", "x"),
            "my_collection_v2_my-workflow",
        ),
    ],
)
def test_payload_id_to_key_and_back(
    payload_id: str, key: tuple[str, str, str], collections_workflow: str
) -> None:
    parsed = payload_id_to_key(payload_id)
    assert tuple(parsed) == key
    assert parsed.collections_workflow == collections_workflow
    assert key_to_payload_id(parsed.collections_workflow, parsed.itemids) == payload_id


def test_payload_id_to_key_needs_a_workflow_segment() -> None:
    with pytest.raises(ValueError, match="no '/workflow-' segment"):
        payload_id_to_key("c1/wf1/a")


def test_payload_split_collections_workflow_on_last_underscore() -> None:
    assert split_collections_workflow("my_collection_v2_my-workflow") == (
        "my_collection_v2",
        "my-workflow",
    )
    assert key_to_payload_id("my_collection_v2_my-workflow", "a/b") == (
        "my_collection_v2/workflow-my-workflow/a/b"
    )
    with pytest.raises(ValueError, match="has no '_'"):
        split_collections_workflow("nounderscore")


def test_payload_id_parsers_differ_on_double_workflow_segment() -> None:
    payload_id = "a/workflow-b/c/workflow-d/e"
    assert tuple(payload_id_to_key(payload_id)) == ("a", "b", "c/workflow-d/e")
    assert parse_payload_id(payload_id) == {
        "collections": "a/workflow-b/c",
        "workflow": "d",
        "itemids": "e",
    }


def test_payload_regex_parser_rejects_ids_without_items() -> None:
    assert parse_payload_id("col/workflow-wf") is None
    assert parse_payload_id("c/workflow-w/i") == {
        "collections": "c",
        "workflow": "w",
        "itemids": "i",
    }


# -- sizes ----------------------------------------------------------------------------------


def test_payload_double_encoded_size_exceeds_single() -> None:
    data = valid()
    single = len(json.dumps(data).encode())
    assert double_encoded_size(data) > single
    # every '"' of the single encoding gains a backslash, plus the two outer quotes
    assert double_encoded_size(data) == single + json.dumps(data).count('"') + 2


def test_payload_fits_inline_boundary() -> None:
    # {"x": "<n a's>"} double-encodes to n + 15 bytes
    at_limit = {"x": "a" * (MAX_INLINE_BYTES - 15)}
    over = {"x": "a" * (MAX_INLINE_BYTES - 14)}
    assert double_encoded_size(at_limit) == MAX_INLINE_BYTES
    assert fits_inline(at_limit)
    assert not fits_inline(over)


# -- ids cirrus-feed cannot round-trip: rejected by name ------------------------------------


@pytest.mark.parametrize("with_id", [False, True], ids=["derived", "explicit"])
def test_payload_workflow_with_a_slash_is_rejected_naming_the_field(with_id: bool) -> None:
    data = derivable([{"id": "a", "collection": "c"}], workflow="to-stac/v2")
    if with_id:
        data["id"] = "c/workflow-to-stac/v2/a"

    error = rejection(data)

    assert error.field == "process[0].workflow"
    assert error.reason == (
        "workflow 'to-stac/v2' contains '/', which a payload id cannot round-trip"
    )


@pytest.mark.parametrize("with_id", [False, True], ids=["derived", "explicit"])
def test_payload_non_string_feature_id_is_rejected_naming_the_field(with_id: bool) -> None:
    data = derivable([{"id": "a", "collection": "c"}, {"id": 7, "collection": "c"}], workflow="w")
    if with_id:
        data["id"] = "c/workflow-w/7/a"

    error = rejection(data)

    assert (error.field, error.reason) == ("features[1].id", "item id 7 is a int, not a string")
