"""Inventory rows → payloads on Arrow columns: ids and JSON bodies without a Python item per row.

`ColumnarPayloads` renders the item templates (`feeders.s3.templates`) on a batch's
``key`` column and builds each payload's id and JSON text by column string operations, as
exactly the text ``json.dumps`` gives for the payload `feeders.s3.objects.ItemBuilder` and
`cirrus_feed.model.prepared.PayloadTemplate` would build from that row (the tests compare
the two row by row). It builds only the rows for which that is provably so ("plain" rows);
every other row is left to the per-row path, which also gives the reason when a row cannot
become a payload. A row is plain when:

* its key is printable ASCII without ``"`` or ``\\`` (so every text rendered from it is JSON
  as it is, and ``json.dumps``'s escaping has nothing to change), with a file name neither
  starting with ``.`` nor holding ``..``, and nothing `mimetypes` reads as a URL scheme;
* the templates render a non-empty id, collection and asset name, and every ``key_regex``
  group is non-empty (RE2 cannot tell an empty group from one that did not take part);
* its payload id passes the storable checks (`cirrus_feed.model.storable`) with room to
  spare: one ``/workflow-``, no ``.``/``..`` or over-long segment, every key within bounds;
* its datetime is null, or a time from 1970 to 9999 (the range Arrow formats like Python).

Whole configurations stay per-row when columns cannot reproduce them: ``group_by`` (items
of several rows), templates whose literal text or filter arguments are not plain, and a
``process`` that no payload could pass validation with.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from cirrus_feed.model import storable
from feeders.s3.objects import BASE_FIELDS, STAC_VERSION, ItemTemplate, iso_z
from feeders.s3.templates import Template, apply_filter

# Regular expressions run only on the rows a cheap test flags (RE2 compiles each per call).
_PLAIN = re.compile(r"^[ !#-\[\]-~]*$")  # printable ASCII except '"' and '\'
_LONG_SEGMENT = r"[^/]{256}"  # over the file name limit
_SCHEME = r"^[^/:]+:"  # `mimetypes.guess_type` splits this off as a URL scheme
_URL_SAFE = r"^[A-Za-z0-9_.~/-]*$"  # what `quote(key, safe="/")` leaves as it is
_MAX_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z
_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Column: TypeAlias = "pa.Array | str"  # a string column, or one text for every row


class ColumnarPayloads:
    """Builds the payloads of plain rows for one item template and ``process``.

    Use `create`, which returns None for a configuration columns cannot reproduce.
    """

    def __init__(
        self,
        template: ItemTemplate,
        key_regex: str | None,
        process: Sequence[Any],
        bucket: str,
    ) -> None:
        self.template, self.key_regex, self.bucket = template, key_regex, bucket
        self.templates = template.templates()
        groups = re.compile(key_regex).groupindex if key_regex is not None else {}
        self.groups = list(groups)
        first = process[0]
        self.workflow = str(first["workflow"])
        self.collections = str(first["collections"]) if "collections" in first else None
        self.replace = bool(first.get("replace"))
        self.process_json = json.dumps(list(process))
        self.properties = self._property_order()
        self.constant_datetime: str | None = None
        if "datetime" in self.templates and not self.templates["datetime"].fields:
            self.constant_datetime = self._parse_datetime(self.templates["datetime"].render({}))

    @classmethod
    def create(
        cls,
        template: ItemTemplate,
        key_regex: str | None,
        process: Sequence[Any],
        bucket: str,
        *,
        process_ok: bool,
    ) -> ColumnarPayloads | None:
        """The builder, or None when this configuration must be built row by row.

        ``process_ok``: whether a payload with this ``process`` can be valid at all
        (checked once by the caller); when not, each row is recorded invalid with the reason.
        """
        if not process_ok or template.group_by is not None or not _PLAIN.match(bucket):
            return None
        if not all(_plain_template(t) for t in template.templates().values()):
            return None
        regex = re.compile(key_regex) if key_regex is not None else None
        if regex is not None and regex.groupindex and regex.groups > len(regex.groupindex):
            return None  # Arrow extracts named groups only when there are no others
        try:
            return cls(template, key_regex, process, bucket)
        except ValueError:  # a constant datetime that does not parse: per row, as rejections
            return None

    def _property_order(self) -> list[tuple[str, str | None]]:
        """``(json key text, constant value text or None for a group)`` in the order the
        item's ``properties`` has them; ``datetime`` is `build`'s (value None)."""
        order: dict[str, str | None] = {}
        for name, value in self.template.properties.items():
            order[name] = json.dumps(value)
        if self.groups:
            # `ItemBuilder` takes groups in the order of the row's fields: base fields first.
            named = [g for g in BASE_FIELDS_ORDER if g in self.groups]
            named += [g for g in self.groups if g not in BASE_FIELDS]
            for name in named:
                order[name] = None
            order = {k: v for k, v in order.items() if not k.startswith("_")}
        order["datetime"] = None
        return [(json.dumps(name), text) for name, text in order.items()]

    # -- per batch -----------------------------------------------------------------------

    def build(
        self, keys: pa.Array, last_modified: pa.Array | None
    ) -> tuple[pa.BooleanArray, list[str], list[str]]:
        """For each row of ``keys``: whether it is plain; the ids and bodies of plain rows."""
        fields = _Fields(keys, self.bucket, self.key_regex, self.groups)
        ok = [
            pc.ascii_is_printable(keys),
            pc.invert(pc.match_substring(keys, '"')),
            pc.invert(pc.match_substring(keys, "\\")),
        ]
        ok += [pc.greater(pc.binary_length(fields.get(g)), 0) for g in self.groups]
        rendered = {n: _render(t, fields.get) for n, t in self.templates.items() if n != "datetime"}
        item_id, collection, asset = rendered["id"], rendered["collection"], rendered["asset"]
        ok += [_non_empty(item_id), _non_empty(collection), _non_empty(asset)]
        ok += self._media_checks(fields)
        media = self._media(fields)
        when, when_ok = self._datetime(fields, last_modified)
        ok.append(when_ok)
        pid = _join([self.collections or collection, f"/workflow-{self.workflow}/", item_id])
        ok += self._id_checks(pid, collection, item_id)
        properties: list[Column] = []
        for number, (name, text) in enumerate(self.properties):
            properties.append(f"{', ' if number else ''}{name}: ")
            if text is not None:
                properties.append(text)
            elif name == '"datetime"':
                properties.append(when)
            else:
                properties += ['"', fields.get(json.loads(name)), '"']
        body = _join(
            [
                '{"type": "FeatureCollection", "features": [{"type": "Feature", '
                f'"stac_version": "{STAC_VERSION}", "id": "',
                item_id,
                '", "collection": "',
                collection,
                '", "geometry": null, "properties": {',
                *properties,
                '}, "assets": {"',
                asset,
                '": {"href": "',
                rendered["href"],
                '"',
                media,
                '}}, "links": []}], "process": ',
                self.process_json,
                ', "id": "',
                pid,
                '"}',
            ]
        )
        plain = _all(ok, len(keys))
        return plain, _texts(pid, plain, len(keys)), _texts(body, plain, len(keys))

    def _media_checks(self, fields: _Fields) -> list[pa.Array]:
        basename = fields.base_array("basename")
        return [
            pc.invert(_flagged_regex(fields.keys, ":", _SCHEME)),
            pc.invert(pc.starts_with(basename, ".")),
            pc.invert(pc.match_substring(basename, "..")),
        ]

    def _media(self, fields: _Fields) -> Column:
        """``, "type": "..."`` per row, or empty text when `mimetypes` knows no type.

        On plain rows `mimetypes.guess_type` reads only the file name's last suffix, unless
        that is one it maps or strips (``.tgz``, ``.gz``, ...): each distinct suffix is
        looked up once, and only the names ending in those are looked up whole."""
        ext = fields.base_array("ext")
        encoded = pc.dictionary_encode(ext)
        suffixes = encoded.dictionary.to_pylist()
        texts = [_media_text(f"x.{e}" if e else "x") for e in suffixes]
        media = pc.take(pa.array(texts, pa.string()), encoded.indices)
        special = [e for e in suffixes if _mapped_suffix(e)]
        if not special:
            return media
        whole = pc.is_in(ext, value_set=pa.array(special, pa.string()))
        names = pc.filter(fields.base_array("basename"), whole).to_pylist()
        return pc.replace_with_mask(media, whole, pa.array([_media_text(n) for n in names]))

    def _datetime(
        self, fields: _Fields, last_modified: pa.Array | None
    ) -> tuple[Column, pa.Array | bool]:
        """The JSON text of ``properties.datetime`` per row, and which rows it is right for."""
        if self.constant_datetime is not None or (
            "datetime" not in self.templates and last_modified is None
        ):
            return json.dumps(self.constant_datetime), True
        if "datetime" in self.templates:
            text = _render(self.templates["datetime"], fields.get)
            if isinstance(text, str):  # unreachable: constant templates are parsed once
                return json.dumps(self._parse_datetime(text)), True
            return self._parsed(text)
        assert last_modified is not None
        millis = pc.cast(last_modified, pa.int64())
        in_range = pc.and_(pc.greater_equal(millis, 0), pc.less(millis, _MAX_MS))
        quoted = _join(['"', *_iso_parts(pc.if_else(in_range, millis, 0)), 'Z"'])
        return pc.fill_null(quoted, "null"), pc.or_kleene(pc.is_null(millis), in_range)

    def _parsed(self, text: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Datetime template text parsed per distinct value (dates repeat across rows)."""
        encoded = pc.dictionary_encode(text)
        values, good = [], []
        for raw in encoded.dictionary.to_pylist():
            try:
                values.append(json.dumps(self._parse_datetime(raw)))
                good.append(True)
            except ValueError:  # the per-row path rejects the row, naming the key
                values.append("null")
                good.append(False)
        return (
            pc.take(pa.array(values, pa.string()), encoded.indices),
            pc.take(pa.array(good, pa.bool_()), encoded.indices),
        )

    def _parse_datetime(self, text: str) -> str | None:
        fmt = self.template.datetime_format
        when = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)  # noqa: DTZ007
        return iso_z(when)

    def _id_checks(self, pid: Column, collection: Column, item_id: Column) -> list[Any]:
        """Rows whose payload id `cirrus_feed.model.storable` would accept, with room."""
        checks: list[Any] = []
        for text in (pid, collection):
            if isinstance(text, pa.Array):
                checks.append(pc.invert(_bad_segment(text)))
        if isinstance(pid, pa.Array):
            checks.append(pc.equal(pc.count_substring(pid, "/workflow-"), 1))
            checks.append(pc.less_equal(pc.binary_length(pid), storable.MAX_PAYLOAD_ID_BYTES))
        if isinstance(item_id, pa.Array):
            limit = storable.DYNAMODB_MAX_SORT_KEY_BYTES
            checks.append(pc.less_equal(pc.binary_length(item_id), limit))
        if self.collections is None and isinstance(collection, pa.Array):
            limit = storable.DYNAMODB_MAX_PARTITION_KEY_BYTES - len(self.workflow) - 1
            checks.append(pc.less_equal(pc.binary_length(collection), limit))
        return checks


