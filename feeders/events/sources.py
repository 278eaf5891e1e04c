"""Where the ``events`` feeder's messages come from: SQS, an NDJSON file, or a caller's list.

A source hands out `MessageBatch`es of raw `Message`s (anything `envelopes.normalize`
reads: an SQS record, an SNS record or notification, an S3 event, an EventBridge event).
The feeder settles each batch once the runner has handled everything it yielded for it:
``settle(failed, unfinished)`` acks every other message. On SQS that deletes them; failed
messages stay for the queue's redrive policy (and end in its dead-letter queue), unfinished
ones (a run limit was reached) are made visible again at once.

* `SqsMessageSource`: long polling, up to 10 messages a receive, a bounded drain (stops on
  an empty receive or after ``max_messages_per_run``). While a batch is in hand a
  background thread extends its visibility every half ``visibility_timeout``, so a slow
  batch is never delivered twice; a crash or a stop before ``settle`` loses nothing: the
  messages reappear when their visibility runs out.
* `FileMessageSource`: NDJSON, documents or arrays of events (``-`` is stdin), for
  replaying real message shapes on the local backend.
* `ListMessageSource`: events given by a caller (a Lambda handler, the SNS endpoint); it
  records which tags failed (``failed``), for ``batchItemFailures``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from cirrus_feed.errors import SourceUnavailableError
from cirrus_feed.support.aws_errors import translate
from cirrus_feed.support.batching import chunks
from cirrus_feed.support.json_decode import DEFAULT_LIMITS, RecordLimits
from cirrus_feed.support.json_records import Rejection, read_records

log = logging.getLogger(__name__)

SQS_BATCH = 10  # ReceiveMessage / DeleteMessageBatch / ChangeMessageVisibilityBatch maximum


@dataclass(frozen=True, slots=True)
class Message:
    """One message as received. ``tag`` names it in commits and rejections."""

    event: Any  # what `normalize` reads
    tag: str
    receive_count: int | None = None  # SQS ApproximateReceiveCount (None: not known)
    error: str | None = None  # the message could not even be read (not JSON)


class MessageBatch(Protocol):
    """Messages received together, settled together."""

    @property
    def messages(self) -> list[Message]: ...

    def settle(self, failed: frozenset[str], unfinished: frozenset[str]) -> None:
        """Ack every message whose tag is in neither set; release ``unfinished`` ones."""
        ...


Budget = Callable[[], int | None]  # payloads the feeder may still yield (None: no limit)


class MessageSource(Protocol):
    def batches(self, budget: Budget | None = None) -> Iterator[MessageBatch]:
        """Batches in order, lazily received; a source that receives (SQS) takes no more
        messages than ``budget()`` allows, so few are left unfinished at a run limit."""
        ...

    def close(self) -> None:
        """Stop background work; idempotent."""
        ...


@dataclass
class _RecordedBatch:
    """A batch with nothing to ack remotely: outcomes go to its source's sets."""

    messages: list[Message]
    source: _Recording

    def settle(self, failed: frozenset[str], unfinished: frozenset[str]) -> None:
        tags = {message.tag for message in self.messages}
        self.source.failed |= tags & failed
        self.source.unfinished |= tags & unfinished
        self.source.acked |= tags - failed - unfinished


@dataclass
class _Recording:
    failed: set[str] = field(default_factory=set)
    unfinished: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)


# -- push: a caller's list ------------------------------------------------------------------


class ListMessageSource(_Recording):
    """Events handed over by a caller. Lambda-style ``{"Records": [...]}`` events of SQS or
    SNS records are split, one message per record (tagged with its message id); any other
    event is one message. After the run, ``failed`` holds the tags to report as failures."""

    def __init__(self, events: Iterable[Any], *, batch_size: int = SQS_BATCH) -> None:
        super().__init__()
        self._messages = _split(events)
        self._batch_size = batch_size

    def batches(self, budget: Budget | None = None) -> Iterator[MessageBatch]:
        messages = iter(self._messages)
        while batch := list(islice(messages, self._batch_size)):
            yield _RecordedBatch(batch, self)

    def close(self) -> None:
        """Nothing to release."""


def _split(events: Iterable[Any]) -> list[Message]:
    return [m for index, event in enumerate(events) for m in messages_of(event, str(index))]


