"""`PayloadStore` on the S3 payload bucket, Cirrus v2 layout under a root prefix (spec §4.7).

Unlike Cirrus (whose upload helper logs and swallows S3 errors) a failed write raises.
Reads follow ``{"url"}`` pointers only into the payload bucket or explicitly allowed
buckets: any other URL is refused before any request is made.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import call, error_code, translate
from cirrus_feed.backends.limits import S3_MAX_KEY_BYTES, check_object_key
from cirrus_feed.errors import ForbiddenUrlError, InvalidRecordError, PayloadNotFoundError
from cirrus_feed.model.layout import DEFAULT_ROOT
from cirrus_feed.support.s3uri import try_parse_s3_uri

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


class S3PayloadStore:
    """Objects at ``s3://<bucket>/<root>/<key>``; reads allowed from ``allowed_buckets`` too."""

    def __init__(
        self,
        bucket: str,
        *,
        client: Any,
        root: str = DEFAULT_ROOT,
        allowed_buckets: Sequence[str] = (),
    ) -> None:
        self.bucket = bucket
        self.root = root.strip("/")
        self._client = client
        self._readable = frozenset({bucket, *allowed_buckets})

    def _object_key(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"

    def put_json(self, key: str, obj: Any) -> str:
        url = self.url_for(key)
        check_object_key(self._object_key(key))
        call(
            self._client,
            "put_object",
            f"S3 PutObject {url}",
            Bucket=self.bucket,
            Key=self._object_key(key),
            Body=json.dumps(obj).encode(),
            ContentType="application/json",
        )
        return url

    def put_many(self, objects: Sequence[tuple[str, Any]]) -> list[str]:
        # S3 has no multi-object put: one PutObject each (the stages call this one-threaded
        # only for local runners; remote batches put side by side per record).
        return [self.put_json(key, obj) for key, obj in objects]

    def is_allowed(self, url: str) -> bool:
        parsed = try_parse_s3_uri(url)
        return parsed is not None and parsed.bucket in self._readable

    def get_json(self, url: str) -> Any:
        parsed = try_parse_s3_uri(url)
        if parsed is None or parsed.bucket not in self._readable:
            allowed = ", ".join(f"s3://{b}/" for b in sorted(self._readable))
            raise ForbiddenUrlError(f"url {url!r} is not in an allowed location ({allowed})")
        data = self._read(url, parsed.bucket, parsed.key)
        if parsed.key.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error) as exc:
                raise InvalidRecordError(f"{url}: not valid gzip data: {exc}") from exc
        try:
            return json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise InvalidRecordError(f"{url}: not valid JSON: {exc}") from exc

    def _read(self, url: str, bucket: str, key: str) -> bytes:
        if len(key.encode()) > S3_MAX_KEY_BYTES:  # S3 says KeyTooLongError: nothing is there
            raise PayloadNotFoundError(f"no object at {url}")
        try:
            response = self._client.get_object(Bucket=bucket, Key=key)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _MISSING_CODES:
                raise PayloadNotFoundError(f"no object at {url}") from exc
            raise translate(exc, f"S3 GetObject {url}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"S3 GetObject {url}") from exc
        return body

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""
