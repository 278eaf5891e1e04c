"""Mappers: one message envelope → zero or more STAC items, for the ``events`` feeder.

A mapper is a class with a pydantic ``Options`` model (its settings, validated at config
load) and ``map(envelope)``, which yields item dicts, `Skip` markers (a message or item
deliberately left out, e.g. by a tier or baseline filter: counted as *filtered*) and
`SourceRejection`s (a record that cannot become an item; kept with its reason). A malformed
message is signalled by raising `InvalidRecordError`: the feeder turns any exception into a
retryable rejection, so the message goes to the dead-letter queue instead of being acked.

``map_message(envelopes)`` sees every envelope of one message at once (default: `map` on
each); the feeder calls it instead of `map` when ``groups`` is true (the ``s3-object``
mapper with ``group_by``, joining sibling files of one notification).

`MapperRule`s (``when`` → ``mapper`` + ``options``) pick a mapper per envelope by SNS topic
ARN glob, envelope kind, fields the message has, or attribute values.

Mappers are found through the entry-point group ``cirrus_feed.mappers`` (built-ins register
there too, so there is one code path: `cirrus_feed.support.registry`); entry points are
listed without being imported, so a broken plugin fails only when a feeder uses it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cirrus_feed.errors import ConfigError, PluginError
from cirrus_feed.feeding.contract import SourceRejection
from cirrus_feed.model.envelopes import Envelope, EnvelopeKind
from cirrus_feed.support.registry import EntryPointRegistry

GROUP = "cirrus_feed.mappers"


@dataclass(frozen=True, slots=True)
class Skip:
    """A message or item left out on purpose (the feeder counts it as filtered, by ``kind``:
    ``tier``, ``baseline``, ``folder-marker``, ...)."""

    reason: str
    kind: str = "mapper"


Mapped = dict[str, Any] | Skip | SourceRejection


def sns_notification(envelope: Envelope) -> Mapping[str, Any]:
    """The SNS notification an envelope came in (``TopicArn``, ``MessageId``, ...), or ``{}``
    (raw delivery, S3 → SQS, EventBridge, direct)."""
    raw = envelope.raw
    if envelope.source == "sns" and isinstance(raw, Mapping):
        sns = raw.get("Sns")
        return sns if isinstance(sns, Mapping) else {}
    if envelope.source == "sns-sqs" and isinstance(raw, Mapping):
        try:
            body = json.loads(raw["body"])
        except (KeyError, TypeError, ValueError):
            return {}
        return body if isinstance(body, Mapping) else {}
    return {}


def topic_name(topic_arn: str | None) -> str | None:
    """``arn:aws:sns:eu-west-1:214830741341:NewSentinel2Product`` → ``NewSentinel2Product``."""
    return topic_arn.rsplit(":", 1)[-1] if topic_arn else None


class MapperOptions(BaseModel):
    """Base of every mapper's ``Options``: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Mapper(ABC):
    """Base class of every mapper plugin (entry-point group ``cirrus_feed.mappers``)."""

    name: ClassVar[str]
    Options: ClassVar[type[MapperOptions]] = MapperOptions

    def __init__(self, options: MapperOptions) -> None:
        self.options = options

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | None) -> Mapper:
        """An instance with ``options`` validated by ``Options``.

        Raises:
            ConfigError: naming the mapper and the bad option.
        """
        try:
            return cls(cls.Options.model_validate(dict(options or {})))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'options'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigError(f"mapper '{cls.name}': {problems}") from exc

    @property
    def groups(self) -> bool:
        """True when items may span envelopes: the feeder then calls `map_message`."""
        return False

    @abstractmethod
    def map(self, envelope: Envelope) -> Iterable[Mapped]:
        """The items of one envelope. Raise `InvalidRecordError` for a malformed message."""

    def map_message(self, envelopes: Sequence[Envelope]) -> Iterator[Mapped]:
        """The items of every envelope of one message, in order."""
        for envelope in envelopes:
            yield from self.map(envelope)


class MapperRegistry(EntryPointRegistry[Mapper]):
    """Installed mapper types; entry points are injectable for tests."""

    def __init__(self, points: Mapping[str, EntryPoint] | None = None) -> None:
        super().__init__(GROUP, Mapper, "mapper", points)

    def build(self, name: str, options: Mapping[str, Any] | None = None) -> Mapper:
        """A configured instance of mapper ``name``; `ConfigError` for any problem."""
        try:
            cls = self.load(name)
        except PluginError as exc:
            raise ConfigError(str(exc)) from exc
        return cls.from_config(options)


# -- rules: which mapper takes an envelope ---------------------------------------------------


class When(BaseModel):
    """A mapper rule's condition; every given field must match."""

    model_config = ConfigDict(extra="forbid")

    topic_arn: list[str] | None = None  # fnmatch globs on the SNS TopicArn
    kind: list[EnvelopeKind] | None = None  # "payload", "s3-object"
    has: list[str] | None = None  # dotted paths the decoded message must have
    attributes: dict[str, str] | None = None  # message attributes with these values

    @field_validator("topic_arn", "kind", "has", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(self, envelope: Envelope, topic_arn: str | None) -> bool:
        if self.kind is not None and envelope.kind not in self.kind:
            return False
        if self.topic_arn is not None and not (
            topic_arn and any(fnmatchcase(topic_arn, p) for p in self.topic_arn)
        ):
            return False
        if self.attributes is not None and any(
            envelope.attributes.get(k) != v for k, v in self.attributes.items()
        ):
            return False
        return self.has is None or all(_has(envelope.body, path) for path in self.has)


def _has(body: Any, path: str) -> bool:
    for name in path.split("."):
        if not isinstance(body, Mapping) or name not in body:
            return False
        body = body[name]
    return True


class MapperRule(BaseModel):
    """``{when: {...}, mapper: name, options: {...}}`` in an ``events`` feeder's ``mappers``."""

    model_config = ConfigDict(extra="forbid")

    when: When
    mapper: str
    options: dict[str, Any] = Field(default_factory=dict)
