"""`PayloadQueue` on an SQS queue; the dead-letter queue is whatever its redrive policy names."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import (
    BATCH_ATTEMPTS,
    call,
    call_errors_per_entry,
    error_code,
    retryable_ids,
    translate,
)
from cirrus_feed.backends.base import QueueDepth, QueueMessage, SendResult
from cirrus_feed.backends.limits import (
    SQS_MAX_BATCH_ENTRIES,
    SQS_MAX_MESSAGE_BYTES,
    clamp_receive_count,
    clamp_visibility_timeout,
    clamp_wait_seconds,
    message_too_large,
)
from cirrus_feed.errors import BackendError, BackendUnavailableError
from cirrus_feed.support.batching import chunks, sized_chunks
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock
from cirrus_feed.support.retry import retry_entries
from cirrus_feed.support.text import storable

log = logging.getLogger(__name__)

# Receipts of messages already deleted or expired: the contract says ignore them.
_STALE_RECEIPT_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"}
)


class SqsPayloadQueue:
    """The process queue. ``send`` batches by entry count and total size (SQS: 10 / 256 KiB)."""

    max_message_bytes: int = SQS_MAX_MESSAGE_BYTES

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
                    None, message_too_large(index, size, self.max_message_bytes)
                )
            else:
                sized.append((index, size))
        batches = sized_chunks(
            sized, max_entries=SQS_MAX_BATCH_ENTRIES, max_bytes=SQS_MAX_MESSAGE_BYTES
        )
        down: str | None = None  # set once a batch failed as a whole on every attempt
        for batch in batches:
            if down is not None:
                # The queue refused a whole batch through all the retries: the rest is
                # reported, not hammered in.
                for index in batch:
                    results[index] = SendResult(None, f"not sent: {down}")
                continue
            down = self._send_batch(bodies, batch, results)
        return [r if r is not None else SendResult(None, "not sent") for r in results]

    def _send_batch(
        self, bodies: Sequence[str], indexes: list[int], results: list[SendResult | None]
    ) -> str | None:
        """Send one batch; entries failing through no fault of theirs, and the whole batch
        when the call itself fails (throttled, 5xx, connection lost), are retried with
        backoff; the last failure of each entry stays in ``results``. Returns the call error
        when the batch failed as a whole on the last attempt."""
        call_error: list[str | None] = [None]

        def failed_call(pending: Sequence[int], exc: BackendError) -> None:
            call_error[0] = str(exc)
            for index in pending:
                results[index] = SendResult(None, str(exc))

        def send(pending: Sequence[int]) -> list[int]:
            call_error[0] = None
            response = self._call(
                "send_message_batch",
                f"SQS SendMessageBatch of {len(pending)} messages",
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": bodies[i]} for i in pending],
            )
            for entry in response.get("Successful", []):
                results[int(entry["Id"])] = SendResult(entry["MessageId"])
            for entry in response.get("Failed", []):
                error = f"{entry.get('Code', 'Unknown')}: {entry.get('Message', '')}"
                results[int(entry["Id"])] = SendResult(None, error)
            return retryable_ids(response)

        retry_entries(
            indexes,
            call_errors_per_entry(send, failed_call),
            attempts=BATCH_ATTEMPTS,
            sleep=self.clock.sleep,
        )
        return call_error[0]

    def receive(
        self,
        max_messages: int = 10,
        *,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0,
    ) -> list[QueueMessage]:
        count = clamp_receive_count(max_messages)
        if count < 1:
            return []
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": count,
            # SQS takes whole seconds; rounding down keeps "waits up to wait_seconds".
            "WaitTimeSeconds": int(clamp_wait_seconds(wait_seconds)),
            "AttributeNames": ["ApproximateReceiveCount"],
        }
        if visibility_timeout is not None:
            request["VisibilityTimeout"] = clamp_visibility_timeout(visibility_timeout)
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
        errors: list[str] = []
        left: list[str] = []

        def failed_call(pending: Sequence[str], exc: BackendError) -> None:
            errors.append(str(exc))
            if not exc.retryable:  # not retried: still undeleted
                left.extend(pending)

        send = call_errors_per_entry(self._delete_batch, failed_call)
        for batch in chunks(list(receipts), SQS_MAX_BATCH_ENTRIES):
            # Every batch is tried, so one failing batch does not keep the others undeleted.
            left += retry_entries(batch, send, attempts=BATCH_ATTEMPTS, sleep=self.clock.sleep)
        if left:
            last = f" (last: {errors[-1]})" if errors else ""
            raise BackendUnavailableError(
                f"SQS DeleteMessageBatch on {self.queue_url}: {len(left)} entries still "
                f"failing after {BATCH_ATTEMPTS} attempts{last}"
            )

    def _delete_batch(self, receipts: Sequence[str]) -> list[str]:
        """One DeleteMessageBatch; returns the receipts worth trying again."""
        response = self._call(
            "delete_message_batch",
            f"SQS DeleteMessageBatch of {len(receipts)} messages",
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)],
        )
        return [receipts[i] for i in retryable_ids(response)]

    def record_failures(self, failures: Sequence[tuple[str, str]]) -> None:
        """SQS keeps no note with a message: the reasons are logged (the redrive moves the
        message to the dead-letter queue as it is)."""
        for receipt, reason in failures:
            log.warning(
                "SQS message not handled (left for redrive): %s",
                storable(reason),
                extra={"receipt": receipt[:16], "queue_url": self.queue_url},
            )

    def change_visibility(self, receipt: str, timeout: int) -> None:
        """Stale receipts (message deleted or no longer in flight) are ignored."""
        try:
            self._client.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=receipt,
                VisibilityTimeout=clamp_visibility_timeout(timeout),
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
        self._dlq_url = queue_url_for_arn(self._client, arn, f"redrive target of {self.queue_url}")
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


def queue_url_for_arn(client: Any, arn: str, what: str) -> str:
    """The URL of the queue ``arn:aws:sqs:<region>:<account>:<name>`` (GetQueueUrl)."""
    _, _, _, _, account, name = arn.split(":", 5)
    response = call(
        client,
        "get_queue_url",
        f"SQS GetQueueUrl for {arn} ({what})",
        QueueName=name,
        QueueOwnerAWSAccountId=account,
    )
    return str(response["QueueUrl"])
