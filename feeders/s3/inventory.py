"""The ``s3-inventory`` feeder: backfill from an S3 Inventory report, streaming and resumable.

The report is an explicit ``manifest`` or the newest complete one under ``destination``.
Its data files are read by ``concurrency`` worker threads, one file per worker, in Arrow
batches (`feeders.s3.inventory_reader`): rows are filtered in Arrow, the kept ones become
payloads on columns (`feeders.s3.inventory_items`: `PreparedPayload`s, no Python item per
row) or, when a row or the configuration needs it, one by one (`feeders.s3.objects`). Rows
a filter drops are counted in bulk (`Counted`). Workers hand chunks of items, each tagged
with the file's row offset it completes, to the feed generator through a bounded queue
(`feeders.s3.inventory_pool`), so a slow pipeline blocks the readers instead of filling
memory.

Cursor: ``{"report": url, "since": url|None, "complete": bool, "files": {key: {"row": N,
"done": bool, "error"?: str}}}``. ``row`` counts the rows of that file whose items were all
yielded before the checkpoint (an open group's rows are not counted, so it is rebuilt on
resume); a resumed file skips that many rows. A ``--limit`` reached inside a chunk leaves
``row`` at the chunk's start and lists digests of the payloads sent after it in the file's
``sent``; the next run leaves those out as it meets them. A checkpoint follows every chunk of items
(fewer than the runner's flush size, see `S3InventoryConfig.chunk_items`), every
``checkpoint_rows`` rows scanned, and each file's end.

A data file that cannot be read or fails its ``MD5checksum`` becomes a `SourceRejection`
naming it; the other files still feed. A checksum mismatch marks the file done (its data
is wrong, a retry will not help); other failures leave it to be retried by the next run.
Each data file is transferred once, into an unnamed temporary file while its MD5 is taken,
and verified before any row is read (`inventory_io.spool`; one file per reader thread on
disk). With ``download: false`` nothing touches the disk: CSV files are hashed while being
read, so a mismatch is known at their end; ORC and Parquet need random access, so they are
hashed in a streaming pass first, then read by ranged requests.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cirrus_feed.errors import (
    ConfigError,
    FeederError,
    InvalidSourceDataError,
)
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
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.support.s3uri import parse_s3_uri
from feeders.s3.inventory_diff import KeyIndex
from feeders.s3.inventory_formats import DataFile, Manifest, read_batches
from feeders.s3.inventory_io import (
    InventoryBucket,
    open_data,
    verify,
)
from feeders.s3.inventory_pool import Chunk, ReaderPool
from feeders.s3.inventory_reader import FileReader
from feeders.s3.objects import ItemBuilder, ItemTemplate, ObjectFilter

log = logging.getLogger(__name__)


class AwsAccess(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = "us-east-1"
    endpoint_url: str | None = None
    requester_pays: bool = False


class S3InventoryConfig(FeederConfig):
    """Settings of an ``s3-inventory`` feeder; exactly one of ``manifest``/``destination``."""

    manifest: str | None = None  # s3://bucket/.../manifest.json
    destination: str | None = None  # s3://dest/prefix/source-bucket/config-id/
    since_manifest: str | None = None  # an older manifest URL, or "previous"
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    item: ItemTemplate
    aws: AwsAccess = Field(default_factory=AwsAccess)
    concurrency: int = Field(2, ge=1, le=32)
    checkpoint_rows: int = Field(50_000, ge=1)
    # Items (payloads and rejections) between checkpoints; default: one less than the
    # runner's flush size, so every flush is followed by a checkpoint (see `chunk_items`).
    checkpoint_items: int | None = Field(None, ge=1)
    batch_rows: int = Field(65_536, ge=1)
    # Each data file copied once to an unnamed temporary file (disk: one data file per
    # reader thread) while hashed, then read locally; false: no disk, CSV hashed while
    # streamed, ORC/Parquet hashed in one pass and then read by ranged requests.
    download: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> S3InventoryConfig:
        if (self.manifest is None) == (self.destination is None):
            raise ValueError("set exactly one of 'manifest' and 'destination'")
        for name in ("manifest", "destination"):
            if (url := getattr(self, name)) is not None:
                parse_s3_uri(url, prefix=name == "destination")
        if self.since_manifest not in (None, "previous"):
            parse_s3_uri(self.since_manifest)
        if self.since_manifest is not None and self.item.group_by is not None:
            raise ValueError("since_manifest with item.group_by is not supported")
        if self.checkpoint_items is not None and self.checkpoint_items >= self.flush():
            raise ValueError(f"checkpoint_items must be below the flush size {self.flush()}")
        try:
            ItemBuilder(self.item, self.filter.key_regex)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def chunk_items(self) -> int:
        """Items per hand-over from a reader, each followed by a checkpoint.

        The runner enqueues a batch when it is full, when a checkpoint arrives, and when a
        run stops or fails; only a checkpoint moves the cursor. A checkpoint before every
        full batch therefore means nothing is ever enqueued without its cursor being saved
        right after, so a stopped or crashed run re-enqueues nothing when resumed.
        """
        return self.checkpoint_items or self.flush() - 1


@dataclass
class _InventoryPlan:
    manifest: Manifest
    since: Manifest | None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cursor(self, *, complete: bool = False) -> dict[str, Any]:
        return {
            "report": self.manifest.url,
            "since": self.since.url if self.since else None,
            "complete": complete,
            "files": {k: dict(v) for k, v in self.files.items()},
        }


class S3InventoryFeeder(Feeder[S3InventoryConfig]):
    """Feeds the objects of an S3 Inventory report (see the module docstring)."""

    name: ClassVar[str] = "s3-inventory"
    description: ClassVar[str] = "backfill from S3 Inventory reports (CSV.gz, ORC, Parquet)"
    reconcilable: ClassVar[bool] = True

    def __init__(self, instance: str, config: S3InventoryConfig, context: FeederContext) -> None:
        super().__init__(instance, config, context)
        self._client: Any = None

    @property
    def bucket(self) -> InventoryBucket:
        aws = self.config.aws
        if self._client is None:
            self._client = self.context.clients(
                "s3", region=aws.region, endpoint_url=aws.endpoint_url
            )
        return InventoryBucket(self._client, requester_pays=aws.requester_pays)

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        source = self.bucket
        plan = self._plan(source, request.cursor)
        if plan is None:
            return
        columns = plan.manifest.columns
        object_filter = _windowed(self.config.filter, request.since, request.until)
        object_filter.check_columns(columns, f"report {plan.manifest.url}")
        index = self._diff_index(source, plan) if plan.since is not None else None
        try:
            yield from self._feed_files(source, plan, object_filter, index, request.limit)
        finally:
            if index is not None:
                index.close()

    # -- choosing the report ---------------------------------------------------------------

    def _plan(
        self, source: InventoryBucket, cursor: Mapping[str, Any] | None
    ) -> _InventoryPlan | None:
        """The report to feed (and its diff base), resuming the cursor's when unfinished."""
        cursor = cursor or {}
        if cursor.get("report") and not cursor.get("complete") and self.config.destination:
            target = self._load(source, str(cursor["report"]))
        else:
            target = self._target(source)
            if cursor.get("report") == target.url and cursor.get("complete"):
                log.info("feed %s: report %s already fed", self.instance, target.url)
                return None
        resumed = cursor.get("report") == target.url
        since_url = cursor.get("since") if resumed else None
        since = self._load(source, since_url) if since_url else self._since(source, target)
        plan = _InventoryPlan(target, since)
        previous = cursor.get("files", {}) if resumed else {}
        for data in target.files:
            plan.files[data.key] = dict(previous.get(data.key, {"row": 0, "done": False}))
        return plan

    def _load(self, source: InventoryBucket, url: str) -> Manifest:
        where = parse_s3_uri(url)
        found = source.manifest(where.bucket, where.key, require_checksum=False)
        assert found is not None  # require_checksum=False raises instead of returning None
        return found

    def _target(self, source: InventoryBucket) -> Manifest:
        if self.config.manifest is not None:
            return self._load(source, self.config.manifest)
        destination = str(self.config.destination)
        newest = next(source.reports(destination), None)
        if newest is None:
            raise InvalidSourceDataError(f"no complete inventory report under {destination}")
        return newest

    def _since(self, source: InventoryBucket, target: Manifest) -> Manifest | None:
        since = self.config.since_manifest
        if since is None:
            return None
        if since != "previous":
            return self._load(source, since)
        # <dest-prefix>/<source-bucket>/<config-id>/<stamp>/manifest.json: list the config.
        config_prefix = target.key.rsplit("/", 2)[0]
        for report in source.reports(f"s3://{target.bucket}/{config_prefix}/"):
            if report.key < target.key:
                return report
        raise InvalidSourceDataError(f"no complete report before {target.url} to diff against")

    def _diff_index(self, source: InventoryBucket, plan: _InventoryPlan) -> KeyIndex:
        since = plan.since
        assert since is not None
        wanted = [c for c in ("e_tag", "last_modified_date") if c in since.columns]
        if not wanted or not set(wanted) & set(plan.manifest.columns):
            raise ConfigError(
                f"since_manifest {since.url}: needs ETag or LastModifiedDate in both reports"
            )
        key_filter = ObjectFilter(
            prefix=self.config.filter.prefix,
            suffix=self.config.filter.suffix,
            key_regex=self.config.filter.key_regex,
        )
        index = KeyIndex()
        for data in since.files:
            with open_data(source, since, data, download=self.config.download) as (
                stream,
                digest,
            ):
                for batch in read_batches(
                    since.file_format,
                    stream,
                    all_columns=since.columns,
                    columns=["key", *wanted],
                    batch_rows=self.config.batch_rows,
                ):
                    index.add(batch.filter(key_filter.mask(batch)))
                verify(data, f"data file s3://{since.bucket}/{data.key}", digest())
        log.info("feed %s: indexed %d keys of %s", self.instance, index.rows, since.url)
        return index

    # -- reading ---------------------------------------------------------------------------

    def _feed_files(
        self,
        source: InventoryBucket,
        plan: _InventoryPlan,
        object_filter: ObjectFilter,
        index: KeyIndex | None,
        limit: int | None,
    ) -> Iterator[FeedItem]:
        """Yield the readers' items in arrival order, checkpointing what they complete."""
        todo = [d for d in plan.manifest.files if not plan.files[d.key]["done"]]

        def read(data: DataFile, put: Callable[[Chunk], bool]) -> None:
            reader = FileReader(self.config, source, plan.manifest, object_filter, index)
            reader.run(data, int(plan.files[data.key]["row"]), put)

        readers = ReaderPool(self.instance, todo, read, self.config.concurrency)
        remaining, scanned, fed = len(todo), 0, 0
        try:
            while remaining:
                chunk = readers.chunks.get()
                if chunk.fatal is not None:
                    raise FeederError(f"reading {chunk.file}: {chunk.fatal}") from chunk.fatal
                progress = plan.files[chunk.file]
                before = frozenset(progress.get("sent", ()))  # by a --limit run, after ``row``
                if before or (limit is not None and fed + len(chunk.items) >= limit):
                    left = yield from _limited(plan, chunk, before, limit, fed)
                    if left is None:
                        return
                    fed, sent = left
                else:  # nothing to leave out, no limit within reach: no digests needed
                    fed += sum(not isinstance(i, SourceRejection) for i in chunk.items)
                    yield from chunk.items
                    sent = set()
                if chunk.left_out:
                    yield Counted(chunk.left_out)
                if sent:
                    progress["sent"] = sorted(sent)
                else:
                    progress.pop("sent", None)
                yield from self._account(plan, chunk)
                scanned += chunk.scanned
                finished = chunk.done or chunk.error is not None
                remaining -= finished
                if finished or chunk.items or scanned >= self.config.checkpoint_rows:
                    scanned = 0
                    yield Checkpoint(plan.cursor(), label=_label(plan))
            yield Checkpoint(plan.cursor(complete=True), label=f"{plan.manifest.url} done")
        finally:
            readers.close()

    @staticmethod
    def _account(plan: _InventoryPlan, chunk: Chunk) -> Iterator[SourceRejection]:
        """Record a chunk's progress once its items were yielded; report a failed file."""
        progress = plan.files[chunk.file]
        progress["row"] = chunk.row
        if chunk.error is not None:
            progress["error"] = chunk.error
            yield SourceRejection({"report": plan.manifest.url, "file": chunk.file}, chunk.error)
        if chunk.done:
            progress["done"] = True


