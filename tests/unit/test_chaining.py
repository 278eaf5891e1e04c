"""`chaining.next_payloads`: the children an output payload hands to the next hop (spec §5.5)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.pipeline.chaining import next_payloads


def item(item_id: str, gsd: float, collection: str = "c1") -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": item_id,
        "collection": collection,
        "properties": {"datetime": "2025-01-01T00:00:00Z", "gsd": gsd},
        "assets": {},
        "links": [],
    }


def output(*process: Any, features: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "id": "c1/workflow-wf1/a/b",
        "features": features if features is not None else [item("a", 1), item("b", 10)],
        "process": list(process),
    }


def feature_ids(payload: dict[str, Any]) -> list[str]:
    return [f["id"] for f in payload["features"]]


def test_next_payloads_single_hop_is_end_of_chain() -> None:
    assert next_payloads(output({"workflow": "wf1"})) == []


def test_next_payloads_without_process_is_empty() -> None:
    assert next_payloads({"type": "FeatureCollection", "features": []}) == []


def test_next_payloads_linear_keeps_later_hops_and_drops_id() -> None:
    wf3 = {"workflow": "wf3", "upload_options": {"public_assets": "ALL"}}
    given = output({"workflow": "wf1"}, {"workflow": "wf2"}, wf3)

    children = next_payloads(given)

    assert len(children) == 1
    child = children[0]
    assert child.branch == 0
    assert not child.filtered_out
    assert "id" not in child.payload
    assert child.payload["process"] == [{"workflow": "wf2"}, wf3]
    assert feature_ids(child.payload) == ["a", "b"]
    assert child.payload["type"] == "FeatureCollection"


def test_next_payloads_does_not_modify_the_output() -> None:
    given = output({"workflow": "wf1"}, [{"workflow": "wf2", "chain_filter": "@.id == 'a'"}])
    before = copy.deepcopy(given)

    [child] = next_payloads(given)
    child.payload["features"][0]["properties"]["gsd"] = -1
    child.payload["process"][0]["workflow"] = "changed"

    assert given == before


def test_next_payloads_fork_gives_one_child_per_branch() -> None:
    given = output(
        {"workflow": "wf1"}, [{"workflow": "wf2"}, {"workflow": "wf3"}, {"workflow": "wf4"}]
    )

    children = next_payloads(given)

    assert [c.branch for c in children] == [0, 1, 2]
    assert [c.payload["process"] for c in children] == [
        [{"workflow": "wf2"}],
        [{"workflow": "wf3"}],
        [{"workflow": "wf4"}],
    ]
    assert all(feature_ids(c.payload) == ["a", "b"] for c in children)


def test_next_payloads_verified_fork_with_filter_and_collections_override() -> None:
    # Spec §5.5, verified against Cirrus: [wf1, [wf2 (gsd > 2), wf3 (collections)], wf4].
    wf2 = {"workflow": "wf2", "chain_filter": "@.properties.gsd > 2"}
    wf3 = {"workflow": "wf3", "collections": "override"}
    wf4 = {"workflow": "wf4"}
    given = output({"workflow": "wf1"}, [wf2, wf3], wf4)

    first, second = next_payloads(given)

    assert feature_ids(first.payload) == ["b"]
    assert first.payload["process"] == [wf2, wf4]  # the filter stays in the definition
    assert feature_ids(second.payload) == ["a", "b"]
    assert second.payload["process"] == [wf3, wf4]
    assert "id" not in first.payload
    assert "id" not in second.payload
    assert not first.filtered_out
    assert not second.filtered_out


def test_next_payloads_and_filter_with_regex_raises_no_warning() -> None:
    # '&' is deprecated by jsonpath-ng >= 1.8 (filterwarnings=error turns a warning into a
    # failure here); Cirrus users write it, so it must keep working silently.
    features = [item("fake-1", 0), item("fake-2", 5), item("real-1", 0)]
    branch = {"workflow": "wf2", "chain_filter": "@.id =~ 'fake.*' & @.properties.gsd <= 0"}

    [child] = next_payloads(output({"workflow": "wf1"}, branch, features=features))

    assert feature_ids(child.payload) == ["fake-1"]
    assert not child.filtered_out


def test_next_payloads_filter_matching_nothing_is_filtered_out() -> None:
    branches = [
        {"workflow": "wf2", "chain_filter": "@.properties.gsd > 100"},
        {"workflow": "wf3"},
    ]

    empty, full = next_payloads(output({"workflow": "wf1"}, branches))

    assert empty.filtered_out
    assert empty.payload["features"] == []
    assert empty.branch == 0
    assert not full.filtered_out


def test_next_payloads_invalid_filter_names_the_field() -> None:
    branch = {"workflow": "wf2", "chain_filter": "@.properties.gsd >>> ("}

    with pytest.raises(PayloadValidationError, match=r"process\[1\]\.chain_filter") as info:
        next_payloads(output({"workflow": "wf1"}, branch))

    assert info.value.field == "process[1].chain_filter"
    assert info.value.payload_id == "c1/workflow-wf1/a/b"


@pytest.mark.parametrize("branch", ["wf2", 3, None, ["wf2"]])
def test_next_payloads_non_object_branch_is_rejected(branch: Any) -> None:
    with pytest.raises(PayloadValidationError, match=r"process\[1\]\[1\]") as info:
        next_payloads(output({"workflow": "wf1"}, [{"workflow": "wf2"}, branch]))

    assert info.value.field == "process[1][1]"


@pytest.mark.parametrize("hop", [3, None])
def test_next_payloads_scalar_next_hop_is_rejected(hop: Any) -> None:
    with pytest.raises(PayloadValidationError, match=r"process\[1\]"):
        next_payloads(output({"workflow": "wf1"}, hop))
