"""Release control: the token bucket keeps the average rate, bursts are bounded."""

from __future__ import annotations

from cirrus_feed.feeding.pacing import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_token_bucket_holds_the_average_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=10, clock=time.clock, sleep=time.sleep)

    for _ in range(100):
        bucket.acquire(5)

    # 500 payloads at 10/s with a burst of 10: at least 49 s must have passed.
    assert 49 <= time.now <= 50.5


def test_token_bucket_first_burst_is_free() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=100, clock=time.clock, sleep=time.sleep)

    bucket.acquire(100)

    assert time.slept == 0


def test_token_bucket_request_larger_than_burst_goes_through_in_debt() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=2, burst=2, clock=time.clock, sleep=time.sleep)

    bucket.acquire(10)  # allowed once full, leaving a debt of 8 tokens
    bucket.acquire(1)

    assert 4.4 <= time.now <= 4.6  # the debt (8) and one more token at 2/s
