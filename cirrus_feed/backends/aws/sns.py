"""`Notifier` on two SNS topics: workflow events (spec §6.1) and published items (§6.2).

Either topic may be unset, which switches that kind of message off, as in Cirrus. Messages
go out with ``PublishBatch`` (10 entries, 256 KiB a call), in order; entries that fail
through no fault of their own, and whole batches whose call failed (throttled, 5xx, the
connection lost), are retried with backoff; every batch is tried, and any entry still failing at the
end raises `BackendError` once the rest has been sent. Entries over 256 KiB are not sent:
with no other failure, that raises `PayloadTooLargeError` naming them, as the event log does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cirrus_feed.backends.aws.clients import (
    BATCH_ATTEMPTS,
    call,
    call_errors_per_entry,
    retryable_ids,
)
from cirrus_feed.backends.base import WorkflowEvent
from cirrus_feed.backends.limits import (
    SNS_MAX_BATCH_ENTRIES,
    SNS_MAX_MESSAGE_BYTES,
    notifications_too_large,
    sns_message_size,
)
from cirrus_feed.errors import BackendError
from cirrus_feed.model.item_attributes import item_attributes
from cirrus_feed.support.batching import sized_chunks
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock
from cirrus_feed.support.retry import retry_entries

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
    attributes = {
        name: (attribute["DataType"], attribute["StringValue"])
        for name, attribute in entry["MessageAttributes"].items()
    }
    return sns_message_size(entry["Message"], attributes)


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
        entries = [_entry(json.dumps(e.to_message()), e.to_attributes()) for e in events]
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
        oversize: dict[int, int] = {}
        sized: list[tuple[int, int]] = []
        for index, entry in enumerate(entries):
            size = _entry_size(entry)
            if size > SNS_MAX_MESSAGE_BYTES:
                oversize[index] = size
            else:
                sized.append((index, size))
        batches = sized_chunks(
            sized, max_entries=SNS_MAX_BATCH_ENTRIES, max_bytes=SNS_MAX_MESSAGE_BYTES
        )
        for batch in batches:
            failures.extend(self._publish_batch(topic_arn, entries, batch))
        where = f"SNS PublishBatch to {topic_arn}"
        if failures:
            failures += [
                f"message {i}: {size} bytes, over the SNS limit" for i, size in oversize.items()
            ]
            raise BackendError(
                f"{where}: {len(failures)} of {len(entries)} messages failed: {'; '.join(failures)}"
            )
        if oversize:  # only the refused entries are lost: callers can tell which
            raise notifications_too_large(oversize, len(entries), where)

    def _publish_batch(self, topic_arn: str, entries: list[Entry], indexes: list[int]) -> list[str]:
        """Publish one batch, retrying entries SNS failed on its side; returns what failed."""
        errors: dict[int, str] = {}

        def send(pending: Sequence[int]) -> list[int]:
            response = call(
                self._client,
                "publish_batch",
                f"SNS PublishBatch of {len(pending)} messages to {topic_arn}",
                TopicArn=topic_arn,
                PublishBatchRequestEntries=[{"Id": str(i), **entries[i]} for i in pending],
            )
            for failed in response.get("Failed", []):
                error = f"{failed.get('Code', 'Unknown')}: {failed.get('Message', '')}"
                errors[int(failed["Id"])] = error
            for succeeded in response.get("Successful", []):
                errors.pop(int(succeeded["Id"]), None)
            return retryable_ids(response)

        def failed_call(pending: Sequence[int], exc: BackendError) -> None:
            for index in pending:
                errors[index] = str(exc)

        retry_entries(
            indexes,
            call_errors_per_entry(send, failed_call),
            attempts=BATCH_ATTEMPTS,
            sleep=self.clock.sleep,
        )
        return [f"message {i}: {errors[i]}" for i in sorted(errors)]
