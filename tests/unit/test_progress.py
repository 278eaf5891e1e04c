"""The feed progress display: click's progress bar on a terminal, nothing when piped."""

from __future__ import annotations

import io

import pytest

from cirrus_feed.cli.feeds import Progress, expected_total
from cirrus_feed.support.clock import FakeClock


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_counts_up_with_the_outcomes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    progress = Progress("nightly")

    progress({"seen": 100, "enqueued": 97, "duplicate": 3, "failed": 0})
    progress({"seen": 250, "enqueued": 240, "duplicate": 10, "failed": 0})
    progress.done()

    last = screen.getvalue().split("\r")[-1]
    assert "nightly  250  10 duplicate, 240 enqueued" in last
    assert "failed" not in last  # outcomes that did not happen are left out


def test_progress_with_a_total_shows_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    progress = Progress("rerun", total=400)

    progress({"seen": 100, "enqueued": 100})

    assert "[#########---------------------------]" in screen.getvalue()
    assert "100/400" in screen.getvalue()


def test_progress_is_silent_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    progress = Progress("nightly")

    progress({"seen": 5, "enqueued": 5})
    progress.done()

    assert piped.getvalue() == ""


def test_progress_shows_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    screen, clock = Terminal(), FakeClock()
    monkeypatch.setattr("sys.stderr", screen)
    progress = Progress("nightly", clock=clock)

    clock.advance(4)
    progress({"seen": 100, "enqueued": 100})
    progress.done()

    assert "100 enqueued  25.0/s" in screen.getvalue().split("\r")[-1]


def test_progress_with_a_total_shows_the_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    screen, clock = Terminal(), FakeClock()
    monkeypatch.setattr("sys.stderr", screen)
    progress = Progress("rerun", total=400, clock=clock)

    clock.advance(10)
    progress({"seen": 100, "enqueued": 100})  # 10/s: 300 to go in 30 s

    assert "100/400  100 enqueued  10.0/s  eta 0:00:30" in screen.getvalue()


class Counted:
    """A feeder that can say how many payloads a run would feed."""

    def __init__(self, total: int | str) -> None:
        self.total = total

    def preview(self, count: int = 10) -> tuple[int | str, list[str]]:
        return self.total, []


@pytest.mark.parametrize(
    ("total", "limit", "expected"),
    [(120, None, 120), (120, 50, 50), (20, 50, 20), ("1000+", None, None), ("1000+", 30, 30)],
)
def test_expected_total_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, total: int | str, limit: int | None, expected: int | None
) -> None:
    monkeypatch.setattr("sys.stderr", Terminal())

    assert expected_total(Counted(total), limit) == expected


def test_expected_total_is_not_asked_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())

    assert expected_total(Counted(120), None) is None
    assert expected_total(object(), None) is None
