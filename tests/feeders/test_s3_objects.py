"""`feeders.s3.objects`: filters (Arrow and per object agree), templates, grouping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import SourceRejection
from feeders.s3.objects import (
    ItemBuilder,
    ItemTemplate,
    ObjectFilter,
    S3Object,
    Template,
    build_items,
    to_payload,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
KEYS = [
    "a/scene 1/B01.TIF",
    "a/scene,2/B02.tif",
    "a/x+y/MTL.txt",
    "b/100%/data.json",
    "b/ünï/cödé.TIF",
    "c/README",
]


def objects() -> list[S3Object]:
    return [
        S3Object(
            "bkt",
            key,
            size=100 * (n + 1),
            last_modified=T0 + timedelta(days=n),
            storage_class="GLACIER" if n == 3 else "STANDARD",
            is_latest=n != 4,
        )
        for n, key in enumerate(KEYS)
    ]


def batch(objs: list[S3Object]) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "key": pa.array([o.key for o in objs], pa.string()),
            "size": pa.array([o.size for o in objs], pa.int64()),
            "last_modified_date": pa.array(
                [o.last_modified for o in objs], pa.timestamp("ms", tz="UTC")
            ),
            "storage_class": pa.array([o.storage_class for o in objs], pa.string()),
            "is_latest": pa.array([o.is_latest for o in objs], pa.bool_()),
        }
    )


def selected(settings: dict[str, Any]) -> list[str]:
    """Keys kept by the Arrow mask, checked against the per-object verdict."""
    object_filter = ObjectFilter.model_validate(settings)
    objs = objects()
    mask = object_filter.mask(batch(objs)).to_pylist()
    assert mask == [object_filter.matches(o) for o in objs], settings
    return [o.key for o, keep in zip(objs, mask, strict=True) if keep]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, KEYS),
        ({"prefix": "b/"}, KEYS[3:5]),
        ({"suffix": ".TIF"}, [KEYS[0], KEYS[4]]),
        ({"suffix": [".TIF", ".tif"]}, [KEYS[0], KEYS[1], KEYS[4]]),
        ({"key_regex": r"^a/(?P<scene>[^/]+)/B\d+"}, KEYS[:2]),
        ({"modified_after": "2024-01-03T00:00:00Z"}, KEYS[2:]),
        ({"modified_before": "2024-01-03T00:00:00"}, KEYS[:2]),  # exclusive, naive is UTC
        ({"min_size": 300, "max_size": 500}, KEYS[2:5]),
        ({"storage_classes": ["GLACIER"]}, [KEYS[3]]),
        ({"latest_only": True}, KEYS[:4] + KEYS[5:]),
        ({"prefix": "a/", "suffix": ".txt", "min_size": 1}, [KEYS[2]]),
    ],
)
def test_object_filter_selects_same_in_arrow_and_python(
    settings: dict[str, Any], expected: list[str]
) -> None:
    assert selected(settings) == expected


def test_object_filter_nulls_never_match_bounds() -> None:
    record = pa.record_batch(
        {"key": ["k"], "size": pa.array([None], pa.int64())},
    )
    assert ObjectFilter(min_size=1).mask(record).to_pylist() == [False]
    assert not ObjectFilter(min_size=1).matches(S3Object("b", "k"))


def test_object_filter_drops_delete_markers() -> None:
    record = pa.record_batch({"key": ["a", "b"], "is_delete_marker": [True, False]})
    assert ObjectFilter().mask(record).to_pylist() == [False, True]


def test_object_filter_missing_column_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"latest_only needs column 'is_latest'"):
        ObjectFilter(latest_only=True).check_columns(["key", "size"], "report x")


def test_object_filter_rejects_a_regex_re2_cannot_run() -> None:
    with pytest.raises(ValidationError, match="RE2"):
        ObjectFilter(key_regex=r"(?<=a)b")  # lookbehind: Python only


def test_template_fields_and_filters() -> None:
    obj = S3Object("bkt", "L8/139/045/LC08 x+y,1%/LC08_MTL.txt")
    values = obj.fields()
    assert values["dirname"] == "L8/139/045/LC08 x+y,1%"
    assert values["basename"] == "LC08_MTL.txt"
    assert (values["stem"], values["ext"]) == ("LC08_MTL", "txt")
    assert values["key_url"] == "L8/139/045/LC08%20x%2By%2C1%25/LC08_MTL.txt"
    text = "{dirname|replace('/', '-')|lower}:{{literal}}|{ext|upper}"
    assert Template(text).render(values) == "l8-139-045-lc08 x+y,1%:{literal}|TXT"
    assert Template("{key|replace('}', ')')}").render({"key": "a}b"}) == "a)b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{dirname|title}", "use lower, upper or replace"),
        ("{dirname|replace('a')}", "use lower, upper or replace"),
        ("{dirname|replace(__import__('os'), 'x')}", "bad arguments"),
        ("{dir name}", "not a field name"),
        ("{dirname", "unclosed"),
        ("a}b", "single"),
    ],
)
def test_template_rejects_bad_syntax_without_evaluating(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Template(text)


def test_item_template_unknown_field_fails_at_build() -> None:
    template = ItemTemplate(collection="c", id="{scene}")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) scene"):
        ItemBuilder(template)
    ItemBuilder(template, key_regex=r"(?P<scene>\w+)")  # a regex group is a field


def test_items_one_per_object_with_regex_properties_and_datetime() -> None:
    template = ItemTemplate(
        collection="{_mission|lower}",
        id="{_mission}-{path}-{row}",
        properties={"constellation": "landsat"},
        datetime="{_date}",
        datetime_format="%Y%m%d",
    )
    regex = r"(?P<_mission>LC\d\d)_(?P<path>\d{3})(?P<row>\d{3})_(?P<_date>\d{8})"
    obj = S3Object("bkt", "c2/LC08_139045_20240102_MTL.txt", last_modified=T0)

    [item] = build_items([obj], template, regex)

    assert isinstance(item, dict)
    assert item["id"] == "LC08-139-045"
    assert item["collection"] == "lc08"
    assert item["properties"] == {
        "constellation": "landsat",
        "path": "139",
        "row": "045",
        "datetime": "2024-01-02T00:00:00Z",
    }
    assert item["assets"] == {
        "LC08_139045_20240102_MTL.txt": {
            "href": "s3://bkt/c2/LC08_139045_20240102_MTL.txt",
            "type": "text/plain",
        }
    }
    payload = to_payload(item, [{"workflow": "wf"}])
    assert payload["features"] == [item]


def test_items_default_id_is_unique_per_key_and_datetime_is_last_modified() -> None:
    built = list(build_items(objects(), ItemTemplate(collection="c")))
    assert [b["id"] for b in built if isinstance(b, dict)] == [k.replace("/", "-") for k in KEYS]
    assert isinstance(built[0], dict)
    assert built[0]["properties"]["datetime"] == "2024-01-01T00:00:00Z"


def test_items_https_href_percent_encodes_the_key() -> None:
    template = ItemTemplate(collection="c", href="https://{bucket}.s3.amazonaws.com/{key_url}")
    [item] = build_items([S3Object("bkt", "a b/c+d%.tif")], template)
    assert isinstance(item, dict)
    assert item["assets"]["c+d%.tif"]["href"] == "https://bkt.s3.amazonaws.com/a%20b/c%2Bd%25.tif"


def test_items_bad_datetime_is_a_rejection_naming_the_key() -> None:
    template = ItemTemplate(collection="c", datetime="{stem}")
    [rejected] = build_items([S3Object("bkt", "x/not-a-date.txt")], template)
    assert isinstance(rejected, SourceRejection)
    assert "x/not-a-date.txt" in rejected.reason
    assert rejected.raw["key"] == "x/not-a-date.txt"


GROUPED = ItemTemplate(
    collection="c", id="{dirname|replace('/', '_')}", group_by="{dirname}", anchor="_MTL.txt"
)


def scene(name: str, files: list[str]) -> list[S3Object]:
    return [S3Object("bkt", f"{name}/{f}", last_modified=T0) for f in files]


def test_grouping_makes_one_item_per_scene_with_an_asset_per_file() -> None:
    objs = scene("s/1", ["B1.TIF", "B2.TIF", "x_MTL.txt"]) + scene("s/2", ["x_MTL.txt", "B1.TIF"])

    built = list(build_items(objs, GROUPED))

    assert [b["id"] for b in built if isinstance(b, dict)] == ["s_1", "s_2"]
    assert isinstance(built[0], dict)
    assert isinstance(built[1], dict)
    assert list(built[0]["assets"]) == ["x_MTL.txt", "B1.TIF", "B2.TIF"]
    assert len(built[1]["assets"]) == 2


def test_grouping_without_the_anchor_rejects_or_skips_the_group() -> None:
    objs = scene("s/1", ["B1.TIF", "B2.TIF"]) + scene("s/2", ["B1.TIF", "x_MTL.txt"])

    built = list(build_items(objs, GROUPED))

    assert isinstance(built[0], SourceRejection)
    assert "'s/1'" in built[0].reason
    assert "_MTL.txt" in built[0].reason
    assert built[0].raw == {"keys": ["s/1/B1.TIF", "s/1/B2.TIF"]}
    assert isinstance(built[1], dict)
    assert built[1]["id"] == "s_2"
    skipping = GROUPED.model_copy(update={"missing_anchor": "skip"})
    assert [b["id"] for b in build_items(objs, skipping) if isinstance(b, dict)] == ["s_2"]


def test_grouping_is_streaming_and_counts_pending_objects() -> None:
    builder = ItemBuilder(GROUPED)
    first, second = scene("s/1", ["a_MTL.txt", "B1.TIF"]), scene("s/2", ["a_MTL.txt"])
    assert builder.push(first[0]) == []
    assert builder.push(first[1]) == []
    assert builder.pending == 2
    [done] = builder.push(second[0])  # the next scene closes the open one
    assert isinstance(done, dict)
    assert done["id"] == "s_1"
    assert builder.pending == 1
    assert len(builder.finish()) == 1
    assert builder.pending == 0


def test_grouping_asset_name_collision_is_a_rejection() -> None:
    template = GROUPED.model_copy(update={"asset": "{ext}"})
    [built] = build_items(scene("s/1", ["a_MTL.txt", "b_MTL.txt"]), template)
    assert isinstance(built, SourceRejection)
    assert "asset 'txt'" in built.reason
