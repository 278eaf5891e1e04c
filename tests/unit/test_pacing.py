"""Release control: the token bucket keeps the average rate, bursts are bounded, and every
pacer waits on the injected clock (a `FakeClock` here: nothing sleeps)."""

from __future__ import annotations

import threading

from cirrus_feed.backends.base import QueueDepth
from cirrus_feed.feeding.pacing import QueueDepthGate, TokenBucket
from cirrus_feed.support.clock import FakeClock


def test_token_bucket_holds_the_average_rate() -> None:
    clock = FakeClock()
    start = clock.monotonic()
    bucket = TokenBucket(rate=10, clock=clock)

    for _ in range(100):
        bucket.acquire(5)

    # 500 payloads at 10/s with a burst of 10: at least 49 s must have passed.
    assert 49 <= clock.monotonic() - start <= 50.5


def test_token_bucket_first_burst_is_free() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, clock=clock)

    bucket.acquire(100)

    assert clock.slept == []


def test_token_bucket_request_larger_than_burst_goes_through_in_debt() -> None:
    clock = FakeClock()
    start = clock.monotonic()
    bucket = TokenBucket(rate=2, burst=2, clock=clock)

    bucket.acquire(10)  # allowed once full, leaving a debt of 8 tokens
    bucket.acquire(1)

    assert 4.4 <= clock.monotonic() - start <= 4.6  # the debt (8) and one more token at 2/s


def test_token_bucket_waits_are_computed_on_the_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=1, clock=clock)

    bucket.acquire()
    bucket.acquire()  # empty: a quarter second until the next token
    clock.advance(1.0)  # time passed elsewhere refills the bucket (up to the burst)
    bucket.acquire()

    assert clock.slept == [0.25]


def test_token_bucket_shared_by_threads_keeps_the_rate() -> None:
    clock = FakeClock()
    start = clock.monotonic()
    bucket = TokenBucket(rate=10, burst=1, clock=clock)

    threads = [threading.Thread(target=bucket.acquire) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # One free token, then seven waits of 0.1 s, one caller at a time.
    assert abs(clock.monotonic() - start - 0.7) < 1e-9
    assert len(clock.slept) == 7


class _DrainingQueue:
    """A queue whose depth falls by ``rate`` messages a second of the fake clock."""

    def __init__(self, clock: FakeClock, depth: int, rate: float) -> None:
        self.clock, self.depth0, self.rate = clock, depth, rate
        self.start = clock.monotonic()

    def depth(self) -> QueueDepth:
        gone = int((self.clock.monotonic() - self.start) * self.rate)
        return QueueDepth(visible=max(0, self.depth0 - gone), in_flight=0)


def test_queue_depth_gate_polls_on_the_clock_until_the_queue_drains() -> None:
    clock = FakeClock()
    queue = _DrainingQueue(clock, depth=100, rate=10)
    gate = QueueDepthGate(queue, limit=50, poll_seconds=2.0, clock=clock)  # type: ignore[arg-type]

    gate.wait()

    assert clock.slept == [2.0] * 3  # 100 → 80 → 60 → 40: under the limit after three polls


def test_queue_depth_gate_stops_waiting_when_told() -> None:
    clock = FakeClock()
    queue = _DrainingQueue(clock, depth=100, rate=0)
    gate = QueueDepthGate(queue, limit=50, poll_seconds=1.0, clock=clock)  # type: ignore[arg-type]

    gate.wait(stop=lambda: len(clock.slept) >= 2)

    assert clock.slept == [1.0, 1.0]


def test_token_bucket_on_a_fake_clock_never_waits_for_rounding_dust() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=50, burst=1, clock=clock)

    for _ in range(100):
        bucket.acquire()  # 0.02 s steps do not add up exactly in floating point

    assert len(clock.slept) == 99  # one wait per token after the first, none for dust
