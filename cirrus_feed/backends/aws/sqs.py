"""`PayloadQueue` on an SQS queue; the dead-letter queue is whatever its redrive policy names."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import (
    BATCH_ATTEMPTS,
    backoff,
    call,
    chunks,
    error_code,
    sized_chunks,
    translate,
)
from cirrus_feed.backends.base import QueueDepth, QueueMessage, SendResult
from cirrus_feed.errors import BackendUnavailableError
from cirrus_feed.model.payload import MAX_MESSAGE_BYTES
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

_MAX_BATCH_ENTRIES = 10
_MAX_WAIT_SECONDS = 20
# Receipts of messages already deleted or expired: the contract says ignore them.
_STALE_RECEIPT_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"}
)


class SqsPayloadQueue:
    """The process queue. ``send`` batches by entry count and total size (SQS: 10 / 256 KiB)."""

    max_message_bytes: int = MAX_MESSAGE_BYTES

    def __init__(self, queue_url: str, *, client: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        self.queue_url = queue_url
        self.clock = clock  # what retry backoff waits on
        self._client = client
        self._dlq_url: str | None = None
        self._dlq_resolved = False

    def send(self, bodies: Sequence[str]) -> list[SendResult]:
        results: list[SendResult | None] = [None] * len(bodies)
        sized: list[tuple[int, int]] = []
        for index, body in enumerate(bodies):
            size = len(body.encode())
            if size > self.max_message_bytes:
                results[index] = SendResult(
                    None,
                    f"message {index}: body is {size} bytes, over the SQS limit of "
                    f"{self.max_message_bytes}",
                )
            else:
                sized.append((index, size))
        batches = sized_chunks(
            sized, max_entries=_MAX_BATCH_ENTRIES, max_bytes=self.max_message_bytes
        )
        for batch in batches:
            self._send_batch(bodies, batch, results)
        return [r if r is not None else SendResult(None, "not sent") for r in results]

    def _send_batch(
        self, bodies: Sequence[str], indexes: list[int], results: list[SendResult | None]
    ) -> None:
        """Send one batch; entries failing through no fault of theirs are retried."""
        pending = indexes
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            response = self._call(
                "send_message_batch",
                f"SQS SendMessageBatch of {len(pending)} messages",
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": bodies[i]} for i in pending],
            )
            for entry in response.get("Successful", []):
                results[int(entry["Id"])] = SendResult(entry["MessageId"])
            retry: list[int] = []
            for entry in response.get("Failed", []):
                index = int(entry["Id"])
                error = f"{entry.get('Code', 'Unknown')}: {entry.get('Message', '')}"
                results[index] = SendResult(None, error)
                if not entry.get("SenderFault", False):
                    retry.append(index)
            if not retry:
                return
            pending = retry
            if attempt < BATCH_ATTEMPTS:
                backoff(attempt, self.clock)

    def receive(
        self,
        max_messages: int = 10,
        *,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0,
    ) -> list[QueueMessage]:
        if max_messages < 1:
            return []
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": min(max_messages, _MAX_BATCH_ENTRIES),
            # SQS takes whole seconds; rounding down keeps "waits up to wait_seconds".
            "WaitTimeSeconds": min(int(max(wait_seconds, 0)), _MAX_WAIT_SECONDS),
            "AttributeNames": ["ApproximateReceiveCount"],
        }
        if visibility_timeout is not None:
            request["VisibilityTimeout"] = visibility_timeout
        response = self._call("receive_message", "SQS ReceiveMessage", **request)
        return [
            QueueMessage(
                message_id=m["MessageId"],
                body=m["Body"],
                receipt=m["ReceiptHandle"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            )
            for m in response.get("Messages", [])
        ]

    def delete(self, receipts: Sequence[str]) -> None:
        """Delete in batches of 10; stale receipts are ignored, transient failures retried."""
        for batch in chunks(list(receipts), _MAX_BATCH_ENTRIES):
            pending = dict(enumerate(batch))
            for attempt in range(1, BATCH_ATTEMPTS + 1):
                response = self._call(
                    "delete_message_batch",
                    f"SQS DeleteMessageBatch of {len(pending)} messages",
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in pending.items()],
                )
                pending = {
                    int(f["Id"]): pending[int(f["Id"])]
                    for f in response.get("Failed", [])
                    if not f.get("SenderFault", False)
                }
                if not pending:
                    break
                if attempt < BATCH_ATTEMPTS:
                    backoff(attempt, self.clock)
            else:
                raise BackendUnavailableError(
                    f"SQS DeleteMessageBatch on {self.queue_url}: {len(pending)} entries still "
                    f"failing after {BATCH_ATTEMPTS} attempts"
                )

    def change_visibility(self, receipt: str, timeout: int) -> None:
        """Stale receipts (message deleted or no longer in flight) are ignored."""
        try:
            self._client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=timeout
            )
        except ClientError as exc:
            if error_code(exc) not in _STALE_RECEIPT_CODES:
                raise translate(exc, "SQS ChangeMessageVisibility") from exc
        except BotoCoreError as exc:
            raise translate(exc, "SQS ChangeMessageVisibility") from exc

    def depth(self) -> QueueDepth:
        attributes = self._attributes(
            self.queue_url,
            [
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "RedrivePolicy",
            ],
        )
        dead: int | None = None
        dlq_url = self._dead_letter_url(attributes.get("RedrivePolicy"))
        if dlq_url is not None:
            dlq = self._attributes(dlq_url, ["ApproximateNumberOfMessages"])
            dead = int(dlq.get("ApproximateNumberOfMessages", 0))
        return QueueDepth(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            dead=dead,
        )

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""

    def _dead_letter_url(self, redrive_policy: str | None) -> str | None:
        """The DLQ URL from the redrive policy's ARN, looked up once."""
        if self._dlq_resolved or not redrive_policy:
            return self._dlq_url
        arn = str(json.loads(redrive_policy)["deadLetterTargetArn"])
        # arn:aws:sqs:<region>:<account>:<name>
        _, _, _, _, account, name = arn.split(":", 5)
        response = self._call(
            "get_queue_url",
            f"SQS GetQueueUrl for dead-letter queue {arn}",
            QueueName=name,
            QueueOwnerAWSAccountId=account,
        )
        self._dlq_url = str(response["QueueUrl"])
        self._dlq_resolved = True
        return self._dlq_url

    def _attributes(self, queue_url: str, names: list[str]) -> dict[str, str]:
        response = self._call(
            "get_queue_attributes",
            f"SQS GetQueueAttributes {queue_url}",
            QueueUrl=queue_url,
            AttributeNames=names,
        )
        attributes: dict[str, str] = response.get("Attributes", {})
        return attributes

    def _call(self, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
        return call(self._client, operation, f"{what} on {self.queue_url}", **kwargs)
