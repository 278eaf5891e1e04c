"""Reading S3 Inventory reports from S3: objects, report discovery, checksummed reads.

`InventoryBucket` wraps one injected boto3 S3 client (requester-pays aware). By default a
data file is transferred once (`spool`): streamed into an unnamed temporary file while its
MD5 is taken, verified, then read locally (random access for ORC and Parquet). Without
disk (``download: false``) it is read sequentially through `HashingStream` (CSV.gz: the MD5
is taken over exactly the bytes read, then the rest is drained into it) or through
`RangeFile`, a seekable file that fetches byte ranges on demand (ORC, Parquet: their
footers sit at the end), after a streaming MD5 pass. Nothing is held whole in memory.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.errors import FeederError, InvalidSourceDataError, SourceUnavailableError
from cirrus_feed.support import aws_errors
from cirrus_feed.support.s3uri import parse_s3_uri
from feeders.s3.inventory_formats import DataFile, Manifest, checksum_ok, parse_manifest

log = logging.getLogger(__name__)

REPORT_FOLDER = re.compile(r"/(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z)/$")
CHUNK_BYTES = 1 << 20
_MISSING = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


def translate(exc: ClientError | BotoCoreError, what: str) -> FeederError:
    """A feeder error for a failed S3 call (`support.aws_errors`): retryable failures
    become `SourceUnavailableError`, the rest `InvalidSourceDataError`."""
    return aws_errors.translate(
        exc, what, retryable=SourceUnavailableError, permanent=InvalidSourceDataError
    )


def _missing(exc: ClientError) -> bool:
    return aws_errors.error_code(exc) in _MISSING


class InventoryBucket:
    """S3 reads for one feeder; ``client`` is a boto3 S3 client."""

    def __init__(self, client: Any, *, requester_pays: bool = False) -> None:
        self.client = client
        self.extra = {"RequestPayer": "requester"} if requester_pays else {}

    def get(self, bucket: str, key: str, **kwargs: Any) -> Any:
        """``GetObject``'s response; raises `FeederError` (missing: `InvalidSourceDataError`)."""
        try:
            return self.client.get_object(Bucket=bucket, Key=key, **self.extra, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"get s3://{bucket}/{key}") from exc

    def read(self, bucket: str, key: str) -> bytes | None:
        """A small object's bytes, or None when it does not exist."""
        try:
            body = self.client.get_object(Bucket=bucket, Key=key, **self.extra)["Body"]
            data: bytes = body.read()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise translate(exc, f"get s3://{bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"get s3://{bucket}/{key}") from exc
        return data

    def report_folders(self, bucket: str, prefix: str) -> list[str]:
        """Date-stamped report folders under ``prefix`` (ending in ``/``), newest first."""
        folders = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, Delimiter="/", **self.extra
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    if REPORT_FOLDER.search("/" + common["Prefix"]):
                        folders.append(common["Prefix"])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"list s3://{bucket}/{prefix}") from exc
        return sorted(folders, reverse=True)

    def manifest(self, bucket: str, key: str, *, require_checksum: bool) -> Manifest | None:
        """The report at ``key`` if complete: ``manifest.checksum`` present and matching.

        Returns None for an incomplete or mismatching report (logged), or raises
        `InvalidSourceDataError` when ``require_checksum`` is false and the manifest itself
        is missing or unreadable.
        """
        raw = self.read(bucket, key)
        where = f"inventory report s3://{bucket}/{key}"
        if raw is None:
            if require_checksum:
                return None
            raise InvalidSourceDataError(f"{where}: manifest not found")
        checksum = self.read(bucket, key.rsplit("/", 1)[0] + "/manifest.checksum")
        if checksum is None:
            if require_checksum:
                log.info("%s: no manifest.checksum yet (incomplete), skipped", where)
                return None
            log.warning("%s: no manifest.checksum; manifest not verified", where)
        elif not checksum_ok(raw, checksum):
            log.warning("%s: manifest.checksum does not match manifest.json, skipped", where)
            if require_checksum:
                return None
            raise InvalidSourceDataError(f"{where}: manifest.checksum does not match")
        return parse_manifest(raw, bucket, key)

    def reports(self, destination: str) -> Iterator[Manifest]:
        """Complete reports under ``s3://bucket/prefix/`` (a destination), newest first."""
        where = parse_s3_uri(destination.rstrip("/") + "/", prefix=True)
        for folder in self.report_folders(where.bucket, where.key):
            found = self.manifest(where.bucket, folder + "manifest.json", require_checksum=True)
            if found is not None:
                yield found

    def md5(self, bucket: str, key: str) -> tuple[str, int]:
        """MD5 of an object (streamed) and its size."""
        response = self.get(bucket, key)
        body = response["Body"]
        digest = hashlib.md5(usedforsecurity=False)
        try:
            while chunk := body.read(CHUNK_BYTES):
                digest.update(chunk)
        except BotoCoreError as exc:
            raise translate(exc, f"read s3://{bucket}/{key}") from exc
        return digest.hexdigest(), int(response["ContentLength"])


