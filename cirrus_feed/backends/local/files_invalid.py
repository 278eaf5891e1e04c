"""`InvalidStore` on the local payload folder: the files under ``<payloads>/<prefix>/tmp/invalid/``
that `cirrus_feed.pipeline.invalid` writes through `FilePayloadStore`."""

from __future__ import annotations

from cirrus_feed.backends.base import InvalidRecord
from cirrus_feed.backends.local.files import FilePayloadStore
from cirrus_feed.errors import PayloadNotFoundError
from cirrus_feed.model.layout import INVALID_PREFIX
from cirrus_feed.model.rejections import newest_first, read_invalid, record_id_of, record_time


class FileInvalidStore:
    """Rejected records of the `FilePayloadStore` ``store``; nothing is created by reading."""

    def __init__(self, store: FilePayloadStore) -> None:
        self._store = store
        self.folder = store.base / INVALID_PREFIX

    def _ids(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        found = (record_id_of(path.name) for path in self.folder.iterdir() if path.is_file())
        return [record_id for record_id in found if record_id is not None]

    def recent(self, limit: int = 100) -> list[InvalidRecord]:
        return [self.get(record_id) for record_id in newest_first(self._ids())[:limit]]

    def get(self, record_id: str) -> InvalidRecord:
        path = self.folder / f"{record_id}.json"
        if record_time(record_id) is None or not path.is_file():
            raise PayloadNotFoundError(f"no invalid record {record_id!r} in {self.folder}")
        url = self._store.url_for(f"{INVALID_PREFIX}{record_id}.json")
        return read_invalid(record_id, url, self._store.get_json(url))

    def count(self) -> int:
        return len(self._ids())

    def close(self) -> None:
        """Nothing to release."""
