"""The one per-entry retry: failed subsets resent with full-jitter backoff."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from cirrus_feed.support.clock import FakeClock
from cirrus_feed.support.retry import backoff_delay, retry_entries


class FlakyBatch:
    """A batch call failing each entry the given number of times before it succeeds."""

    def __init__(self, failures: dict[str, int]) -> None:
        self.failures = dict(failures)
        self.calls: list[list[str]] = []

    def __call__(self, entries: Sequence[str]) -> list[str]:
        self.calls.append(list(entries))
        failed = [e for e in entries if self.failures.get(e, 0) > 0]
        for entry in failed:
            self.failures[entry] -= 1
        return failed


def test_retry_entries_resends_only_the_failed_subset() -> None:
    clock, send = FakeClock(), FlakyBatch({"b": 1, "c": 2})

    left = retry_entries(["a", "b", "c"], send, attempts=4, sleep=clock.sleep)

    assert left == []
    assert send.calls == [["a", "b", "c"], ["b", "c"], ["c"]]
    assert len(clock.slept) == 2  # a wait before each retry, none before the first call


def test_retry_entries_returns_what_still_fails_after_the_last_attempt() -> None:
    clock, send = FakeClock(), FlakyBatch({"a": 99, "b": 1})

    left = retry_entries(["a", "b"], send, attempts=3, sleep=clock.sleep)

    assert left == ["a"]
    assert len(send.calls) == 3
    assert len(clock.slept) == 2  # no wait after the last attempt


def test_retry_entries_all_good_first_time_never_sleeps() -> None:
    clock = FakeClock()

    assert retry_entries(["a"], FlakyBatch({}), attempts=4, sleep=clock.sleep) == []
    assert clock.slept == []


def test_retry_entries_waits_are_full_jitter_within_the_doubling_cap() -> None:
    clock, rng = FakeClock(), random.Random(7)

    retry_entries(
        ["a"],
        FlakyBatch({"a": 99}),
        attempts=6,
        sleep=clock.sleep,
        base=0.1,
        cap=0.5,
        rng=rng.random,
    )

    ceilings = [0.1, 0.2, 0.4, 0.5, 0.5]
    assert len(clock.slept) == len(ceilings)
    assert all(0 <= slept < ceiling for slept, ceiling in zip(clock.slept, ceilings, strict=True))
    assert len(set(clock.slept)) == len(ceilings)  # jittered, not a fixed schedule


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 0.0), (0.5, 0.1), (0.999, 0.1998)])
def test_backoff_delay_scales_the_draw(draw: float, expected: float) -> None:
    assert backoff_delay(2, base=0.1, cap=1.0, rng=lambda: draw) == pytest.approx(expected)
    assert backoff_delay(10, base=0.1, cap=1.0, rng=lambda: draw) == pytest.approx(draw)


def test_retry_entries_lets_the_calls_own_errors_through() -> None:
    def broken(entries: Sequence[str]) -> list[str]:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError, match="down"):
        retry_entries(["a"], broken, attempts=3, sleep=FakeClock().sleep)
