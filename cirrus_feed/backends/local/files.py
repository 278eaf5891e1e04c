"""`PayloadStore` on the local file system: the Cirrus v2 bucket layout under a folder.

Objects are addressed by ``file://<root>/<prefix>/<key>`` URLs, whatever holds them:

* ``executions/…`` objects (every execution's ``input.json`` and ``output.json``, two per
  payload on the hot path) are rows of one SQLite table, ``<root>/objects.sqlite``, keyed by
  their key: a directory per execution and a file per object cost more than the rest of the
  local loop together (issue 12). A URL of one reads the row; a file at that path (written
  by an older version, or by hand) is read when there is no row.
* everything else (``tmp/invalid/`` rejected records, ``tmp/oversized/`` payloads, probes) is
  a file at ``<root>/<prefix>/<key>``, as users and `FileInvalidStore` read them.

Reads are confined to that folder: a payload's ``{"url": ...}`` pointer comes from the outside
world, so anything else (``http``, ``s3``, other paths, ``..``, symlinks that leave the
folder) is refused before any IO.
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, unquote, urlsplit

from cirrus_feed.backends.limits import check_object_key
from cirrus_feed.backends.local.sqlite import SqliteDatabase
from cirrus_feed.errors import (
    BackendError,
    ForbiddenUrlError,
    InvalidRecordError,
    PayloadNotFoundError,
)
from cirrus_feed.model.layout import DEFAULT_ROOT
from cirrus_feed.support.files import write_atomically

# Keys under this prefix are rows of the objects table, not files.
TABLE_PREFIX = "executions/"

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    data BLOB NOT NULL
);
"""
# A rowid table with a unique key (not WITHOUT ROWID): a ~1 KiB payload then fits its leaf
# page instead of spilling to overflow pages.
_PUT = (
    "INSERT INTO objects (key, data) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET data = excluded.data"
)


def _encode(key: str, obj: Any) -> bytes:
    data = json.dumps(obj).encode()
    return gzip.compress(data) if key.endswith(".gz") else data


class FilePayloadStore:
    """Payloads as JSON files and rows; see `cirrus_feed.backends.base.PayloadStore`."""

    def __init__(self, root: Path, *, prefix: str = DEFAULT_ROOT) -> None:
        # Resolved once: URLs are absolute and the confinement check compares real paths.
        self.base = (root / prefix).resolve()
        self.prefix = prefix.strip("/")
        self._base_uri = self.base.as_uri()
        self._db = SqliteDatabase(root / "objects.sqlite", SCHEMA)

    def _key(self, key: str) -> str:
        """``key`` in its one spelling (``a//b/./c`` → ``a/b/c``), or BackendError."""
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise BackendError(f"key {key!r} is not a relative path inside the payload store")
        normal = posixpath.normpath(key)
        if normal == ".":
            raise BackendError(f"key {key!r} is not a relative path inside the payload store")
        return normal

    def _url(self, normal: str) -> str:
        # What Path.as_uri() gives for base / key, without building the path.
        return f"{self._base_uri}/{quote_from_bytes(os.fsencode(normal))}"

    def url_for(self, key: str) -> str:
        return self._url(self._key(key))

    def put_json(self, key: str, obj: Any) -> str:
        normal = self._key(key)
        # The key S3 would get (prefix/key): refused over 1024 bytes, as S3 refuses it.
        check_object_key(f"{self.prefix}/{key}" if self.prefix else key)
        data = _encode(key, obj)
        if normal.startswith(TABLE_PREFIX):
            # One statement: its own transaction, committed (WAL) before this returns.
            with self._db.read() as conn:
                conn.execute(_PUT, (normal, data))
            return self._url(normal)
        path = self.base / normal
        try:
            write_atomically(path, data)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot write {path.as_uri()}: {exc}") from exc
        return self._url(normal)

    def put_many(self, objects: Sequence[tuple[str, Any]]) -> list[str]:
        """`put_json` of each ``(key, obj)``; the ``executions/`` ones in one transaction
        (a batch of a stage). Their URLs, in order. Raises as `put_json` does, before any
        write for a bad key."""
        rows: list[tuple[str, bytes]] = []
        urls = []
        files = []
        for key, obj in objects:
            normal = self._key(key)
            check_object_key(f"{self.prefix}/{key}" if self.prefix else key)
            if normal.startswith(TABLE_PREFIX):
                rows.append((normal, _encode(key, obj)))
            else:
                files.append((key, obj))
            urls.append(self._url(normal))
        if rows:
            with self._db.write() as conn:
                conn.executemany(_PUT, rows)
        for key, obj in files:
            self.put_json(key, obj)
        return urls

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
        data = self._row(path) if path != self.base else None
        if data is None:
            data = self._file(path, url)
        try:
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            return json.loads(data)
        except (OSError, EOFError, ValueError) as exc:  # BadGzipFile is an OSError
            raise InvalidRecordError(f"{url} is not valid JSON: {exc}") from exc

    def _row(self, path: Path) -> bytes | None:
        key = path.relative_to(self.base).as_posix()
        if not key.startswith(TABLE_PREFIX):
            return None
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM objects WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row["data"])

    @staticmethod
    def _file(path: Path, url: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise PayloadNotFoundError(f"Payload not found: {url}") from exc
        except OSError as exc:
            raise BackendError(f"cannot read {url}: {exc}") from exc

    def close(self) -> None:
        self._db.close()
