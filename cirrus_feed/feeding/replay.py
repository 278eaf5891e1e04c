"""Feeding what no configured source yields: dead letters and reconcile fixes.

Both go through `FeedRunner` like any feed (dedupe, pacing, enqueue, a run record) under a
reserved name: `DLQ_REPLAY` for dead letters, ``reconcile:<feeder>`` for fixes.

`DeadLetterFeeder` leases dead letters batch by batch and yields each one's original body,
tagged with its message id; the checkpoint after a batch deletes the letters whose payloads
were queued (or deliberately skipped: already done, or kept in the invalid store with the
reason) and releases the ones that failed, which stay in the dead-letter queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import closing
from typing import Any, ClassVar

from pydantic import Field

from cirrus_feed.backends.base import DeadLetter, DeadLetterQueue
from cirrus_feed.errors import FeederError, ForbiddenUrlError, InvalidRecordError
from cirrus_feed.errors import PayloadNotFoundError as NotFoundError
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Feeder,
    FeederConfig,
    FeederContext,
    FeedItem,
    FeedRequest,
    SourceRejection,
    Tagged,
)
from cirrus_feed.feeding.runner import FeedResult, FeedRunner, Pipeline
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.payload import ProcessDefinition, ProcessPayload

DLQ_REPLAY = "dlq-replay"  # the feed name dead-letter replays are recorded under


class ReplayConfig(FeederConfig):
    """Pacing of a replay; nothing is templated (payloads keep their own ``process``)."""

    type: str = DLQ_REPLAY
    process: list[ProcessDefinition | list[ProcessDefinition]] = Field(default_factory=list)


def _no_clients(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    raise FeederError(f"a replay reads no AWS source of its own (asked for {service})")


def replay_context(app: Pipeline) -> FeederContext:
    """The context of a replay feeder: the app's state, store and clock."""
    backends = app.backends
    return FeederContext(
        state=backends.state, store=backends.store, clients=_no_clients, clock=app.clock
    )


class IterableFeeder(Feeder[ReplayConfig]):
    """Yields the items it was given, once (reconcile ``--fix``)."""

    name: ClassVar[str] = "replay"
    description: ClassVar[str] = "payloads handed over by a command"

    def __init__(
        self, instance: str, config: ReplayConfig, context: FeederContext, items: Iterable[FeedItem]
    ) -> None:
        super().__init__(instance, config, context)
        self._items = items

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        yield from self._items


class DeadLetterFeeder(Feeder[ReplayConfig]):
    """Yields dead letters' bodies; acks (deletes) them per batch once they are handled."""

    name: ClassVar[str] = DLQ_REPLAY
    description: ClassVar[str] = "the process queue's dead letters, sent again"

    def __init__(
        self,
        instance: str,
        config: ReplayConfig,
        context: FeederContext,
        letters: DeadLetterQueue,
        message_ids: Collection[str] | None = None,
        *,
        lease_seconds: int = 900,
    ) -> None:
        super().__init__(instance, config, context)
        self.letters = letters
        self.message_ids = message_ids
        self.lease_seconds = lease_seconds
        self.deleted: list[str] = []  # message ids removed from the dead-letter queue
        self.kept: list[str] = []  # message ids left there (their payload failed again)

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        batches = self.letters.lease(self.message_ids, lease_seconds=self.lease_seconds)
        with closing(batches):
            for batch in batches:
                for letter in batch:
                    yield from self._items(letter)
                yield Checkpoint(label=f"{len(batch)} dead letters", commit=self._committer(batch))

    def _committer(self, batch: list[DeadLetter]) -> Callable[[frozenset[str]], None]:
        return lambda failed: self._commit(batch, failed)

    def _commit(self, batch: list[DeadLetter], failed: frozenset[str]) -> None:
        done = [letter for letter in batch if letter.message_id not in failed]
        again = [letter for letter in batch if letter.message_id in failed]
        self.letters.delete(done)
        self.letters.release(again)
        self.deleted += [letter.message_id for letter in done]
        self.kept += [letter.message_id for letter in again]

    def _items(self, letter: DeadLetter) -> Iterator[FeedItem]:
        tag = letter.message_id
        where = f"dead letter {tag}"
        try:
            document = json.loads(letter.body)
        except ValueError as exc:
            yield SourceRejection(letter.body, f"{where}: body is not JSON ({exc})", tag=tag)
            return
        for envelope in normalize(document):
            if envelope.kind == "error":
                yield SourceRejection(letter.body, f"{where}: {envelope.error}", tag=tag)
            elif envelope.kind != "payload":
                reason = f"{where}: a {envelope.kind} record is not a process payload"
                yield SourceRejection(letter.body, reason, tag=tag)
            else:
                yield self._payload(envelope.body, letter)

    def _payload(self, body: Any, letter: DeadLetter) -> FeedItem:
        """The body as a payload, following a ``{"url"}`` pointer as `process` would."""
        if isinstance(body, dict) and set(body) == {"url"}:
            try:
                body = self.context.store.get_json(str(body["url"]))
            except (NotFoundError, ForbiddenUrlError, InvalidRecordError) as exc:
                # Kept in the dead-letter queue too: the pointer may be fixed and replayed.
                reason = f"dead letter {letter.message_id}: {exc}"
                return SourceRejection(letter.body, reason, tag=letter.message_id, retry=True)
        return Tagged(body, tag=letter.message_id)


def letter_payload_id(body: str) -> str | None:
    """The payload id a dead letter's body names, when that needs no IO (a ``{"url"}``
    pointer or an unreadable body gives None)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    for envelope in normalize(document):
        if envelope.kind == "payload" and isinstance(envelope.body, dict):
            explicit = envelope.body.get("id")
            if isinstance(explicit, str) and explicit:
                return explicit
            try:
                return ProcessPayload.from_dict(envelope.body).id
            except ValueError:  # PayloadValidationError is one
                return None
    return None


def replay_dead_letters(
    app: Pipeline,
    letters: DeadLetterQueue,
    message_ids: Collection[str] | None = None,
    *,
    config: ReplayConfig | None = None,
    runner: FeedRunner | None = None,
) -> tuple[FeedResult, DeadLetterFeeder]:
    """Send dead letters (all, or ``message_ids``) again as the feed `DLQ_REPLAY`; returns
    the run and the feeder, whose ``deleted``/``kept`` say what became of each letter."""
    feeder = DeadLetterFeeder(
        DLQ_REPLAY, config or ReplayConfig(), replay_context(app), letters, message_ids
    )
    result = (runner or FeedRunner(app)).run(DLQ_REPLAY, feeder, FeedRequest())
    return result, feeder


__all__ = [
    "DLQ_REPLAY",
    "DeadLetterFeeder",
    "IterableFeeder",
    "ReplayConfig",
    "letter_payload_id",
    "replay_context",
    "replay_dead_letters",
]
