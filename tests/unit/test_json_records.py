"""The input reader: framing (NDJSON, documents, arrays) and per-record decoding failures."""

from __future__ import annotations

import io
import json
import tracemalloc
from typing import Any

import pytest

from cirrus_feed.support.json_decode import (
    RecordDecodeError,
    RecordLimits,
    decode_record,
    nesting_depth,
)
from cirrus_feed.support.json_records import Item, Record, Rejection, read_records


def read(data: bytes, limits: RecordLimits | None = None) -> list[Item]:
    return list(read_records(io.BytesIO(data), "in.ndjson", limits or RecordLimits()))


def values(items: list[Item]) -> list[Any]:
    return [item.value for item in items if isinstance(item, Record)]


def rejections(items: list[Item]) -> list[Rejection]:
    return [item for item in items if isinstance(item, Rejection)]


# -- decoding one record ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": "\xff"}', "not valid UTF-8: byte 0xff at offset 8"),
        (b'{"id": "\xed\xa0\x80"}', "not valid UTF-8: byte 0xed at offset 8"),  # encoded surrogate
        (b'{"id": ', "not JSON: Expecting value (line 1 column 8)"),
        (b"[" * 65 + b"]" * 65, "nested 65 levels deep, over the limit of 64"),
        (b'{"n": ' + b"9" * 5000 + b"}", "a number of 5,000 characters, over the limit of 100"),
        (b'{"n": 1' + b"0" * 200 + b".5}", "a number of 203 characters, over the limit of 100"),
        (b'{"n": 1e999}', "a number out of range (1e999)"),
        (b'{"n": NaN}', "not JSON: NaN is not a JSON value"),
        (b'{"n": -Infinity}', "not JSON: -Infinity is not a JSON value"),
        (b'{"id": "\\ud800"}', 'a lone surrogate U+D800 in the string at $."id"'),
        (b'{"f": [{"id": "x\\udfff"}]}', 'a lone surrogate U+DFFF in the string at $."f"[0]."id"'),
        (b'{"id": "a\\u0000b"}', 'a NUL character in the string at $."id"'),
        (b'{"k\\u0000": 1}', 'a NUL character in the string at $."k\\u0000" (the key)'),
    ],
)
def test_decode_record_refuses_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(RecordDecodeError) as caught:
        decode_record(raw)

    assert caught.value.reason == reason


def test_decode_record_depth_far_past_the_recursion_limit_is_a_reason() -> None:
    with pytest.raises(RecordDecodeError, match="nested 100,000 levels deep"):
        decode_record(b"[" * 100_000 + b"]" * 100_000)


def test_decode_record_accepts_what_is_valid() -> None:
    raw = b'{"id": "\\ud83d\\ude00 ok", "n": 12, "x": [[1.5]], "s": "[{\\"\\\\"}'

    expected = {"id": "\U0001f600 ok", "n": 12, "x": [[1.5]], "s": '[{"\\'}
    assert decode_record(raw + b"\n") == expected


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert nesting_depth(b'{"a": "[[[[{{{{", "b": [["\\"]"]]}') == 3


# -- framing ----------------------------------------------------------------------------------


def test_ndjson_one_record_a_line_bad_lines_rejected_with_their_number() -> None:
    data = b'\xef\xbb\xbf{"a": 1}\n\n{bad\n{"a": "\xff"}\r\n{"a": 2}\n'

    items = read(data)

    assert values(items) == [{"a": 1}, {"a": 2}]
    [syntax, encoding] = rejections(items)
    assert syntax.where == "in.ndjson:3"
    assert syntax.message.startswith("in.ndjson:3: not JSON: ")
    assert (syntax.excerpt, syntax.size, syntax.truncated) == ("{bad", 4, False)
    assert encoding.where == "in.ndjson:4"
    assert encoding.excerpt == '{"a": "\\xff"}'  # invalid bytes as escapes: storable text
    assert encoding.raw() == {
        "input": "in.ndjson:4",
        "line": 4,
        "bytes": 10,
        "excerpt": '{"a": "\\xff"}',
        "truncated": False,
    }


def test_a_one_line_array_yields_its_elements() -> None:
    items = read(b'[{"a": 1}, {"a": 2}]\n[]\n')

    assert [(i.where, i.value) for i in items if isinstance(i, Record)] == [
        ("in.ndjson:1[0]", {"a": 1}),
        ("in.ndjson:1[1]", {"a": 2}),
    ]


