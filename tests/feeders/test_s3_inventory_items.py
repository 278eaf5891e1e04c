"""`feeders.s3.inventory_items`: payloads built on Arrow columns are, row for row, the ones
the per-row path (`ItemBuilder` + `PayloadTemplate`) builds, byte for byte; rows it cannot
prove that for are left to the per-row path."""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pytest

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.feeding.contract import SourceRejection
from cirrus_feed.model.prepared import PayloadTemplate
from feeders.s3.inventory_items import ColumnarPayloads
from feeders.s3.objects import ItemBuilder, ItemTemplate, S3Object

PLAIN_KEYS = [
    "scenes/a/b.tif",
    "x.json",
    "deep/er/still/LC08_B1.TIF",
    "/leading.tif",
    "//two/slashes.tif",
    "tail/slashes//x.json",
    "archives/a.tar.gz",
    "archives/b.tgz",
    "archives/c.json.gz",
    "archives/d.GZ",
    "icons/e.svgz",
    "nodot/README",
    "dots/i.x.y.z",
    "endsdot/g.",
    "spaces/a b!(c).tif",
    "percent/100%.txt",
    "t/2024-05-01T00:00:00/stamp.json",
    "l/./m.tif",
    "dir/../up.tif",
]
# Rows the columns leave to the per-row path, and why.
ODD_KEYS = [
    "ünïcödé/x.tif",  # not ASCII
    'quote"d/x.tif',  # needs JSON escaping
    "back\\slash/x.tif",
    "tab\there/x.tif",  # a control character
    "h/.hidden",  # mimetypes treats a leading dot specially
    "e/f..g",
    "scheme:like/x.tif",  # mimetypes would read 'scheme' as a URL scheme
    "folder/",  # no asset name: a rejection
    "long/" + "x" * 300 + ".tif",  # a segment over the file name limit: invalid
]
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z in ms
TIME = pa.timestamp("ms", tz="UTC")


def per_row(
    keys: list[str],
    times: list[int | None] | None,
    item: ItemTemplate,
    regex: str | None,
    process: list[Any],
) -> list[tuple[str, str] | None]:
    """(id, body) of each row as the per-row path makes it; None when it cannot."""
    builder, template = ItemBuilder(item, regex), PayloadTemplate(process)
    out: list[tuple[str, str] | None] = []
    # As the reader has them: Arrow's timestamps converted to datetimes.
    whens = [None] * len(keys) if times is None else pa.array(times, TIME).to_pylist()
    for key, when in zip(keys, whens, strict=True):
        [built] = builder.push(S3Object("src", key, last_modified=when))
        if isinstance(built, SourceRejection):
            out.append(None)
            continue
        try:
            prepared = template.prepare([built])
        except PayloadValidationError:
            out.append(None)
            continue
        out.append((prepared.id, prepared.body))
    return out


def columnar(
    keys: list[str],
    times: list[int | None] | None,
    item: ItemTemplate,
    regex: str | None,
    process: list[Any],
) -> list[tuple[str, str] | None]:
    builder = ColumnarPayloads.create(item, regex, process, "src", process_ok=True)
    assert builder is not None
    stamps = None if times is None else pa.array(times, TIME)
    plain, ids, bodies = builder.build(pa.array(keys, pa.string()), stamps)
    built = iter(zip(ids, bodies, strict=True))
    return [next(built) if fast else None for fast in plain.to_pylist()]


CASES: list[tuple[dict[str, Any], str | None, list[Any]]] = [
    ({"collection": "c"}, None, [{"workflow": "wf"}]),
    (
        {
            "collection": "c-{ext|lower}",
            "id": "{stem|upper}-{key_url|md5}",
            "asset": "{ext}{basename}",
            "href": "https://host/{bucket}/{key_url}",
            "properties": {"a": 1, "datetime": "kept in place", "é": [1.5, None]},
        },
        None,
        [{"workflow": "wf", "replace": True}, {"workflow": "next"}],
    ),
    ({"collection": "c", "datetime": "2024-05-01T00:00:00Z"}, None, [{"workflow": "wf"}]),
    (
        {"collection": "c", "id": "{dirname|replace('/', '_')}_{stem}"},
        r"\.(tif|TIF|json|gz|tgz|svgz|txt|GZ)$",
        [{"workflow": "wf", "collections": "fixed"}],
    ),
]


