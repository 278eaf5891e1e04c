"""`PayloadStore` on the local file system: the Cirrus v2 bucket layout under a folder.

Objects live at ``<root>/<prefix>/<key>`` and are addressed by ``file://`` URLs. Reads are
confined to that folder: a payload's ``{"url": ...}`` pointer comes from the outside world,
so anything else (``http``, ``s3``, other paths, ``..``, symlinks that leave the folder) is
refused before any IO.
"""

from __future__ import annotations

import gzip
import heapq
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cirrus_feed.backends.limits import check_object_key
from cirrus_feed.errors import (
    BackendError,
    ForbiddenUrlError,
    InvalidRecordError,
    PayloadNotFoundError,
)
from cirrus_feed.model.layout import DEFAULT_ROOT
from cirrus_feed.support.files import write_atomically


class FilePayloadStore:
    """Payloads as JSON files; see `cirrus_feed.backends.base.PayloadStore`."""

    def __init__(self, root: Path, *, prefix: str = DEFAULT_ROOT) -> None:
        # Resolved once: URLs are absolute and the confinement check compares real paths.
        self.base = (root / prefix).resolve()
        self.prefix = prefix.strip("/")

    def _path(self, key: str) -> Path:
        path = self.base / key
        if Path(key).is_absolute() or ".." in Path(key).parts or not key:
            raise BackendError(f"key {key!r} is not a relative path inside the payload store")
        return path

    def url_for(self, key: str) -> str:
        return self._path(key).as_uri()

    def put_json(self, key: str, obj: Any) -> str:
        path = self._path(key)
        # The key S3 would get (prefix/key): refused over 1024 bytes, as S3 refuses it.
        check_object_key(f"{self.prefix}/{key}" if self.prefix else key)
        data = json.dumps(obj).encode()
        if key.endswith(".gz"):
            data = gzip.compress(data)
        try:
            write_atomically(path, data)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot write {path.as_uri()}: {exc}") from exc
        return path.as_uri()

    def _allowed_path(self, url: str) -> Path | None:
        """The file ``url`` names when it is inside this store, else None."""
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            return None
        raw = unquote(parts.path)
        if not raw.startswith("/") or ".." in Path(raw).parts or "\x00" in raw:
            return None
        # resolve() follows symlinks, so a link pointing out of the store is caught here.
        path = Path(raw).resolve()
        return path if path.is_relative_to(self.base) else None

    def is_allowed(self, url: str) -> bool:
        return self._allowed_path(url) is not None

    def get_json(self, url: str) -> Any:
        path = self._allowed_path(url)
        if path is None:
            raise ForbiddenUrlError(f"url {url!r} is outside the payload store {self.base}")
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise PayloadNotFoundError(f"Payload not found: {url}") from exc
        except OSError as exc:
            raise BackendError(f"cannot read {url}: {exc}") from exc
        try:
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            return json.loads(data)
        except (OSError, EOFError, ValueError) as exc:  # BadGzipFile is an OSError
            raise InvalidRecordError(f"{url} is not valid JSON: {exc}") from exc

    def list_keys(self, prefix: str, *, limit: int = 100) -> list[str]:
        """Up to ``limit`` keys of the JSON objects under ``prefix``, newest first (by file
        time); the status page lists rejected records with it. Not a port method: S3 lists
        in key order, and the invalid store's keys are not in time order."""
        folder = self._path(prefix.rstrip("/") or ".")
        try:
            entries = [e for e in os.scandir(folder) if e.is_file() and e.name.endswith(".json")]
        except OSError:
            return []  # nothing rejected yet: no folder
        newest = heapq.nlargest(limit, entries, key=lambda e: e.stat().st_mtime_ns)
        return [f"{prefix.rstrip('/')}/{entry.name}" for entry in newest]

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own file."""
