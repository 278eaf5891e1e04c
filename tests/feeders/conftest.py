"""STAC API servers for the feeder tests.

* ``rustac serve`` (a real STAC API, Rust binary shipped in the ``rustac`` wheel), loaded
  with the generated items of `stac_data`, started once per session on a free port;
  `serve_items` starts more on other data sets. Searched with POST only: rustac's GET
  ``/search`` with ``collections`` answers 500.
* `FakeStacApi`, a tiny in-process stdlib server, only to inject failures (429 with
  ``Retry-After``, 5xx, slow answers) and to record requests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stac_data

RUSTAC = Path(sys.executable).parent / "rustac"
GEOJSON = "application/geo+json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_rustac(
    directory: Path, items: list[dict[str, Any]]
) -> tuple[subprocess.Popen[bytes], str]:
    collection_path, items_path = stac_data.write_catalog(directory, items)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command: list[str | Path] = [
        RUSTAC,
        "serve",
        "--addr",
        f"127.0.0.1:{port}",
        collection_path,
        items_path,
    ]
    with (directory / "rustac.log").open("wb") as log:  # the child keeps its own handle
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rustac serve exited: {(directory / 'rustac.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/", timeout=1) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"rustac serve did not answer on {url}")


@pytest.fixture(scope="session")
def serve_items(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[list[dict[str, Any]]], str]]:
    """Start a rustac server on the given items; returns its URL. All stop at session end."""
    processes: list[subprocess.Popen[bytes]] = []

    def serve(items: list[dict[str, Any]]) -> str:
        process, url = _start_rustac(tmp_path_factory.mktemp("rustac"), items)
        processes.append(process)
        return url

    yield serve
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def stac_api_url(serve_items: Callable[[list[dict[str, Any]]], str]) -> str:
    """A rustac STAC API serving `stac_data.items()`."""
    return serve_items(stac_data.items())


# -- the stdlib fake -----------------------------------------------------------------------


@dataclass
class FakeStacApi:
    """An item-search API over ``items`` whose /search first plays ``script``.

    ``script`` entries are ``(status, headers, delay_s)``: answer that status (empty body)
    after that delay instead of searching. Supports the ``datetime`` interval, a CQL2-JSON
    ``and`` of ``>=``/``<=`` on a timestamp property, ``limit`` and token paging.
    """

    items: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    number_matched: int | None = None
    requests: list[tuple[float, str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "fake",
            "description": "fake STAC API",
            "conformsTo": [
                "https://api.stacspec.org/v1.0.0/core",
                "https://api.stacspec.org/v1.0.0/item-search",
                "https://api.stacspec.org/v1.0.0/item-search#fields",
                "https://api.stacspec.org/v1.0.0/item-search#filter",
                "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
            ],
            "links": [
                {"rel": "self", "href": f"{self.url}/"},
                {"rel": "root", "href": f"{self.url}/"},
                {"rel": "search", "href": f"{self.url}/search", "method": "GET", "type": GEOJSON},
                {"rel": "search", "href": f"{self.url}/search", "method": "POST", "type": GEOJSON},
            ],
        }

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        matches = [item for item in self.items if _matches(item, body)]
        skip = int(body.get("token", 0))
        limit = int(body.get("limit", 10))
        page = matches[skip : skip + limit]
        links = []
        if skip + limit < len(matches):
            next_body = {**body, "token": skip + limit}
            links.append(
                {"rel": "next", "href": f"{self.url}/search", "method": "POST", "body": next_body}
            )
        result: dict[str, Any] = {"type": "FeatureCollection", "features": page, "links": links}
        if self.number_matched is not None:
            result["numberMatched"] = self.number_matched
        return result


def _interval_contains(interval: str, when: str | None) -> bool:
    if when is None:
        return True  # like rustac: an item without a datetime matches every interval
    start, _, end = interval.partition("/")
    moment = stac_data.parse(when)
    after = start in ("", "..") or stac_data.parse(start) <= moment
    before = end in ("", "..") or moment <= stac_data.parse(end)
    return after and before


def _matches(item: dict[str, Any], body: dict[str, Any]) -> bool:
    properties = item.get("properties", {})
    if "datetime" in body and not _interval_contains(body["datetime"], properties.get("datetime")):
        return False
    if "filter" in body:
        return all(_compare(clause, properties) for clause in body["filter"]["args"])
    return True


def _compare(clause: dict[str, Any], properties: dict[str, Any]) -> bool:
    prop, bound = clause["args"]
    value = properties.get(prop["property"])
    if value is None:
        return False
    left, right = stac_data.parse(value), stac_data.parse(bound["timestamp"])
    comparisons: dict[str, Callable[[datetime, datetime], bool]] = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
    }
    return comparisons[clause["op"]](left, right)


def _handler(api: FakeStacApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(
            self, status: int, body: Any = None, headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # The client may have given up first: what the timeout test makes it do.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def do_GET(self) -> None:
            api.requests.append((time.monotonic(), f"GET {self.path}", {}, dict(self.headers)))
            self._send(200, api.landing()) if self.path in ("/", "") else self._send(404, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            api.requests.append((time.monotonic(), f"POST {self.path}", body, dict(self.headers)))
            if api.script:
                status, headers, delay = api.script.pop(0)
                time.sleep(delay)
                if status:
                    self._send(status, {"code": "scripted"}, headers)
                    return
            self._send(200, api.search(body))

    return Handler


@pytest.fixture
def fake_stac() -> Iterator[FakeStacApi]:
    """A running `FakeStacApi`; set ``items`` / ``script`` before feeding."""
    api = FakeStacApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# -- rustac and pgstac side by side (tests/feeders/test_stac_api_servers.py) -----------------

# pgstac also serves these: items whose `properties.updated` spreads over one day, for the
# `updated` watermark. Their datetime comes after every other item's: pypgstac's loader keeps
# a partition's datetime bounds by *string* comparison ("…00Z" > "…00.5Z"), so the served set's
# maximum must also be its string maximum or loading fails a partition check constraint.
UPDATED_DATETIME = "2024-06-01T00:00:00Z"
UPDATED_STAMPS = (
    "2024-03-01T01:00:00Z",
    "2024-03-01T05:59:59.5Z",
    "2024-03-01T06:00:00Z",
    "2024-03-01T11:11:11.111111Z",
    *("2024-03-01T12:00:00Z",) * 5,  # a crowd at one updated instant
    "2024-03-01T18:30:00Z",
    "2024-03-01T23:59:59.999999Z",
    "2024-03-02T00:00:00Z",  # the end of the tests' updated range: outside it
)
PGSTAC_QUERYABLES: dict[str, dict[str, Any]] = {
    "eo:cloud_cover": {"type": "number", "minimum": 0, "maximum": 100},
    "updated": {"type": "string", "format": "date-time"},
}


@dataclass(frozen=True)
class StacServer:
    """A running STAC API: its name (``rustac`` / ``pgstac``), URL and the items it serves."""

    name: str
    url: str
    items: list[dict[str, Any]]


def updated_items() -> list[dict[str, Any]]:
    """Items that differ by ``properties.updated`` only (all at `UPDATED_DATETIME`)."""
    return [
        stac_data.make_item(f"S2U_{n:02d}", UPDATED_DATETIME, updated=stamp)
        for n, stamp in enumerate(UPDATED_STAMPS)
    ]


@pytest.fixture(scope="session")
def rustac_api(stac_api_url: str) -> StacServer:
    return StacServer("rustac", stac_api_url, stac_data.items())


@pytest.fixture(scope="session")
def pgstac_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StacServer]:
    """stac-fastapi-pgstac serving `stac_data.items()` plus `updated_items()`; ~4 s to start."""
    from servers.pgstac import run_pgstac

    items = stac_data.items() + updated_items()
    workdir = tmp_path_factory.mktemp("pgstac")
    with run_pgstac(stac_data.collection(), items, workdir, queryables=PGSTAC_QUERYABLES) as url:
        yield StacServer("pgstac", url, items)


@pytest.fixture(scope="session", params=["rustac", "pgstac"])
def stac_api(request: pytest.FixtureRequest) -> StacServer:
    """Each STAC API server in turn (tests using it run once per server)."""
    server: StacServer = request.getfixturevalue(f"{request.param}_api")
    return server
