"""`Notifier` on two SNS topics: workflow events (spec §6.1) and published items (§6.2).

Either topic may be unset, which switches that kind of message off, as in Cirrus. Messages
go out with ``PublishBatch`` (10 entries, 256 KiB a call), in order; entries that fail
through no fault of their own are retried with backoff, and any entry still failing at the
end raises `BackendError` once the rest has been sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cirrus_feed.backends.aws.clients import BATCH_ATTEMPTS, backoff, call, sized_chunks
from cirrus_feed.backends.base import WorkflowEvent
from cirrus_feed.errors import BackendError
from cirrus_feed.model.item_attributes import item_attributes
from cirrus_feed.model.payload import parse_payload_id
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

_MAX_BATCH_ENTRIES = 10
_MAX_BATCH_BYTES = 262_144

Entry = dict[str, Any]  # one PublishBatchRequestEntry


def _entry(message: str, attributes: Mapping[str, tuple[str, str]]) -> Entry:
    return {
        "Message": message,
        "MessageAttributes": {
            name: {"DataType": data_type, "StringValue": value}
            for name, (data_type, value) in attributes.items()
        },
    }


def _entry_size(entry: Entry) -> int:
    """Message bytes plus every attribute's name, type and value, as SNS counts them."""
    size = len(entry["Message"].encode())
    for name, attribute in entry["MessageAttributes"].items():
        size += len(name.encode()) + len(attribute["DataType"].encode())
        size += len(attribute["StringValue"].encode())
    return size


def event_attributes(event: WorkflowEvent) -> dict[str, tuple[str, str]]:
    """Cirrus workflow-event attributes: event_type, workflow/collections if the id parses,
    and error when set."""
    attributes = {"event_type": ("String", event.event_type)}
    parsed = parse_payload_id(event.payload_id)
    if parsed is not None:
        attributes["workflow"] = ("String", parsed["workflow"])
        attributes["collections"] = ("String", parsed["collections"])
    if event.error:
        attributes["error"] = ("String", event.error)
    return attributes


class SnsNotifier:
    """Announces workflow events and publishes output items."""

    def __init__(
        self,
        *,
        client: Any,
        region: str,
        workflow_event_topic_arn: str | None = None,
        publish_topic_arn: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock  # what retry backoff waits on
        self.region = region
        self.workflow_event_topic_arn = workflow_event_topic_arn
        self.publish_topic_arn = publish_topic_arn
        self._client = client

    def announce(self, events: Sequence[WorkflowEvent]) -> None:
        if self.workflow_event_topic_arn is None:
            return
        entries = [_entry(json.dumps(e.to_message()), event_attributes(e)) for e in events]
        self._publish(self.workflow_event_topic_arn, entries)

    def publish_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        if self.publish_topic_arn is None:
            return
        entries = [_entry(json.dumps(item), item_attributes(item)) for item in items]
        self._publish(self.publish_topic_arn, entries)

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""

    def _publish(self, topic_arn: str, entries: list[Entry]) -> None:
        failures: list[str] = []
        sized: list[tuple[int, int]] = []
        for index, entry in enumerate(entries):
            size = _entry_size(entry)
            if size > _MAX_BATCH_BYTES:
                failures.append(f"message {index}: {size} bytes, over the SNS limit")
            else:
                sized.append((index, size))
        batches = sized_chunks(sized, max_entries=_MAX_BATCH_ENTRIES, max_bytes=_MAX_BATCH_BYTES)
        for batch in batches:
            failures.extend(self._publish_batch(topic_arn, entries, batch))
        if failures:
            raise BackendError(
                f"SNS PublishBatch to {topic_arn}: {len(failures)} of {len(entries)} messages "
                f"failed: {'; '.join(failures)}"
            )

    def _publish_batch(self, topic_arn: str, entries: list[Entry], indexes: list[int]) -> list[str]:
        """Publish one batch, retrying entries SNS failed on its side; returns what failed."""
        pending = indexes
        errors: dict[int, str] = {}
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            response = call(
                self._client,
                "publish_batch",
                f"SNS PublishBatch of {len(pending)} messages to {topic_arn}",
                TopicArn=topic_arn,
                PublishBatchRequestEntries=[{"Id": str(i), **entries[i]} for i in pending],
            )
            retry: list[int] = []
            for failed in response.get("Failed", []):
                index = int(failed["Id"])
                errors[index] = f"{failed.get('Code', 'Unknown')}: {failed.get('Message', '')}"
                if not failed.get("SenderFault", False):
                    retry.append(index)
            for succeeded in response.get("Successful", []):
                errors.pop(int(succeeded["Id"]), None)
            if not retry:
                break
            pending = retry
            if attempt < BATCH_ATTEMPTS:
                backoff(attempt, self.clock)
        return [f"message {i}: {errors[i]}" for i in sorted(errors)]
