"""The demo's STAC step: a generated catalog served on 127.0.0.1, fed by a `stac-api` feeder.

The server is ``rustac serve`` (a real STAC API, a Rust binary in the ``rustac`` wheel, from
the ``demo`` extra); nothing leaves the machine.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cirrus_feed.errors import CirrusFeedError

COLLECTION = "demo-sentinel-2"
START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 3


def rustac_binary() -> str | None:
    """The ``rustac`` executable next to this Python, or on PATH."""
    beside = Path(sys.executable).parent / "rustac"
    return str(beside) if beside.exists() else shutil.which("rustac")


def demo_items(count: int = 36) -> list[dict[str, Any]]:
    """``count`` S2-like items over three days, two of them at the same instant."""
    step = timedelta(days=DAYS) / count
    items = []
    for n in range(count):
        slot = 4 if n == 5 else n  # items 4 and 5 share an instant
        when = START + step * slot
        lon = 10.0 + n % 6
        items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": f"S2A_T{32 + n % 3}UPU_{when:%Y%m%dT%H%M%S}_{n:02d}",
                "collection": COLLECTION,
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[lon, 50.0], [lon + 1, 50.0], [lon + 1, 51.0], [lon, 51.0], [lon, 50.0]]
                    ],
                },
                "bbox": [lon, 50.0, lon + 1, 51.0],
                "properties": {
                    "datetime": when.isoformat().replace("+00:00", "Z"),
                    "eo:cloud_cover": (n * 7) % 100,
                },
                "assets": {
                    "visual": {
                        "href": f"https://example.invalid/{n}/TCI.tif",
                        "type": "image/tiff; application=geotiff",
                    }
                },
                "links": [],
            }
        )
    return items


def _collection() -> dict[str, Any]:
    end = START + timedelta(days=DAYS)
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION,
        "description": "cirrus-feed demo items",
        "license": "CC0-1.0",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[10.0, 50.0, 16.0, 51.0]]},
            "temporal": {"interval": [[START.isoformat(), end.isoformat()]]},
        },
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_catalog(folder: Path, items: list[dict[str, Any]]) -> Iterator[str]:
    """Serve ``items`` as a STAC API on 127.0.0.1; yields its URL, stops it afterwards.

    Raises:
        CirrusFeedError: rustac is not installed, or the server did not come up.
    """
    binary = rustac_binary()
    if binary is None:
        raise CirrusFeedError("the STAC step needs rustac: pip install 'cirrus-feed[demo]'")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "collection.json").write_text(json.dumps(_collection()))
    (folder / "items.ndjson").write_text("".join(json.dumps(i) + "\n" for i in items))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with (folder / "rustac.log").open("wb") as log:
        server = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [
                binary,
                "serve",
                "--addr",
                f"127.0.0.1:{port}",
                str(folder / "collection.json"),
                str(folder / "items.ndjson"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_up(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CirrusFeedError(f"rustac serve exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise CirrusFeedError(f"the demo STAC API did not answer on {url}")


def feeder_settings(url: str) -> dict[str, Any]:
    """The demo's `stac-api` feeder, as it would appear under ``feeders:`` in a config."""
    return {
        "type": "stac-api",
        "url": url,
        "search": {"collections": [COLLECTION]},
        "datetime": {"start": START.isoformat(), "end": (START + timedelta(days=DAYS)).isoformat()},
        "max_items_per_window": 10,  # small, so the demo shows windows being split
        "process": {"workflow": "publish-only"},
    }
