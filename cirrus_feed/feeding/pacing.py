"""Release control for feeds: a token bucket (payloads or requests a second), an in-flight
cap and a queue-depth gate. All wait on an injected `Clock`, so tests never sleep."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from cirrus_feed.backends.base import PayloadQueue, StateStore
from cirrus_feed.model.states import TERMINAL
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

_SLACK = 1e-9  # tokens


class TokenBucket:
    """At most ``rate`` acquisitions a second on average, bursts up to ``burst``.

    Thread-safe: callers sharing a bucket (the stac-api host pacer) take turns.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.stamp = clock.monotonic()
        self._lock = threading.Lock()

    def acquire(self, n: int = 1) -> None:
        """Block until ``n`` tokens are available, then take them."""
        with self._lock:  # held while waiting: the next caller waits for its own tokens
            while True:
                now = self.clock.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                # _SLACK: float rounding of (now - stamp) * rate must not leave a wait for a
                # billionth of a token, which a fake clock could never add up to.
                have = self.tokens + _SLACK
                if have >= n or (have >= self.capacity and n > self.capacity):
                    self.tokens -= n  # a request larger than the bucket goes through, in debt
                    return
                self.clock.sleep((min(n, self.capacity) - self.tokens) / self.rate)


class InFlight:
    """The feeder's own payloads that are queued or processing, capped at ``limit``.

    Tracks the ids this run enqueued; an id stops counting once its state is final.
    """

    def __init__(
        self,
        state: StateStore,
        limit: int,
        poll_seconds: float = 1.0,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.state = state
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.outstanding: set[str] = set()

    def add(self, payload_ids: Iterable[str]) -> None:
        self.outstanding.update(payload_ids)

    def refresh(self) -> int:
        records = self.state.get_many(self.outstanding)
        self.outstanding = {
            pid
            for pid in self.outstanding
            if pid not in records or records[pid].state not in TERMINAL
        }
        return len(self.outstanding)

    def wait_for_room(self, needed: int, stop: Callable[[], bool] = lambda: False) -> None:
        """Block while sending ``needed`` more would exceed the cap (or until ``stop()``)."""
        while self.outstanding and len(self.outstanding) + needed > self.limit and not stop():
            if self.refresh() + needed <= self.limit:
                return
            self.clock.sleep(self.poll_seconds)


class QueueDepthGate:
    """Holds a feed back while the process queue holds more than ``limit`` messages
    (visible + in flight): a backfill must not push live payloads into the dead-letter
    queue by outrunning `process` (feeders-prior-art §1.2)."""

    def __init__(
        self,
        queue: PayloadQueue,
        limit: int,
        poll_seconds: float = 5.0,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.queue = queue
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.clock = clock

    def wait(self, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            depth = self.queue.depth()
            if depth.visible + depth.in_flight <= self.limit:
                return
            self.clock.sleep(self.poll_seconds)
