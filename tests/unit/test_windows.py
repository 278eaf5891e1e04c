"""The time-window planner: a list of timestamps stands in for the STAC API."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeders.stac_api.windows import (
    MICROSECOND,
    SORT_SLACK,
    Probed,
    Window,
    isoformat,
    parse_instant,
    plan,
    resolve_range,
)

BASE = datetime(2024, 1, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000


def at(offset_us: int) -> datetime:
    return BASE + timedelta(microseconds=offset_us)


# Offsets (µs from BASE) biased towards the edges that broke the old feeder.
offsets = st.one_of(
    st.integers(min_value=-2 * HOUR_US, max_value=60 * HOUR_US),
    st.integers(min_value=-1, max_value=50).map(lambda h: h * HOUR_US),  # on the hour
    st.integers(min_value=0, max_value=50).map(lambda h: h * HOUR_US - 500_000),  # :59:59.5
    st.integers(min_value=0, max_value=50).map(lambda h: h * HOUR_US - 1),  # :59:59.999999
)


@st.composite
def timestamps(draw: st.DrawFn) -> list[datetime]:
    distinct = draw(st.lists(offsets, max_size=40))
    crowded = draw(st.lists(st.sampled_from(distinct), max_size=30)) if distinct else []
    return [at(o) for o in distinct + crowded]  # many items may share one instant


@dataclass
class Source:
    """``stamps`` served in the order given (``ordered``: sorted first, as a sorting API
    answers), counting the records every probe read."""

    stamps: list[datetime]
    ordered: bool = False
    read: int = 0

    def probe(self, window: Window, cap: int) -> Probed[datetime]:
        served = sorted(self.stamps) if self.ordered else self.stamps
        inside: list[datetime] = []
        for stamp in served:
            if stamp in window:
                self.read += 1
                inside.append(stamp)
                if len(inside) > cap:
                    return Probed(inside, inside, complete=False, ordered=self.ordered)
        return Probed(inside, inside, complete=True)


def feed_all(
    window: Window, stamps: list[datetime], cap: int, *, ordered: bool = False
) -> tuple[list[Window], list[datetime], Source]:
    """What the feeder does: plan with a probe over ``stamps``; page atomic leaves in full."""
    source = Source(stamps, ordered)
    windows, fed = [], []
    for leaf in plan(window, source.probe, cap):
        windows.append(leaf.window)
        if leaf.records is None:
            assert leaf.window.atomic
            inside = [t for t in stamps if t in leaf.window]
            source.read += len(inside)
            fed += inside
        else:
            assert len(leaf.records) <= cap
            fed += leaf.records
    return windows, fed, source


@settings(max_examples=300, deadline=None)
@given(
    stamps=timestamps(),
    start=st.one_of(st.none(), offsets),
    end=st.one_of(st.none(), offsets),
    now=offsets,
    cap=st.integers(min_value=1, max_value=8),
    since=st.one_of(st.none(), offsets),
    watermark=st.one_of(st.none(), offsets),
    lookback_us=st.sampled_from([0, 1, 500_000, HOUR_US]),
    ordered=st.booleans(),
)
def test_windows_cover_the_range_once_and_feed_every_item_once(
    stamps: list[datetime],
    start: int | None,
    end: int | None,
    now: int,
    cap: int,
    since: int | None,
    watermark: int | None,
    lookback_us: int,
    ordered: bool,
) -> None:
    def resolve() -> Window | None:
        return resolve_range(
            None if start is None else at(start),
            None if end is None else at(end),
            now=at(now),
            since=None if since is None else at(since),
            watermark=None if watermark is None else at(watermark),
            lookback=timedelta(microseconds=lookback_us),
        )

    if start is None and since is None and watermark is None:
        with pytest.raises(ValueError, match="start"):
            resolve()
        return
    run = resolve()
    if run is None:
        return
    # Never outside the configured range, never past now.
    assert start is None or run.start >= at(start)
    assert run.end <= at(now)
    assert end is None or run.end <= at(end)

    windows, fed, _ = feed_all(run, stamps, cap, ordered=ordered)

    assert windows[0].start == run.start
    assert windows[-1].end == run.end
    assert all(a.end == b.start for a, b in pairwise(windows))
    assert Counter(fed) == Counter(t for t in stamps if run.start <= t < run.end)


def test_windows_split_a_crowded_instant_down_to_one_microsecond() -> None:
    crowd = at(HOUR_US - 500_000)  # …:59:59.5
    stamps = [crowd] * 10 + [at(HOUR_US)]

    windows, fed, _ = feed_all(Window(BASE, at(2 * HOUR_US)), stamps, cap=3)

    assert Counter(fed) == Counter(stamps)
    assert Window(crowd, crowd + MICROSECOND) in windows


def test_windows_item_on_an_edge_belongs_to_the_later_window() -> None:
    first, second = Window(BASE, at(HOUR_US)).halves()

    assert first.end == second.start
    assert at(HOUR_US // 2) not in first
    assert at(HOUR_US // 2) in second
    assert at(HOUR_US // 2 - 1) in first


def test_windows_reject_naive_or_empty_windows() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2024, 1, 1), datetime(2024, 1, 2))  # noqa: DTZ001
    with pytest.raises(ValueError, match="empty"):
        Window(BASE, BASE)


def test_windows_isoformat_keeps_microseconds_and_parse_cuts_nanoseconds() -> None:
    assert isoformat(at(HOUR_US - 500_000)) == "2024-01-01T00:59:59.500000Z"
    assert parse_instant("2024-01-01T00:59:59.999999500Z") == at(HOUR_US - 1)
    assert parse_instant("2024-01-01T02:00:00+02:00") == BASE
    assert parse_instant("2024-01-01T00:00:00") == BASE  # naive: UTC, never local time


def test_windows_resolve_range_prefers_watermark_then_since_then_start() -> None:
    now = at(10 * HOUR_US)
    lookback = timedelta(hours=1)

    from_mark = resolve_range(
        BASE, None, now=now, since=at(HOUR_US), watermark=at(5 * HOUR_US), lookback=lookback
    )
    from_since = resolve_range(BASE, None, now=now, since=at(HOUR_US))
    clamped = resolve_range(
        at(3 * HOUR_US), at(8 * HOUR_US), now=now, watermark=at(3 * HOUR_US), lookback=lookback
    )

    assert from_mark == Window(at(4 * HOUR_US), now)
    assert from_since == Window(at(HOUR_US), now)
    assert clamped == Window(at(3 * HOUR_US), at(8 * HOUR_US))
    assert resolve_range(BASE, None, now=now, watermark=now) is None


def steady(count: int, hours: int = 240) -> list[datetime]:
    """``count`` stamps evenly over ``hours``, some on half seconds."""
    step = hours * HOUR_US // count
    return [at(n * step + (500_000 if n % 10 == 0 else 0)) for n in range(count)]


@pytest.mark.parametrize("ordered", [False, True])
def test_windows_read_a_steady_source_once(ordered: bool) -> None:
    stamps = steady(20_000)

    windows, fed, source = feed_all(Window(BASE, at(240 * HOUR_US)), stamps, 500, ordered=ordered)

    assert Counter(fed) == Counter(stamps)
    assert source.read == len(stamps)  # no probe thrown away
    assert len(windows) < 2 * len(stamps) / 250  # about half the cap each, after a few steps


def burst() -> list[datetime]:
    """Sparse stamps for 100 hours, then a burst 70 times denser (ten a second)."""
    return steady(2_000, hours=100) + [at(100 * HOUR_US + n * 100_000) for n in range(5_000)]


def test_windows_overflow_in_time_order_cuts_at_the_overflow_and_reads_little_again() -> None:
    # The window sized for the sparse part overflows on the burst.
    sparse, dense = (
        steady(2_000, hours=100),
        [at(100 * HOUR_US + n * 100_000) for n in range(5_000)],
    )
    stamps = sparse + dense

    _, fed, source = feed_all(Window(BASE, at(200 * HOUR_US)), stamps, 400)

    assert Counter(fed) == Counter(stamps)
    assert source.read < 1.3 * len(stamps)


def test_windows_sorted_overflow_feeds_what_it_read() -> None:
    sparse, dense = (
        steady(2_000, hours=100),
        [at(100 * HOUR_US + n * 100_000) for n in range(5_000)],
    )
    stamps = sparse + dense

    _, fed, source = feed_all(Window(BASE, at(200 * HOUR_US)), stamps, 400, ordered=True)

    assert Counter(fed) == Counter(stamps)
    # what is read again is only what lay within the sort slack of each overflow's end
    assert source.read < 1.05 * len(stamps)


def test_windows_unsorted_read_of_a_sorted_probe_is_not_trusted() -> None:
    # A probe that claims order but answers out of it: the planner reads the window again.
    stamps = [at(n * 10_000_000) for n in range(40)]
    shuffled = stamps[20:] + stamps[:20]

    def probe(window: Window, cap: int) -> Probed[datetime]:
        inside = [t for t in shuffled if t in window]
        if len(inside) > cap:
            return Probed(inside[: cap + 1], inside[: cap + 1], complete=False, ordered=True)
        return Probed(inside, inside, complete=True)

    leaves = list(plan(Window(BASE, at(HOUR_US)), probe, 5))

    fed = [t for leaf in leaves for t in leaf.records or []]
    assert Counter(fed) == Counter(stamps)
    assert timedelta(seconds=10) > SORT_SLACK
