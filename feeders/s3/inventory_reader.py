"""Reading one data file of an S3 Inventory report into payloads, for the feeder's workers.

A `FileReader` streams Arrow batches from a row offset (`feeders.s3.inventory_formats`),
filters them on columns (`ObjectFilter.mask`, the diff index), builds the payloads of plain
rows on columns (`feeders.s3.inventory_items`) and the others row by row
(`feeders.s3.objects.ItemBuilder`, `cirrus_feed.model.prepared.PayloadTemplate`), and hands
them over in `Chunk`s of at most ``chunk_items``, each saying which rows it completes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from cirrus_feed.errors import FeederError, PayloadValidationError
from cirrus_feed.feeding.contract import FeedItem, SourceRejection
from cirrus_feed.model.payload import PreparedPayload
from cirrus_feed.model.prepared import PayloadTemplate
from feeders.s3.inventory_diff import KeyIndex
from feeders.s3.inventory_formats import DataFile, Manifest, read_batches
from feeders.s3.inventory_io import ChecksumMismatchError, InventoryBucket, open_data, verify
from feeders.s3.inventory_items import ColumnarPayloads
from feeders.s3.inventory_pool import Chunk
from feeders.s3.objects import ItemBuilder, ObjectFilter, S3Object, to_payload

if TYPE_CHECKING:
    from feeders.s3.inventory import S3InventoryConfig


class FileReader:
    """Reads one data file from a row offset and hands its items over in chunks."""

    def __init__(
        self,
        settings: S3InventoryConfig,
        source: InventoryBucket,
        manifest: Manifest,
        object_filter: ObjectFilter,
        index: KeyIndex | None,
    ) -> None:
        self.settings, self.source, self.manifest = settings, source, manifest
        self.filter, self.index = object_filter, index
        self.builder = ItemBuilder(settings.item, object_filter.key_regex)
        self.process = settings.process_template()
        self.chunk_items = settings.chunk_items()
        try:
            self.template: PayloadTemplate | None = PayloadTemplate(self.process)
        except PayloadValidationError:
            self.template = None
        self.columnar = ColumnarPayloads.create(
            settings.item,
            object_filter.key_regex,
            self.process,
            manifest.source_bucket,
            process_ok=self.template is not None,
        )
        self.times = settings.item.datetime == "last_modified" and "last_modified_date" in (
            manifest.columns
        )
        self.slow: Iterator[S3Object] = iter(())
        self.slow_rows = False  # whether the last batch has rows to build one by one
        wanted = {"key", *object_filter.required_columns()}
        if settings.item.datetime == "last_modified" or index is not None:
            wanted.add("last_modified_date")
        if index is not None:
            wanted.add("e_tag")
        wanted |= {"is_delete_marker"}
        self.columns = [c for c in manifest.columns if c in wanted]

    def run(self, data: DataFile, start: int, put: Callable[[Chunk], bool]) -> None:
        where = f"data file s3://{self.manifest.bucket}/{data.key}"
        self.row = self.row_done = self.group_start = start
        try:
            with open_data(self.source, self.manifest, data, download=self.settings.download) as (
                stream,
                digest,
            ):
                if not self._read(data, stream, start, put):
                    return
                verify(data, where, digest())
        except ChecksumMismatchError as exc:  # the data is wrong: retrying will not help
            put(Chunk(data.key, [], self.row_done, done=True, error=str(exc)))
            return
        except (FeederError, pa.ArrowException, OSError, ValueError) as exc:
            # The rows before the failure were handed over; a retry resumes after them.
            put(Chunk(data.key, [], self.row_done, error=f"{where}: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - handed to the feed generator, which raises it
            put(Chunk(data.key, [], self.row_done, fatal=exc))
            return
        put(Chunk(data.key, self._payloads(self.builder.finish()), self.row, done=True))

    def _read(
        self, data: DataFile, stream: IO[bytes], start: int, put: Callable[[Chunk], bool]
    ) -> bool:
        for batch in read_batches(
            self.manifest.file_format,
            stream,
            all_columns=self.manifest.columns,
            columns=self.columns,
            batch_rows=self.settings.batch_rows,
            skip_rows=start,
        ):
            mask = pc.fill_null(self.filter.mask(batch), False)
            selected = _true(mask)
            left_out = {"object-filter": batch.num_rows - selected}
            if self.index is not None:
                mask = pc.and_(mask, pc.fill_null(self.index.changed(batch), False))
                left_out["unchanged"] = selected - _true(mask)
            positions = pc.indices_nonzero(mask).to_pylist()
            kept = batch.filter(mask)
            built = self._built(kept)
            if self.slow_rows:
                handed = self._hand_over_rows(data, positions, built, put)
            else:
                ready = cast("list[PreparedPayload]", built)  # no row left to the per-row path
                handed = self._hand_over_built(data, positions, ready, put)
            if handed is None:
                return False
            out = handed
            self.row += batch.num_rows
            self.row_done = self._covered(self.row)
            counts = {kind: n for kind, n in left_out.items() if n}
            chunk = Chunk(data.key, out, self.row_done, scanned=batch.num_rows, left_out=counts)
            if not put(chunk):
                return False
        return True

    def _hand_over_built(
        self,
        data: DataFile,
        positions: list[int],
        built: list[PreparedPayload],
        put: Callable[[Chunk], bool],
    ) -> list[FeedItem] | None:
        """Every kept row of a batch built on columns: full chunks handed over by slicing;
        the rest (for the batch's own chunk) returned, or None once the feed stopped."""
        size = self.chunk_items
        full = len(built) - len(built) % size
        for start in range(0, full, size):
            self.row_done = self.row + positions[start + size - 1] + 1
            if not put(Chunk(data.key, [*built[start : start + size]], self.row_done)):
                return None
        return [*built[full:]]

    def _hand_over_rows(
        self,
        data: DataFile,
        positions: list[int],
        built: list[PreparedPayload | None],
        put: Callable[[Chunk], bool],
    ) -> list[FeedItem] | None:
        """`_hand_over_built` for batches with rows built one by one (and open groups)."""
        out: list[FeedItem] = []
        for offset, ready in zip(positions, built, strict=True):
            if ready is not None:
                out.append(ready)
            else:
                out += self._payloads(self.builder.push(next(self.slow)))
            if self.builder.pending == 1:
                self.group_start = self.row + offset
            if len(out) >= self.chunk_items:
                self.row_done = self._covered(self.row + offset + 1)
                if not put(Chunk(data.key, out, self.row_done)):
                    return None
                out = []
        return out

    def _built(self, kept: pa.RecordBatch) -> list[PreparedPayload | None]:
        """Per kept row: its payload built on columns, or None for the per-row path
        (`self.slow` then yields that row's object)."""
        self.slow_rows = True
        if self.columnar is None or not kept.num_rows:
            self.slow = self._objects(kept)
            return [None] * kept.num_rows
        times = kept.column("last_modified_date") if self.times else None
        plain, ids, bodies = self.columnar.build(kept.column("key"), times)
        replace = self.columnar.replace
        ready = iter([PreparedPayload(i, b, replace) for i, b in zip(ids, bodies, strict=True)])
        if len(ids) == kept.num_rows:
            self.slow, self.slow_rows = iter(()), False
            return list(ready)
        self.slow = self._objects(kept.filter(pc.invert(plain)))
        return [next(ready) if fast else None for fast in plain.to_pylist()]

    def _covered(self, end: int) -> int:
        return self.group_start if self.builder.pending else end

    def _objects(self, batch: pa.RecordBatch) -> Iterator[S3Object]:
        bucket = self.manifest.source_bucket
        keys = batch.column("key").to_pylist()
        names = batch.schema.names
        if "last_modified_date" in names and self.settings.item.datetime == "last_modified":
            times: list[datetime | None] = batch.column("last_modified_date").to_pylist()
        else:
            times = [None] * len(keys)
        for key, when in zip(keys, times, strict=True):
            yield S3Object(bucket, key, last_modified=when)

    def _payloads(self, built: list[dict[str, Any] | SourceRejection]) -> list[FeedItem]:
        template = self.template
        if template is None:  # no payload with this process is valid: the runner says why
            return [
                b if isinstance(b, SourceRejection) else to_payload(b, self.process) for b in built
            ]
        return [b if isinstance(b, SourceRejection) else template.build([b]) for b in built]


def _true(mask: pa.Array) -> int:
    """How many of a boolean mask's values are true."""
    return int(pc.sum(mask.cast(pa.int64())).as_py() or 0)
