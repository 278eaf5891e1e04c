"""`InvalidStore` on the payload bucket: the objects under ``<root>/tmp/invalid/`` that
`cirrus_feed.pipeline.invalid` (and Cirrus itself) write there.

Keys are listed (ListObjectsV2, 1000 a page) and ordered by the time in their UUID names;
only the records returned are read.
"""

from __future__ import annotations

from typing import Any

from cirrus_feed.backends.aws.clients import call
from cirrus_feed.backends.aws.s3 import S3PayloadStore
from cirrus_feed.backends.base import InvalidRecord
from cirrus_feed.errors import PayloadNotFoundError
from cirrus_feed.model.layout import INVALID_PREFIX
from cirrus_feed.model.rejections import newest_first, read_invalid, record_id_of, record_time


class S3InvalidStore:
    """Rejected records of ``store``'s bucket, read with ``client``."""

    def __init__(self, store: S3PayloadStore, *, client: Any) -> None:
        self._store = store
        self._client = client
        root = f"{store.root}/" if store.root else ""
        self.prefix = f"{root}{INVALID_PREFIX}"

    def _ids(self) -> list[str]:
        ids: list[str] = []
        request: dict[str, Any] = {"Bucket": self._store.bucket, "Prefix": self.prefix}
        while True:
            response = call(
                self._client,
                "list_objects_v2",
                f"S3 ListObjectsV2 s3://{self._store.bucket}/{self.prefix}",
                **request,
            )
            for entry in response.get("Contents", []):
                name = str(entry["Key"])[len(self.prefix) :]
                record_id = record_id_of(name) if "/" not in name else None
                if record_id is not None:
                    ids.append(record_id)
            if not response.get("IsTruncated"):
                return ids
            request["ContinuationToken"] = response["NextContinuationToken"]

    def recent(self, limit: int = 100) -> list[InvalidRecord]:
        return [self.get(record_id) for record_id in newest_first(self._ids())[:limit]]

    def get(self, record_id: str) -> InvalidRecord:
        if record_time(record_id) is None:
            raise PayloadNotFoundError(f"no invalid record {record_id!r}: not a record id")
        url = self._store.url_for(f"{INVALID_PREFIX}{record_id}.json")
        return read_invalid(record_id, url, self._store.get_json(url))

    def count(self) -> int:
        return len(self._ids())

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""
