"""The stac-api feeder through the whole local pipeline, against a real STAC API (rustac).

In process: feed → process → SUCCEEDED, then runs that feed nothing new (cursor) or only
duplicates (lookback); ``feeders list`` / ``feeders runs`` through click's runner. As
subprocesses of the installed ``cirrus-feed``: a feed killed with SIGKILL mid-run and
restarted feeds every item and each payload runs exactly once; a dry run; ``serve`` on a
one-second schedule, stopped by SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cirrus_feed.app import App, LocalPaths, build_app
from cirrus_feed.cli.main import cli as cli_group
from cirrus_feed.config import load_settings
from cirrus_feed.feeding.contract import FeedRequest
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.model.states import State
from cirrus_feed.service.worker import LocalWorker, WorkTotals

BIN = Path(sys.executable).parent
COLLECTION = "e2e-s2"
START = datetime(2024, 1, 1, tzinfo=UTC)
END = START + timedelta(days=1)
COUNT = 60  # items in [START, END), one every 24 minutes, some on a half second
OUTSIDE = ("2023-12-31T23:59:59.5Z", "2024-01-02T00:00:00Z")  # just outside [START, END)
WORKFLOW = "publish-only"


def item_time(n: int) -> datetime:
    return START + timedelta(minutes=24 * n, seconds=29.5 if n % 7 == 3 else 0)


def make_item(item_id: str, when: datetime | str) -> dict[str, Any]:
    stamp = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": COLLECTION,
        "geometry": {"type": "Point", "coordinates": [10.0, 45.0]},
        "bbox": [10.0, 45.0, 10.0, 45.0],
        "properties": {"datetime": stamp},
        "assets": {"B04": {"href": f"s3://bucket/{item_id}/B04.tif"}},
        "links": [],
    }


ITEMS = [make_item(f"E2E_{n:03d}", item_time(n)) for n in range(COUNT)]
ITEMS += [make_item(f"OUT_{n}", stamp) for n, stamp in enumerate(OUTSIDE)]
IDS = [f"E2E_{n:03d}" for n in range(COUNT)]


def pid(item_id: str) -> str:
    return f"{COLLECTION}/workflow-{WORKFLOW}/{item_id}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stac_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``rustac serve`` on `ITEMS`, for this module."""
    directory = tmp_path_factory.mktemp("rustac-e2e")
    collection = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION,
        "description": "end-to-end items",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2023-12-31T00:00:00Z", None]]},
        },
        "links": [],
    }
    (directory / "collection.json").write_text(json.dumps(collection))
    (directory / "items.ndjson").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    port = _free_port()
    command: list[str | Path] = [BIN / "rustac", "serve", "--addr", f"127.0.0.1:{port}"]
    command += [directory / "collection.json", directory / "items.ndjson"]
    with (directory / "rustac.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), timeout=15)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def feeder_settings(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "stac-api",
        "url": url,
        "datetime": f"{START:%Y-%m-%dT%H:%M:%SZ}/{END:%Y-%m-%dT%H:%M:%SZ}",
        "max_items_per_window": 5,
        "process": {"workflow": WORKFLOW},
        **overrides,
    }


def write_config(root: Path, url: str, **overrides: Any) -> Path:
    config = {
        "local": {"root": str(root / "var")},
        "process": {"workers": 2, "wait_seconds": 0.1},
        "workflows": {WORKFLOW: {"tasks": [{"task": "publish"}]}},
        "feeders": {"s2": feeder_settings(url, **overrides)},
    }
    path = root / "cirrus-feed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def open_app(config: Path) -> App:
    return build_app(load_settings(config, env={}))


