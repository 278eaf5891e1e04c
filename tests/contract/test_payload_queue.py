"""Contract of `PayloadQueue` (base.py docstrings), run against SQLite and SQS.

The ``payload_queue`` fixture dead-letters a message on its third receive (max 2).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cirrus_feed.backends.base import PayloadQueue, QueueMessage
from cirrus_feed.backends.limits import (
    SQS_MAX_MESSAGE_BYTES,
    SQS_MAX_RECEIVE_MESSAGES,
    SQS_MAX_VISIBILITY_TIMEOUT,
)
from cirrus_feed.support.clock import FakeClock

Elapse = Callable[[float], None]


def receive_all(queue: PayloadQueue, expected: int, **kwargs: int) -> list[QueueMessage]:
    """Receive until ``expected`` messages arrived or the queue has none visible."""
    messages: list[QueueMessage] = []
    while len(messages) < expected:
        batch = queue.receive(10, **kwargs)
        if not batch:
            break
        messages += batch
    return messages


def test_payload_queue_round_trip(payload_queue: PayloadQueue) -> None:
    [sent] = payload_queue.send(['{"id": "a"}'])

    [message] = payload_queue.receive(10)
    payload_queue.delete([message.receipt])

    assert sent.ok
    assert message.message_id == sent.message_id
    assert message.body == '{"id": "a"}'
    assert message.receive_count == 1
    assert payload_queue.receive(10) == []
    depth = payload_queue.depth()
    assert (depth.visible, depth.in_flight) == (0, 0)


def test_payload_queue_send_results_follow_input_order(payload_queue: PayloadQueue) -> None:
    bodies = [f"body-{n}" for n in range(25)]

    results = payload_queue.send(bodies)

    assert len(results) == 25
    assert all(result.ok for result in results)
    assert len({result.message_id for result in results}) == 25
    received = receive_all(payload_queue, 25)
    by_id: dict[str | None, str] = {message.message_id: message.body for message in received}
    assert [by_id[result.message_id] for result in results] == bodies
    assert payload_queue.depth().in_flight == 25


def test_payload_queue_send_ids_skip_rejected_bodies(payload_queue: PayloadQueue) -> None:
    # Bodies rejected for size between sent ones: each sent body keeps its own message id.
    too_big = "x" * (SQS_MAX_MESSAGE_BYTES + 1)
    bodies = ["first", too_big, "second", too_big, "third"]

    results = payload_queue.send(bodies)

    assert [result.ok for result in results] == [True, False, True, False, True]
    assert (results[1].error or "").startswith("message 1:")
    assert (results[3].error or "").startswith("message 3:")
    received = receive_all(payload_queue, 3)
    by_id: dict[str | None, str] = {message.message_id: message.body for message in received}
    assert [by_id[results[n].message_id] for n in (0, 2, 4)] == ["first", "second", "third"]


def test_payload_queue_send_nothing(payload_queue: PayloadQueue) -> None:
    assert payload_queue.send([]) == []
    assert payload_queue.depth().visible == 0


def test_payload_queue_depth_counts_visible_messages(payload_queue: PayloadQueue) -> None:
    payload_queue.send(["a", "b", "c"])

    depth = payload_queue.depth()

    assert (depth.visible, depth.in_flight) == (3, 0)


def test_payload_queue_received_message_is_invisible(payload_queue: PayloadQueue) -> None:
    payload_queue.send(["a"])

    first = payload_queue.receive(10, visibility_timeout=30)

    assert len(first) == 1
    assert payload_queue.receive(10) == []
    depth = payload_queue.depth()
    assert (depth.visible, depth.in_flight) == (0, 1)


def test_payload_queue_receive_respects_max_messages(payload_queue: PayloadQueue) -> None:
    payload_queue.send(["a", "b", "c"])

    first = payload_queue.receive(2)

    assert len(first) == 2
    assert [message.body for message in payload_queue.receive(10)] == [
        body for body in ("a", "b", "c") if body not in {m.body for m in first}
    ]


def test_payload_queue_redelivers_after_visibility_timeout(
    payload_queue: PayloadQueue, elapse: Elapse
) -> None:
    payload_queue.send(["a"])
    [first] = payload_queue.receive(10, visibility_timeout=1)

    elapse(1.1)
    [again] = payload_queue.receive(10, visibility_timeout=30, wait_seconds=2)

    assert again.message_id == first.message_id
    assert again.body == "a"
    assert again.receive_count == 2


def test_payload_queue_change_visibility_releases_message(payload_queue: PayloadQueue) -> None:
    payload_queue.send(["a"])
    [first] = payload_queue.receive(10, visibility_timeout=300)

    payload_queue.change_visibility(first.receipt, 0)
    [again] = payload_queue.receive(10, visibility_timeout=300)

    assert again.message_id == first.message_id
    assert again.receive_count == 2


def test_payload_queue_change_visibility_extends_timeout(
    payload_queue: PayloadQueue, elapse: Elapse
) -> None:
    payload_queue.send(["a"])
    [first] = payload_queue.receive(10, visibility_timeout=1)

    payload_queue.change_visibility(first.receipt, 300)
    elapse(1.1)

    assert payload_queue.receive(10) == []


def test_payload_queue_delete_ignores_stale_and_unknown_receipts(
    payload_queue: PayloadQueue,
) -> None:
    payload_queue.send(["a"])
    [first] = payload_queue.receive(10, visibility_timeout=300)
    payload_queue.change_visibility(first.receipt, 0)
    [again] = payload_queue.receive(10, visibility_timeout=300)

    payload_queue.delete([first.receipt, "not-a-receipt"])
    payload_queue.delete([again.receipt])
    payload_queue.delete([again.receipt])

    depth = payload_queue.depth()
    assert (depth.visible, depth.in_flight) == (0, 0)


def test_payload_queue_dead_letters_after_max_receives(payload_queue: PayloadQueue) -> None:
    payload_queue.send(["poison"])
    for count in (1, 2):
        [message] = payload_queue.receive(10, visibility_timeout=300)
        assert message.receive_count == count
        payload_queue.change_visibility(message.receipt, 0)

    assert payload_queue.receive(10) == []
    depth = payload_queue.depth()
    assert (depth.visible, depth.in_flight, depth.dead) == (0, 0, 1)


def test_payload_queue_refuses_oversize_body(payload_queue: PayloadQueue) -> None:
    too_big = "x" * (SQS_MAX_MESSAGE_BYTES + 1)

    results = payload_queue.send(["before", too_big, "after"])

    assert payload_queue.max_message_bytes == SQS_MAX_MESSAGE_BYTES
    assert [result.ok for result in results] == [True, False, True]
    assert results[1].message_id is None
    assert results[1].error
    received = receive_all(payload_queue, 3)
    assert sorted(message.body for message in received) == ["after", "before"]


def test_payload_queue_sends_bodies_at_the_size_limit(payload_queue: PayloadQueue) -> None:
    # Two maximal bodies cannot share one SQS batch (256 KiB a batch): they must be split.
    bodies = ["a" * SQS_MAX_MESSAGE_BYTES, "b" * SQS_MAX_MESSAGE_BYTES]

    results = payload_queue.send(bodies)

    assert [result.ok for result in results] == [True, True]
    received = receive_all(payload_queue, 2)
    assert sorted(message.body for message in received) == bodies


def test_payload_queue_measures_size_in_utf8_bytes(payload_queue: PayloadQueue) -> None:
    # Fewer characters than the limit, more bytes.
    accented = "é" * (SQS_MAX_MESSAGE_BYTES // 2 + 1)

    [result] = payload_queue.send([accented])

    assert not result.ok
    assert payload_queue.depth().visible == 0


# -- limits (SQS's, on every backend: see `PayloadQueue` and `backends.limits`) ---------------


def test_payload_queue_send_reports_oversize_body_the_same_way(
    payload_queue: PayloadQueue,
) -> None:
    too_big = "x" * (SQS_MAX_MESSAGE_BYTES + 1)

    [result] = payload_queue.send([too_big])

    assert result.error == (
        f"message 0: body is {SQS_MAX_MESSAGE_BYTES + 1} bytes, over the SQS limit of "
        f"{SQS_MAX_MESSAGE_BYTES} bytes"
    )


def test_payload_queue_send_batches_many_bodies_at_the_size_limit(
    payload_queue: PayloadQueue,
) -> None:
    # 12 bodies of 100 KiB: more than one batch by entry count and by size.
    bodies = [chr(ord("a") + n) * (100 * 1024) for n in range(12)]

    results = payload_queue.send(bodies)

    assert all(result.ok for result in results)
    assert sorted(m.body for m in receive_all(payload_queue, 12)) == bodies


def test_payload_queue_receive_clamps_max_messages_to_ten(payload_queue: PayloadQueue) -> None:
    payload_queue.send([f"m{n}" for n in range(15)])

    first = payload_queue.receive(SQS_MAX_RECEIVE_MESSAGES + 15, visibility_timeout=300)

    # SQS may return fewer than asked; never more than 10, and asking for more is no error.
    assert 1 <= len(first) <= SQS_MAX_RECEIVE_MESSAGES
    assert len(receive_all(payload_queue, 15 - len(first), visibility_timeout=300)) == 15 - len(
        first
    )


def test_payload_queue_receive_of_zero_or_fewer_is_empty(payload_queue: PayloadQueue) -> None:
    payload_queue.send(["a"])

    assert payload_queue.receive(0) == []
    assert payload_queue.receive(-3) == []
    assert payload_queue.depth().visible == 1


def test_payload_queue_clamps_visibility_timeout_to_sqs_bounds(
    payload_queue: PayloadQueue,
) -> None:
    payload_queue.send(["a", "b", "c"])

    # Over 12 hours: clamped to 43200 s (SQS would refuse the request), so still invisible.
    [first] = payload_queue.receive(1, visibility_timeout=SQS_MAX_VISIBILITY_TIMEOUT + 1)
    # Negative: clamped to 0, so visible again at once.
    released = receive_all(payload_queue, 2, visibility_timeout=-5)
    again = receive_all(payload_queue, 2, visibility_timeout=300)

    ids = {m.message_id for m in released}
    assert len(ids) == 2
    assert first.message_id not in ids
    assert {m.message_id for m in again} == ids


def test_payload_queue_change_visibility_clamps_timeout(payload_queue: PayloadQueue) -> None:
    payload_queue.send(["a"])
    [first] = payload_queue.receive(10, visibility_timeout=300)

    payload_queue.change_visibility(first.receipt, -5)  # clamped to 0: visible at once
    [again] = payload_queue.receive(10, visibility_timeout=300)

    assert again.message_id == first.message_id


def test_payload_queue_clamps_negative_wait(payload_queue: PayloadQueue) -> None:
    started = time.monotonic()

    assert payload_queue.receive(10, wait_seconds=-1) == []
    assert time.monotonic() - started < 5


def test_payload_queue_depth_tells_the_age_of_the_oldest_message_where_known(
    payload_queue: PayloadQueue, backend: str, clock: FakeClock
) -> None:
    payload_queue.send(["old"])
    clock.advance(40)
    payload_queue.send(["new"])
    clock.advance(2)

    depth = payload_queue.depth()

    # SQS tells the age only as a CloudWatch metric, not as a queue attribute.
    assert depth.oldest_age == (42.0 if backend == "local" else None)
    assert payload_queue.depth().visible == 2
