"""``cirrus-feed reconcile`` finds a planted gap in each source kind, and ``--fix`` closes it.

Sources are real: a rustac STAC API (the source, and a second one as the output catalog),
an S3 prefix and an S3 Inventory report on moto's server. The state DB is the local one:
every payload of the source is settled SUCCEEDED except the planted gaps.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import inventory_data as inv
import pytest
import stac_data
import yaml
from click.testing import CliRunner, Result

from cirrus_feed.app import App, build_app
from cirrus_feed.cli.main import cli
from cirrus_feed.config import load_settings
from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import FeedRequest
from cirrus_feed.feeding.reconcile import reconcile
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.model.states import State
from cirrus_feed.service.worker import run_workers

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WINDOW = ("2024-01-01T00:00:00Z", "2024-01-01T03:00:00Z")
FAKE_ARN = "arn:aws:states:local:000000000000:execution:wf:"


def write_config(tmp_path: Path, feeder: dict[str, Any]) -> Path:
    path = tmp_path / "cirrus-feed.yaml"
    config = {
        "local": {"root": str(tmp_path / "root")},
        "process": {"workers": 1, "wait_seconds": 0},
        "workflows": {"wf": {"tasks": [{"task": "noop"}]}},
        "feeders": {"src": {"process": {"workflow": "wf"}, **feeder}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def open_app(config: Path) -> App:
    return build_app(load_settings(config))


def source_ids(app: App, **window: Any) -> list[str]:
    """The payload ids a fresh run of the feeder would feed."""
    items = app.feeders["src"].feed(FeedRequest(dry_run=True, **window))
    return [
        item.id
        if isinstance(item, ProcessPayload | PreparedPayload)
        else ProcessPayload.from_dict(item).id
        for item in items
        if isinstance(item, ProcessPayload | PreparedPayload | Mapping)
    ]


def settle(app: App, payload_ids: list[str], *, failed: str, unfed: str) -> None:
    """Every id SUCCEEDED, except ``failed`` (FAILED) and ``unfed`` (no record)."""
    state = app.backends.state
    for pid in payload_ids:
        if pid == unfed:
            continue
        arn = f"{FAKE_ARN}{uuid.uuid4()}"
        record = state.claim(pid, arn)
        if pid == failed:
            state.finish(record, arn, State.FAILED, error="RuntimeError: boom")
        else:
            state.finish(record, arn, State.SUCCEEDED)


def gaps(result: Result) -> dict[str, dict[str, Any]]:
    return {row["payload_id"]: row for row in map(json.loads, result.stdout.splitlines())}


def queued(app: App) -> dict[str, dict[str, Any]]:
    """Payloads on the queue by id, left there."""
    messages = app.backends.queue.receive(10, visibility_timeout=0)
    return {json.loads(m.body)["id"]: json.loads(m.body) for m in messages}


def process_all(app: App) -> None:
    totals = run_workers(app, 1, once=True, stop=threading.Event())
    assert totals.process.ok
    assert totals.update.ok


def check_fix_closes(config: Path, ids: list[str], failed: str, unfed: str) -> None:
    """Given the planted gaps: reconcile reports them, --fix re-enqueues them with a run
    record, and once processed a new reconcile finds none."""
    found = invoke(config, "reconcile", "src")
    assert found.exit_code == 1, found.output
    rows = gaps(found)
    assert set(rows) == {failed, unfed}
    assert rows[unfed]["kind"] == "never-fed"
    assert rows[unfed]["state"] is None
    assert rows[failed]["kind"] == "not-succeeded"
    assert rows[failed]["state"] == "FAILED"
    assert rows[failed]["error"] == "RuntimeError: boom"
    assert rows[failed]["items"] == [failed.rsplit("/", 1)[-1]]
    assert f"{len(ids)} source" in found.stderr
    assert "1 never-fed" in found.stderr

    fixed = invoke(config, "reconcile", "src", "--fix")

    assert fixed.exit_code == 0, fixed.output
    app = open_app(config)
    try:
        assert set(queued(app)) == {failed, unfed}
        assert app.backends.feeds is not None
        [run] = app.backends.feeds.list_runs("reconcile:src")
        assert run.status == "succeeded"
        assert run.counts["enqueued"] == 2
        process_all(app)
    finally:
        app.close()
    again = invoke(config, "reconcile", "src")
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert f"{len(ids)} ok" in again.stderr


# -- stac-api ---------------------------------------------------------------------------------


@pytest.fixture
def stac_config(tmp_path: Path, stac_api_url: str) -> Path:
    return write_config(
        tmp_path,
        {
            "type": "stac-api",
            "url": stac_api_url,
            "search": {"collections": [stac_data.COLLECTION]},
            "datetime": {"start": WINDOW[0], "end": WINDOW[1]},
        },
    )


def test_reconcile_stac_api_finds_never_fed_and_failed_and_fix_closes_them(
    stac_config: Path,
) -> None:
    app = open_app(stac_config)
    ids = source_ids(app)
    assert len(ids) >= 5
    settle(app, ids, failed=ids[1], unfed=ids[3])
    app.close()

    check_fix_closes(stac_config, ids, failed=ids[1], unfed=ids[3])


def test_reconcile_stac_api_window_limits_the_comparison(stac_config: Path) -> None:
    app = open_app(stac_config)
    ids = source_ids(app)
    settle(app, ids, failed="-", unfed=ids[-1])  # the last item of the window only
    app.close()

    early = invoke(stac_config, "reconcile", "src", "--until", "2024-01-01T01:00:00Z")
    whole = invoke(stac_config, "reconcile", "src")
    backwards = invoke(stac_config, "reconcile", "src", "--since", WINDOW[1], "--until", WINDOW[0])

    assert early.exit_code == 0, early.output
    assert whole.exit_code == 1
    assert list(gaps(whole)) == [ids[-1]]
    assert backwards.exit_code == 2


def test_reconcile_stac_api_finds_items_missing_from_the_output_catalog(
    tmp_path: Path, stac_api_url: str, serve_items: Callable[[list[dict[str, Any]]], str]
) -> None:
    served = stac_data.items()
    source = write_config(
        tmp_path,
        {
            "type": "stac-api",
            "url": stac_api_url,
            "search": {"collections": [stac_data.COLLECTION]},
            "datetime": {"start": WINDOW[0], "end": WINDOW[1]},
        },
    )
    app = open_app(source)
    ids = source_ids(app)
    settle(app, ids, failed="-", unfed="-")
    app.close()
    lost = ids[2].rsplit("/", 1)[-1]
    catalog_url = serve_items([item for item in served if item["id"] != lost])
    config = yaml.safe_load(source.read_text())
    config["feeders"]["src"]["reconcile"] = {"stac_api": catalog_url}
    source.write_text(yaml.safe_dump(config))

    found = invoke(source, "reconcile", "src")
    fixed = invoke(source, "reconcile", "src", "--fix")

    assert found.exit_code == 1, found.output
    [gap] = gaps(found).values()
    assert gap == {
        "kind": "not-in-catalog",
        "payload_id": ids[2],
        "items": [lost],
        "state": "SUCCEEDED",
        "missing_items": [lost],
    }
    assert fixed.exit_code == 0, fixed.output
    app = open_app(source)
    try:
        [(payload_id, body)] = queued(app).items()
        assert payload_id == ids[2]
        assert body["process"][0]["replace"] is True  # else the feed would skip it as done
    finally:
        app.close()


# -- s3-listing and s3-inventory (moto) -------------------------------------------------------


@pytest.fixture
def s3(make_aws_client: Callable[[str], Any]) -> S3Client:
    client: S3Client = make_aws_client("s3")
    return client


@pytest.fixture
def bucket(s3: S3Client) -> str:
    name = f"recon-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


KEYS = [f"scenes/{n:02d}/scene.tif" for n in range(8)]


@pytest.mark.aws
def test_reconcile_s3_listing_finds_the_gaps_and_fix_closes_them(
    tmp_path: Path, aws_endpoint: str, s3: S3Client, bucket: str
) -> None:
    for key in KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    config = write_config(
        tmp_path,
        {
            "type": "s3-listing",
            "bucket": bucket,
            "prefix": "scenes/",
            "endpoint_url": aws_endpoint,
            "item": {"collection": "c"},
        },
    )
    app = open_app(config)
    ids = source_ids(app)
    assert len(ids) == len(KEYS)
    settle(app, ids, failed=ids[0], unfed=ids[5])
    app.close()

    check_fix_closes(config, ids, failed=ids[0], unfed=ids[5])


@pytest.mark.aws
def test_reconcile_s3_inventory_finds_the_gaps_and_fix_closes_them(
    tmp_path: Path, aws_endpoint: str, s3: S3Client, bucket: str
) -> None:
    rows = [inv.row(key, n) for n, key in enumerate(KEYS)]
    report = inv.write_report(s3, bucket, "inventory", "CSV", [rows[:4], rows[4:]])
    config = write_config(
        tmp_path,
        {
            "type": "s3-inventory",
            "manifest": report.manifest_url,
            "aws": {"endpoint_url": aws_endpoint},
            "item": {"collection": "c"},
        },
    )
    app = open_app(config)
    ids = source_ids(app)
    assert len(ids) == len(KEYS)
    settle(app, ids, failed=ids[6], unfed=ids[2])
    app.close()

    check_fix_closes(config, ids, failed=ids[6], unfed=ids[2])


def test_reconcile_refuses_a_feeder_that_does_not_re_read_its_source(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"type": "events", "source": {"file": str(tmp_path / "x")}, "mapper": "stac-item"}
    )
    app = open_app(config)
    try:
        with pytest.raises(ConfigError, match="cannot be reconciled"):
            reconcile(app, "src", app.feeders["src"])
    finally:
        app.close()
    assert invoke(config, "reconcile", "nosuch").exit_code == 2
