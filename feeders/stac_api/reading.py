"""Reading windows for the planner: probes, one run ahead of the leaf being fed.

`WindowReader.probe` reads a window's own items (those whose time is in it), stopping at
the first one past the cap. `ahead` starts the probe of the next window in a worker thread
while the feeder turns the current leaf into payloads, so the API works on the next window
meanwhile; only one search runs at a time (nothing else searches while a probe is ahead:
the planner never asks ahead of a leaf it pages). Items without a readable time are handed
to ``reject`` in the feeding thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from feeders.stac_api.items import item_instant
from feeders.stac_api.search import Searcher
from feeders.stac_api.windows import Probed, Window

Reject = Callable[[Any, str], None]
_Read = tuple[Probed[dict[str, Any]], list[tuple[Any, str]]]


class WindowReader:
    """Probes and pages the windows of one run against ``searcher``."""

    def __init__(self, searcher: Searcher, page_size: int, reject: Reject) -> None:
        self.searcher, self.page_size, self.reject = searcher, page_size, reject
        self.time_field = searcher.time_field
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stac-api-probe")
        self._ahead: tuple[Window, int, Future[_Read]] | None = None
        self._stop = threading.Event()

    def ahead(self, window: Window, cap: int) -> None:
        """Start probing ``window`` now; `probe` of the same window takes the result."""
        self._ahead = (window, cap, self._pool.submit(self._read, window, cap))

    def probe(self, window: Window, cap: int) -> Probed[dict[str, Any]]:
        """The window's own items if at most ``cap``, else the first ``cap + 1``."""
        pending, self._ahead = self._ahead, None
        if pending is not None and pending[:2] == (window, cap):
            read, rejected = pending[2].result()
        else:
            if pending is not None:
                self._cancel(pending[2])
            read, rejected = self._read(window, cap)
        for raw, reason in rejected:
            self.reject(raw, reason)
        return read

    def _read(self, window: Window, cap: int) -> _Read:
        page_size = min(self.page_size, cap + 1)
        records: list[dict[str, Any]] = []
        instants = []
        rejected: list[tuple[Any, str]] = []
        start, end, field = window.start, window.end, self.time_field
        ordered = self.searcher.ordered
        with self.searcher.items(window, page_size, read_ahead=False) as items:
            for raw in items:
                instant, problem = item_instant(raw, field)
                if instant is None:
                    rejected.append((raw, problem))
                elif start <= instant < end:
                    records.append(raw)
                    instants.append(instant)
                    if len(records) > cap:
                        return Probed(records, instants, complete=False, ordered=ordered), rejected
                if self._stop.is_set():  # cancelled: the caller drops what this returns
                    break
        return Probed(records, instants, complete=True), rejected

    def page(self, window: Window) -> Iterator[dict[str, Any]]:
        """Every item of ``window`` (one over the cap), in API order, while the caller reads."""
        with self.searcher.items(window, self.page_size) as items:
            for raw in items:
                instant, problem = item_instant(raw, self.time_field)
                if instant is None:
                    self.reject(raw, problem)
                elif instant in window:
                    yield raw

    def _cancel(self, future: Future[_Read]) -> None:
        self._stop.set()
        try:
            future.exception()  # wait for it; what it read is not wanted
        finally:
            self._stop.clear()

    def close(self) -> None:
        """Stop a probe still running ahead (the run ended early) and its thread."""
        pending, self._ahead = self._ahead, None
        if pending is not None:
            self._cancel(pending[2])
        self._pool.shutdown(wait=True)