class HashingStream(io.RawIOBase):
    """A sequential read of one object that hashes every byte it hands out."""

    def __init__(self, source: InventoryBucket, bucket: str, key: str) -> None:
        super().__init__()
        self.where = f"s3://{bucket}/{key}"
        self.body = source.get(bucket, key)["Body"]
        self.digest = hashlib.md5(usedforsecurity=False)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self.body.read(len(view))
        except BotoCoreError as exc:
            raise translate(exc, f"read {self.where}") from exc
        view[: len(data)] = data
        self.digest.update(data)
        return len(data)

    def hexdigest(self) -> str:
        """The MD5 of the whole object: whatever the reader left unread is read first."""
        while chunk := self.read(CHUNK_BYTES):
            del chunk
        return self.digest.hexdigest()


class RangeFile(io.RawIOBase):
    """A seekable read-only view of one object; each read is a ranged ``GetObject``."""

    def __init__(self, source: InventoryBucket, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self.source, self.bucket, self.key, self.size = source, bucket, key, size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self.size, self.position + len(view))
        if end <= self.position:
            return 0
        response = self.source.get(self.bucket, self.key, Range=f"bytes={self.position}-{end - 1}")
        try:
            data = response["Body"].read()
        except BotoCoreError as exc:
            raise translate(exc, f"read s3://{self.bucket}/{self.key}") from exc
        view[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_seekable(source: InventoryBucket, bucket: str, key: str, size: int) -> io.BufferedReader:
    """`RangeFile` behind a 1 MiB buffer, so small reads do not each cost a request."""
    return io.BufferedReader(RangeFile(source, bucket, key, size), buffer_size=CHUNK_BYTES)


class ChecksumMismatchError(InvalidSourceDataError):
    """A data file's bytes do not hash to the manifest's ``MD5checksum``."""


def verify(data: DataFile, where: str, actual: str) -> None:
    if actual != data.md5:
        raise ChecksumMismatchError(
            f"{where}: MD5 {actual} does not match the manifest's MD5checksum {data.md5}"
        )


SPOOL_PREFIX = "cirrus-feed-inventory-"


@contextmanager
def spool(source: InventoryBucket, bucket: str, key: str) -> Iterator[tuple[IO[bytes], str]]:
    """The object copied into a temporary file in one streamed pass, and its MD5.

    The file is unnamed where the OS allows (Linux: ``O_TMPFILE``), so a killed process
    leaves nothing behind; elsewhere it is removed when closed. Closed on leaving, also on
    error.
    """
    where = f"s3://{bucket}/{key}"
    body = source.get(bucket, key)["Body"]
    digest = hashlib.md5(usedforsecurity=False)
    with tempfile.TemporaryFile(prefix=SPOOL_PREFIX) as local:
        try:
            while chunk := body.read(CHUNK_BYTES):
                digest.update(chunk)
                local.write(chunk)
        except BotoCoreError as exc:
            raise translate(exc, f"read {where}") from exc
        finally:
            body.close()
        local.seek(0)
        yield local, digest.hexdigest()


@contextmanager
def open_data(
    source: InventoryBucket, manifest: Manifest, data: DataFile, *, download: bool
) -> Iterator[tuple[IO[bytes], Callable[[], str]]]:
    """The file to read and a function giving its MD5 once it was read.

    Raises `ChecksumMismatchError` up front when the file could be hashed before reading
    (downloads, ORC, Parquet); for a streamed CSV the caller checks the digest at the end.
    """
    bucket, where = manifest.bucket, f"data file s3://{manifest.bucket}/{data.key}"
    if download:
        with spool(source, bucket, data.key) as (local, md5):
            verify(data, where, md5)
            yield local, lambda: md5
        return
    if manifest.file_format == "CSV":
        streaming = HashingStream(source, bucket, data.key)
        yield cast(IO[bytes], streaming), streaming.hexdigest
        return
    md5, size = source.md5(bucket, data.key)
    verify(data, where, md5)
    with open_seekable(source, bucket, data.key, size) as seekable:
        yield seekable, lambda: md5
