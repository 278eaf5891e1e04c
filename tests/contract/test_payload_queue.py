"""Contract of `PayloadQueue` (base.py docstrings), run against SQLite and SQS.

The ``payload_queue`` fixture dead-letters a message on its third receive (max 2).
"""

from __future__ import annotations

from collections.abc import Callable

from cirrus_feed.backends.base import PayloadQueue, QueueMessage
from cirrus_feed.model.payload import MAX_MESSAGE_BYTES

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
    too_big = "x" * (MAX_MESSAGE_BYTES + 1)

    results = payload_queue.send(["before", too_big, "after"])

    assert payload_queue.max_message_bytes == MAX_MESSAGE_BYTES
    assert [result.ok for result in results] == [True, False, True]
    assert results[1].message_id is None
    assert results[1].error
    received = receive_all(payload_queue, 3)
    assert sorted(message.body for message in received) == ["after", "before"]


def test_payload_queue_sends_bodies_at_the_size_limit(payload_queue: PayloadQueue) -> None:
    # Two maximal bodies cannot share one SQS batch (256 KiB a batch): they must be split.
    bodies = ["a" * MAX_MESSAGE_BYTES, "b" * MAX_MESSAGE_BYTES]

    results = payload_queue.send(bodies)

    assert [result.ok for result in results] == [True, True]
    received = receive_all(payload_queue, 2)
    assert sorted(message.body for message in received) == bodies


def test_payload_queue_measures_size_in_utf8_bytes(payload_queue: PayloadQueue) -> None:
    # Fewer characters than the limit, more bytes.
    accented = "é" * (MAX_MESSAGE_BYTES // 2 + 1)

    [result] = payload_queue.send([accented])

    assert not result.ok
    assert payload_queue.depth().visible == 0
