"""The one clock: `FakeClock` moves only when told (or slept on), `SystemClock` is real."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cirrus_feed.support.clock import SYSTEM_CLOCK, FakeClock, utc

START = datetime(2025, 6, 1, 12, tzinfo=UTC)


def test_fake_clock_stands_still_until_advanced() -> None:
    clock = FakeClock(START)
    mono = clock.monotonic()

    assert clock.now() == START
    assert clock.time() == START.timestamp()
    clock.advance(90.5)

    assert clock.now() == START + timedelta(seconds=90.5)
    assert clock.time() == START.timestamp() + 90.5
    assert clock.monotonic() == mono + 90.5


def test_fake_clock_sleep_advances_and_is_recorded() -> None:
    clock = FakeClock(START)

    clock.sleep(2.0)
    clock.sleep(-1.0)  # a negative wait (a deadline already passed) moves nothing

    assert clock.slept == [2.0, -1.0]
    assert clock.now() == START + timedelta(seconds=2)


def test_fake_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2025, 6, 1))  # noqa: DTZ001 - the naive datetime under test


def test_fake_clock_is_shared_safely_by_threads() -> None:
    clock = FakeClock(START)

    def advance_many() -> None:
        for _ in range(1000):
            clock.advance(0.5)

    threads = [threading.Thread(target=advance_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert clock.now() == START + timedelta(seconds=2000)


def test_system_clock_reads_aware_utc_and_skips_non_positive_sleeps() -> None:
    before = datetime.now(UTC)
    now = SYSTEM_CLOCK.now()
    mono = SYSTEM_CLOCK.monotonic()
    SYSTEM_CLOCK.sleep(0)
    SYSTEM_CLOCK.sleep(-5)  # returns at once instead of raising as time.sleep would

    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
    assert abs(SYSTEM_CLOCK.time() - now.timestamp()) < 5
    assert SYSTEM_CLOCK.monotonic() >= mono


def test_utc_takes_naive_as_utc_and_converts_aware() -> None:
    paris = timezone(timedelta(hours=2))

    assert utc(datetime(2024, 1, 1, 12)) == datetime(2024, 1, 1, 12, tzinfo=UTC)  # noqa: DTZ001
    assert utc(datetime(2024, 1, 1, 14, tzinfo=paris)) == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert utc(datetime(2024, 1, 1, 14, tzinfo=paris)).tzinfo is UTC