def _iso_parts(millis: pa.Array) -> list[Column]:
    """``YYYY-MM-DDTHH:MM:SS[.mmm000]`` of non-negative epoch milliseconds, as Python's
    `datetime.isoformat` writes them, from integer arithmetic (Arrow's strftime is ~10x
    slower): dates repeat, so each distinct day is formatted once."""
    days = pc.divide(millis, _DAY_MS)
    encoded = pc.dictionary_encode(days)
    dates = [
        (_EPOCH + timedelta(days=d)).strftime("%Y-%m-%dT") for d in encoded.dictionary.to_pylist()
    ]
    parts: list[Column] = [pc.take(pa.array(dates, pa.string()), encoded.indices)]
    clock = pc.remainder(millis, _DAY_MS)
    for number, (unit, base) in enumerate(((3_600_000, 24), (60_000, 60), (1000, 60))):
        value = pc.remainder(pc.divide(clock, unit), base) if number else pc.divide(clock, unit)
        if number:
            parts.append(":")
        parts.append(pc.utf8_lpad(pc.cast(value, pa.string()), 2, "0"))
    fraction = pc.remainder(millis, 1000)
    digits = pc.utf8_lpad(pc.cast(fraction, pa.string()), 3, "0")
    parts.append(pc.if_else(pc.equal(fraction, 0), "", _join([".", digits, "000"])))
    return parts


