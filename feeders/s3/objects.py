"""S3 objects → STAC items: the filters, templates and grouping shared by the S3 feeders.

Pure: no IO. A feeder (inventory, listing) turns its source rows into `S3Object`s, keeps the
ones `ObjectFilter` accepts (vectorised over Arrow batches with `ObjectFilter.mask`, or one
by one with `ObjectFilter.matches`), and hands them, in key order, to an `ItemBuilder`, which
yields STAC items (plain dicts) or `SourceRejection`s.

Templates (``id``, ``collection``, asset name, ``href``, ``group_by``, ``datetime``) are
`str.format`-like text with ``{field}`` or ``{field|filter|filter(args)}`` placeholders;
``{{``/``}}`` are literal braces. Fields: ``bucket``, ``key`` (decoded), ``key_url``
(percent-encoded, ``/`` kept), ``dirname``, ``basename``, ``stem``, ``ext`` (no dot; the
last suffix only), and the named groups of ``key_regex``. Filters: ``lower``, ``upper``,
``replace('old', 'new')``. Arguments are Python string literals read with
`ast.literal_eval`; nothing is ever evaluated.

Grouping: with ``group_by`` set, *consecutive* objects whose ``group_by`` renders the same
become one item with one asset each. Sources are key-sorted, so a group is complete when the
next one starts and memory stays bounded by one group. With an ``anchor`` (key suffix) or
``anchor_regex``, a group is emitted only when one of its files matches it; that file then
supplies the item-level fields (id, collection, datetime, regex properties).
"""

from __future__ import annotations

import importlib.util
import mimetypes
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import SourceRejection
from cirrus_feed.support.clock import utc
from feeders.s3.templates import Template

if TYPE_CHECKING:  # Arrow is the `inventory` extra: only `mask` (the inventory feeder) uses it
    import pyarrow as pa

__all__ = [
    "ItemBuilder",
    "ItemTemplate",
    "ObjectFilter",
    "S3Object",
    "Template",
    "build_items",
    "to_payload",
]

STAC_VERSION = "1.0.0"
BASE_FIELDS = frozenset({"bucket", "key", "key_url", "dirname", "basename", "stem", "ext"})
# The Arrow column each filter needs (inventory snake_case names; feeders rename to these).
COLUMNS = ("key", "size", "last_modified_date", "storage_class", "is_latest", "is_delete_marker")


@dataclass(frozen=True, slots=True)
class S3Object:
    """One object (version) as a source reports it; ``key`` is decoded."""

    bucket: str
    key: str
    size: int | None = None
    last_modified: datetime | None = None
    etag: str | None = None
    storage_class: str | None = None
    version_id: str | None = None
    is_latest: bool | None = None

    def fields(self) -> dict[str, str]:
        """The template fields derived from bucket and key."""
        dirname, basename = posixpath.split(self.key)
        stem, dot, ext = basename.rpartition(".")
        if not dot or not stem:  # "README" or ".hidden": no extension
            stem, ext = basename, ""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "key_url": quote(self.key, safe="/"),
            "dirname": dirname,
            "basename": basename,
            "stem": stem,
            "ext": ext,
        }

    def describe(self) -> dict[str, Any]:
        """JSON-friendly form, kept with a rejection."""
        data = asdict(self)
        if self.last_modified is not None:
            data["last_modified"] = self.last_modified.isoformat()
        return data


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


# -- filters --------------------------------------------------------------------------------


