"""The ``stac-api`` feeder: one STAC API item search, fed in half-open time windows.

The configured range (or the part of it after the last watermark) is cut into windows of
at most ``max_items_per_window`` items by `feeders.stac_api.windows.split`, deciding by paging,
never by ``numberMatched``. Each window ``[start, end)`` is searched as the STAC interval
``start/end`` (closed) and items whose time equals ``end`` are dropped here, so they are
fed by the next window instead: every item lands in exactly one window. After each
completed window the feeder yields a `Checkpoint` with ``{"watermark": end}``.

HTTP goes through pystac-client. Its session gets a urllib3 ``Retry`` that also retries
POST searches on 429/5xx, connection errors and timeouts, honouring ``Retry-After``, and an
adapter that paces requests per host with the shared `TokenBucket`. Both wait on the
feeder's `clock`. Exhausted retries raise `SourceUnavailableError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator
from pystac_client import Client, ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from urllib3 import Retry

from cirrus_feed.errors import (
    ConfigError,
    FeederError,
    InvalidSourceDataError,
    PayloadValidationError,
    SourceUnavailableError,
)
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Feeder,
    FeederConfig,
    FeederContext,
    FeedItem,
    FeedRequest,
    SourceRejection,
)
from cirrus_feed.feeding.pacing import TokenBucket
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock, utc
from cirrus_feed.support.durations import LenientDuration
from feeders.stac_api.windows import Leaf, Window, isoformat, parse_instant, resolve_range, split

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class StacApiConfigError(FeederError, ConfigError):
    """A stac-api setting cannot work (with this API); a config error raised by a feeder."""


# -- settings ------------------------------------------------------------------------------


class SearchSettings(BaseModel):
    """Item-search parameters passed to `pystac_client.Client.search` as they are."""

    model_config = ConfigDict(extra="forbid")

    collections: list[str] | None = None
    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    ids: list[str] | None = None
    query: dict[str, Any] | list[str] | None = None
    filter: dict[str, Any] | str | None = None
    filter_lang: str | None = None
    sortby: str | list[Any] | None = None

    @field_validator("collections", "ids", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class DatetimeRange(BaseModel):
    """``{start, end}`` (either open), or a STAC interval string ``a/b`` with ``..`` ends."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def parse_interval(cls, text: str) -> dict[str, str | None]:
        parts = [None if p in ("", "..") else p for p in text.split("/")]
        if len(parts) == 1:  # a single instant: the one-microsecond window holding it
            instant = parse_instant(text)
            return {"start": text, "end": isoformat(instant + timedelta(microseconds=1))}
        if len(parts) != 2:
            raise ValueError(f"datetime {text!r} must be 'start/end'")
        return {"start": parts[0], "end": parts[1]}

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)


