"""S3 Inventory reports made with pyarrow, shaped as AWS writes them (prior-art §3.4).

`write_report` uploads data files (CSV.gz, ORC or Parquet), ``manifest.json`` and
``manifest.checksum`` under ``<prefix>/<source-bucket>/<config-id>/<stamp>/`` of a
destination bucket, with ways to make a report incomplete or corrupt.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SOURCE_BUCKET = "source-data"
CONFIG_ID = "daily"
BASE_TIME = datetime(2024, 5, 1, tzinfo=UTC)
# Names as AWS writes them per format (CSV: PascalCase in fileSchema; ORC/Parquet: snake).
CSV_NAMES = {
    "bucket": "Bucket",
    "key": "Key",
    "size": "Size",
    "last_modified_date": "LastModifiedDate",
    "e_tag": "ETag",
    "storage_class": "StorageClass",
    "is_latest": "IsLatest",
    "version_id": "VersionId",
    "is_delete_marker": "IsDeleteMarker",
}
ARROW_TYPES = {
    "bucket": pa.string(),
    "key": pa.string(),
    "size": pa.int64(),
    "last_modified_date": pa.timestamp("ms", tz="UTC"),
    "e_tag": pa.string(),
    "storage_class": pa.string(),
    "is_latest": pa.bool_(),
    "version_id": pa.string(),
    "is_delete_marker": pa.bool_(),
}
ORC_TYPES = {pa.string(): "string", pa.int64(): "bigint", pa.bool_(): "boolean"}
PARQUET_TYPES = {pa.string(): "binary", pa.int64(): "int64", pa.bool_(): "boolean"}


def row(key: str, number: int = 0, **overrides: Any) -> dict[str, Any]:
    """One inventory row with plausible values; ``overrides`` replace any field."""
    values: dict[str, Any] = {
        "bucket": SOURCE_BUCKET,
        "key": key,
        "size": 1000 + number,
        "last_modified_date": BASE_TIME + timedelta(minutes=number),
        "e_tag": hashlib.md5(key.encode(), usedforsecurity=False).hexdigest(),
        "storage_class": "STANDARD",
        "is_latest": True,
    }
    return values | overrides


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    return pa.table(
        {c: pa.array([r.get(c) for r in rows], ARROW_TYPES[c]) for c in columns},
    )


def encode_csv(data: pa.Table) -> bytes:
    """No header, every field quoted, keys form-URL-encoded, ISO times with ms and Z."""
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    names = data.column_names
    for record in data.to_pylist():
        out = []
        for name in names:
            value = record[name]
            if name == "key":
                value = quote_plus(value, safe="/")
            elif isinstance(value, datetime):
                value = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
            elif isinstance(value, bool):
                value = "true" if value else "false"
            out.append("" if value is None else str(value))
        writer.writerow(out)
    return gzip.compress(text.getvalue().encode())


def encode(fmt: str, data: pa.Table, row_group_rows: int = 20_000) -> bytes:
    if fmt == "CSV":
        return encode_csv(data)
    buffer = io.BytesIO()
    if fmt == "ORC":
        orc.write_table(data, buffer, stripe_size=1 << 20)
    else:
        pq.write_table(data, buffer, row_group_size=row_group_rows)
    return buffer.getvalue()


def file_schema(fmt: str, columns: Sequence[str]) -> str:
    if fmt == "CSV":
        return ", ".join(CSV_NAMES[c] for c in columns)
    if fmt == "ORC":
        fields = []
        for c in columns:
            kind = "timestamp" if c == "last_modified_date" else ORC_TYPES[ARROW_TYPES[c]]
            fields.append(f"{c}:{kind}")
        return f"struct<{','.join(fields)}>"
    parts = []
    for c in columns:
        if c == "last_modified_date":
            parts.append(f"optional int64 {c} (TIMESTAMP(MILLIS,true));")
        else:
            parts.append(f"optional {PARQUET_TYPES[ARROW_TYPES[c]]} {c};")
    return "message s3.inventory { " + " ".join(parts) + " }"


@dataclass
class Report:
    manifest_url: str
    destination: str  # s3://bucket/prefix/source-bucket/config-id/
    data_keys: list[str]


def write_report(
    s3: S3Client,
    bucket: str,
    prefix: str,
    fmt: str,
    files: Iterable[Sequence[dict[str, Any]]],
    *,
    columns: Sequence[str] = ("bucket", "key", "size", "last_modified_date", "e_tag"),
    stamp: str = "2024-05-02T01-00Z",
    checksum: bool | str = True,
    corrupt: Iterable[int] = (),
    row_group_rows: int = 20_000,
) -> Report:
    """Upload one report; ``checksum``: True (right), False (absent), or text to write.

    ``corrupt``: indexes of data files whose stored bytes differ from the manifest's MD5.
    """
    base = f"{prefix}/{SOURCE_BUCKET}/{CONFIG_ID}"
    extension = {"CSV": "csv.gz", "ORC": "orc", "Parquet": "parquet"}[fmt]
    entries, keys = [], []
    bad = set(corrupt)
    for number, rows in enumerate(files):
        body = encode(fmt, table(rows, columns), row_group_rows)
        key = f"{base}/data/{uuid.uuid4()}.{extension}"
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        # A corrupt file still parses (one more row) but does not hash to the MD5.
        extra = [*rows, row("zz-not-in-manifest/extra.txt")]
        stored = encode(fmt, table(extra, columns), row_group_rows) if number in bad else body
        s3.put_object(Bucket=bucket, Key=key, Body=stored)
        entries.append({"key": key, "size": len(stored), "MD5checksum": md5})
        keys.append(key)
    manifest = {
        "sourceBucket": SOURCE_BUCKET,
        "destinationBucket": f"arn:aws:s3:::{bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(BASE_TIME.timestamp() * 1000)),
        "fileFormat": fmt,
        "fileSchema": file_schema(fmt, columns),
        "files": entries,
    }
    raw = json.dumps(manifest).encode()
    s3.put_object(Bucket=bucket, Key=f"{base}/{stamp}/manifest.json", Body=raw)
    if checksum is not False:
        text = hashlib.md5(raw, usedforsecurity=False).hexdigest() if checksum is True else checksum
        s3.put_object(Bucket=bucket, Key=f"{base}/{stamp}/manifest.checksum", Body=text + "\n")
    return Report(f"s3://{bucket}/{base}/{stamp}/manifest.json", f"s3://{bucket}/{base}/", keys)