def test_a_pretty_printed_document_is_one_record() -> None:
    document = json.dumps({"id": "x", "process": [{"workflow": "w"}]}, indent=2)

    items = read(document.encode() + b"\n" + b'{"next": 1}\n')

    assert values(items) == [{"id": "x", "process": [{"workflow": "w"}]}, {"next": 1}]
    assert items[1].where == f"in.ndjson:{document.count(chr(10)) + 2}"


def test_a_pretty_printed_array_streams_its_elements_each_decoded_alone() -> None:
    good = json.dumps([{"a": 1}, {"b": [1, 2]}], indent=2).encode()
    data = good[:-1] + b'  ,{"bad": },\n  {"c": "\xff"}, 3\n]\n{"after": 1}\n'

    items = read(data)

    assert values(items) == [{"a": 1}, {"b": [1, 2]}, 3, {"after": 1}]
    assert [r.where for r in rejections(items)] == ["in.ndjson:11[2]", "in.ndjson:12[3]"]
    assert items[0].where == "in.ndjson:2[0]"


def test_a_truncated_document_costs_only_itself() -> None:
    data = b'{\n  "id": "cut",\n{"a": 1}\n[\n{"b": 2}\n'

    items = read(data)

    assert values(items) == [{"a": 1}, {"b": 2}]
    [truncated, opener] = rejections(items)
    assert truncated.where == "in.ndjson:1"
    assert truncated.reason.startswith("not JSON")
    assert opener.where == "in.ndjson:4"
    assert "never closed" in opener.reason


def test_text_after_an_arrays_closing_bracket_is_rejected() -> None:
    items = read(b'[\n  {"a": 1}\n] {"b": 2}\n')

    assert values(items) == [{"a": 1}]
    assert [r.where for r in rejections(items)] == ["in.ndjson:3"]


# -- the size cap -----------------------------------------------------------------------------


def test_an_oversize_line_is_rejected_with_its_size_and_an_excerpt() -> None:
    limits = RecordLimits(max_bytes=100, excerpt_bytes=16)
    data = b'{"a": 1}\n' + b'{"x": "' + b"y" * 500 + b'"}\n' + b"z" * 100 + b"\n"

    items = read(data, limits)

    assert values(items)[0] == {"a": 1}
    [oversize, fits] = rejections(items)
    assert oversize.where == "in.ndjson:2"
    assert oversize.reason == "record is 509 bytes, over the limit of 100 bytes"
    assert (oversize.excerpt, oversize.size, oversize.truncated) == ('{"x": "yyyyyyyyy', 509, True)
    assert fits.where == "in.ndjson:3"  # exactly at the cap: read, and refused as not JSON
    assert fits.reason.startswith("not JSON")


def test_an_oversize_document_or_element_is_rejected_without_decoding() -> None:
    limits = RecordLimits(max_bytes=64)
    big = {"id": "x" * 100}
    data = (json.dumps(big, indent=2) + "\n" + json.dumps([big, {"a": 1}], indent=2)).encode()

    items = read(data, limits)

    assert values(items) == [{"a": 1}]
    assert [(r.where, r.size > 64) for r in rejections(items)] == [
        ("in.ndjson:1", True),
        ("in.ndjson:5[0]", True),
    ]


def test_a_huge_line_is_read_in_bounded_memory() -> None:
    """A 64 MiB line under a 1 MiB cap: never held whole, never copied."""
    limits = RecordLimits(max_bytes=1024 * 1024)
    data = b'{"x": "' + b"y" * (64 * 1024 * 1024) + b'"}\n{"a": 1}\n'
    stream = io.BytesIO(data)
    del data

    tracemalloc.start()
    try:
        items = list(read_records(stream, "big", limits))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert values(items) == [{"a": 1}]
    [rejection] = rejections(items)
    assert rejection.size == 64 * 1024 * 1024 + 9
    assert len(rejection.excerpt) == 1024
    assert peak < 8 * 1024 * 1024


def test_an_element_with_broken_brackets_costs_only_itself() -> None:
    good = [json.dumps({"n": n, "x": [n]}, indent=2).replace("\n", "\n  ") for n in range(3)]
    broken = '{\n    "n": "broken",\n    "x": [[[\n  }'
    data = "[\n  " + ",\n  ".join([good[0], broken, good[1], good[2]]) + "\n]\n"

    items = read(data.encode())

    assert values(items) == [{"n": 0, "x": [0]}, {"n": 1, "x": [1]}, {"n": 2, "x": [2]}]
    [rejection] = rejections(items)
    assert rejection.where == "in.ndjson:8[1]"
