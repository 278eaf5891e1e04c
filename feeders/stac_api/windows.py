"""Half-open UTC time windows, and the splitter that keeps each one under a size cap.

Pure: no IO. The source is abstracted as a *probe*, a callable that returns a window's
records when there are at most ``cap`` of them and ``None`` when there are more. The
splitter halves over-full windows (by time, at microsecond precision) until each fits,
and yields the leaves in chronological order. The leaves partition the requested range
exactly: ``[a, b)`` and ``[b, c)`` share no instant and leave no gap, whatever the
records' sub-second parts are (the old feeder's second-precision closed windows lost
``…:59:59.5``).

A window one microsecond wide holds a single instant and cannot be halved; when it is
still over the cap it is yielded with ``records=None`` and the caller pages through it
in full, so one crowded instant never makes the splitter recurse forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from cirrus_feed.support.clock import utc

T = TypeVar("T")

MICROSECOND = timedelta(microseconds=1)

Probe = Callable[["Window", int], "Sequence[T] | None"]
"""``probe(window, cap)``: the records in ``window`` if at most ``cap``, else ``None``."""


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
    """A window that needs no further split, with its records.

    ``records`` is ``None`` only for an atomic window over the cap: page it in full.
    """

    window: Window
    records: Sequence[T] | None


def split(window: Window, probe: Probe[T], cap: int) -> Iterator[Leaf[T]]:
    """Probe ``window``; halve it while it holds more than ``cap`` records.

    Leaves come out in chronological order and partition ``window`` exactly. Lazy: the
    next window is probed only when the next leaf is asked for. The split is decided by
    what the probe sees, never by a reported match count.
    """
    if cap < 1:
        raise ValueError(f"cap must be at least 1, not {cap}")
    pending = [window]  # a stack, latest window at the bottom, so leaves come out in order
    while pending:
        current = pending.pop()
        records = probe(current, cap)
        if records is not None or current.atomic:
            yield Leaf(current, records)
            continue
        first, second = current.halves()
        pending.extend((second, first))


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