def _limited(
    plan: _InventoryPlan, chunk: Chunk, before: frozenset[str], limit: int | None, fed: int
) -> Generator[FeedItem, None, tuple[int, set[str]] | None]:
    """Yield a chunk's items, leaving out those a ``--limit`` run sent after ``row`` and
    stopping at ``limit``: then (None) with a checkpoint listing what was sent of the chunk.
    Else the new count of payloads fed and the digests of ``before`` not met."""
    progress = plan.files[chunk.file]
    sent, yielded = set(before), list[str]()
    for item in chunk.items:
        if isinstance(item, SourceRejection):  # not counted by limit
            yield item
            continue
        digest = _digest(item)
        if digest in sent:
            sent.discard(digest)
            continue
        if limit is not None and fed >= limit:
            # Resume at this chunk's start, leaving out what was sent of it.
            progress["sent"] = sorted(before | set(yielded))
            yield Checkpoint(plan.cursor(), label=f"{_label(plan)} (limit)")
            return None
        yielded.append(digest)
        fed += 1
        yield item
    return fed, sent


def _digest(item: FeedItem) -> str:
    """A short stable digest of a payload's items, for a file's ``sent`` in the cursor."""
    payload = item.to_dict() if isinstance(item, PreparedPayload | ProcessPayload) else item
    assert isinstance(payload, Mapping)
    ids = [f"{f.get('collection')}/{f.get('id')}" for f in payload.get("features", [])]
    text = "\n".join(ids).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def _windowed(base: ObjectFilter, since: datetime | None, until: datetime | None) -> ObjectFilter:
    """``base`` narrowed to the run's time window on last-modified."""
    update: dict[str, datetime] = {}
    if since is not None and (base.modified_after is None or since > base.modified_after):
        update["modified_after"] = since
    if until is not None and (base.modified_before is None or until < base.modified_before):
        update["modified_before"] = until
    return base.model_copy(update=update) if update else base


def _label(plan: _InventoryPlan) -> str:
    done = sum(bool(p["done"]) for p in plan.files.values())
    return f"{plan.manifest.url}: {done}/{len(plan.files)} files"