def messages_of(event: Any, tag: str) -> list[Message]:
    """``event`` as messages: one per record of a Lambda-style batch of SQS or SNS records
    (tagged with its message id), else the event itself, tagged ``tag``. One poison record
    then fails only itself, as it would on the queue."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not (isinstance(records, list) and records and all(map(_is_message_record, records))):
        return [Message(event, tag)]
    return [
        Message(record, _record_tag(record, f"{tag}.{number}"), _receive_count(record))
        for number, record in enumerate(records)
    ]


def _is_message_record(record: Any) -> bool:
    return isinstance(record, Mapping) and ("body" in record or "Sns" in record)


def _receive_count(record: Mapping[str, Any]) -> int | None:
    """An SQS → Lambda record's ``attributes.ApproximateReceiveCount``."""
    attributes = record.get("attributes")
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    return int(count) if isinstance(count, str) and count.isdigit() else None


def _record_tag(record: Mapping[str, Any], default: str) -> str:
    if isinstance(record.get("messageId"), str):
        return str(record["messageId"])
    sns = record.get("Sns")
    if isinstance(sns, Mapping) and isinstance(sns.get("MessageId"), str):
        return str(sns["MessageId"])
    return default


# -- NDJSON file or stdin -------------------------------------------------------------------


class FileMessageSource(_Recording):
    """Events read by `cirrus_feed.support.json_records` (NDJSON, pretty-printed documents,
    arrays: the shapes ``payload id`` reads); ``"-"`` reads stdin. Tags are ``<file>:<line>``
    (``[index]`` for an element of an array; Lambda-style batches are split as by
    `messages_of`); a record that cannot be read becomes a message with an ``error``, its
    event what the invalid store keeps of it (an excerpt, the line and the size)."""

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = SQS_BATCH,
        stdin: IO[bytes] | None = None,
        limits: RecordLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self.path = str(path)
        self._batch_size = batch_size
        self._stdin = stdin
        self._limits = limits

    def batches(self, budget: Budget | None = None) -> Iterator[MessageBatch]:
        if self.path == "-":
            yield from self._read(self._stdin or sys.stdin.buffer, "stdin")
            return
        try:
            with Path(self.path).open("rb") as stream:
                yield from self._read(stream, self.path)
        except OSError as exc:
            raise SourceUnavailableError(f"message file {self.path!r}: {exc}") from exc

    def _read(self, stream: IO[bytes], name: str) -> Iterator[MessageBatch]:
        batch: list[Message] = []
        for item in read_records(stream, name, self._limits):
            if isinstance(item, Rejection):
                batch.append(Message(item.raw(), item.where, error=item.message))
            else:
                batch.extend(messages_of(item.value, item.where))
            if len(batch) >= self._batch_size:
                yield _RecordedBatch(batch, self)
                batch = []
        if batch:
            yield _RecordedBatch(batch, self)

    def close(self) -> None:
        """Nothing to release (the file is closed when reading ends)."""


# -- SQS ------------------------------------------------------------------------------------


class SqsSettings(BaseModel):
    """``source: {sqs: {...}}`` of an ``events`` feeder."""

    model_config = ConfigDict(extra="forbid")

    queue_url: str
    wait_seconds: int = Field(20, ge=0, le=20)
    batch: int = Field(SQS_BATCH, ge=1, le=SQS_BATCH)
    visibility_timeout: int = Field(300, ge=2, le=43_200)
    max_messages_per_run: int | None = Field(None, ge=1)
    region: str | None = None  # default: read from the queue URL
    endpoint_url: str | None = None

    def region_name(self) -> str:
        if self.region is not None:
            return self.region
        host = self.queue_url.split("//", 1)[-1].split("/", 1)[0]  # sqs.<region>.amazonaws.com
        parts = host.split(".")
        return parts[1] if len(parts) > 3 and parts[0] == "sqs" else "us-east-1"


