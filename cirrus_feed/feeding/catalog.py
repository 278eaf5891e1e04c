"""Does the output catalog hold these items? One STAC API item search per collection and
batch of ids (``ids`` + ``collections``, POST), through pystac-client."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from cirrus_feed.errors import SourceUnavailableError
from cirrus_feed.feeding.contract import ReconcileSettings
from cirrus_feed.support.extras import raise_missing_extra

if TYPE_CHECKING:  # pystac-client is the `stac` extra: imported when a catalog is searched
    from pystac_client import Client

ItemRef = tuple[str, str]  # (collection, item id)
IDS_PER_SEARCH = 100


class ItemCatalog(Protocol):
    """Where fed items should end up (`StacApiCatalog`; tests may pass any)."""

    def missing(self, items: Iterable[ItemRef]) -> set[ItemRef]:
        """Those of ``items`` (as given) the catalog does not have."""
        ...


class StacApiCatalog:
    """A STAC API; ``collection`` overrides every item's own collection when set."""

    def __init__(self, url: str, collection: str | None = None) -> None:
        self.url = url
        self.collection = collection
        self._client: Client | None = None

    @classmethod
    def from_settings(cls, settings: ReconcileSettings) -> StacApiCatalog:
        return cls(settings.stac_api, settings.collection)

    def target(self, ref: ItemRef) -> ItemRef:
        """Where ``ref`` is looked for."""
        return (self.collection or ref[0], ref[1])

    def missing(self, items: Iterable[ItemRef]) -> set[ItemRef]:
        asked: dict[ItemRef, list[ItemRef]] = defaultdict(list)  # where looked → as asked
        for ref in items:
            asked[self.target(ref)].append(ref)
        wanted: dict[str, list[str]] = defaultdict(list)
        for collection, item_id in sorted(asked):
            wanted[collection].append(item_id)
        absent: set[ItemRef] = set()
        for collection, ids in wanted.items():
            for start in range(0, len(ids), IDS_PER_SEARCH):
                chunk = ids[start : start + IDS_PER_SEARCH]
                found = self._found(collection, chunk)
                for item_id in chunk:
                    if item_id not in found:
                        absent.update(asked[(collection, item_id)])
        return absent

    def _found(self, collection: str, ids: list[str]) -> set[str]:
        client = self._open()  # imports pystac-client, or says which extra installs it
        from pystac_client.exceptions import APIError

        try:
            search = client.search(method="POST", collections=[collection], ids=ids, limit=len(ids))
            return {str(item["id"]) for item in search.items_as_dicts()}
        except (APIError, ValueError, OSError) as exc:
            raise SourceUnavailableError(f"output STAC API {self.url}: {exc}") from exc

    def _open(self) -> Client:
        try:
            from pystac_client import Client
            from pystac_client.exceptions import APIError
        except ModuleNotFoundError as exc:
            raise_missing_extra(exc, "reconciling against a STAC API")
        if self._client is None:
            try:
                self._client = Client.open(self.url)
            except (APIError, ValueError, OSError) as exc:
                raise SourceUnavailableError(f"output STAC API {self.url}: {exc}") from exc
        return self._client