class ObjectFilter(BaseModel):
    """Which objects to feed. Every set condition must hold.

    ``suffix`` may be a list (any of them); ``key_regex`` is searched (not anchored: use
    ``^``) with Python `re` for `matches` and RE2 in Arrow for `mask`, so it must be valid in
    both (RE2 is checked where Arrow is installed, the only place `mask` runs);
    ``modified_after`` is inclusive, ``modified_before`` exclusive (naive times are UTC); the
    size bounds are inclusive. Delete markers never match.
    """

    model_config = ConfigDict(extra="forbid")

    prefix: str | None = None
    suffix: list[str] | None = None
    key_regex: str | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    min_size: int | None = Field(None, ge=0)
    max_size: int | None = Field(None, ge=0)
    storage_classes: list[str] | None = None
    latest_only: bool = False

    @field_validator("suffix", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("modified_after", "modified_before")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @field_validator("key_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"key_regex {value!r} must be valid in Python re: {exc}") from exc
        if importlib.util.find_spec("pyarrow") is not None:
            import pyarrow as pa
            import pyarrow.compute as pc

            try:
                pc.match_substring_regex(pa.array([""]), value)
            except pa.ArrowInvalid as exc:
                raise ValueError(f"key_regex {value!r} must be valid in RE2: {exc}") from exc
        return value

    @property
    def regex(self) -> re.Pattern[str] | None:
        return re.compile(self.key_regex) if self.key_regex is not None else None

    def required_columns(self) -> dict[str, str]:
        """Column → the setting that needs it."""
        needs = {"key": "key"}
        if self.min_size is not None or self.max_size is not None:
            needs["size"] = "min_size/max_size"
        if self.modified_after is not None or self.modified_before is not None:
            needs["last_modified_date"] = "modified_after/modified_before"
        if self.storage_classes is not None:
            needs["storage_class"] = "storage_classes"
        if self.latest_only:
            needs["is_latest"] = "latest_only"
        return needs

    def check_columns(self, available: Iterable[str], source: str) -> None:
        """Raise `ConfigError` when ``source`` lacks a column a set filter needs."""
        have = set(available)
        missing = {c: why for c, why in self.required_columns().items() if c not in have}
        if missing:
            detail = ", ".join(f"{why} needs column '{col}'" for col, why in missing.items())
            raise ConfigError(f"{source}: {detail} (columns: {', '.join(sorted(have))})")

    def mask(self, batch: pa.RecordBatch) -> pa.BooleanArray:
        """Per-row verdict for a batch with (some of) the `COLUMNS`; nulls never match."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.check_columns(batch.schema.names, "record batch")
        keys = batch.column("key")
        conditions = []
        if self.prefix:
            conditions.append(pc.starts_with(keys, self.prefix))
        if self.suffix:
            ends = [pc.ends_with(keys, s) for s in self.suffix]
            conditions.append(_any(ends))
        if self.key_regex is not None:
            conditions.append(pc.match_substring_regex(keys, self.key_regex))
        if self.min_size is not None:
            conditions.append(pc.greater_equal(batch.column("size"), self.min_size))
        if self.max_size is not None:
            conditions.append(pc.less_equal(batch.column("size"), self.max_size))
        if self.modified_after is not None or self.modified_before is not None:
            conditions += self._time_conditions(batch.column("last_modified_date"))
        if self.storage_classes is not None:
            classes = pa.array(self.storage_classes, pa.string())
            conditions.append(pc.is_in(batch.column("storage_class"), value_set=classes))
        if self.latest_only:
            conditions.append(pc.fill_null(batch.column("is_latest"), True))
        if "is_delete_marker" in batch.schema.names:
            conditions.append(pc.invert(pc.fill_null(batch.column("is_delete_marker"), False)))
        if not conditions:
            return pc.is_valid(keys)
        verdict = conditions[0]
        for condition in conditions[1:]:
            verdict = pc.and_kleene(verdict, condition)
        return pc.fill_null(verdict, False)

    def _time_conditions(self, column: pa.Array) -> list[pa.Array]:
        import pyarrow as pa
        import pyarrow.compute as pc

        unit = column.type.unit if pa.types.is_timestamp(column.type) else "ms"
        utc = pc.cast(column, pa.timestamp(unit, tz="UTC"))
        out = []
        if self.modified_after is not None:
            out.append(pc.greater_equal(utc, pa.scalar(self.modified_after, utc.type)))
        if self.modified_before is not None:
            out.append(pc.less(utc, pa.scalar(self.modified_before, utc.type)))
        return out

    def matches(self, obj: S3Object) -> bool:
        """The same verdict as `mask`, for one object."""
        key = obj.key
        checks = (
            not self.prefix or key.startswith(self.prefix),
            not self.suffix or key.endswith(tuple(self.suffix)),
            self.key_regex is None or re.search(self.key_regex, key) is not None,
            self.min_size is None or (obj.size is not None and obj.size >= self.min_size),
            self.max_size is None or (obj.size is not None and obj.size <= self.max_size),
            self._time_ok(_utc(obj.last_modified)),
            self.storage_classes is None or obj.storage_class in self.storage_classes,
            not self.latest_only or obj.is_latest is not False,
        )
        return all(checks)

    def _time_ok(self, when: datetime | None) -> bool:
        if self.modified_after is None and self.modified_before is None:
            return True
        if when is None:
            return False
        after_ok = self.modified_after is None or when >= self.modified_after
        return after_ok and (self.modified_before is None or when < self.modified_before)


def _any(arrays: list[pa.Array]) -> pa.Array:
    import pyarrow.compute as pc

    out = arrays[0]
    for array in arrays[1:]:
        out = pc.or_kleene(out, array)
    return out


# -- items ----------------------------------------------------------------------------------


class ItemTemplate(BaseModel):
    """How objects become STAC items; see the module docstring for the template syntax.

    ``datetime`` is ``"last_modified"`` or a template (e.g. ``"{Y}-{m}-{d}"``) parsed with
    ``datetime_format`` (`strptime`; default ISO 8601); naive results are UTC. Named groups
    of the filter's ``key_regex`` become properties unless their name starts with ``_``.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = "{key|replace('/', '-')}"
    collection: str
    asset: str = "{basename}"
    href: str = "s3://{bucket}/{key}"
    properties: dict[str, Any] = Field(default_factory=dict)
    datetime: str = "last_modified"
    datetime_format: str | None = None
    group_by: str | None = None
    anchor: str | None = None
    anchor_regex: str | None = None
    missing_anchor: Literal["reject", "skip"] = "reject"

    @model_validator(mode="after")
    def _parse(self) -> ItemTemplate:
        for name in ("id", "collection", "asset", "href", "group_by"):
            if (text := getattr(self, name)) is not None:
                Template(text)
        if self.datetime != "last_modified":
            Template(self.datetime)
        if self.anchor_regex is not None:
            re.compile(self.anchor_regex)
        return self

    def templates(self) -> dict[str, Template]:
        named = {"id": self.id, "collection": self.collection, "asset": self.asset}
        named |= {"href": self.href}
        if self.group_by is not None:
            named["group_by"] = self.group_by
        if self.datetime != "last_modified":
            named["datetime"] = self.datetime
        return {name: Template(text) for name, text in named.items()}

    def check_fields(self, regex: re.Pattern[str] | None) -> None:
        """Raise `ConfigError` for a template field that is neither built in nor a group."""
        known = BASE_FIELDS | set(regex.groupindex if regex is not None else ())
        for name, template in self.templates().items():
            unknown = template.fields - known
            if unknown:
                raise ConfigError(
                    f"item template {name} {template.text!r}: unknown field(s) "
                    f"{', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
                )


Built = dict[str, Any] | SourceRejection


class ItemBuilder:
    """Streams key-sorted objects into items; `pending` objects wait in the open group."""

    def __init__(self, template: ItemTemplate, key_regex: str | None = None) -> None:
        self.template = template
        self.regex = re.compile(key_regex) if key_regex is not None else None
        template.check_fields(self.regex)
        self._t = template.templates()
        # Compiled once: the values an item is built from are all text.
        self._render = {name: t.renderer() for name, t in self._t.items()}
        self._key_url = any("key_url" in t.fields for t in self._t.values())
        self._anchor = re.compile(template.anchor_regex) if template.anchor_regex else None
        self._group: list[tuple[S3Object, dict[str, str]]] = []
        self._group_key: str | None = None

    @property
    def pending(self) -> int:
        return len(self._group)

    def push(self, obj: S3Object) -> list[Built]:
        """Take one object; return what it completed (nothing while a group stays open)."""
        values = self._values(obj)
        if self.regex is not None:
            match = self.regex.search(obj.key)
            if match is None:
                return [SourceRejection(obj.describe(), f"key {obj.key!r}: key_regex no match")]
            values |= {k: v for k, v in match.groupdict().items() if v is not None}
        if "group_by" not in self._t:
            return [self._item([(obj, values)])]
        try:
            group_key = self._t["group_by"].render(values)
        except KeyError as exc:
            return [SourceRejection(obj.describe(), f"key {obj.key!r}: group_by needs {exc}")]
        out = []
        if self._group and group_key != self._group_key:
            out = self.finish()
        self._group_key = group_key
        self._group.append((obj, values))
        return out

    def _values(self, obj: S3Object) -> dict[str, str]:
        """`S3Object.fields`, without ``key_url`` (a `quote` per object) when no template
        uses it."""
        key = obj.key
        cut = key.rfind("/") + 1
        dirname, basename = key[:cut], key[cut:]
        if dirname and dirname != "/" * len(dirname):  # as posixpath.split
            dirname = dirname.rstrip("/")
        stem, dot, ext = basename.rpartition(".")
        if not dot or not stem:  # "README" or ".hidden": no extension
            stem, ext = basename, ""
        values = {"bucket": obj.bucket, "key": key, "dirname": dirname, "basename": basename}
        values["stem"], values["ext"] = stem, ext
        if self._key_url:
            values["key_url"] = quote(key, safe="/")
        return values

    def finish(self) -> list[Built]:
        """Close the open group (at the end of the source)."""
        group, self._group, self._group_key = self._group, [], None
        if not group:
            return []
        anchor = self._find_anchor(group)
        if anchor is None:
            if self.template.missing_anchor == "skip":
                return []
            keys = [obj.key for obj, _ in group]
            wanted = self.template.anchor or self.template.anchor_regex
            reason = f"group {self._render_group(group)!r}: no anchor file {wanted!r}"
            return [SourceRejection({"keys": keys}, reason)]
        group.remove(anchor)
        return [self._item([anchor, *group])]

    def _render_group(self, group: list[tuple[S3Object, dict[str, str]]]) -> str:
        return self._t["group_by"].render(group[0][1])

    def _find_anchor(
        self, group: list[tuple[S3Object, dict[str, str]]]
    ) -> tuple[S3Object, dict[str, str]] | None:
        if self.template.anchor is None and self._anchor is None:
            return group[0]
        for entry in group:
            key = entry[0].key
            if self.template.anchor is not None and key.endswith(self.template.anchor):
                return entry
            if self._anchor is not None and self._anchor.search(key):
                return entry
        return None

    def _item(self, entries: list[tuple[S3Object, dict[str, str]]]) -> Built:
        """The item of ``entries``; the first supplies id, collection and datetime."""
        head, values = entries[0]
        try:
            properties = dict(self.template.properties)
            if self.regex is not None:
                properties |= {k: v for k, v in values.items() if k in self.regex.groupindex}
                properties = {k: v for k, v in properties.items() if not k.startswith("_")}
            properties["datetime"] = self._datetime(head, values)
            assets: dict[str, Any] = {}
            for obj, obj_values in entries:
                name = self._render["asset"](obj_values)
                if not name:
                    raise ValueError("the asset name is empty (a folder marker?)")
                if name in assets:
                    raise ValueError(f"two files make asset {name!r}")
                assets[name] = _asset(self._render["href"](obj_values), obj)
            return {
                "type": "Feature",
                "stac_version": STAC_VERSION,
                "id": self._render["id"](values),
                "collection": self._render["collection"](values),
                "geometry": None,
                "properties": properties,
                "assets": assets,
                "links": [],
            }
        except KeyError as exc:
            return SourceRejection(head.describe(), f"key {head.key!r}: no value for {exc}")
        except ValueError as exc:
            return SourceRejection(head.describe(), f"key {head.key!r}: {exc}")

    def _datetime(self, obj: S3Object, values: Mapping[str, str]) -> str | None:
        if "datetime" not in self._t:
            when = obj.last_modified
        else:
            text = self._t["datetime"].render(values)
            fmt = self.template.datetime_format
            when = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)  # noqa: DTZ007
        return iso_z(when)


def iso_z(when: datetime | None) -> str | None:
    """A STAC ``datetime``: ISO 8601 in UTC with a ``Z`` (naive times are UTC)."""
    when = _utc(when)
    return when.isoformat().replace("+00:00", "Z") if when is not None else None


def _asset(href: str, obj: S3Object) -> dict[str, Any]:
    asset: dict[str, Any] = {"href": href}
    media_type = media_type_of(obj.key)
    if media_type is not None:
        asset["type"] = media_type
    return asset


_MEDIA_TYPES: dict[str, str | None] = {}  # a key's suffixes ("x.tif", "x.tar.gz") → type
_MEDIA_TYPES_KEPT = 4096


def media_type_of(key: str) -> str | None:
    """``mimetypes.guess_type(key, strict=False)``'s type, looked up once per run of
    suffixes: the guess reads only the suffixes of the key's last segment, unless the key
    has a ``scheme:`` (a ``data:`` URL is parsed) or the name starts with a dot."""
    basename = key[key.rfind("/") + 1 :]
    first = basename.find(".")
    if first <= 0 or ":" in key:
        return mimetypes.guess_type(key, strict=False)[0]
    suffixes = "x" + basename[first:]
    try:
        return _MEDIA_TYPES[suffixes]
    except KeyError:
        media_type = mimetypes.guess_type(suffixes, strict=False)[0]
        if len(_MEDIA_TYPES) < _MEDIA_TYPES_KEPT:
            _MEDIA_TYPES[suffixes] = media_type
        return media_type


def build_items(
    objects: Iterable[S3Object], template: ItemTemplate, key_regex: str | None = None
) -> Iterator[Built]:
    """Every item (or rejection) of key-sorted ``objects``, streaming."""
    builder = ItemBuilder(template, key_regex)
    for obj in objects:
        yield from builder.push(obj)
    yield from builder.finish()


def to_payload(item: Mapping[str, Any], process: list[Any]) -> dict[str, Any]:
    """The Cirrus process payload feeding one item."""
    return {"type": "FeatureCollection", "features": [dict(item)], "process": process}
