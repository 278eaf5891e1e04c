"""The pgstac test server answers searches the way the stac-api feeder tests rely on.

Each expectation is computed in Python from the generated items, then compared with what
pystac-client gets back over POST /search with a small page size, so paging is exercised too.
"""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pystac_client import Client

from .pgstac import PgstacServerError, run_pgstac

COLLECTION = "pgstac-server-test"
START = datetime(2024, 1, 1, 10, tzinfo=UTC)
PAGE = 7  # smaller than every expected result, so each search pages


def make_item(n: int) -> dict[str, Any]:
    """Item ``n``: one a day from START, a 1 by 1 degree tile moving east, distinct clouds."""
    lon, lat = -50 + 2 * n, n % 10
    when = START + timedelta(days=n)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"item-{n:02d}",
        "collection": COLLECTION,
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[lon, lat], [lon + 1, lat], [lon + 1, lat + 1], [lon, lat + 1], [lon, lat]]
            ],
        },
        "bbox": [lon, lat, lon + 1, lat + 1],
        "properties": {
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eo:cloud_cover": (37 * n) % 100,  # 37 is coprime to 100: no ties for n < 50
        },
        "assets": {"data": {"href": f"s3://bucket/item-{n:02d}.tif", "type": "image/tiff"}},
        "links": [],
    }


ITEMS = [make_item(n) for n in range(50)]


def make_collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION,
        "description": "Generated items for the pgstac server test",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


def when(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))


def cloud(item: dict[str, Any]) -> int:
    return int(item["properties"]["eo:cloud_cover"])


def overlaps(item: dict[str, Any], box: list[float]) -> bool:
    west, south, east, north = (float(edge) for edge in item["bbox"])
    return west <= box[2] and box[0] <= east and south <= box[3] and box[1] <= north


# Window edges and the box's sides fall between items, so "touching" never decides a match.
WINDOW = (datetime(2024, 1, 10, tzinfo=UTC), datetime(2024, 2, 5, tzinfo=UTC))
DATETIME = "2024-01-10T00:00:00Z/2024-02-05T00:00:00Z"
BOX = [-20.5, 2.5, 30.5, 7.5]
CQL2_CLOUDY_BELOW_40 = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 40]}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    workdir = tmp_path_factory.mktemp("pgstac")
    # Declared numeric, as deployments do; undeclared properties sort as text in pgstac.
    queryables = {"eo:cloud_cover": {"type": "number", "minimum": 0, "maximum": 100}}
    with run_pgstac(make_collection(), ITEMS, workdir, queryables=queryables) as url:
        api = Client.open(url)
        # The server advertises item-search#sort v1.1.0; pystac-client 0.9 looks for v1.0.0
        # and would warn (an error under filterwarnings=error) although sorting works.
        api.add_conforms_to("SORT")
        yield api


def search_ids(api: Client, page: int = PAGE, **parameters: Any) -> list[str]:
    search = api.search(collections=[COLLECTION], method="POST", limit=page, **parameters)
    return [item["id"] for item in search.items_as_dicts()]


def test_pgstac_search_datetime_range(client: Client) -> None:
    expected = {i["id"] for i in ITEMS if WINDOW[0] <= when(i) <= WINDOW[1]}

    found = search_ids(client, datetime=DATETIME)

    assert len(expected) == 26
    assert sorted(found) == sorted(expected)


def test_pgstac_search_bbox(client: Client) -> None:
    expected = {i["id"] for i in ITEMS if overlaps(i, BOX)}

    found = search_ids(client, bbox=BOX)

    assert 0 < len(expected) < len(ITEMS)
    assert sorted(found) == sorted(expected)


def test_pgstac_search_cql2_filter(client: Client) -> None:
    expected = {i["id"] for i in ITEMS if cloud(i) < 40}

    found = search_ids(client, filter=CQL2_CLOUDY_BELOW_40, filter_lang="cql2-json")

    assert 0 < len(expected) < len(ITEMS)
    assert sorted(found) == sorted(expected)


def test_pgstac_search_sortby_descending(client: Client) -> None:
    expected = [i["id"] for i in sorted(ITEMS, key=cloud, reverse=True)]

    found = search_ids(client, sortby=[{"field": "properties.eo:cloud_cover", "direction": "desc"}])

    assert found == expected


def test_pgstac_search_all_constraints_together(client: Client) -> None:
    # Given the datetime, bbox and filter constraints at once, sorted ascending by cloud cover
    matching = [
        i for i in ITEMS if WINDOW[0] <= when(i) <= WINDOW[1] and overlaps(i, BOX) and cloud(i) < 40
    ]
    expected = [i["id"] for i in sorted(matching, key=cloud)]

    # When searched over POST with a page size below the result count
    found = search_ids(
        client,
        page=3,
        datetime=DATETIME,
        bbox=BOX,
        filter=CQL2_CLOUDY_BELOW_40,
        filter_lang="cql2-json",
        sortby="+eo:cloud_cover",
    )

    # Then the pages hold exactly the matching items, in order
    assert len(expected) > 3
    assert found == expected


class BodyFailedError(Exception):
    pass


def _listening(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/", timeout=2):
            return True
    except urllib.error.URLError:
        return False


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


def _serve_then_fail(workdir: Path, cluster_root: Path, served: list[str]) -> None:
    """Start a server, check it runs inside ``cluster_root``, then fail inside the body."""
    with run_pgstac(make_collection(), ITEMS[:3], workdir) as url:
        served.append(url)
        assert _listening(url)
        assert _processes_mentioning(str(cluster_root))  # the postmaster runs in it
        raise BodyFailedError


def test_run_pgstac_cleans_up_when_the_body_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a temp root of our own, so the cluster directory can be found afterwards
    cluster_root = Path(tempfile.mkdtemp(prefix="pgstac-cleanup-test-"))
    cluster_root.chmod(0o755)  # the postgres OS user must reach the cluster inside it
    monkeypatch.setattr(tempfile, "tempdir", str(cluster_root))
    served: list[str] = []

    # When the body fails while the server runs
    with pytest.raises(BodyFailedError):
        _serve_then_fail(tmp_path, cluster_root, served)

    # Then the API and PostgreSQL are gone and the cluster directory is removed
    assert len(served) == 1
    assert not _listening(served[0])
    assert _processes_mentioning(str(cluster_root)) == []
    assert list(cluster_root.iterdir()) == []
    cluster_root.rmdir()


def test_run_pgstac_load_failure_names_the_step(tmp_path: Path) -> None:
    orphan = make_item(0) | {"collection": "no-such-collection"}

    with (
        pytest.raises(PgstacServerError, match=r"migrate \+ load failed(?s:.*)no-such-collection"),
        run_pgstac(make_collection(), [orphan], tmp_path),
    ):
        pass
