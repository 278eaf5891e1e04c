"""Item searches of one STAC API: the client, what it conforms to, and pages read ahead.

`Searcher` opens the API with pystac-client, refuses settings the API would ignore, and
reads a window's items. Unless the caller is a worker thread already, pages are fetched
one ahead in a thread (`_PageReader`), so the wait for the next page overlaps the work on
this one; a search left early is closed (joined) before the next one starts.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

from pystac_client import Client, ConformanceClasses
from pystac_client.exceptions import APIError

from cirrus_feed.support.clock import Clock
from feeders.stac_api.config import StacApiConfig, StacApiConfigError
from feeders.stac_api.transport import stac_io, translate
from feeders.stac_api.windows import Window, isoformat

logger = logging.getLogger(__name__)

_SORT_URI = re.compile(r"https://api\.stacspec\.org/v1\.\d+\.\d+(?:-[\w.]+)?/item-search#sort")


@dataclass
class SearchStats:
    """What one run read from the API: search pages and the items on them."""

    requests: int = 0
    items: int = 0


class Searcher:
    """Searches of ``config.url`` for one run; ``ordered`` when results come sorted by
    time (the API sorts and the settings ask no other order)."""

    def __init__(self, instance: str, config: StacApiConfig, clock: Clock) -> None:
        self.instance, self.config = instance, config
        self.time_field = "updated" if config.watermark == "updated" else "datetime"
        self.stats = SearchStats()
        self.client = self._open(clock)
        self.sorts = self.client.conforms_to(ConformanceClasses.SORT)
        # `updated` is sorted as text by some APIs (pgstac): only datetime is trusted.
        self.ordered = self.sorts and config.search.sortby is None and self.time_field == "datetime"

    def _open(self, clock: Clock) -> Client:
        url = self.config.url
        try:
            client = Client.open(
                url,
                headers=self.config.headers,
                timeout=self.config.timeout,
                stac_io=stac_io(self.config, clock=clock),
            )
        except (APIError, ValueError) as exc:
            raise translate(exc, url) from exc
        if _advertises_sort(client):
            # pystac-client only recognises sort v1.0.*; stac-fastapi advertises v1.1.0.
            client.add_conforms_to("SORT")
        self._check_conformance(client)
        return client

    def _check_conformance(self, client: Client) -> None:
        # An API that ignores filter or query answers with nothing (rustac) or with
        # everything: refuse rather than feed the wrong set silently.
        search = self.config.search
        needs = {
            "search.filter": (search.filter is not None, ConformanceClasses.FILTER),
            "search.query": (search.query is not None, ConformanceClasses.QUERY),
            "watermark: updated": (self.time_field == "updated", ConformanceClasses.FILTER),
        }
        for setting, (used, conformance) in needs.items():
            if used and not client.conforms_to(conformance):
                raise StacApiConfigError(
                    f"feeder '{self.instance}': {setting} needs the STAC API "
                    f"{conformance.name.lower()} extension, which {self.config.url} "
                    "does not advertise"
                )
        if self.time_field == "updated" and isinstance(search.filter, str):
            raise StacApiConfigError(
                f"feeder '{self.instance}': watermark: updated needs search.filter as cql2-json"
            )

    def params(self, window: Window) -> dict[str, Any]:
        """The keyword arguments of `Client.search` for ``window`` (closed: the caller
        drops items on ``window.end``)."""
        params = self.config.search.model_dump(exclude_none=True)
        if self.time_field == "updated":
            params["filter"] = _updated_filter(window, params.get("filter"))
            params["filter_lang"] = "cql2-json"
        else:
            params["datetime"] = (window.start, window.end)
        if self.ordered:
            params["sortby"] = [{"field": "properties.datetime", "direction": "asc"}]
        elif "sortby" in params and not self.sorts:
            logger.warning("%s: the API does not sort; search.sortby not sent", self.instance)
            del params["sortby"]
        if self.config.fields is not None:
            if self.client.conforms_to(ConformanceClasses.FIELDS):
                params["fields"] = _with_required_fields(self.config.fields, self.time_field)
            else:
                logger.warning("%s: the API has no fields extension; full items", self.instance)
        return params

    @contextmanager
    def items(
        self, window: Window, page_size: int, *, read_ahead: bool = True
    ) -> Iterator[Iterator[Any]]:
        """The items the API returns for ``window``, pages read one ahead in a thread
        unless the caller runs in one already (``read_ahead=False``); leaving the block
        stops the search."""
        params = self.params(window)
        # STAC APIs take cql2-text only in GET; everything else goes by POST (rustac's GET
        # with `collections` fails, and POST bodies have no length limit).
        method = "GET" if isinstance(params.get("filter"), str) else "POST"
        try:
            search = self.client.search(method=method, limit=page_size, **params)
        except (APIError, ValueError) as exc:
            raise translate(exc, self.config.url) from exc
        pages = search.pages_as_dicts()
        if not read_ahead:
            with closing(_counted(pages, self.stats)) as items:
                yield self._translated(items)
            return
        reader = _PageReader(pages, self.stats)
        try:
            yield self._translated(iter(reader))
        finally:
            reader.close()

    def _translated(self, items: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from items
        except (APIError, ValueError) as exc:
            raise translate(exc, self.config.url) from exc


def _features(page: Any) -> list[Any]:
    features = page.get("features") if isinstance(page, dict) else None
    return features if isinstance(features, list) else []


def _counted(pages: Iterator[dict[str, Any]], stats: SearchStats) -> Generator[Any, None, None]:
    for page in pages:
        features = _features(page)
        stats.requests += 1
        stats.items += len(features)
        yield from features


class _PageReader:
    """Iterates the features of ``pages``, fetching the next page in a thread meanwhile."""

    _END = object()

    def __init__(self, pages: Iterator[dict[str, Any]], stats: SearchStats) -> None:
        self._pages, self._stats = pages, stats
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stac-api-pages", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for page in self._pages:
                features = _features(page)
                self._stats.requests += 1
                self._stats.items += len(features)
                if not self._put(features):
                    return
            self._put(self._END)
        except Exception as exc:  # noqa: BLE001 (handed to the reading thread, raised there)
            self._put(exc)
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item

    def close(self) -> None:
        """Stop the search and wait for the thread (a page in flight is let finish)."""
        self._stop.set()
        self._thread.join()


def _advertises_sort(client: Client) -> bool:
    """Whether the landing page lists any 1.x version of the item-search sort extension."""
    conforms = client.extra_fields.get("conformsTo") or []
    return any(isinstance(uri, str) and _SORT_URI.fullmatch(uri) for uri in conforms)


def _updated_filter(window: Window, user_filter: dict[str, Any] | None) -> dict[str, Any]:
    """CQL2-JSON for ``start <= updated <= end`` (closed like a STAC interval), and the user's."""
    updated = {"property": "updated"}
    bounds: list[dict[str, Any]] = [
        {"op": ">=", "args": [updated, {"timestamp": isoformat(window.start)}]},
        {"op": "<=", "args": [updated, {"timestamp": isoformat(window.end)}]},
    ]
    return {"op": "and", "args": [*([user_filter] if user_filter else []), *bounds]}


def _with_required_fields(fields: list[str], time_field: str) -> list[str]:
    """Add what feeding needs to an include list; an exclude-only list keeps everything."""
    if not any(not f.startswith("-") for f in fields):
        return fields
    required = ["id", "collection", f"properties.{time_field}", "properties.start_datetime"]
    return [*fields, *(f for f in required if f not in fields)]
