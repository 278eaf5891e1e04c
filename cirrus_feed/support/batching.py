"""Cutting work into batches a service accepts: by count, or by count and total size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sized_chunks(
    items: Iterable[tuple[_T, int]], *, max_entries: int, max_bytes: int
) -> Iterator[list[_T]]:
    """Group ``(item, size)`` pairs in order into batches within both limits.

    An item bigger than ``max_bytes`` on its own still gets a batch of one; callers drop
    such items beforehand when the service would refuse them.
    """
    batch: list[_T] = []
    total = 0
    for item, size in items:
        if batch and (len(batch) == max_entries or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        yield batch
