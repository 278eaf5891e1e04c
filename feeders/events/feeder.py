"""The ``events`` feeder: SNS/SQS/S3/EventBridge messages → items → payloads.

Each message from the source (`feeders.events.sources`: an SQS queue, an NDJSON file, a
caller's list) goes through the core normaliser (`cirrus_feed.model.envelopes.normalize`: every
record, S3 keys decoded, ``s3:TestEvent`` ignored), then a mapper (`feeders.events.mappers`)
chosen per envelope: the first of ``mappers`` whose ``when`` matches (topic ARN glob,
envelope kind, fields the message has, attribute values), else ``mapper``. Every item the
mapper yields that passes ``filter`` (`feeders.events.filter`) becomes one payload with
this feeder's ``process`` block, tagged with its message's tag.

Outcomes per message: a message that is not JSON, or whose mapper raised, is one
retryable `SourceRejection` (its reason is recorded and it stays on the queue, so the
redrive policy moves it to the dead-letter queue) while its batch-mates are acked; a
record no mapper takes is rejected without retry; mapper `Skip`s and items the filter
drops are counted in `EventsFeeder.filtered` and yielded as `Skipped` (kind and reason, with
the message's tag), which the runner counts and logs; so are records the seen cache
suppresses (kind ``seen-cache``) and test events (kind ``ignored``). After each batch a
`Checkpoint` (no cursor) settles it: the runner's ``commit`` acks every message but the
failed ones.

Idempotency: the seen cache (`FeederContext.seen`, the feeder's slice of the feed store) is asked
about the keys of a whole batch at once (``sns:<MessageId>``; ``s3:<bucket>/<key>#<sequencer>``
per S3 record; `feeders.events.screening`) before its items are yielded, or about one message
at a time when a ``limit`` may leave the rest unread. On a first delivery the records already
seen, by the cache or by an earlier message of the batch, are dropped
(`EventsFeeder.duplicates`). A *redelivered* SQS message (receive count > 1) is
handled whole anyway: the earlier attempt may have failed after remembering it, and losing
it would be worse than a duplicate, which the runner's state dedupe and Cirrus's process
claim absorb. Dry runs never touch the cache.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Feeder,
    FeederConfig,
    FeederContext,
    FeedItem,
    FeedRequest,
    Skipped,
    SourceRejection,
    Tagged,
)
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.prepared import PayloadTemplate
from cirrus_feed.support.durations import IntSeconds
from feeders.events.filter import MessageFilter
from feeders.events.mappers import (
    Mapped,
    Mapper,
    MapperRegistry,
    MapperRule,
    Skip,
    When,
    sns_notification,
)
from feeders.events.screening import Opened, screen
from feeders.events.sources import (
    FileMessageSource,
    ListMessageSource,
    MessageBatch,
    MessageSource,
    SqsMessageSource,
    SqsSettings,
)

DEFAULT_SEEN_TTL = 24 * 3600
_UNMAPPABLE = frozenset({"ignored", "error", "execution"})  # envelope kinds no mapper takes
# Messages of a file or a pushed list settled (and looked up in the seen cache) together:
# nothing to ack remotely, so a batch as big as a few runner flushes, not SQS's 10.
FILE_BATCH = 500


class EventSourceSettings(BaseModel):
    """Exactly one of ``file`` (a path or ``-``) and ``sqs``."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = None
    sqs: SqsSettings | None = None

    @model_validator(mode="after")
    def _one(self) -> EventSourceSettings:
        if (self.file is None) == (self.sqs is None):
            raise ValueError("source needs exactly one of 'file' and 'sqs'")
        return self


