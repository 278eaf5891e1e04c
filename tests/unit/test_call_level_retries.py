"""Call-level failures of the AWS batch calls (issue 10, item 6), on fake clients (no IO).

A ``*Batch`` call that fails as a whole (throttled, 5xx, the connection lost) fails every
entry it carried: those are retried with backoff, and whatever still fails is reported per
entry (SQS send) or raised once every batch was tried (SNS publish, SQS delete).
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from cirrus_feed.backends.aws.clients import BATCH_ATTEMPTS
from cirrus_feed.backends.aws.sns import SnsNotifier
from cirrus_feed.backends.aws.sqs import SqsPayloadQueue
from cirrus_feed.errors import BackendError
from cirrus_feed.support.clock import FakeClock


def _error(code: str, status: int, operation: str) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


def _throttle(operation: str) -> ClientError:
    return _error("ThrottlingException", 400, operation)


def _denied(operation: str) -> ClientError:
    return _error("AccessDenied", 403, operation)


class FailingCalls:
    """Each batch call first raises the next error of ``errors`` (None: answers), then
    succeeds for every entry."""

    def __init__(self, errors: list[Exception | None]) -> None:
        self.errors = list(errors)
        self.calls: list[list[str]] = []

    def _answer(self, entries: list[dict[str, Any]], field: str) -> dict[str, Any]:
        self.calls.append([e[field] for e in entries])
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return {"Successful": [{"Id": e["Id"], "MessageId": f"m-{e[field]}"} for e in entries]}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        return self._answer(Entries, "MessageBody")

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        return self._answer(Entries, "ReceiptHandle")

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[Any]) -> Any:  # noqa: N803
        return self._answer(PublishBatchRequestEntries, "Message")


def test_sqs_send_retries_a_throttled_call_with_backoff() -> None:
    client = FailingCalls([_throttle("SendMessageBatch"), ConnectionClosedError(endpoint_url="x")])
    clock = FakeClock()
    queue = SqsPayloadQueue("https://sqs/q", client=client, clock=clock)

    results = queue.send(["a", "b"])

    assert [r.message_id for r in results] == ["m-a", "m-b"]
    assert client.calls == [["a", "b"]] * 3
    assert len(clock.slept) == 2  # a backoff before each retry


def test_sqs_send_reports_every_body_when_the_queue_refuses_the_calls() -> None:
    """Throttled on every attempt: the first batch is reported with the error, the rest of
    the send as not sent; nothing raises and nothing is left unreported."""
    client = FailingCalls([_throttle("SendMessageBatch")] * 100)
    queue = SqsPayloadQueue("https://sqs/q", client=client, clock=FakeClock())

    results = queue.send([f"b{i}" for i in range(25)])

    assert len(results) == 25
    assert not any(r.ok for r in results)
    assert len(client.calls) == BATCH_ATTEMPTS  # one batch retried; the others not hammered
    assert all("ThrottlingException" in (r.error or "") for r in results)
    assert [r.error.startswith("not sent: ") for r in results if r.error] == [False] * 10 + [
        True
    ] * 15


def test_sqs_send_permanent_call_error_is_not_retried() -> None:
    client = FailingCalls([_denied("SendMessageBatch")])
    queue = SqsPayloadQueue("https://sqs/q", client=client, clock=FakeClock())

    results = queue.send(["a"])

    assert client.calls == [["a"]]
    assert "AccessDenied" in (results[0].error or "")


def test_sqs_delete_retries_a_lost_call_and_raises_for_a_refused_one() -> None:
    retried = FailingCalls([ConnectionClosedError(endpoint_url="x")])
    SqsPayloadQueue("https://sqs/q", client=retried, clock=FakeClock()).delete(["r1"])
    assert retried.calls == [["r1"], ["r1"]]

    refused = FailingCalls([_denied("DeleteMessageBatch")])
    queue = SqsPayloadQueue("https://sqs/q", client=refused, clock=FakeClock())
    with pytest.raises(BackendError, match="1 entries still failing"):
        queue.delete(["r1"])


def test_sns_publish_tries_every_batch_and_retries_failed_calls() -> None:
    """The first batch's call fails for good: the second batch is still published, then the
    failure is raised naming the messages that did not go out."""
    client = FailingCalls([_denied("PublishBatch"), _throttle("PublishBatch")])
    notifier = SnsNotifier(
        client=client, region="us-east-1", publish_topic_arn="arn:t", clock=FakeClock()
    )
    items = [{"id": f"i{i}", "collection": "c"} for i in range(12)]

    with pytest.raises(BackendError, match="10 of 12 messages failed"):
        notifier.publish_items(items)

    assert [len(call) for call in client.calls] == [10, 2, 2]  # the second batch, retried
