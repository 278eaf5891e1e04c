"""Half-open UTC time windows, and the planner that cuts a run into windows under a cap.

Pure: no IO. The source is abstracted as a *probe*, a callable that reads a window and
returns its records, all of them when there are at most ``cap``, else the first
``cap + 1`` it was given (see `Probed`). The planner walks the run from its start,
window after window, sizing each from the density of the last so that a probe is rarely
thrown away (`plan`). The leaves partition the requested range exactly: ``[a, b)`` and
``[b, c)`` share no instant and leave no gap, whatever the records' sub-second parts are
(the old feeder's second-precision closed windows lost ``…:59:59.5``).

A window one microsecond wide holds a single instant and cannot be cut; when it is still
over the cap it is yielded with ``records=None`` and the caller pages through it in full,
so one crowded instant never makes the planner loop forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Generic, TypeVar

from cirrus_feed.support.clock import utc

T = TypeVar("T")

MICROSECOND = timedelta(microseconds=1)

Probe = Callable[["Window", int], "Probed[T]"]
"""``probe(window, cap)``: the records read of ``window``, all of them if at most ``cap``."""

FIRST_SLICE = 1024
"""The first window of a run is this fraction of it: small enough to fit a dense source,
few enough steps (growing 4 times each) to reach the cap's size on a sparse one."""

MAX_GROWTH = 4.0
SORT_SLACK = timedelta(seconds=1)


def isoformat(value: datetime) -> str:
    """RFC 3339 in UTC with all six fractional digits, e.g. ``2024-01-01T00:59:59.500000Z``."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime; digits beyond microseconds are cut.

    Raises:
        ValueError: ``text`` is not a timestamp.
    """
    return utc(datetime.fromisoformat(text))