def cli(config: Path, *args: str) -> list[str]:
    return [str(BIN / "cirrus-feed"), "--config", str(config), *args]


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRRUS_FEED")}
    return subprocess.run(
        cli(config, *args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
        env=env,
        check=False,
    )


def queued_ids(app: App) -> list[str]:
    """Payload ids of every message ever sent and still in the local queue (not received)."""
    with sqlite3.connect(LocalPaths(app.settings.local.root).queue) as db:
        bodies = [row[0] for row in db.execute("SELECT body FROM messages ORDER BY id")]
    return [json.loads(body)["id"] for body in bodies]


def executions_per_payload(app: App) -> Counter[str]:
    with sqlite3.connect(LocalPaths(app.settings.local.root).executions) as db:
        inputs = [row[0] for row in db.execute("SELECT input FROM executions")]
    return Counter(json.loads(document)["id"] for document in inputs)


def states(app: App) -> dict[str, State]:
    records = app.backends.state.get_many([pid(i) for i in IDS])
    return {payload_id: record.state for payload_id, record in records.items()}


# -- in process ------------------------------------------------------------------------------


def test_stac_end_to_end_feed_process_then_nothing_new(stac_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, stac_url)
    app = open_app(config)
    feeder = app.feeders["s2"]

    first = FeedRunner(app).run("s2", feeder, FeedRequest())
    LocalWorker(app).drain(WorkTotals())

    assert first.ok
    assert first.counts["enqueued"] == COUNT
    assert states(app) == dict.fromkeys(map(pid, IDS), State.SUCCEEDED)
    catalog = LocalPaths(app.settings.local.root).catalog / COLLECTION
    assert sorted(p.stem for p in catalog.glob("*.json")) == IDS
    published = json.loads((catalog / "E2E_003.json").read_text())
    assert published["collection"] == COLLECTION
    assert datetime.fromisoformat(published["properties"]["datetime"]) == item_time(3)

    second = FeedRunner(app).run("s2", feeder, FeedRequest())

    assert second.ok
    assert second.counts["seen"] == second.counts["enqueued"] == 0  # the cursor is at the end
    app.close()


def test_stac_end_to_end_lookback_refeeds_as_duplicates(stac_url: str, tmp_path: Path) -> None:
    app = open_app(write_config(tmp_path, stac_url))
    FeedRunner(app).run("s2", app.feeders["s2"], FeedRequest())
    LocalWorker(app).drain(WorkTotals())
    app.close()
    app = open_app(write_config(tmp_path, stac_url, lookback="3h"))

    again = FeedRunner(app).run("s2", app.feeders["s2"], FeedRequest())

    last_3h = [i for n, i in enumerate(IDS) if item_time(n) >= END - timedelta(hours=3)]
    assert len(last_3h) == 7
    assert again.counts["seen"] == again.counts["duplicate"] == len(last_3h)
    assert again.counts["enqueued"] == 0
    assert queued_ids(app) == []
    app.close()


# -- the command line, in subprocesses -------------------------------------------------------


def test_stac_end_to_end_kill_mid_run_then_restart_feeds_each_item_once(
    stac_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, stac_url, max_rate=20)  # about 2 s for the 60 payloads
    app = open_app(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRRUS_FEED")}
    process = subprocess.Popen(
        cli(config, "feed", "s2"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: len(queued_ids(app)) >= 25 or process.poll() is not None)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    killed_at = len(queued_ids(app))

    restart = run_cli(config, "feed", "s2")

    assert process.returncode == -signal.SIGKILL, "the first run ended before the kill"
    assert 25 <= killed_at < COUNT
    assert restart.returncode == 0, restart.stderr
    fed = Counter(queued_ids(app))
    assert set(fed) == set(map(pid, IDS))
    assert max(fed.values()) <= 2  # at most the unfinished window is sent again
    LocalWorker(app).drain(WorkTotals())
    assert executions_per_payload(app) == Counter(map(pid, IDS))  # one execution each
    assert states(app) == dict.fromkeys(map(pid, IDS), State.SUCCEEDED)
    runs = open_app(config).backends.feeds.list_runs("s2")  # type: ignore[union-attr]  # local: always a feed store
    assert [r.status for r in runs] == ["succeeded", "running"]  # the killed one never ended
    app.close()


def test_stac_end_to_end_dry_run_writes_ndjson_and_queues_nothing(
    stac_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, stac_url)

    result = run_cli(config, "feed", "s2", "--dry-run", "--output", "-")

    assert result.returncode == 0, result.stderr
    payloads = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(p["features"][0]["id"] for p in payloads) == IDS
    assert {p["process"][0]["workflow"] for p in payloads} == {WORKFLOW}
    assert f"{COUNT} written" in result.stderr
    app = open_app(config)
    assert queued_ids(app) == []
    assert app.backends.feeds.get_cursor("s2") is None  # type: ignore[union-attr]  # local: always a feed store
    app.close()


def backend_snapshot(root: Path) -> dict[str, object]:
    """Every row of every SQLite file of the local backend, and every payload file."""
    snapshot: dict[str, object] = {}
    for path in sorted(root.rglob("*.sqlite")):
        with sqlite3.connect(path) as db:
            tables = [
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            for table in tables:
                snapshot[f"{path.name}:{table}"] = sorted(
                    map(repr, db.execute(f"SELECT * FROM {table}"))
                )
    snapshot["files"] = sorted(str(p) for p in root.rglob("*") if p.suffix != ".sqlite-wal")
    return snapshot


def test_stac_end_to_end_dry_run_restart_changes_nothing_in_the_backend(
    stac_url: str, tmp_path: Path
) -> None:
    # Given: a real run up to noon (a cursor, a run record, queued payloads)
    config = write_config(tmp_path, stac_url)
    app = open_app(config)
    FeedRunner(app).run("s2", app.feeders["s2"], FeedRequest(until=START + timedelta(hours=12)))
    app.close()
    before = backend_snapshot(tmp_path / "var")

    # When
    result = run_cli(config, "feed", "s2", "--dry-run", "--restart", "--output", "-")

    # Then: the dry run read from the start, and wrote nothing to the backend
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == COUNT
    assert backend_snapshot(tmp_path / "var") == before
    app = open_app(config)
    assert app.backends.feeds.get_cursor("s2") is not None  # type: ignore[union-attr]  # local: always a feed store
    again = FeedRunner(app).run("s2", app.feeders["s2"], FeedRequest())
    assert again.counts["enqueued"] == 30  # only the afternoon: the real cursor survived
    app.close()


def test_stac_end_to_end_feeders_list_and_runs(stac_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, stac_url, schedule={"interval": "15m"})
    app = open_app(config)
    noon = START + timedelta(hours=12)
    FeedRunner(app).run("s2", app.feeders["s2"], FeedRequest(until=noon))
    FeedRunner(app).run("s2", app.feeders["s2"], FeedRequest())
    app.close()

    listed = CliRunner().invoke(cli_group, ["--config", str(config), "feeders", "list"])
    runs = CliRunner().invoke(cli_group, ["--config", str(config), "feeders", "runs", "s2"])

    assert listed.exit_code == 0, listed.output
    assert listed.stdout.split() == ["s2", "stac-api", "ok", '{"interval":', '"15m"}']
    assert "stac-api" in listed.stderr  # the installed types
    assert runs.exit_code == 0, runs.output
    newest, oldest = runs.stdout.splitlines()
    assert "succeeded" in newest
    assert "30 enqueued" in newest  # the items from the noon watermark on
    assert "30 enqueued" in oldest  # the items before noon
    assert "/2024-01-01T12:00:00.000000Z]" in oldest  # the label of its last window


def test_stac_end_to_end_serve_on_a_schedule_until_sigterm(stac_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, stac_url, schedule={"interval": "1s"})
    app = open_app(config)
    feeds = app.backends.feeds
    assert feeds is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRRUS_FEED")}
    process = subprocess.Popen(
        cli(config, "serve", "--listen", "127.0.0.1:0"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(feeds.list_runs("s2")) >= 2 or process.poll() is not None)
        wait_until(lambda: states(app) == dict.fromkeys(map(pid, IDS), State.SUCCEEDED))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)

    assert process.returncode == 0, stderr
    assert len(states(app)) == COUNT
    runs = feeds.list_runs("s2", limit=100)  # newest first
    assert runs[-1].counts["enqueued"] == COUNT
    later = [r for r in runs[:-1] if r.status == "succeeded"]
    assert later
    assert all(r.counts["seen"] == 0 for r in later)  # scheduled again: nothing new
    assert executions_per_payload(app) == Counter(map(pid, IDS))
    app.close()