class SqsMessageSource:
    """Long-polls one queue; see the module docstring. ``client``: the SQS client (the
    feeder gets it from its context's client factory)."""

    def __init__(self, settings: SqsSettings, *, client: Any) -> None:
        self.settings = settings
        self.client = client
        self._keeper = _VisibilityKeeper(self)

    def batches(self, budget: Budget | None = None) -> Iterator[MessageBatch]:
        received, limit = 0, self.settings.max_messages_per_run
        try:
            while limit is None or received < limit:
                left = budget() if budget is not None else None
                wanted = min(
                    self.settings.batch,
                    limit - received if limit else SQS_BATCH,
                    left if left is not None else SQS_BATCH,
                )
                if wanted <= 0:
                    return
                messages = self._receive(wanted)
                if not messages:
                    return  # drained
                received += len(messages)
                batch = _SqsBatch(self, messages)
                self._keeper.hold(batch.receipts)
                yield batch
        finally:
            self._keeper.stop()

    def close(self) -> None:
        self._keeper.stop()

    def _receive(self, wanted: int) -> list[Message]:
        response = self._call(
            "receive_message",
            MaxNumberOfMessages=wanted,
            WaitTimeSeconds=self.settings.wait_seconds,
            VisibilityTimeout=self.settings.visibility_timeout,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [_sqs_message(raw) for raw in response.get("Messages", [])]

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        what = f"SQS {operation} on {self.settings.queue_url}"
        try:
            response: dict[str, Any] = getattr(self.client, operation)(
                QueueUrl=self.settings.queue_url, **kwargs
            )
        except (ClientError, BotoCoreError) as exc:
            # Any failure counts as unavailable: the poller logs it, the messages reappear.
            raise translate(
                exc, what, retryable=SourceUnavailableError, permanent=SourceUnavailableError
            ) from exc
        return response

    def _batch_call(self, operation: str, entries: list[dict[str, Any]]) -> None:
        """A ``*Batch`` call per 10 entries; failures are logged: the message then just
        reappears later (a duplicate at worst, suppressed by the seen cache and dedupe)."""
        for chunk in chunks(entries, SQS_BATCH):
            try:
                response = self._call(operation, Entries=list(chunk))
            except SourceUnavailableError as exc:
                log.warning("%s", exc)
                continue
            for failure in response.get("Failed", []):
                log.warning(
                    "SQS %s: message entry %s failed: %s",
                    operation,
                    failure.get("Id"),
                    failure.get("Message") or failure.get("Code"),
                )


def _sqs_message(raw: Mapping[str, Any]) -> Message:
    """A ReceiveMessage entry in the shape of an SQS → Lambda record (what `normalize` reads)."""
    attributes = {
        name: {"stringValue": value.get("StringValue"), "dataType": value.get("DataType")}
        for name, value in (raw.get("MessageAttributes") or {}).items()
    }
    record = {
        "messageId": raw["MessageId"],
        "receiptHandle": raw["ReceiptHandle"],
        "body": raw.get("Body", ""),
        "attributes": dict(raw.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": raw.get("MD5OfBody"),
        "eventSource": "aws:sqs",
    }
    count = record["attributes"].get("ApproximateReceiveCount")
    return Message(record, raw["MessageId"], int(count) if count else None)


class _SqsBatch:
    def __init__(self, source: SqsMessageSource, messages: list[Message]) -> None:
        self.source = source
        self.messages = messages
        self.receipts = {m.tag: str(m.event["receiptHandle"]) for m in messages}

    def settle(self, failed: frozenset[str], unfinished: frozenset[str]) -> None:
        self.source._keeper.drop(self.receipts)
        done = [tag for tag in self.receipts if tag not in failed and tag not in unfinished]
        delete = [{"Id": str(n), "ReceiptHandle": self.receipts[t]} for n, t in enumerate(done)]
        if delete:
            self.source._batch_call("delete_message_batch", delete)
        release = [
            {"Id": str(n), "ReceiptHandle": self.receipts[tag], "VisibilityTimeout": 0}
            for n, tag in enumerate(sorted(unfinished & self.receipts.keys()))
        ]
        if release:
            self.source._batch_call("change_message_visibility_batch", release)


class _VisibilityKeeper:
    """Extends the visibility of held messages every half timeout, in a daemon thread."""

    def __init__(self, source: SqsMessageSource) -> None:
        self.source = source
        self._held: dict[str, str] = {}  # tag -> receipt handle
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, receipts: Mapping[str, str]) -> None:
        with self._lock:
            self._held.update(receipts)
            if self._thread is None:
                self._stopped.clear()
                self._thread = threading.Thread(target=self._run, daemon=True, name="sqs-keeper")
                self._thread.start()

    def drop(self, receipts: Mapping[str, str]) -> None:
        with self._lock:
            for tag in receipts:
                self._held.pop(tag, None)

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        self._stopped.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        timeout = self.source.settings.visibility_timeout
        while not self._stopped.wait(timeout / 2):
            with self._lock:
                held = list(self._held.values())
            entries = [
                {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": timeout}
                for n, receipt in enumerate(held)
            ]
            if entries:
                self.source._batch_call("change_message_visibility_batch", entries)
