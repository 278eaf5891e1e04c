"""The one clock: wall time, monotonic time and sleeping, injected wherever time matters.

Everything that reads the time or waits (queue visibility, leases, feed-store TTLs, pacers,
scheduler windows, Retry-After) takes a `Clock`, so tests drive time with `FakeClock`
instead of sleeping or racing the wall clock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Time as the code sees it."""

    def now(self) -> datetime:
        """The current UTC time, timezone-aware."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (``now()`` as a float), for stored deadlines."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes back, for measuring intervals."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock advances instead)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to (`advance`) or when something sleeps on it.

    Thread-safe, so a worker thread sleeping on it and a test advancing it may share it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._monotonic = 1000.0
        self._lock = threading.Lock()
        self.slept: list[float] = []  # every sleep, in order, for tests to assert on

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def time(self) -> float:
        return self.now().timestamp()

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already (as STAC's are)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
