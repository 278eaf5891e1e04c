"""A pool of reader threads feeding one generator through a bounded queue.

Each worker takes whole files from a shared list and hands `Chunk`s over with `put`, which
blocks while the queue is full: a slow consumer slows the readers instead of filling
memory. `close` stops them; a blocked reader notices within `STOP_POLL_SECONDS`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cirrus_feed.feeding.contract import FeedItem

STOP_POLL_SECONDS = 0.2
_T = TypeVar("_T")


@dataclass
class Chunk:
    """Items of one file that complete rows up to ``row``; ``scanned`` rows since last."""

    file: str
    items: list[FeedItem]
    row: int
    scanned: int = 0
    done: bool = False
    error: str | None = None
    fatal: BaseException | None = None
    left_out: dict[str, int] = field(default_factory=dict)  # rows not fed, by `Skipped` kind


class ReaderPool(Generic[_T]):
    """Worker threads, each calling ``read(file, put)`` for files from a shared list."""

    def __init__(
        self,
        name: str,
        files: list[_T],
        read: Callable[[_T, Callable[[Chunk], bool]], None],
        concurrency: int,
    ) -> None:
        self.chunks: queue.Queue[Chunk] = queue.Queue(maxsize=2 * concurrency)
        self.stop = threading.Event()
        self.tasks: queue.SimpleQueue[_T] = queue.SimpleQueue()
        for data in files:
            self.tasks.put(data)
        self.read = read
        self.threads = [
            threading.Thread(target=self._work, name=f"{name}-reader-{n}", daemon=True)
            for n in range(min(concurrency, len(files)))
        ]
        for thread in self.threads:
            thread.start()

    def put(self, chunk: Chunk) -> bool:
        """Hand a chunk over; False once the feed stopped (the reader should return)."""
        while not self.stop.is_set():
            with contextlib.suppress(queue.Full):
                self.chunks.put(chunk, timeout=STOP_POLL_SECONDS)
                return True
        return False

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.tasks.get_nowait()
            except queue.Empty:
                return
            try:
                self.read(data, self.put)
            except BaseException as exc:  # noqa: BLE001 - the consumer raises it; never hang it
                self.put(Chunk(str(data), [], 0, fatal=exc))
                return

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.chunks.get_nowait()
        for thread in self.threads:
            thread.join(timeout=5)
