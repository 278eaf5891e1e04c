"""The ``events`` feeder's seen-message cache, asked once per batch of messages.

`Opened` is one message normalised; `screen` asks the cache (`FeederContext.seen`) about
every record key of a batch in one call (``sns:<MessageId>``; ``s3:<bucket>/<key>#<marker>``
per S3 record, `seen_key`) and leaves out, on a first delivery, each record the cache
already held or an earlier message of the same batch named: the answer a call per message,
in order, would give. A redelivered message (receive count > 1) keeps all its records (see
`feeders.events.feeder`), but its keys still count as named for the messages after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cirrus_feed.feeding.contract import SeenCache
from cirrus_feed.model.envelopes import Envelope, NotifiedObject, normalize
from feeders.events.mappers import sns_notification
from feeders.events.sources import Message


@dataclass(slots=True)
class Opened:
    """One message normalised: the envelopes to map (`screen` drops the seen ones), how
    many test events it held, and the seen keys of the records left out."""

    message: Message
    envelopes: list[Envelope]
    ignored: int = 0
    already: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, message: Message) -> Opened:
        if message.error is not None:
            return cls(message, [])
        envelopes = normalize(message.event)
        kept = [envelope for envelope in envelopes if envelope.kind != "ignored"]
        return cls(message, kept, len(envelopes) - len(kept))


def screen(
    entries: Sequence[Opened], seen: SeenCache, ttl_seconds: int
) -> tuple[dict[str, list[str]], int]:
    """Drop from ``entries`` the records already handled, in one ``seen.remember`` call.

    Returns the keys each first-delivered message made the cache remember (by tag: to
    forget again if it fails) and how many records were left out.
    """
    keyed = [(entry, [seen_key(envelope) for envelope in entry.envelopes]) for entry in entries]
    wanted = sorted({key for _, keys in keyed for key in keys if key is not None})
    if not wanted:
        return {}, 0
    known = seen.remember(wanted, ttl_seconds)
    remembered: dict[str, list[str]] = {}
    left_out = 0
    for entry, keys in keyed:
        own = sorted({key for key in keys if key is not None})
        if not own:
            continue
        before = {key for key in own if key in known}
        known.update(own)  # later messages see these as already handled
        message = entry.message
        if message.receive_count is not None and message.receive_count > 1:
            continue  # a retry of ours: handled whole
        remembered[message.tag] = [key for key in own if key not in before]
        if before:
            fresh = [e for e, key in zip(entry.envelopes, keys, strict=True) if key not in before]
            left_out += len(entry.envelopes) - len(fresh)
            entry.envelopes = fresh
            entry.already = [key for key in keys if key in before]
    return remembered, left_out


def seen_key(envelope: Envelope) -> str | None:
    """The seen-cache key of one record: its S3 object version, or its SNS MessageId."""
    body = envelope.body
    if envelope.kind == "s3-object" and isinstance(body, NotifiedObject):
        marker = body.sequencer or body.version_id or body.etag
        return f"s3:{body.bucket}/{body.key}#{marker}" if marker else None
    if envelope.kind != "payload":
        return None
    if envelope.source == "sns":
        return f"sns:{envelope.message_id}" if envelope.message_id else None
    if envelope.source == "sns-sqs":
        message_id = sns_notification(envelope).get("MessageId")
        return f"sns:{message_id}" if isinstance(message_id, str) else None
    return None
