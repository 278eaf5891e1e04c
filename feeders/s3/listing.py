"""The ``s3-listing`` feeder: ListObjectsV2 over a bucket prefix, sharded and resumable.

Sharding: down to ``shard_depth`` levels under ``prefix`` the common prefixes (by
``delimiter``) are discovered; each deepest prefix is one shard listed recursively, and every
level above it also gets a *direct* shard for the objects that sit at that level. Shards are
listed by ``concurrency`` threads; their results reach the feeder through a bounded queue, so
memory is bounded by a few pages whatever the bucket's size.

Every shard's keys come back sorted, so siblings are grouped per shard with the shared
templates of `feeders.s3.objects`: the feeder cuts the shard's stream into groups
(``item.group_by``) and hands each whole group to the `ItemBuilder`. A *unit* is one group
(or one object): what the cursor advances by.

Cursor: ``{"selection", "started", "shards": {shard: {"after", "seen", "watermark", "done"}}}``.
``after`` is the last key of the shard whose unit was yielded (a crash resumes with
``StartAfter`` there, so an open group is listed again whole); ``done`` marks shards finished
in this pass. With ``modified_since`` the run is incremental: a shard feeds only units with an
object modified after its ``watermark``. When a shard's pass ends its watermark becomes the
earlier of the newest ``LastModified`` seen (``seen``) and the pass start minus
``clock_skew_seconds``: an object uploaded behind the listing position during the pass is
then still newer than the watermark, so it is fed by the next pass and never lost.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, model_validator

from cirrus_feed.errors import ConfigError, FeederError, SourceUnavailableError
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Counted,
    Feeder,
    FeederConfig,
    FeederContext,
    FeedItem,
    FeedRequest,
    SourceRejection,
)
from cirrus_feed.support.aws_errors import translate
from cirrus_feed.support.durations import FloatSeconds
from feeders.s3.objects import (
    ItemBuilder,
    ItemTemplate,
    ObjectFilter,
    S3Object,
    Template,
    to_payload,
)

_POLL_SECONDS = 0.1  # how often blocked threads look at the stop flag


class S3ListingConfig(FeederConfig):
    """Settings of an ``s3-listing`` feeder."""

    bucket: str
    prefix: str = ""
    delimiter: str = Field("/", min_length=1)
    shard_depth: int = Field(0, ge=0, le=8)
    concurrency: int = Field(4, ge=1, le=64)
    requester_pays: bool = False
    modified_since: datetime | None = None  # set: incremental, watermarks kept per shard
    clock_skew_seconds: FloatSeconds = Field(300, ge=0)  # or "5m"
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    item: ItemTemplate
    page_size: int = Field(1000, ge=1, le=1000)
    checkpoint_every: int = Field(1000, ge=1)  # units between checkpoints
    region: str = "us-east-1"
    endpoint_url: str | None = None

    @model_validator(mode="after")
    def _templates_fit(self) -> S3ListingConfig:
        try:
            ItemBuilder(self.item, self.filter.key_regex)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        if self.modified_since is not None and self.modified_since.tzinfo is None:
            self.modified_since = self.modified_since.replace(tzinfo=UTC)
        return self

    def selection(self) -> str:
        """What the shard positions depend on; another selection starts afresh."""
        text = json.dumps([self.bucket, self.prefix, self.delimiter, self.shard_depth])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Shard:
    prefix: str
    recursive: bool

    @property
    def id(self) -> str:
        # A common prefix ends with the delimiter, so "<prefix>#direct" never names one.
        return self.prefix if self.recursive else f"{self.prefix}#direct"


@dataclass(slots=True)
class _Unit:
    items: list[FeedItem]
    after: str  # the shard's resume key once these items are yielded
    seen: datetime | None  # newest LastModified listed in the shard so far
    left_out: dict[str, int] = field(default_factory=dict)  # objects not fed, by `Skipped` kind


@dataclass(slots=True)
class _ShardPass:
    """One shard's progress in this pass (the JSON of ``cursor["shards"][id]``)."""

    after: str | None = None
    seen: datetime | None = None
    watermark: datetime | None = None
    done: bool = False

    @classmethod
    def load(cls, raw: Mapping[str, Any], default: datetime | None) -> _ShardPass:
        def when(name: str) -> datetime | None:
            value = raw.get(name)
            return datetime.fromisoformat(value) if isinstance(value, str) else None

        watermark = when("watermark") if "watermark" in raw else default
        return cls(raw.get("after"), when("seen"), watermark, bool(raw.get("done")))

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"after": self.after, "done": self.done or None}
        out |= {"seen": self.seen.isoformat() if self.seen else None}
        out |= {"watermark": self.watermark.isoformat() if self.watermark else None}
        return {k: v for k, v in out.items() if v is not None}