@pytest.mark.parametrize(("item", "regex", "process"), CASES)
def test_columns_build_what_the_per_row_path_builds(
    item: dict[str, Any], regex: str | None, process: list[Any]
) -> None:
    template = ItemTemplate(**item)
    keys = PLAIN_KEYS + ODD_KEYS
    if regex is not None:
        keys = [k for k in keys if re.search(regex, k)]
    # Times on many days, with and without milliseconds, one missing.
    times: list[int | None] = [T0 + n * 86_399_123 + (n % 2) * 7 for n in range(len(keys))]
    times[1] = None

    fast = columnar(keys, times, template, regex, process)
    slow = per_row(keys, times, template, regex, process)

    for key, mine, theirs in zip(keys, fast, slow, strict=True):
        if mine is not None:  # what the columns build is exactly the per-row payload
            assert mine == theirs, key
    built = {k for k, mine in zip(keys, fast, strict=True) if mine is not None}
    assert built == {k for k in keys if k in PLAIN_KEYS}  # the odd ones go per row
    assert all(json.loads(body)["id"] == pid for pid, body in filter(None, fast))


def test_regex_groups_become_fields_and_properties_in_the_per_row_order() -> None:
    keys = ["a/2024/05/x.tif", "b/2023/1/y.tif", "a/b//c", "c/2024/12/z.TIF"]
    regex = r"^(?P<top>\w)/(?P<y>\d+)/(?P<m>\d+)/(?P<_rest>.*)"
    item = ItemTemplate(
        collection="{top}",
        id="{key|replace('/', '_')}-{_rest}",
        datetime="{y}-{m}-01",
        datetime_format="%Y-%m-%d",
        properties={"p": "v", "key": 3},
    )
    process = [{"workflow": "wf"}]

    fast = columnar(keys, None, item, regex, process)
    slow = per_row(keys, None, item, regex, process)

    assert fast[2] is None  # no match: the per-row path rejects it, naming the key
    assert slow[2] is None
    assert [f for n, f in enumerate(fast) if n != 2] == [s for n, s in enumerate(slow) if n != 2]
    properties = json.loads(fast[0][1])["features"][0]["properties"]  # type: ignore[index]
    assert list(properties) == ["p", "key", "top", "y", "m", "datetime"]  # no "_rest"
    assert properties["datetime"] == "2024-05-01T00:00:00Z"


def test_a_group_named_like_a_base_field_overrides_it() -> None:
    keys = ["a/xx/y.tif", "b/zz/w.tif"]
    regex, process = r"^(?P<key>\w)/(?P<dirname>\w*)", [{"workflow": "wf"}]
    item = ItemTemplate(collection="{key}", id="{dirname}-{basename}")

    assert columnar(keys, None, item, regex, process) == per_row(keys, None, item, regex, process)


def test_an_unparsable_datetime_is_left_to_the_per_row_path() -> None:
    keys = ["d/2024-05-01/x.tif", "d/not-a-date/y.tif"]
    item = ItemTemplate(collection="c", datetime="{day}")
    regex, process = r"^d/(?P<day>[^/]+)/", [{"workflow": "wf"}]

    fast = columnar(keys, None, item, regex, process)
    slow = per_row(keys, None, item, regex, process)

    assert fast[0] == slow[0]
    assert fast[1] is None
    assert slow[1] is None


def test_times_outside_1970_to_9999_are_left_to_the_per_row_path() -> None:
    keys = ["a.tif", "b.tif", "c.tif"]
    times: list[int | None] = [-1, 253_402_300_799_999, T0]
    item, process = ItemTemplate(collection="c"), [{"workflow": "wf"}]

    fast = columnar(keys, times, item, None, process)

    assert fast[0] is None
    assert fast[1] == per_row(keys[1:2], times[1:2], item, None, process)[0]
    assert fast[2] == per_row(keys[2:], times[2:], item, None, process)[0]


@pytest.mark.parametrize(
    ("item", "regex"),
    [
        ({"collection": "c", "group_by": "{dirname}"}, None),  # items of several rows
        ({"collection": "c", "id": "é-{key}"}, None),  # literal text JSON would escape
        ({"collection": "c", "id": "{key|replace('', '-')}"}, None),  # Arrow and Python differ
        ({"collection": "c", "id": "{name}"}, r"(x)?(?P<name>\w+)"),  # an unnamed group
    ],
)
def test_configurations_columns_cannot_reproduce_stay_per_row(
    item: dict[str, Any], regex: str | None
) -> None:
    template = ItemTemplate(**item)
    assert (
        ColumnarPayloads.create(template, regex, [{"workflow": "wf"}], "b", process_ok=True) is None
    )


def test_a_process_no_payload_passes_stays_per_row() -> None:
    template = ItemTemplate(collection="c")
    assert (
        ColumnarPayloads.create(template, None, [{"workflow": "w"}], "b", process_ok=False) is None
    )
