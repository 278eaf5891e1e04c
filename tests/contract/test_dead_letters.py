"""Contract of `DeadLetterQueue` and `InvalidStore`, on both backends.

Dead letters come from the ``payload_queue`` fixture's queue (redriven on the third receive);
invalid records are written by `pipeline.invalid.record_invalid` into ``payload_store``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed.backends.base import DeadLetterQueue, InvalidStore, PayloadQueue, PayloadStore
from cirrus_feed.errors import ConfigError, PayloadNotFoundError
from cirrus_feed.pipeline.invalid import record_invalid
from cirrus_feed.support.clock import FakeClock

MAX_RECEIVES = 2  # the ``payload_queue`` fixture's


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def dead_letters(
    backend: str, payload_queue: PayloadQueue, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[DeadLetterQueue]:
    """The dead letters of ``payload_queue``."""
    if backend == "local":
        from cirrus_feed.backends.local.sqlite_dead_letters import SqliteDeadLetterQueue

        local = SqliteDeadLetterQueue(tmp_path / "queue.db")  # the fixture queue's file
        yield local
        local.close()
        return
    from cirrus_feed.backends.aws.sqs import SqsPayloadQueue
    from cirrus_feed.backends.aws.sqs_dead_letters import SqsDeadLetterQueue

    assert isinstance(payload_queue, SqsPayloadQueue)
    client = request.getfixturevalue("aws_client")("sqs")
    yield SqsDeadLetterQueue(client=client, source_queue_url=payload_queue.queue_url)


def redrive(queue: PayloadQueue, *bodies: str) -> None:
    queue.send(list(bodies))
    for _ in range(4 * (MAX_RECEIVES + 2)):  # 10 a receive: bodies past 10 need more
        if not queue.receive(10, visibility_timeout=0):
            return
    raise AssertionError("the bodies were not redriven")


def test_dead_letters_peek_removes_nothing(
    payload_queue: PayloadQueue, dead_letters: DeadLetterQueue
) -> None:
    redrive(payload_queue, "one", "two", "three")

    first = dead_letters.peek()
    second = dead_letters.peek()
    limited = dead_letters.peek(2)

    assert sorted(letter.body for letter in first) == ["one", "three", "two"]
    assert sorted(letter.message_id for letter in second) == sorted(m.message_id for m in first)
    assert len(limited) == 2
    assert all(letter.reason and letter.when for letter in first)
    assert payload_queue.depth().dead == 3


def test_dead_letters_get_by_id(payload_queue: PayloadQueue, dead_letters: DeadLetterQueue) -> None:
    redrive(payload_queue, "one", "two")
    wanted = next(letter for letter in dead_letters.peek() if letter.body == "two")

    assert dead_letters.get(wanted.message_id).body == "two"
    with pytest.raises(PayloadNotFoundError):
        dead_letters.get("999999")
    assert len(dead_letters.peek()) == 2


def test_dead_letters_lease_of_some_ids_leaves_the_others(
    payload_queue: PayloadQueue, dead_letters: DeadLetterQueue
) -> None:
    redrive(payload_queue, *(f"m{n}" for n in range(12)))
    letters = {letter.body: letter.message_id for letter in dead_letters.peek()}
    chosen = {letters["m3"], letters["m11"]}

    leased = [letter for batch in dead_letters.lease(chosen) for letter in batch]
    dead_letters.delete([letter for letter in leased if letter.body == "m3"])
    dead_letters.release([letter for letter in leased if letter.body == "m11"])

    assert sorted(letter.body for letter in leased) == ["m11", "m3"]
    left = sorted(letter.body for letter in dead_letters.peek())
    assert left == sorted(f"m{n}" for n in range(12) if n != 3)


def test_dead_letters_lease_all_in_batches_then_delete(
    payload_queue: PayloadQueue, dead_letters: DeadLetterQueue
) -> None:
    redrive(payload_queue, *(f"m{n}" for n in range(12)))

    batches = list(dead_letters.lease())
    for batch in batches:
        dead_letters.delete(batch)

    assert all(0 < len(batch) <= 10 for batch in batches)
    assert sorted(letter.body for batch in batches for letter in batch) == sorted(
        f"m{n}" for n in range(12)
    )
    assert dead_letters.peek() == []
    dead_letters.delete([letter for batch in batches for letter in batch])  # stale: ignored


@pytest.mark.aws
def test_sqs_dead_letters_need_a_redrive_policy_or_a_url(aws_client: Callable[[str], Any]) -> None:
    from cirrus_feed.backends.aws.sqs_dead_letters import SqsDeadLetterQueue

    client = aws_client("sqs")
    plain = client.create_queue(QueueName=unique("plain-"))["QueueUrl"]
    dead = client.create_queue(QueueName=unique("dead-"))["QueueUrl"]
    client.send_message(QueueUrl=dead, MessageBody="kept")

    without = SqsDeadLetterQueue(client=client, source_queue_url=plain)
    named = SqsDeadLetterQueue(client=client, queue_url=dead)

    with pytest.raises(ConfigError, match="dead_letter_queue_url"):
        without.peek()
    assert [letter.body for letter in named.peek()] == ["kept"]


# -- invalid store --------------------------------------------------------------------------


@pytest.fixture
def invalid_store(
    backend: str, payload_store: PayloadStore, request: pytest.FixtureRequest
) -> InvalidStore:
    if backend == "local":
        from cirrus_feed.backends.local.files import FilePayloadStore
        from cirrus_feed.backends.local.files_invalid import FileInvalidStore

        assert isinstance(payload_store, FilePayloadStore)
        return FileInvalidStore(payload_store)
    from cirrus_feed.backends.aws.s3 import S3PayloadStore
    from cirrus_feed.backends.aws.s3_invalid import S3InvalidStore

    assert isinstance(payload_store, S3PayloadStore)
    return S3InvalidStore(payload_store, client=request.getfixturevalue("aws_client")("s3"))


def test_invalid_store_lists_newest_first_with_reasons(
    payload_store: PayloadStore, invalid_store: InvalidStore
) -> None:
    clock = FakeClock()
    assert invalid_store.recent() == []
    for n in range(3):
        record_invalid(
            payload_store,
            {"n": n},
            f"bad {n}",
            stage="enqueue",
            payload_id=f"c/workflow-w/i{n}",
            clock=clock,
        )

    records = invalid_store.recent()
    one = invalid_store.get(records[1].record_id)

    assert [r.record for r in records] == [{"n": 2}, {"n": 1}, {"n": 0}]
    assert [r.reason for r in records] == ["bad 2", "bad 1", "bad 0"]
    assert invalid_store.count() == 3
    assert len(invalid_store.recent(2)) == 2
    assert one.stage == "enqueue"
    assert one.payload_id == "c/workflow-w/i1"
    assert one.rejected_at == clock.now().isoformat()
    assert payload_store.get_json(one.url)["error"] == "bad 1"


def test_invalid_store_reads_cirrus_bare_records_and_skips_other_names(
    invalid_store: InvalidStore, put_raw_object: Callable[[str, bytes], str]
) -> None:
    bare_id = str(uuid.uuid1())
    put_raw_object(f"tmp/invalid/{bare_id}.json", json.dumps({"id": "c/workflow-w/x"}).encode())
    put_raw_object("tmp/invalid/notes.json", b"{}")
    put_raw_object(f"tmp/invalid/{uuid.uuid4()}.json", b"{}")  # not time-based: not ours

    [record] = invalid_store.recent()

    assert record.record_id == bare_id
    assert record.reason is None
    assert record.payload_id == "c/workflow-w/x"
    assert invalid_store.count() == 1
    with pytest.raises(PayloadNotFoundError):
        invalid_store.get("notes")
    with pytest.raises(PayloadNotFoundError):
        invalid_store.get(str(uuid.uuid1()))