class S3ListingFeeder(Feeder[S3ListingConfig]):
    """Feeds the objects of a bucket prefix (see the module docstring)."""

    name: ClassVar[str] = "s3-listing"
    description: ClassVar[str] = "List an S3 prefix (sharded, resumable, incremental)"
    reconcilable: ClassVar[bool] = True

    def __init__(self, instance: str, config: S3ListingConfig, context: FeederContext) -> None:
        super().__init__(instance, config, context)
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            config = self.config
            self._client = self.context.clients(
                "s3", region=config.region, endpoint_url=config.endpoint_url
            )
        return self._client

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        config = self.config
        cursor = dict(request.cursor or {})
        if cursor.get("selection") != config.selection():
            cursor = {}  # a cursor of another listing (or none): start afresh
        started = (
            datetime.fromisoformat(cursor["started"])
            if isinstance(cursor.get("started"), str)
            else self.context.clock.now()
        )
        raw_shards = cursor.get("shards") or {}
        shards = self.discover()
        passes = {
            s.id: _ShardPass.load(raw_shards.get(s.id, {}), config.modified_since) for s in shards
        }
        todo = [s for s in shards if not passes[s.id].done]

        def checkpoint(label: str) -> Checkpoint:
            shard_json = {sid: p.dump() for sid, p in passes.items()}
            state = {"selection": config.selection(), "started": started.isoformat()}
            return Checkpoint(state | {"shards": shard_json}, label=label)

        fed, units = 0, 0
        left_out: Counter[str] = Counter()  # objects listed and not fed, reported in bulk

        def counted() -> Iterator[Counted]:
            if left_out:
                yield Counted(dict(left_out))
                left_out.clear()

        with _Listing(self, todo, passes, request) as listing:
            for shard_id, unit in listing.units():
                if unit is None:  # the shard's pass is over
                    passes[shard_id] = self._finished(passes[shard_id], started)
                    finished = sum(p.done for p in passes.values())
                    yield from counted()
                    yield checkpoint(f"{finished}/{len(passes)} shards")
                    continue
                for item in unit.items:
                    yield item
                    fed += not isinstance(item, SourceRejection)
                left_out.update(unit.left_out)
                progress = passes[shard_id]
                progress.after, progress.seen = unit.after, unit.seen
                units += 1
                if request.limit is not None and fed >= request.limit:
                    yield from counted()
                    yield checkpoint(f"limit {request.limit} reached")
                    return
                if units % config.checkpoint_every == 0:
                    yield from counted()
                    yield checkpoint(f"{units} units")
        yield from counted()
        final = {sid: _ShardPass(watermark=p.watermark).dump() for sid, p in passes.items()}
        incremental = config.modified_since is not None
        yield Checkpoint(
            {"selection": config.selection(), "shards": final} if incremental else {},
            label=f"complete: {len(passes)} shards",
        )

    def _finished(self, progress: _ShardPass, started: datetime) -> _ShardPass:
        if self.config.modified_since is None:
            return _ShardPass(done=True)
        horizon = started - timedelta(seconds=self.config.clock_skew_seconds)
        watermark = min(progress.seen, horizon) if progress.seen else horizon
        return _ShardPass(watermark=max(watermark, progress.watermark or watermark), done=True)

    # -- listing --------------------------------------------------------------------------

    def discover(self) -> list[Shard]:
        """The shards: direct shards of every level above ``shard_depth``, then the leaves."""
        config = self.config
        level, shards = [config.prefix], []
        with ThreadPoolExecutor(config.concurrency) as pool:
            for _ in range(config.shard_depth):
                shards += [Shard(p, recursive=False) for p in level]
                level = [
                    child for children in pool.map(self._children, level) for child in children
                ]
        return shards + [Shard(p, recursive=True) for p in level]

    def _children(self, prefix: str) -> list[str]:
        config = self.config
        children: list[str] = []
        for page in self._pages(Prefix=prefix, Delimiter=config.delimiter):
            children += [c["Prefix"] for c in page.get("CommonPrefixes", [])]
        return children

    def _pages(self, **params: Any) -> Iterator[dict[str, Any]]:
        config = self.config
        params |= {"Bucket": config.bucket, "MaxKeys": config.page_size}
        if config.requester_pays:
            params["RequestPayer"] = "requester"
        while True:
            try:
                page: dict[str, Any] = self.client().list_objects_v2(**params)
            except (ClientError, BotoCoreError) as exc:
                what = f"s3-listing '{self.instance}': list s3://{config.bucket}/"
                raise translate(
                    exc, what, retryable=SourceUnavailableError, permanent=FeederError
                ) from exc
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    def objects(self, shard: Shard, after: str | None) -> Iterator[S3Object]:
        """The shard's objects in key order, after ``after``."""
        params: dict[str, Any] = {"Prefix": shard.prefix}
        if not shard.recursive:
            params["Delimiter"] = self.config.delimiter
        if after:
            params["StartAfter"] = after
        for page in self._pages(**params):
            for entry in page.get("Contents", []):
                yield S3Object(
                    bucket=self.config.bucket,
                    key=entry["Key"],
                    size=entry.get("Size"),
                    last_modified=entry.get("LastModified"),
                    etag=entry.get("ETag"),
                    storage_class=entry.get("StorageClass"),
                )

    def units(
        self, shard: Shard, progress: _ShardPass, request: FeedRequest
    ) -> Iterator[list[_Unit]]:
        """The shard's units, a page's worth at a time (see the module docstring)."""
        config = self.config
        builder = ItemBuilder(config.item, config.filter.key_regex)
        grouping = _Grouping(config.item, config.filter.regex)
        process = config.process_template()
        seen = progress.seen
        batch: list[_Unit] = []
        group: list[S3Object] = []
        last_key = progress.after
        filtered_in_group = 0  # objects the filter dropped while a group was open

        def unit(objects: list[S3Object], after: str) -> _Unit:
            nonlocal filtered_in_group
            left_out = {"object-filter": filtered_in_group} if filtered_in_group else {}
            filtered_in_group = 0
            new = progress.watermark is None or any(
                o.last_modified is not None and o.last_modified > progress.watermark
                for o in objects
            )
            built = [*(out for o in objects for out in builder.push(o)), *builder.finish()]
            items: list[FeedItem] = [
                b if isinstance(b, SourceRejection) else to_payload(b, process) for b in built
            ]
            if new:
                return _Unit(items, after, seen, left_out)
            return _Unit([], after, seen, left_out | {"unchanged": len(objects)})

        group_key: str | None = None
        for obj in self.objects(shard, progress.after):
            if obj.last_modified is not None:
                seen = max(seen, obj.last_modified) if seen else obj.last_modified
            if self._wanted(obj, request):
                key = grouping.key(obj)
                if group and key is not None and key != group_key:
                    batch.append(unit(group, last_key or ""))
                    group = []
                if group or key is not None:
                    # An ungroupable object inside a group stays in its unit: the builder
                    # rejects it without closing the group, as it does for any source.
                    group.append(obj)
                    group_key = group_key if key is None else key
                else:
                    batch.append(unit([obj], obj.key))
            elif not group:
                batch.append(_Unit([], obj.key, seen, {"object-filter": 1}))
            else:
                filtered_in_group += 1
            last_key = obj.key
            if len(batch) >= config.page_size:
                yield batch
                batch = []
        if group:
            batch.append(unit(group, group[-1].key))
        if batch:
            yield batch

    def _wanted(self, obj: S3Object, request: FeedRequest) -> bool:
        when = obj.last_modified
        if request.since is not None and (when is None or when < request.since):
            return False
        if request.until is not None and (when is None or when >= request.until):
            return False
        return self.config.filter.matches(obj)


