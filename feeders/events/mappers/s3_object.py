"""The ``s3-object`` mapper: S3 event notifications → stub items from templates.

Uses the S3 feeders' shared pieces (`feeders.s3.objects`): ``filter`` (prefix, suffix,
``key_regex``, sizes) picks the objects, ``item`` (templates for id, collection, asset name
and href, ``key_regex`` groups as properties, ``datetime``: ``last_modified`` is the event
time) builds the items. ``events`` are `fnmatch` patterns on the event name (S3
notifications say ``ObjectCreated:Put``, EventBridge ``Object Created``); removals are
skipped by default, and so are folder markers (keys ending in ``/``, which the S3 console
writes for "Create folder": no file, so no item).

Grouping (``item.group_by``) joins sibling files into one scene item, but only files named
by *one* message (an S3 notification may carry several records): S3 sends one notification
per object written, so siblings uploaded separately arrive in separate messages and cannot
be joined without holding messages back. For such scenes, feed on the anchor file alone
(``filter.suffix: _MTL.json``) and let the workflow find its siblings, or keep
``item.anchor`` with ``missing_anchor: skip`` so partial groups are dropped, not rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from typing import ClassVar

from pydantic import Field, model_validator

from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import SourceRejection
from cirrus_feed.model.envelopes import Envelope, NotifiedObject
from feeders.events.mappers import Mapped, Mapper, MapperOptions, Skip
from feeders.s3.objects import ItemBuilder, ItemTemplate, ObjectFilter, S3Object


class S3ObjectOptions(MapperOptions):
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    item: ItemTemplate
    events: list[str] = Field(default_factory=lambda: ["ObjectCreated:*", "Object Created"])

    @model_validator(mode="after")
    def _templates_fit(self) -> S3ObjectOptions:
        try:
            ItemBuilder(self.item, self.filter.key_regex)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self


class S3ObjectMapper(Mapper):
    """S3 object event → stub item (or one item per group of sibling files)."""

    name: ClassVar[str] = "s3-object"
    Options: ClassVar[type[MapperOptions]] = S3ObjectOptions

    def __init__(self, options: MapperOptions) -> None:
        super().__init__(options)
        assert isinstance(options, S3ObjectOptions)
        self._settings = options
        self._shared: ItemBuilder | None = None
        self._fed_events: dict[str, bool] = {}  # event name → one of ``events``? (few names)
        # The default filter takes every object: not asked per object.
        self._filters = options.filter != ObjectFilter()

    @property
    def settings(self) -> S3ObjectOptions:
        return self._settings

    @property
    def groups(self) -> bool:
        return self.settings.item.group_by is not None

    def map(self, envelope: Envelope) -> Iterable[Mapped]:
        if self.settings.item.group_by is not None:
            return self.map_message([envelope])
        # One object, no group to hold open: what `map_message` yields, as a list.
        picked = self._pick(envelope)
        return self._builder().push(picked) if isinstance(picked, S3Object) else [picked]

    def map_message(self, envelopes: Sequence[Envelope]) -> Iterator[Mapped]:
        objects: list[S3Object] = []
        for envelope in envelopes:
            picked = self._pick(envelope)
            if isinstance(picked, S3Object):
                objects.append(picked)
            else:
                yield picked
        builder = self._builder()
        # Groups are consecutive runs of keys, so siblings must come sorted.
        if self.settings.item.group_by is not None:
            objects.sort(key=lambda obj: obj.key)
        for obj in objects:
            yield from builder.push(obj)
        yield from builder.finish()

    def _builder(self) -> ItemBuilder:
        """Without grouping a builder keeps no state between objects: one (its templates
        parsed once) serves every message, from any thread. A grouping one holds the open
        group, so each message gets its own."""
        if self.settings.item.group_by is not None:
            return ItemBuilder(self.settings.item, self.settings.filter.key_regex)
        if self._shared is None:
            self._shared = ItemBuilder(self.settings.item, self.settings.filter.key_regex)
        return self._shared

    def _pick(self, envelope: Envelope) -> S3Object | Skip | SourceRejection:
        event = envelope.body
        if envelope.kind != "s3-object" or not isinstance(event, NotifiedObject):
            return SourceRejection(envelope.raw, f"s3-object: a {envelope.kind} event")
        if not self._fed(event.event_name):
            return Skip(
                f"s3://{event.bucket}/{event.key}: event {event.event_name!r} is not one of the "
                "events fed",
                "event",
            )
        if event.key.endswith("/"):
            return Skip(
                f"s3://{event.bucket}/{event.key}: a folder marker, not a file", "folder-marker"
            )
        obj = S3Object(
            event.bucket,
            event.key,
            event.size,
            _parse_time(event.event_time),
            event.etag,
            None,
            event.version_id,
        )
        if self._filters and not self._settings.filter.matches(obj):
            return Skip(
                f"s3://{event.bucket}/{event.key}: not selected by the object filter",
                "object-filter",
            )
        return obj

    def _fed(self, event_name: str) -> bool:
        fed = self._fed_events.get(event_name)
        if fed is None:
            fed = any(fnmatchcase(event_name, p) for p in self._settings.events)
            if len(self._fed_events) < _EVENT_NAMES:
                self._fed_events[event_name] = fed
        return fed


_EVENT_NAMES = 256  # names remembered; S3 has a few dozen


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