@dataclass(frozen=True, slots=True)
class Window:
    """The instants ``start <= t < end`` (aware UTC datetimes)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"window {self.start}/{self.end} must be timezone-aware")
        if self.start >= self.end:
            raise ValueError(f"window {self.label} is empty: start must be before end")

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def atomic(self) -> bool:
        """True when the window holds a single microsecond instant and cannot be halved."""
        return self.end - self.start <= MICROSECOND

    def halves(self) -> tuple[Window, Window]:
        """Two adjacent windows covering this one, split at a whole microsecond."""
        middle = self.start + (self.end - self.start) // 2
        return Window(self.start, middle), Window(middle, self.end)

    @property
    def label(self) -> str:
        return f"{isoformat(self.start)}/{isoformat(self.end)}"


@dataclass(frozen=True, slots=True)
class Leaf(Generic[T]):
    """A window to feed, with its records.

    ``records`` is ``None`` only for an atomic window over the cap: page it in full.
    """

    window: Window
    records: Sequence[T] | None


@dataclass(frozen=True, slots=True)
class Probed(Generic[T]):
    """What a probe read of a window: its records (API order) and their instants.

    ``complete``: every record of the window, at most the cap. Otherwise the probe stopped
    at the first record past the cap. ``ordered``: the search asked the API to sort by
    time, so an incomplete read is the window's earliest records (give or take
    `SORT_SLACK`).
    """

    records: Sequence[T]
    instants: Sequence[datetime]
    complete: bool
    ordered: bool = False


def plan(
    window: Window,
    probe: Probe[T],
    cap: int,
    *,
    ahead: Callable[[Window], None] | None = None,
) -> Iterator[Leaf[T]]:
    """Cut ``window`` into leaves of at most ``cap`` records, probing each once.

    Leaves come out in chronological order and partition ``window`` exactly. Lazy: the
    next window is probed only when the next leaf is asked for; ``ahead`` is told which
    window that will be before a leaf is yielded, so its probe can start early. Widths are
    chosen from the records seen, never from a reported match count: the first window is
    a small slice (`FIRST_SLICE`), and each next one is sized for ``cap // 2`` records at
    the density of the last one (growing at most `MAX_GROWTH` times), so a steady source
    is read once, with no probe thrown away. A probe that overflows anyway picks the next
    end from its own instants; when the API sorts, its records before that end are
    complete and are fed rather than read again.
    """
    if cap < 1:
        raise ValueError(f"cap must be at least 1, not {cap}")
    target = max(1, cap // 2)
    cursor = window.start
    width = max((window.end - window.start) / FIRST_SLICE, MICROSECOND)
    while cursor < window.end:
        current = Window(cursor, min(window.end, cursor + width))
        read = probe(current, cap)
        if read.complete:
            leaf = Leaf(current, read.records)
        elif current.atomic or sum(t == cursor for t in read.instants) > cap:
            atomic = Window(cursor, cursor + MICROSECOND)  # one crowded instant: page it
            yield Leaf(atomic, None)
            cursor = atomic.end
            continue
        else:
            cut = _sorted_cut(read, cursor) if read.ordered else None
            if cut is None:
                width = _unsorted_cut(read.instants, cursor, target) - cursor
                continue
            # sorted: what came before `cut` is all of [cursor, cut)
            records = [r for r, t in zip(read.records, read.instants, strict=True) if t < cut]
            leaf = Leaf(Window(cursor, cut), records)
        width = _next_width(leaf.window, len(leaf.records or ()), target)
        cursor = leaf.window.end
        if ahead is not None and cursor < window.end:
            ahead(Window(cursor, min(window.end, cursor + width)))
        yield leaf


def _next_width(done: Window, count: int, target: int) -> timedelta:
    """The width that holds ``target`` records at ``done``'s density, grown at most
    `MAX_GROWTH` times (an empty window says little about the next)."""
    width = done.end - done.start
    factor = MAX_GROWTH if count == 0 else min(MAX_GROWTH, target / count)
    return max(width * factor, MICROSECOND)


def _sorted_cut(read: Probed[T], cursor: datetime) -> datetime | None:
    """The end before which a sorted read holds every record of the window, or ``None``
    when the read is not in time order after all (or all within the slack of ``cursor``).

    Records not read come after the last one read in the API's order, so their instants
    are at least the last one's minus the API's rounding (`SORT_SLACK` covers sorting
    at whole seconds, rounded or cut).
    """
    instants = read.instants
    if any(b < a - SORT_SLACK for a, b in pairwise(instants)):
        return None
    cut = instants[-1] - SORT_SLACK
    return cut if cut > cursor else None


def _unsorted_cut(instants: Sequence[datetime], cursor: datetime, target: int) -> datetime:
    """An end for a window after ``cursor`` that held ``instants`` and more: before it at
    most ``target`` of them (exactly the window's records when the API happened to answer
    in time order). Needs at most the cap of ``instants`` on ``cursor`` itself."""
    ordered = sorted(instants)
    cut = ordered[min(target, len(ordered) - 1)]
    if cut > cursor:
        return cut
    return next(t for t in ordered if t > cursor)


def resolve_range(
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    watermark: datetime | None = None,
    lookback: timedelta = timedelta(0),
) -> Window | None:
    """The window one run covers, or ``None`` when there is nothing left to feed.

    The run starts at ``watermark - lookback`` when resuming, else ``since``, else
    ``start``; it ends at ``until``, else ``end``, else ``now``. It never leaves the
    configured ``[start, end)`` and never reaches past ``now``, so a watermark cannot jump
    over items that have not been published yet.

    Raises:
        ValueError: no lower bound at all (no watermark, ``since`` nor ``start``).
    """
    if watermark is not None:
        lower = utc(watermark) - lookback
    elif since is not None:
        lower = utc(since)
    elif start is not None:
        lower = utc(start)
    else:
        raise ValueError("no start: set datetime.start, pass since, or resume from a cursor")
    if start is not None:
        lower = max(lower, utc(start))
    upper = utc(now)
    for bound in (until, end):
        if bound is not None:
            upper = min(upper, utc(bound))
    return Window(lower, upper) if lower < upper else None
