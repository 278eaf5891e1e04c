"""`DeadLetterQueue` on the SQS queue the process queue redrives to.

The queue is ``aws.dead_letter_queue_url`` when set, else the target of the process queue's
``RedrivePolicy``, looked up on first use (building the app makes no call). SQS has no
peek: reading means receiving, so a sweep receives every message, keeps those it saw
invisible until it is done (so each is seen once) and then releases them. SQS keeps no time
or reason of the move: ``when`` is the message's ``SentTimestamp`` and the reason names the
redrive policy.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Generator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from cirrus_feed.backends.aws.clients import call
from cirrus_feed.backends.aws.sqs import SqsPayloadQueue, queue_url_for_arn
from cirrus_feed.backends.base import DeadLetter
from cirrus_feed.backends.limits import SQS_MAX_BATCH_ENTRIES
from cirrus_feed.errors import ConfigError, PayloadNotFoundError
from cirrus_feed.support.batching import chunks
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

PEEK_VISIBILITY_SECONDS = 300  # how long a sweep holds what it saw (released at its end)
WAIT_SECONDS = 1  # long polling: a short poll may answer empty while messages remain


class SqsDeadLetterQueue:
    """Dead letters of ``source_queue_url`` (via its redrive policy) or at ``queue_url``."""

    reads_are_receives = True

    def __init__(
        self,
        *,
        client: Any,
        source_queue_url: str | None = None,
        queue_url: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if source_queue_url is None and queue_url is None:
            raise ValueError("SqsDeadLetterQueue needs source_queue_url or queue_url")
        self.source_queue_url = source_queue_url
        self._client = client
        self._clock = clock
        self._url = queue_url
        self._reason: str | None = None

    # -- resolving the queue --------------------------------------------------------------

    def url(self) -> str:
        """The dead-letter queue's URL. Raises: ConfigError when there is none."""
        if self._url is None:
            policy = self._policy()
            if policy is None:
                raise ConfigError(
                    f"the process queue {self.source_queue_url} has no RedrivePolicy: "
                    "set aws.dead_letter_queue_url to name its dead-letter queue"
                )
            self._url = queue_url_for_arn(
                self._client,
                str(policy["deadLetterTargetArn"]),
                f"redrive target of {self.source_queue_url}",
            )
        return self._url

    def _policy(self) -> dict[str, Any] | None:
        if self.source_queue_url is None:
            return None
        response = call(
            self._client,
            "get_queue_attributes",
            f"SQS GetQueueAttributes {self.source_queue_url}",
            QueueUrl=self.source_queue_url,
            AttributeNames=["RedrivePolicy"],
        )
        text = response.get("Attributes", {}).get("RedrivePolicy")
        return dict(json.loads(text)) if text else None

    def _why(self) -> str:
        if self._reason is None:
            policy = self._policy()
            self._reason = (
                f"received more than {policy['maxReceiveCount']} times without being deleted "
                f"(redrive policy of {self.source_queue_url})"
                if policy
                else "moved to the dead-letter queue by a redrive policy"
            )
        return self._reason

    # -- reading --------------------------------------------------------------------------

    def _receive(self, visibility: int) -> list[DeadLetter]:
        url = self.url()
        response = call(
            self._client,
            "receive_message",
            f"SQS ReceiveMessage on {url}",
            QueueUrl=url,
            MaxNumberOfMessages=SQS_MAX_BATCH_ENTRIES,
            WaitTimeSeconds=WAIT_SECONDS,
            VisibilityTimeout=visibility,
            AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        reason = self._why()
        letters = []
        for message in response.get("Messages", []):
            attributes = message.get("Attributes", {})
            sent = attributes.get("SentTimestamp")
            letters.append(
                DeadLetter(
                    message_id=message["MessageId"],
                    body=message["Body"],
                    # this receive counted too: report the receives before it
                    receive_count=max(int(attributes.get("ApproximateReceiveCount", 1)) - 1, 0),
                    reason=reason,
                    when=datetime.fromtimestamp(int(sent) / 1000, UTC).isoformat()
                    if sent
                    else None,
                    receipt=message["ReceiptHandle"],
                )
            )
        return letters

    def _sweep(self, visibility: int) -> Iterator[list[DeadLetter]]:
        """Receive until the queue answers empty (or only repeats itself): each message
        once, in receive order. The caller releases or deletes what it got."""
        seen: set[str] = set()
        repeats: list[DeadLetter] = []  # a standard queue may deliver twice: held, then freed
        try:
            while batch := self._receive(visibility):
                new = [letter for letter in batch if letter.message_id not in seen]
                repeats += [letter for letter in batch if letter.message_id in seen]
                if not new:
                    return
                seen.update(letter.message_id for letter in new)
                yield new
        finally:
            self.release(repeats)

    def peek(self, limit: int | None = None) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        try:
            for batch in self._sweep(PEEK_VISIBILITY_SECONDS):
                found += batch
                if limit is not None and len(found) >= limit:
                    break
        finally:
            self.release(found)
        return found[:limit] if limit is not None else found

    def get(self, message_id: str) -> DeadLetter:
        held: list[DeadLetter] = []
        try:
            for batch in self._sweep(PEEK_VISIBILITY_SECONDS):
                held += batch
                for letter in batch:
                    if letter.message_id == message_id:
                        return letter
        finally:
            self.release(held)
        raise PayloadNotFoundError(f"no dead letter {message_id!r} in {self.url()}")

    def lease(
        self, message_ids: Collection[str] | None = None, *, lease_seconds: int = 300
    ) -> Generator[list[DeadLetter], None, None]:
        wanted = None if message_ids is None else set(message_ids)
        others: list[DeadLetter] = []  # held until the end so the sweep sees each once
        try:
            for batch in self._sweep(max(lease_seconds, 1)):
                chosen = [b for b in batch if wanted is None or b.message_id in wanted]
                others += [b for b in batch if wanted is not None and b.message_id not in wanted]
                if chosen:
                    yield chosen
                if wanted is not None:
                    wanted -= {b.message_id for b in chosen}
                    if not wanted:
                        return
        finally:
            self.release(others)

    # -- changing -------------------------------------------------------------------------

    def delete(self, letters: Sequence[DeadLetter]) -> None:
        if letters:
            queue = SqsPayloadQueue(self.url(), client=self._client, clock=self._clock)
            queue.delete([letter.receipt for letter in letters])

    def release(self, letters: Sequence[DeadLetter]) -> None:
        """ChangeMessageVisibility to 0 in batches; failures (stale receipts) are ignored:
        the letter then simply becomes visible when its lease runs out."""
        for batch in chunks(list(letters), SQS_MAX_BATCH_ENTRIES):
            url = self.url()
            call(
                self._client,
                "change_message_visibility_batch",
                f"SQS ChangeMessageVisibilityBatch on {url}",
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": letter.receipt, "VisibilityTimeout": 0}
                    for i, letter in enumerate(batch)
                ],
            )

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""
