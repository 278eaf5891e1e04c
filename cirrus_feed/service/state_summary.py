"""One bounded scan of the state DB, summarised for the status page and the state gauges:
counts per ``collections_workflow`` and state, failures grouped by error prefix, and the
terminal outcomes over time.

The ports have no "group by", so this pages through every record (a table scan on
DynamoDB) up to a limit, and says when it stopped short. `CachedSummary` keeps one scan for
a while, so page loads and scrapes don't each cost one.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cirrus_feed.backends.base import StateQuery, StateStore
from cirrus_feed.model.states import TERMINAL, State
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

PAGE_SIZE = 1000
PREFIX_CHARS = 80  # an error prefix never longer than this
BUCKETS = 24  # bars of the outcomes chart
MIN_BUCKET = timedelta(minutes=1)
# Bar widths a reader takes in at a glance, in minutes (then whole days).
NICE_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)


def error_prefix(error: str) -> str:
    """The part of an error that names its kind: up to the first ``": "`` (``"States.Timeout"``,
    ``"ValueError"``), else its first line, at most `PREFIX_CHARS` characters."""
    head = error.split(": ", 1)[0] if ": " in error else error.splitlines()[0] if error else ""
    return head[:PREFIX_CHARS]


@dataclass(frozen=True)
class FailureGroup:
    state: State
    prefix: str
    count: int
    example: str  # one full error of the group


@dataclass
class StateSummary:
    scanned: int = 0
    truncated: bool = False  # the scan stopped at its limit: the counts are a lower bound
    states: dict[str, Counter[str]] = field(default_factory=dict)  # workflow → state → n
    failures: list[FailureGroup] = field(default_factory=list)
    timeline: list[tuple[datetime, Counter[str]]] = field(default_factory=list)  # bucket start
    bucket: timedelta = MIN_BUCKET
    taken_at: datetime | None = None

    def total(self, state: State) -> int:
        return sum(counts[state.value] for counts in self.states.values())


def summarise(store: StateStore, *, limit: int, clock: Clock = SYSTEM_CLOCK) -> StateSummary:
    """Scan up to ``limit`` records of ``store`` (newest updated first)."""
    summary = StateSummary(taken_at=clock.now())
    groups: dict[tuple[State, str], list[str]] = {}
    finished: list[tuple[datetime, str]] = []
    next_key: str | None = None
    while summary.scanned < limit:
        page = store.query(
            StateQuery(), limit=min(PAGE_SIZE, limit - summary.scanned), next_key=next_key
        )
        for record in page.records:
            summary.scanned += 1
            counts = summary.states.setdefault(record.collections_workflow, Counter())
            counts[record.state.value] += 1
            if record.state in (State.FAILED, State.INVALID, State.ABORTED) and record.last_error:
                key = (record.state, error_prefix(record.last_error))
                groups.setdefault(key, []).append(record.last_error)
            if record.state in TERMINAL:
                finished.append((datetime.fromisoformat(record.updated), record.state.value))
        next_key = page.next_key
        if next_key is None:
            break
    summary.truncated = next_key is not None
    summary.failures = sorted(
        (
            FailureGroup(state, prefix, len(errors), errors[0])
            for (state, prefix), errors in groups.items()
        ),
        key=lambda group: (-group.count, group.state, group.prefix),
    )
    summary.bucket, summary.timeline = _timeline(finished, clock.now())
    return summary


def _timeline(
    finished: list[tuple[datetime, str]], now: datetime
) -> tuple[timedelta, list[tuple[datetime, Counter[str]]]]:
    """`BUCKETS` equal bars ending now, wide enough to hold the oldest outcome scanned (at
    least a minute each)."""
    oldest = min((when for when, _ in finished), default=now)
    needed = (now - oldest) / BUCKETS
    nice = (timedelta(minutes=m) for m in NICE_MINUTES)
    width = next((w for w in nice if w > needed), timedelta(days=needed.days + 1))
    # Bars end at the next whole width after now, so a bar covers 10:00-10:05, not 10:02-10:07.
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    end = epoch + width * ((now - epoch) // width + 1)
    start = end - width * BUCKETS
    bars = [(start + width * i, Counter[str]()) for i in range(BUCKETS)]
    for when, state in finished:
        index = min(BUCKETS - 1, max(0, int((when - start) / width)))
        bars[index][1][state] += 1
    return width, bars


class CachedSummary:
    """`summarise` at most once per ``ttl`` seconds; callers share the last scan."""

    def __init__(
        self, scan: Callable[[], StateSummary], ttl: float, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._scan, self._ttl, self._clock = scan, ttl, clock
        self._lock = threading.Lock()
        self._last: tuple[float, StateSummary] | None = None

    def get(self, *, fresh: bool = False) -> StateSummary:
        with self._lock:  # one scan at a time; the others wait for its result
            now = self._clock.monotonic()
            if fresh or self._last is None or now - self._last[0] >= self._ttl:
                self._last = (now, self._scan())
            return self._last[1]
