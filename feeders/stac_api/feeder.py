"""The ``stac-api`` feeder: one STAC API item search, fed in half-open time windows.

The configured range (or the part of it after the last watermark) is cut into windows of
at most ``max_items_per_window`` items by `feeders.stac_api.windows.plan`, deciding by
paging, never by ``numberMatched``, and reading each item once on a steady source. Each
window ``[start, end)`` is searched as the STAC interval ``start/end`` (closed) and items
whose time equals ``end`` are dropped here, so they are fed by the next window instead:
every item lands in exactly one window. After each completed window the feeder yields a
`Checkpoint` with ``{"watermark": end}``.

The modules around it: `config` (settings), `transport` (retries, pacing), `search` (the
client, conformance, pages read ahead), `items` (times, stubs, payloads), `cursor`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Iterable, Iterator
from itertools import islice
from typing import Any, ClassVar

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Feeder,
    FeederContext,
    FeedItem,
    FeedRequest,
    SourceRejection,
)
from cirrus_feed.model.payload import PreparedPayload
from feeders.stac_api.config import StacApiConfig, StacApiConfigError
from feeders.stac_api.cursor import Partial, load_watermark
from feeders.stac_api.items import PayloadBuilder, digest, has_id, stub_item
from feeders.stac_api.reading import WindowReader
from feeders.stac_api.search import Searcher, SearchStats
from feeders.stac_api.windows import Leaf, Window, isoformat, plan, resolve_range

__all__ = ["StacApiConfig", "StacApiFeeder", "stub_item"]

logger = logging.getLogger(__name__)


class StacApiFeeder(Feeder[StacApiConfig]):
    """Feeds the items of a STAC API search, window by window, resumable by watermark."""

    name: ClassVar[str] = "stac-api"
    description: ClassVar[str] = "Items of a STAC API item search, in half-open time windows"
    reconcilable: ClassVar[bool] = True

    def __init__(self, instance: str, config: StacApiConfig, context: FeederContext) -> None:
        super().__init__(instance, config, context)
        self._time_field = "updated" if config.watermark == "updated" else "datetime"
        self._rejected: set[str] = set()  # keys of rejections already yielded this run
        self._pending: list[SourceRejection] = []
        self.stats = SearchStats()  # what the last run read from the API

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        """Yield payloads window by window, each completed window followed by a checkpoint.

        A ``limit`` reached inside a window checkpoints that window as partial: the
        watermark stays at its start and ``partial`` lists digests of the items sent, which
        the next run leaves out of the windows before ``partial.end``.
        """
        self._rejected.clear()
        self._pending.clear()
        run = self._run_window(request)
        if run is None or request.limit == 0:
            return
        builder = self._builder()
        partial = Partial.load(request.cursor)
        searcher = Searcher(self.instance, self.config, self.context.clock)
        self.stats = searcher.stats
        reader = WindowReader(searcher, self.config.page_size, self._reject)
        try:
            fed = yield from self._feed(run, reader, request.limit, partial, builder)
        finally:
            reader.close()
        logger.info(
            "%s: read %d items in %d search pages for %d payloads",
            self.instance,
            self.stats.items,
            self.stats.requests,
            fed,
        )

    def _feed(
        self,
        run: Window,
        reader: WindowReader,
        limit: int | None,
        partial: Partial | None,
        builder: PayloadBuilder,
    ) -> Generator[FeedItem, None, int]:
        """`feed` once the run is set up; returns the number of payloads yielded."""
        fed = 0
        cap = self.config.max_items_per_window
        for leaf in plan(run, reader.probe, cap, ahead=lambda w: reader.ahead(w, cap)):
            yield from self._drain_rejections()
            skip = partial.sent if partial is not None and leaf.window.start < partial.end else None
            sent: list[str] = []  # digests, kept only when a limit may stop inside the window
            for group in self._groups(reader, leaf, skip):
                payload = builder.build(group)
                if isinstance(payload, PreparedPayload):
                    if limit is not None and fed >= limit:
                        yield Checkpoint(
                            Partial.after(partial, leaf.window, sent).cursor(leaf.window.start),
                            label=f"{leaf.window.label}: {len(sent)} items sent (limit)",
                        )
                        return fed
                    if limit is not None:
                        sent += map(digest, group)
                    fed += 1
                yield payload
                if self._pending:
                    yield from self._drain_rejections()
            yield from self._drain_rejections()
            cursor: dict[str, Any] = {"watermark": isoformat(leaf.window.end)}
            if partial is not None and leaf.window.end < partial.end:
                cursor = partial.cursor(leaf.window.end)  # still inside the partial part
            else:
                partial = None
            yield Checkpoint(cursor, label=leaf.window.label)
            if limit is not None and fed >= limit:
                break
        return fed

    def _run_window(self, request: FeedRequest) -> Window | None:
        watermark = load_watermark(self.instance, request.cursor)
        configured = self.config.datetime_range
        try:
            return resolve_range(
                configured.start,
                configured.end,
                now=self.context.clock.now(),
                since=request.since,
                until=request.until,
                watermark=watermark,
                lookback=self.config.lookback,
            )
        except ValueError as exc:
            raise StacApiConfigError(f"feeder '{self.instance}': datetime.start: {exc}") from exc

    def _builder(self) -> PayloadBuilder:
        try:
            return PayloadBuilder(self.config.process_template(), self.config.item_mapping)
        except PayloadValidationError as exc:
            raise StacApiConfigError(f"feeder '{self.instance}': process: {exc}") from exc

    # Items ------------------------------------------------------------------------------

    def _groups(
        self, reader: WindowReader, leaf: Leaf[dict[str, Any]], skip: frozenset[str] | None
    ) -> Iterator[tuple[dict[str, Any], ...]]:
        """The window's items with ids, not in ``skip`` (digests), in payload-sized groups:
        in id order when the window is held, in API order when it is paged."""
        if leaf.records is not None:
            yield from self._grouped(sorted(leaf.records, key=_id_key), skip)
            return
        logger.info("%s: %s holds more than the cap; paging it", self.instance, leaf.window)
        yield from self._grouped(reader.page(leaf.window), skip)

    def _grouped(
        self, items: Iterable[dict[str, Any]], skip: frozenset[str] | None
    ) -> Iterator[tuple[dict[str, Any], ...]]:
        valid = (raw for raw in items if self._has_id(raw))
        if skip:
            valid = (raw for raw in valid if digest(raw) not in skip)
        size = self.config.items_per_payload
        if size == 1:
            yield from ((raw,) for raw in valid)
            return
        while group := tuple(islice(valid, size)):
            yield group

    def _has_id(self, raw: dict[str, Any]) -> bool:
        if has_id(raw):
            return True
        self._reject(raw, "item has no 'id'")
        return False

    def _reject(self, raw: Any, reason: str) -> None:
        key = json.dumps(raw, sort_keys=True, default=str) + reason
        if key not in self._rejected:  # the API may return a timeless item in every window
            self._rejected.add(key)
            self._pending.append(SourceRejection(raw, reason))

    def _drain_rejections(self) -> Iterator[SourceRejection]:
        while self._pending:
            yield self._pending.pop(0)


def _id_key(raw: dict[str, Any]) -> str:
    return str(raw.get("id"))