BASE_FIELDS_ORDER = ("bucket", "key", "key_url", "dirname", "basename", "stem", "ext")


class _Fields:
    """The template fields of a batch's keys (`feeders.s3.objects.S3Object.fields` and
    the ``key_regex`` groups), each computed when first asked for."""

    def __init__(
        self, keys: pa.Array, bucket: str, key_regex: str | None, groups: list[str]
    ) -> None:
        self.keys, self.bucket, self.key_regex, self.groups = keys, bucket, key_regex, groups
        self.cache: dict[str, Column] = {}
        self.found: pa.StructArray | None = None

    def get(self, name: str) -> Column:
        """A field as templates see it: a ``key_regex`` group overrides a base field."""
        if name not in self.groups:
            return self.base(name)
        if name not in self.cache:
            if self.found is None:
                assert self.key_regex is not None
                self.found = pc.extract_regex(self.keys, self.key_regex)
            group = pc.struct_field(self.found, [self.groups.index(name)])
            self.cache[name] = pc.fill_null(group, "")
        return self.cache[name]

    def base_array(self, name: str) -> pa.Array:
        value = self.base(name)
        assert isinstance(value, pa.Array)
        return value

    def base(self, name: str) -> Column:
        """A field derived from bucket and key (`S3Object.fields`)."""
        if f"base:{name}" not in self.cache:
            self.cache[f"base:{name}"] = self._compute(name)
        return self.cache[f"base:{name}"]

    def _compute(self, name: str) -> Column:
        keys = self.keys
        if name == "bucket":
            return self.bucket
        if name == "key":
            return keys
        if name == "key_url":
            unsafe = pc.invert(pc.match_substring_regex(keys, _URL_SAFE))  # once per batch
            if not pc.any(unsafe).as_py():
                return keys
            quoted = [quote(k, safe="/") for k in pc.filter(keys, unsafe).to_pylist()]
            return pc.replace_with_mask(keys, unsafe, pa.array(quoted, pa.string()))
        if name in ("dirname", "basename"):
            head, tail = _split_last(keys, "/")
            if name == "basename":
                return tail
            # `posixpath.split`: the head keeps its '/', trailing '/'s go unless all are '/'
            head = _join([head, "/"])
            trimmed = pc.utf8_rtrim(head, "/")
            dirname = pc.if_else(pc.equal(pc.binary_length(trimmed), 0), head, trimmed)
            return pc.fill_null(dirname, "")
        basename = self.base_array("basename")
        stem, ext = _split_last(basename, ".")
        dotted = pc.greater(pc.binary_length(pc.fill_null(stem, "")), 0)  # "a.b", not ".b"
        if name == "stem":
            return pc.if_else(dotted, stem, basename)
        assert name == "ext"
        return pc.if_else(dotted, ext, "")