class EventsConfig(FeederConfig):
    """Settings of an ``events`` feeder (see the module docstring)."""

    source: EventSourceSettings | None = None  # None: only with_source / pushed messages
    mapper: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # the options of ``mapper``
    mappers: list[MapperRule] = Field(default_factory=list)
    filter: str | None = None
    seen_ttl_seconds: IntSeconds = Field(DEFAULT_SEEN_TTL, ge=1)  # or "24h", "7d"

    @model_validator(mode="after")
    def _mappers_load(self) -> EventsConfig:
        if self.mapper is None and not self.mappers:
            raise ValueError("set 'mapper' or 'mappers'")
        try:
            _build_mappers(self, MapperRegistry())
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self

    @field_validator("filter")
    @classmethod
    def _filter_parses(cls, text: str | None) -> str | None:
        try:
            return text if text is None else MessageFilter.parse(text).text
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc


def _build_mappers(
    config: EventsConfig, registry: MapperRegistry
) -> tuple[Mapper | None, list[tuple[When, Mapper]]]:
    default = registry.build(config.mapper, config.options) if config.mapper else None
    rules = [(rule.when, registry.build(rule.mapper, rule.options)) for rule in config.mappers]
    return default, rules


@dataclass
class _Budget:
    """``request.limit``: payloads this run may still yield (None: no limit).

    A message is the unit of acking, so the message that reaches the limit is fed whole:
    acked, nothing of it is sent twice; the run may overshoot the limit by the rest of
    that one message.
    """

    left: int | None

    @property
    def exhausted(self) -> bool:
        return self.left is not None and self.left <= 0

    def take(self, outputs: list[FeedItem]) -> list[FeedItem]:
        if self.left is not None:
            self.left -= sum(isinstance(output, Tagged) for output in outputs)
        return outputs