class ItemMapping(BaseModel):
    """``full`` items, or ``stub`` items that keep only the named ``assets``."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["full", "stub"] = "full"
    assets: list[str] = []

    @field_validator("mode", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class StacApiConfig(FeederConfig):
    """Settings of a ``stac-api`` feeder."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str
    search: SearchSettings = SearchSettings()
    datetime_range: DatetimeRange = Field(default_factory=DatetimeRange, alias="datetime")
    max_items_per_window: PositiveInt = 5000
    page_size: int = Field(250, ge=1, le=10_000)
    headers: dict[str, str] = Field(default_factory=dict)
    fields: list[str] | None = None
    item_mapping: ItemMapping = ItemMapping()
    items_per_payload: PositiveInt = 1
    watermark: Literal["datetime", "updated"] = "datetime"
    lookback: LenientDuration = timedelta(0)  # "2h"; also seconds or ISO 8601 (PT2H)
    max_retries: int = Field(5, ge=0)
    backoff: float = Field(0.5, ge=0)
    timeout: PositiveFloat = 30.0
    max_requests_per_second: PositiveFloat | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"url {value!r} must be http(s)")
        return value

    @field_validator("datetime_range", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        return DatetimeRange.parse_interval(value) if isinstance(value, str) else value

    @field_validator("item_mapping", mode="before")
    @classmethod
    def _mapping_shorthand(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value

    @field_validator("fields")
    @classmethod
    def _keeps_what_feeding_needs(cls, value: list[str] | None) -> list[str] | None:
        needed = ("-id", "-collection", "-properties", "-properties.datetime")
        for entry in value or []:
            if entry in needed:
                raise ValueError(f"fields must not exclude {entry[1:]!r}: feeding needs it")
        return value


# -- HTTP ----------------------------------------------------------------------------------


class _HostPacer:
    """One `TokenBucket` (burst 1: requests ``1 / rate`` apart) per host, process-wide, so
    every feeder hitting a host shares its budget. Buckets are per clock, so a test's fake
    clock never shares one with the real clock (and is forgotten with it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: weakref.WeakKeyDictionary[Clock, dict[str, TokenBucket]] = (
            weakref.WeakKeyDictionary()
        )

    def wait(self, host: str, rate: float, clock: Clock) -> None:
        with self._lock:
            buckets = self._buckets.setdefault(clock, {})
            bucket = buckets.get(host)
            if bucket is None:
                bucket = buckets[host] = TokenBucket(rate, burst=1, clock=clock)
            bucket.rate = rate  # the latest feeder's rate paces the host from now on
        bucket.acquire()


_PACER = _HostPacer()


class _ClockRetry(Retry):
    """urllib3's `Retry` waiting (backoff, ``Retry-After``) on a `Clock`, not `time.sleep`."""

    clock: Clock = SYSTEM_CLOCK

    def new(self, **kw: Any) -> _ClockRetry:
        retry = super().new(**kw)  # urllib3 builds a fresh one per try
        retry.clock = self.clock
        return retry

    def sleep_for_retry(self, response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after:
            self.clock.sleep(retry_after)
            return True
        return False

    def _sleep_backoff(self) -> None:
        backoff = self.get_backoff_time()
        if backoff > 0:
            self.clock.sleep(backoff)


class _PacedAdapter(HTTPAdapter):
    def __init__(self, rate: float | None, max_retries: Retry, clock: Clock) -> None:
        super().__init__(max_retries=max_retries)
        self._rate = rate
        self._clock = clock

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        if self._rate is not None:
            _PACER.wait(urlsplit(request.url or "").netloc, self._rate, self._clock)
        return super().send(request, *args, **kwargs)


def _stac_io(config: StacApiConfig, *, clock: Clock = SYSTEM_CLOCK) -> StacApiIO:
    retry = _ClockRetry(
        total=config.max_retries,
        backoff_factor=config.backoff,
        backoff_max=60.0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # searches are POSTs, and they only read
        respect_retry_after_header=True,
        raise_on_status=True,
    )
    retry.clock = clock
    io = StacApiIO(max_retries=retry)  # headers and timeout go to Client.open, which resets them
    adapter = _PacedAdapter(config.max_requests_per_second, retry, clock)
    io.session.mount("http://", adapter)
    io.session.mount("https://", adapter)
    return io


def _translate(exc: Exception, url: str) -> FeederError:
    status = getattr(exc, "status_code", None)
    if status is None or status in RETRY_STATUSES:  # connection, timeout, retries exhausted
        return SourceUnavailableError(f"STAC API {url} unavailable: {exc}")
    if isinstance(exc, APIError):
        return FeederError(f"STAC API {url} answered {status}: {str(exc)[:500]}")
    return InvalidSourceDataError(f"STAC API {url} sent an unreadable response: {exc}")


# -- items ---------------------------------------------------------------------------------


def stub_item(item: Mapping[str, Any], assets: Iterable[str]) -> dict[str, Any]:
    """The fields a workflow needs to find an item again, plus the named assets."""
    properties = item.get("properties") or {}
    kept = ("datetime", "start_datetime", "end_datetime", "created", "updated")
    stub = {key: item[key] for key in ("type", "stac_version", "id", "collection") if key in item}
    stub["geometry"] = item.get("geometry")
    if "bbox" in item:
        stub["bbox"] = item["bbox"]
    stub["properties"] = {key: properties[key] for key in kept if key in properties}
    all_assets = item.get("assets") or {}
    stub["assets"] = {name: all_assets[name] for name in assets if name in all_assets}
    stub["links"] = [link for link in item.get("links") or [] if link.get("rel") == "self"]
    return stub


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
        self._group_digests: list[str] = []

    # The run --------------------------------------------------------------------------

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
        partial = _Partial.load(request.cursor)
        client = self._open()
        cap = self.config.max_items_per_window
        fed = 0
        for leaf in split(run, lambda w, c: self._probe(client, w, c), cap):
            yield from self._drain_rejections()
            skip = partial.sent if partial is not None and leaf.window.start < partial.end else None
            sent: list[str] = []
            for out in self._leaf_output(client, leaf, skip or frozenset()):
                if isinstance(out, ProcessPayload):
                    if request.limit is not None and fed >= request.limit:
                        yield Checkpoint(
                            _Partial.after(partial, leaf.window, sent).cursor(leaf.window.start),
                            label=f"{leaf.window.label}: {len(sent)} items sent (limit)",
                        )
                        return
                    sent += self._group_digests
                    fed += 1
                yield out
            yield from self._drain_rejections()
            cursor: dict[str, Any] = {"watermark": isoformat(leaf.window.end)}
            if partial is not None and leaf.window.end < partial.end:
                cursor = partial.cursor(leaf.window.end)  # still inside the partial part
            else:
                partial = None
            yield Checkpoint(cursor, label=leaf.window.label)
            if request.limit is not None and fed >= request.limit:
                return

    def _run_window(self, request: FeedRequest) -> Window | None:
        watermark = None
        if request.cursor is not None and "watermark" in request.cursor:
            try:
                watermark = parse_instant(str(request.cursor["watermark"]))
            except ValueError as exc:
                raise InvalidSourceDataError(
                    f"feeder '{self.instance}': cursor.watermark "
                    f"{request.cursor['watermark']!r} is not a timestamp"
                ) from exc
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

    def _open(self) -> Client:
        url = self.config.url
        try:
            client = Client.open(
                url,
                headers=self.config.headers,
                timeout=self.config.timeout,
                stac_io=_stac_io(self.config, clock=self.context.clock),
            )
        except (APIError, ValueError) as exc:
            raise _translate(exc, url) from exc
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
            "watermark: updated": (self._time_field == "updated", ConformanceClasses.FILTER),
        }
        for setting, (used, conformance) in needs.items():
            if used and not client.conforms_to(conformance):
                raise StacApiConfigError(
                    f"feeder '{self.instance}': {setting} needs the STAC API "
                    f"{conformance.name.lower()} extension, which {self.config.url} "
                    "does not advertise"
                )
        if self._time_field == "updated" and isinstance(search.filter, str):
            raise StacApiConfigError(
                f"feeder '{self.instance}': watermark: updated needs search.filter as cql2-json"
            )

    # Searching --------------------------------------------------------------------------

    def _search(self, client: Client, window: Window, page_size: int) -> Iterator[dict[str, Any]]:
        params = self.config.search.model_dump(exclude_none=True)
        if self._time_field == "updated":
            params["filter"] = _updated_filter(window, params.get("filter"))
            params["filter_lang"] = "cql2-json"
        else:
            params["datetime"] = (window.start, window.end)  # closed: == end dropped later
        if "sortby" in params and not client.conforms_to(ConformanceClasses.SORT):
            logger.warning("%s: the API does not sort; search.sortby not sent", self.instance)
            del params["sortby"]
        if self.config.fields is not None:
            if client.conforms_to(ConformanceClasses.FIELDS):
                params["fields"] = _with_required_fields(self.config.fields, self._time_field)
            else:
                logger.warning("%s: the API has no fields extension; full items", self.instance)
        # STAC APIs take cql2-text only in GET; everything else goes by POST (rustac's GET
        # with `collections` fails, and POST bodies have no length limit).
        method = "GET" if isinstance(params.get("filter"), str) else "POST"
        try:
            yield from client.search(method=method, limit=page_size, **params).items_as_dicts()
        except (APIError, ValueError) as exc:
            raise _translate(exc, self.config.url) from exc

    def _probe(self, client: Client, window: Window, cap: int) -> list[dict[str, Any]] | None:
        """The window's own items if at most ``cap``; stops paging at the first extra one."""
        page_size = min(self.config.page_size, cap + 1)
        members: list[dict[str, Any]] = []
        for raw in self._search(client, window, page_size):
            if self._owns(window, raw):
                members.append(raw)
                if len(members) > cap:
                    return None
        return members

    def _owns(self, window: Window, raw: Any) -> bool:
        """True when ``raw``'s time is in ``window``; an unreadable time is rejected once."""
        instant, problem = self._instant(raw)
        if instant is None:
            self._reject(raw, problem)
            return False
        return instant in window

    def _instant(self, raw: Any) -> tuple[datetime | None, str]:
        properties = raw.get("properties") if isinstance(raw, dict) else None
        if not isinstance(properties, dict):
            return None, "item has no 'properties' object"
        field = self._time_field
        value = properties.get(field)
        if value is None and field == "datetime":  # a range item: its start decides
            field, value = "start_datetime", properties.get("start_datetime")
        if not isinstance(value, str):
            wanted = f"properties.{self._time_field}"
            if field == "start_datetime":
                wanted = "properties.datetime (nor properties.start_datetime)"
            return None, f"item has no {wanted}"
        try:
            return parse_instant(value), ""
        except ValueError:
            return None, f"item properties.{field} {value!r} is not an RFC 3339 timestamp"

    # Payloads ---------------------------------------------------------------------------

    def _leaf_output(
        self, client: Client, leaf: Leaf[dict[str, Any]], skip: frozenset[str]
    ) -> Iterator[ProcessPayload | SourceRejection]:
        """The window's payloads, without the items in ``skip`` (digests, see `_digest`);
        ``_group_digests`` holds the digests of the items of the payload just yielded."""
        if leaf.records is not None:  # at most the cap: group in id order
            items: Iterable[dict[str, Any]] = sorted(leaf.records, key=lambda r: str(r.get("id")))
        else:  # one instant over the cap: stream it in API order
            logger.info("%s: %s holds more than the cap; paging it", self.instance, leaf.window)
            search = self._search(client, leaf.window, self.config.page_size)
            items = (raw for raw in search if self._owns(leaf.window, raw))
        valid = (raw for raw in self._with_ids(items) if _digest(raw) not in skip)
        for group in _batched(valid, self.config.items_per_payload):
            yield from self._drain_rejections()
            self._group_digests = [_digest(raw) for raw in group]
            yield self._payload(group)
        yield from self._drain_rejections()

    def _with_ids(self, items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for raw in items:
            if isinstance(raw.get("id"), str) and raw["id"]:
                yield raw
            else:
                self._reject(raw, "item has no 'id'")

    def _payload(self, items: tuple[dict[str, Any], ...]) -> ProcessPayload | SourceRejection:
        mapping = self.config.item_mapping
        features = [stub_item(i, mapping.assets) if mapping.mode == "stub" else i for i in items]
        data = {
            "type": "FeatureCollection",
            "features": features,
            "process": self.config.process_template(),
        }
        try:
            return ProcessPayload.from_dict(data)
        except PayloadValidationError as exc:
            return SourceRejection(data, str(exc))

    def _reject(self, raw: Any, reason: str) -> None:
        key = json.dumps(raw, sort_keys=True, default=str) + reason
        if key not in self._rejected:  # the API may return a timeless item in every window
            self._rejected.add(key)
            self._pending.append(SourceRejection(raw, reason))

    def _drain_rejections(self) -> Iterator[SourceRejection]:
        while self._pending:
            yield self._pending.pop(0)


_SORT_URI = re.compile(r"https://api\.stacspec\.org/v1\.\d+\.\d+(?:-[\w.]+)?/item-search#sort")


def _advertises_sort(client: Client) -> bool:
    """Whether the landing page lists any 1.x version of the item-search sort extension."""
    conforms = client.extra_fields.get("conformsTo") or []
    return any(isinstance(uri, str) and _SORT_URI.fullmatch(uri) for uri in conforms)


def _batched(items: Iterable[dict[str, Any]], size: int) -> Iterator[tuple[dict[str, Any], ...]]:
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk


def _digest(item: Mapping[str, Any]) -> str:
    """A short stable digest of an item's collection and id, for `_Partial.sent`."""
    key = f"{item.get('collection')}/{item.get('id')}"
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class _Partial:
    """The cursor's ``partial``: items sent from windows before ``end`` that a ``--limit``
    run left unfinished (64-bit digests keep a cursor of thousands of items small)."""

    end: datetime
    sent: frozenset[str]

    @classmethod
    def load(cls, cursor: Mapping[str, Any] | None) -> _Partial | None:
        raw = (cursor or {}).get("partial")
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls(parse_instant(str(raw["end"])), frozenset(map(str, raw["sent"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSourceDataError(f"cursor.partial {raw!r} is not valid: {exc}") from exc

    @classmethod
    def after(cls, previous: _Partial | None, window: Window, sent: list[str]) -> _Partial:
        if previous is None:
            return cls(window.end, frozenset(sent))
        return cls(max(previous.end, window.end), previous.sent | frozenset(sent))

    def cursor(self, watermark: datetime) -> dict[str, Any]:
        partial = {"end": isoformat(self.end), "sent": sorted(self.sent)}
        return {"watermark": isoformat(watermark), "partial": partial}


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
