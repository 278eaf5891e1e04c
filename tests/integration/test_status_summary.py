"""The state scan behind the status page and the state gauges, on the local state DB, and the
page's rendering of hostile values."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from cirrus_feed.backends.base import FeedRun, QueueDepth, StateQuery
from cirrus_feed.backends.local.sqlite_state import SqliteStateStore
from cirrus_feed.model.states import State
from cirrus_feed.service.http_app import FeederStatus
from cirrus_feed.service.state_summary import (
    CachedSummary,
    StateSummary,
    error_prefix,
    summarise,
)
from cirrus_feed.service.status_page import render_payloads, render_status
from cirrus_feed.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> SqliteStateStore:
    return SqliteStateStore(tmp_path / "state.sqlite", clock=clock)


def finish(
    store: SqliteStateStore, pid: str, state: State | None, error: str | None = None
) -> None:
    arn = f"arn:aws:states:us-east-1:123456789012:execution:wf:{pid.replace('/', '-')}"
    record = store.claim(pid, arn)
    if state is not None:
        store.finish(record, arn, state, error)


@pytest.mark.parametrize(
    ("error", "prefix"),
    [
        ("States.TaskFailed: no band B13", "States.TaskFailed"),
        ("ValueError: bad: worse", "ValueError"),
        ("timeout\nwith a traceback", "timeout"),
        ("x" * 500, "x" * 80),
        ("", ""),
    ],
)
def test_error_prefix_is_the_kind_of_the_error(error: str, prefix: str) -> None:
    assert error_prefix(error) == prefix


def test_summary_counts_groups_and_charts_every_record(
    store: SqliteStateStore, clock: FakeClock
) -> None:
    # Given records over three hours in two collections_workflows
    for n in range(5):
        finish(store, f"c/workflow-a/ok-{n}", State.SUCCEEDED)
        clock.advance(1800)
    finish(store, "c/workflow-b/f1", State.FAILED, "States.TaskFailed: no band B13")
    finish(store, "c/workflow-b/f2", State.FAILED, "States.TaskFailed: no band B14")
    finish(store, "c/workflow-b/i1", State.INVALID, "ValueError: no assets")
    finish(store, "c/workflow-b/run", None)  # still CLAIMED

    summary = summarise(store, limit=100, clock=clock)

    assert (summary.scanned, summary.truncated) == (9, False)
    assert summary.states == {
        "c_a": Counter({"SUCCEEDED": 5}),
        "c_b": Counter({"FAILED": 2, "INVALID": 1, "CLAIMED": 1}),
    }
    assert [(g.state, g.prefix, g.count) for g in summary.failures] == [
        (State.FAILED, "States.TaskFailed", 2),
        (State.INVALID, "ValueError", 1),
    ]
    charted = sum((counts for _, counts in summary.timeline), Counter[str]())
    assert charted == Counter({"SUCCEEDED": 5, "FAILED": 2, "INVALID": 1})
    assert summary.bucket == timedelta(minutes=10)  # 2.5 h in 24 bars: the next nice width
    assert summary.timeline[0][0] <= clock.now() - timedelta(hours=2, minutes=30)


def test_summary_stops_at_its_limit_and_says_so(store: SqliteStateStore, clock: FakeClock) -> None:
    for n in range(5):
        finish(store, f"c/workflow-a/{n}", State.SUCCEEDED)

    summary = summarise(store, limit=3, clock=clock)

    assert (summary.scanned, summary.truncated, summary.total(State.SUCCEEDED)) == (3, True, 3)
    assert "counts are lower bounds" in render_status(
        backend="local", feeders=[], summary=summary, queues={}, dead_letters=[]
    )


def test_cached_summary_scans_once_per_ttl(store: SqliteStateStore, clock: FakeClock) -> None:
    scans = []

    def scan() -> StateSummary:
        scans.append(clock.monotonic())
        return summarise(store, limit=10, clock=clock)

    cached = CachedSummary(scan, ttl=30, clock=clock)
    first = cached.get()
    clock.advance(29)
    assert cached.get() is first
    clock.advance(1)
    assert cached.get() is not first
    assert cached.get(fresh=True) is not first
    assert len(scans) == 3


def test_status_page_escapes_every_value(store: SqliteStateStore, clock: FakeClock) -> None:
    evil = "<script>alert(1)</script>"
    finish(store, 'c/workflow-"><u>/x', State.FAILED, f"{evil}: <img src=x onerror=alert(2)>")
    summary = summarise(store, limit=10, clock=clock)
    run = FeedRun("r1", evil, clock.now().isoformat(), "failed", error=evil)
    feeders = [FeederStatus(evil, evil, evil, run, None)]

    page = render_status(
        backend=evil,
        feeders=feeders,
        summary=summary,
        queues={evil: QueueDepth(1, 0), "down": evil},
        dead_letters=[(evil, evil)],
    )
    listing = render_payloads(store.query(StateQuery()), {"state": evil})

    for html in (page, listing):
        assert "<script>" not in html
        assert "<img" not in html
        assert "<u>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