@dataclass
class _Grouping:
    """The group key of an object, as the builder renders ``group_by`` (None: no group)."""

    template: ItemTemplate
    regex: re.Pattern[str] | None
    _render: Template | None = field(init=False)

    def __post_init__(self) -> None:
        self._render = self.template.templates().get("group_by")

    def key(self, obj: S3Object) -> str | None:
        if self._render is None:
            return None
        values: dict[str, str | None] = dict(obj.fields())
        if self.regex is not None:
            match = self.regex.search(obj.key)
            if match is None:
                return None
            values |= {k: v for k, v in match.groupdict().items() if v is not None}
        try:
            return str(self._render.render(values))
        except KeyError:
            return None


class _Listing:
    """Shards listed by worker threads into one bounded queue; closing stops the workers."""

    def __init__(
        self,
        feeder: S3ListingFeeder,
        shards: list[Shard],
        passes: Mapping[str, _ShardPass],
        request: FeedRequest,
    ) -> None:
        self.feeder, self.shards, self.passes, self.request = feeder, shards, passes, request
        concurrency = feeder.config.concurrency
        self.results: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2 * concurrency)
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix=feeder.instance)

    def __enter__(self) -> _Listing:
        for shard in self.shards:
            self.pool.submit(self._list, shard)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        while True:  # unblock workers waiting to put, then let them end
            try:
                self.results.get_nowait()
            except queue.Empty:
                break
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _put(self, message: tuple[str, Any]) -> bool:
        while not self.stop.is_set():
            try:
                self.results.put(message, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _list(self, shard: Shard) -> None:
        try:
            for batch in self.feeder.units(shard, self.passes[shard.id], self.request):
                if not self._put((shard.id, batch)):
                    return
            self._put((shard.id, None))
        except Exception as exc:  # noqa: BLE001 - re-raised in the consuming thread
            self._put(("", exc))

    def units(self) -> Iterator[tuple[str, _Unit | None]]:
        """Each unit as it comes, then ``(shard, None)`` when a shard's pass is over."""
        remaining = len(self.shards)
        while remaining:
            shard_id, message = self.results.get()
            if isinstance(message, Exception):
                raise message
            if message is None:
                remaining -= 1
                yield shard_id, None
                continue
            for unit in message:
                yield shard_id, unit
