"""The four per-entry retry sites of the AWS adapters, on fake clients (no IO).

Each fails some entries through no fault of the sender once or for good; the adapters
must resend only those, and report (or raise for) what never went through.
"""

from __future__ import annotations

from typing import Any

import pytest

from cirrus_feed.backends.aws.clients import BATCH_ATTEMPTS
from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore
from cirrus_feed.backends.aws.sns import SnsNotifier
from cirrus_feed.backends.aws.sqs import SqsPayloadQueue
from cirrus_feed.errors import BackendError, BackendUnavailableError


class FakeBatchClient:
    """Answers ``*Batch`` calls: entries whose payload is in ``flaky`` fail (not the sender's
    fault) that many times; those in ``rejected`` fail as the sender's fault."""

    def __init__(self, flaky: dict[str, int], rejected: frozenset[str] = frozenset()) -> None:
        self.flaky, self.rejected = dict(flaky), rejected
        self.sent: list[list[str]] = []

    def _answer(self, entries: list[dict[str, Any]], field: str) -> dict[str, Any]:
        self.sent.append([e[field] for e in entries])
        ok, failed = [], []
        for entry in entries:
            value = entry[field]
            if value in self.rejected:
                failed.append({"Id": entry["Id"], "Code": "Bad", "SenderFault": True})
            elif self.flaky.get(value, 0) > 0:
                self.flaky[value] -= 1
                failed.append({"Id": entry["Id"], "Code": "InternalError", "SenderFault": False})
            else:
                ok.append({"Id": entry["Id"], "MessageId": f"m-{value}"})
        return {"Successful": ok, "Failed": failed}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        return self._answer(Entries, "MessageBody")

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        return self._answer(Entries, "ReceiptHandle")

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[Any]) -> Any:  # noqa: N803
        return self._answer(PublishBatchRequestEntries, "Message")


def test_sqs_send_retries_only_unlucky_entries_and_reports_rejections() -> None:
    client = FakeBatchClient({"b": 1}, rejected=frozenset({"c"}))
    queue = SqsPayloadQueue("https://sqs/q", client=client)

    results = queue.send(["a", "b", "c"])

    assert [r.message_id for r in results] == ["m-a", "m-b", None]
    assert str(results[2].error).startswith("Bad")
    assert client.sent == [["a", "b", "c"], ["b"]]


def test_sqs_send_gives_up_after_the_attempts_with_the_last_error() -> None:
    client = FakeBatchClient({"a": 99})

    [result] = SqsPayloadQueue("https://sqs/q", client=client).send(["a"])

    assert result.message_id is None
    assert result.error == "InternalError: "
    assert len(client.sent) == BATCH_ATTEMPTS


def test_sqs_delete_retries_then_raises_for_entries_still_failing() -> None:
    client = FakeBatchClient({"r2": 1})
    queue = SqsPayloadQueue("https://sqs/q", client=client)
    queue.delete(["r1", "r2"])
    assert client.sent == [["r1", "r2"], ["r2"]]

    stuck = SqsPayloadQueue("https://sqs/q", client=FakeBatchClient({"r1": 99}))
    with pytest.raises(BackendUnavailableError, match="1 entries still failing after 4"):
        stuck.delete(["r1", "r2"])


def test_sns_publish_retries_and_raises_once_for_what_never_went_out() -> None:
    client = FakeBatchClient({"b": 1, "c": 99})
    notifier = SnsNotifier(client=client, region="us-east-1", publish_topic_arn="arn:t")

    with pytest.raises(BackendError, match=r"1 of 3 messages failed: message 2: InternalError"):
        notifier._publish("arn:t", [{"Message": m, "MessageAttributes": {}} for m in "abc"])
    assert client.sent[:2] == [["a", "b", "c"], ["b", "c"]]
    assert len(client.sent) == BATCH_ATTEMPTS


class FakeDynamoDb:
    """BatchGetItem leaving each key in ``flaky`` unprocessed that many times."""

    def __init__(self, flaky: dict[str, int]) -> None:
        self.flaky = dict(flaky)
        self.asked: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> Any:  # noqa: N803
        keys = RequestItems["t"]["Keys"]
        self.asked.append(len(keys))
        done, left = [], []
        for key in keys:
            name = key["k"]["S"]
            if self.flaky.get(name, 0) > 0:
                self.flaky[name] -= 1
                left.append(key)
            else:
                done.append(key)
        return {"Responses": {"t": done}, "UnprocessedKeys": {"t": {"Keys": left}} if left else {}}


def test_dynamodb_batch_get_resends_unprocessed_keys() -> None:
    client = FakeDynamoDb({"1": 1, "2": 1})
    keys = [{"k": {"S": str(n)}} for n in range(3)]

    items = DynamoDbStateStore("t", client=client)._batch_get(keys)

    assert items == keys
    assert client.asked == [3, 2]


def test_dynamodb_batch_get_raises_when_keys_stay_unprocessed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("cirrus_feed.backends.aws.dynamodb._UNPROCESSED_ATTEMPTS", 2)
    store = DynamoDbStateStore("t", client=FakeDynamoDb({"b": 99}))

    with pytest.raises(BackendUnavailableError, match="1 keys still unprocessed after 2"):
        store._batch_get([{"k": {"S": "a"}}, {"k": {"S": "b"}}])