class EventsFeeder(Feeder[EventsConfig]):
    """Feeds the items mapped from messages (see the module docstring).

    The seen-message cache is the context's ``seen`` (None disables it); `with_source`
    makes a copy that reads other messages than ``config.source``.
    """

    name: ClassVar[str] = "events"
    description: ClassVar[str] = "SNS/SQS/S3 event messages mapped to items"

    def __init__(self, instance: str, config: EventsConfig, context: FeederContext) -> None:
        super().__init__(instance, config, context)
        self.seen = context.seen
        # Keys this run recorded in the seen cache, by message tag: a message that fails is
        # forgotten again, so its redelivery (an SNS or Lambda retry) is handled.
        self._remembered: dict[str, list[str]] = {}
        self._source: MessageSource | None = None
        self._default, self._rules = _build_mappers(config, self.mapper_registry())
        # Only ``mapper``, not grouping: `_map` maps envelope by envelope, as `_groups` would.
        single = not self._rules and self._default is not None and not self._default.groups
        self._single = self._default if single else None
        self._wants_topic = any(when.topic_arn is not None for when, _ in self._rules)
        self._filter = MessageFilter.parse(config.filter) if config.filter else None
        self.filtered = 0  # items dropped by a mapper's Skip or by ``filter``
        self.duplicates = 0  # records suppressed by the seen cache

    def mapper_registry(self) -> MapperRegistry:
        """Where mapper types are looked up; a subclass may use another registry."""
        return MapperRegistry()

    def with_source(self, source: MessageSource | str | Path) -> EventsFeeder:
        """A copy reading ``source`` (a `MessageSource`, or an NDJSON path / ``-``)."""
        feeder = copy.copy(self)
        feeder._source = (
            FileMessageSource(source, batch_size=FILE_BATCH, limits=self.context.input_limits)
            if isinstance(source, str | Path)
            else source
        )
        feeder.filtered = feeder.duplicates = 0
        feeder._remembered = {}
        return feeder

    def from_file(self, path: str | Path) -> EventsFeeder:
        """`PushTarget`: a copy reading messages from ``path`` (``-``: stdin)."""
        return self.with_source(path)

    def pushed(self, events: Iterable[Any]) -> PushedEvents:
        """`PushTarget`: a one-off feed over pushed ``events``."""
        source = ListMessageSource(events, batch_size=FILE_BATCH)  # nothing to ack remotely
        return PushedEvents(self.with_source(source), source)

    def open_source(self) -> MessageSource:
        if self._source is not None:
            return self._source
        settings = self.config.source
        if settings is None:
            raise ConfigError(f"feeder '{self.instance}': no 'source' (give it messages)")
        if settings.file is not None:
            return FileMessageSource(
                settings.file, batch_size=FILE_BATCH, limits=self.context.input_limits
            )
        assert settings.sqs is not None  # one of the two, by validation
        client = self.context.clients(
            "sqs", region=settings.sqs.region_name(), endpoint_url=settings.sqs.endpoint_url
        )
        return SqsMessageSource(settings.sqs, client=client)

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        source = self.open_source()
        budget = _Budget(request.limit)
        template = PayloadTemplate(self.config.process_template())
        try:
            for number, batch in enumerate(source.batches(lambda: budget.left), start=1):
                unfinished: set[str] = set()
                opened = [Opened.of(message) for message in batch.messages]
                if budget.left is None:  # every message is handled: one cache call for all
                    self._screen(opened, request)
                for entry in opened:
                    if budget.exhausted:
                        unfinished.add(entry.message.tag)
                        continue
                    if budget.left is not None:  # a limit may leave the rest unread
                        self._screen([entry], request)
                    yield from budget.take(self._handle(entry, template))
                label = f"batch {number}: {len(batch.messages)} messages"
                yield Checkpoint(label=label, commit=self._settler(batch, frozenset(unfinished)))
                if budget.exhausted:
                    return
        finally:
            source.close()

    # -- one message ------------------------------------------------------------------------

    def _handle(self, entry: Opened, template: PayloadTemplate) -> list[FeedItem]:
        message = entry.message
        if message.error is not None:
            return [SourceRejection(message.event, message.error, message.tag, retry=True)]
        outputs: list[FeedItem] = []
        for _ in range(entry.ignored):  # s3:TestEvent and the like: counted, not mapped
            outputs.append(Skipped(f"message {message.tag}: a test event", "ignored", message.tag))
        for key in entry.already:
            reason = f"message {message.tag}: record {key} already handled (seen cache)"
            outputs.append(Skipped(reason, "seen-cache", message.tag))
        done = len(outputs)
        try:
            self._map(entry.envelopes, message.tag, template, outputs)
        except Exception as exc:  # noqa: BLE001 - a plugin mapper's bug must not sink the batch
            reason = f"message {message.tag}: mapper failed: {type(exc).__name__}: {exc}"
            del outputs[done:]  # none of the message's items: it is retried whole
            outputs.append(SourceRejection(message.event, reason, message.tag, retry=True))
        return outputs

    def forget_unsettled(self) -> None:
        """Forget the seen keys of every message not settled yet (the run failed before its
        checkpoint), so a retry of those messages is handled, not suppressed."""
        keys = [key for remembered in self._remembered.values() for key in remembered]
        self._remembered.clear()
        if keys and self.seen is not None:
            self.seen.forget(keys)

    def _settler(
        self, batch: MessageBatch, unfinished: frozenset[str]
    ) -> Callable[[frozenset[str]], None]:
        """The batch's `Checkpoint.commit`: forget the seen keys of failed or unfinished
        messages, then ack all the others."""

        def commit(failed: frozenset[str]) -> None:
            retry = [
                key
                for message in batch.messages
                if message.tag in failed or message.tag in unfinished
                for key in self._remembered.get(message.tag, [])
            ]
            if retry and self.seen is not None:
                self.seen.forget(retry)
            for message in batch.messages:
                self._remembered.pop(message.tag, None)
            batch.settle(failed, unfinished)

        return commit

    def _screen(self, entries: list[Opened], request: FeedRequest) -> None:
        """Leave out of ``entries`` what the seen cache already knows (one cache call)."""
        if self.seen is None or request.dry_run:
            return
        remembered, left_out = screen(entries, self.seen, self.config.seen_ttl_seconds)
        self._remembered.update(remembered)
        self.duplicates += left_out

    def _map(
        self, envelopes: list[Envelope], tag: str, template: PayloadTemplate, out: list[FeedItem]
    ) -> None:
        """Append what ``envelopes`` (one message's) map to onto ``out``."""
        topic = self._topic(envelopes)
        if self._single is not None:  # one mapper, one envelope at a time: no grouping
            for envelope in envelopes:
                if envelope.kind in _UNMAPPABLE:
                    if envelope.kind != "ignored":
                        out.append(self._unmapped(envelope, tag, topic))
                else:
                    self._outputs(self._single.map(envelope), envelope, tag, template, out)
            return
        for group, mapper in self._groups(envelopes, topic):
            if mapper is None:
                out.append(self._unmapped(group[0], tag, topic))
                continue
            # A grouping mapper's items may span records: the filter sees the first one's.
            if mapper.groups:
                self._outputs(mapper.map_message(group), group[0], tag, template, out)
            else:
                for envelope in group:
                    self._outputs(mapper.map(envelope), envelope, tag, template, out)

    def _outputs(
        self,
        outputs: Iterable[Mapped],
        envelope: Envelope,
        tag: str,
        template: PayloadTemplate,
        out: list[FeedItem],
    ) -> None:
        keeps = self._filter.keeps if self._filter is not None else None
        for output in outputs:
            if keeps is None and type(output) is dict:  # the common case first
                out.append(Tagged(template.build([output]), tag))
            elif isinstance(output, Skip):
                self.filtered += 1
                out.append(Skipped(output.reason, output.kind, tag))
            elif isinstance(output, SourceRejection):
                out.append(replace(output, tag=tag))
            elif keeps is None or keeps(envelope, output):
                out.append(Tagged(template.build([output]), tag))
            else:
                self.filtered += 1
                reason = f"item {output.get('id')!r}: dropped by the filter"
                out.append(Skipped(reason, "filter", tag))

    def _groups(
        self, envelopes: list[Envelope], topic: str | None
    ) -> Iterator[tuple[list[Envelope], Mapper | None]]:
        """Runs of consecutive mappable envelopes sharing a mapper; errors as rejections."""
        group: list[Envelope] = []
        current: Mapper | None = None
        for envelope in envelopes:
            if envelope.kind in _UNMAPPABLE:
                if group:
                    yield group, current
                    group = []
                if envelope.kind != "ignored":
                    yield [envelope], None
                continue
            mapper = self._mapper_for(envelope, topic)
            if group and (mapper is not current or mapper is None):
                yield group, current
                group = []
            group.append(envelope)
            current = mapper
        if group:
            yield group, current

    def _mapper_for(self, envelope: Envelope, topic: str | None) -> Mapper | None:
        for when, mapper in self._rules:
            if when.matches(envelope, topic):
                return mapper
        return self._default

    def _topic(self, envelopes: Sequence[Envelope]) -> str | None:
        if not (self._wants_topic and envelopes):
            return None
        arn = sns_notification(envelopes[0]).get("TopicArn")
        return arn if isinstance(arn, str) else None

    @staticmethod
    def _unmapped(envelope: Envelope, tag: str, topic: str | None) -> SourceRejection:
        if envelope.kind == "error":
            return SourceRejection(envelope.raw, str(envelope.error), tag, retry=True)
        where = f"source {envelope.source}, kind {envelope.kind}, topic {topic or 'none'}"
        return SourceRejection(envelope.raw, f"message {tag}: no mapper takes it ({where})", tag)


@dataclass(frozen=True)
class PushedEvents:
    """`cirrus_feed.feeding.push.PushedFeed` of the events feeder."""

    feeder: EventsFeeder
    source: ListMessageSource

    def failed(self) -> frozenset[str]:
        return frozenset(self.source.failed | self.source.unfinished)

    def close(self) -> None:
        self.feeder.forget_unsettled()