def _split_last(texts: pa.Array, separator: str) -> tuple[pa.Array, pa.Array]:
    """Each text split at its last ``separator``: (before or null when there is none, after)."""
    parts = pc.split_pattern(texts, separator, max_splits=1, reverse=True)
    offsets = parts.offsets
    flat = parts.values
    last = pc.take(flat, pc.subtract(offsets.slice(1), 1))
    two = pc.equal(pc.list_value_length(parts), 2)
    first = pc.if_else(two, pc.take(flat, offsets.slice(0, len(texts))), None)
    return first, last


def _flagged_regex(texts: pa.Array, needle: str, regex: str) -> pa.Array:
    """``regex`` matched on the texts holding ``needle`` (false elsewhere): RE2 compiles a
    pattern on every call, which costs more than the match on a small batch."""
    flagged = pc.match_substring(texts, needle)
    if not pc.any(flagged).as_py():
        return flagged
    return pc.and_(flagged, pc.match_substring_regex(texts, regex))


def _bad_segment(texts: pa.Array) -> pa.Array:
    """Texts with a ``/``-separated segment that is ``.``, ``..``, or over the file name
    limit (`storable.segment_problem`; plain text: one byte a character)."""
    dots = pc.invert(_no_dot_segment(texts))
    limit = storable.LOCAL_MAX_NAME_BYTES
    long = pc.greater(pc.binary_length(texts), limit)
    if pc.any(long).as_py():
        long = pc.and_(long, pc.match_substring_regex(texts, _LONG_SEGMENT))
    return pc.or_(dots, long)


def _no_dot_segment(texts: pa.Array) -> pa.Array:
    """Texts with no segment ``.`` or ``..``."""
    wrapped = _join(["/", texts, "/"])
    assert isinstance(wrapped, pa.Array)
    return pc.invert(
        pc.or_(pc.match_substring(wrapped, "/./"), pc.match_substring(wrapped, "/../"))
    )


def _mapped_suffix(ext: str) -> bool:
    """Whether `mimetypes` maps (``.tgz``) or strips (``.gz``) this suffix, so the type
    also depends on the one before it."""
    if not mimetypes.inited:
        mimetypes.init()
    suffix = f".{ext}"
    return suffix.lower() in mimetypes.suffix_map or suffix in mimetypes.encodings_map


def _media_text(name: str) -> str:
    media_type, _ = mimetypes.guess_type(name, strict=False)
    return "" if media_type is None else f', "type": {json.dumps(media_type)}'


def _plain_template(template: Template) -> bool:
    """Whether every literal and filter argument of ``template`` is plain text, and no
    ``replace`` has an empty pattern (Arrow and Python differ there)."""
    for part in template.parts:
        if isinstance(part, str):
            if not _PLAIN.match(part):
                return False
            continue
        for name, args in part[1]:
            if not all(_PLAIN.match(a) for a in args) or (name == "replace" and not args[0]):
                return False
    return True


def _render(template: Template, field: Callable[[str], Column]) -> Column:
    pieces: list[Column] = []
    for part in template.parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        name, steps = part
        value = field(name)
        for filter_name, args in steps:
            value = _filter(value, filter_name, args)
        pieces.append(value)
    return _join(pieces)


def _filter(value: Column, name: str, args: tuple[str, ...]) -> Column:
    if isinstance(value, str):
        return apply_filter(value, name, args)
    if name == "lower":
        return pc.ascii_lower(value)
    if name == "upper":
        return pc.ascii_upper(value)
    if name == "replace":
        return pc.replace_substring(value, pattern=args[0], replacement=args[1])
    assert name == "md5"
    texts = value.to_pylist()
    return pa.array([hashlib.md5(v.encode(), usedforsecurity=False).hexdigest() for v in texts])


def _join(pieces: Sequence[Column]) -> Column:
    """The row-wise concatenation of ``pieces``; adjacent texts are merged first."""
    merged: list[Column] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        elif not (isinstance(piece, str) and not piece):
            merged.append(piece)
    if not merged:
        return ""
    if len(merged) == 1:
        return merged[0]
    return pc.binary_join_element_wise(*merged, "")


def _non_empty(text: Column) -> pa.Array | bool:
    if isinstance(text, str):
        return bool(text)
    return pc.greater(pc.binary_length(text), 0)


def _all(conditions: list[Any], rows: int) -> pa.BooleanArray:
    verdict: pa.Array = pa.array([True] * rows, pa.bool_())
    for condition in conditions:
        if condition is True:
            continue
        if condition is False:
            return pa.array([False] * rows, pa.bool_())
        verdict = pc.and_(verdict, pc.fill_null(condition, False))
    return verdict


def _texts(text: Column, plain: pa.BooleanArray, rows: int) -> list[str]:
    if isinstance(text, str):
        return [text] * pc.sum(plain).as_py() if rows else []
    values: list[str] = pc.filter(text, plain).to_pylist()
    return values
