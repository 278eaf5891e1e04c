"""Every shipped config builds and runs: each file in ``config/`` and ``config/feeders/``
becomes an app through the CLI, and each of its feeders runs once (``feed NAME --dry-run``)
against a local stand-in for its source — the fake STAC API, moto's server, or an input
file. Only source locations are changed (a URL, an endpoint, a bucket name, ``local.root``),
through a copy of the file; everything else is the shipped text.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from click.testing import CliRunner, Result
from inventory_data import row, write_report
from message_data import FIXTURES
from stac_data import make_item

from cirrus_feed.cli.main import cli
from cirrus_feed.config import load_settings

if TYPE_CHECKING:
    from conftest import FakeStacApi

CONFIG = Path(__file__).resolve().parents[2] / "config"
SHIPPED = sorted(CONFIG.glob("*.yaml")) + sorted((CONFIG / "feeders").glob("*.yaml"))
SFN_ARN_PREFIX = "arn:aws:states:us-east-1:123456789012:stateMachine:"
COVERED = {
    "local.yaml",
    "demo.yaml",  # also tests/integration/test_readme_tour.py
    "aws.example.yaml",
    "feeders/events.yaml",
    "feeders/events-earth-search.yaml",
    "feeders/rerun.yaml",
    "feeders/s3-inventory.yaml",
    "feeders/s3-listing.yaml",
    "feeders/stac-api.yaml",
}


def shipped(
    name: str, tmp_path: Path, patch: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """A copy of ``config/<name>`` with ``local.root`` under ``tmp_path`` and ``patch`` applied."""
    data = yaml.safe_load((CONFIG / name).read_text())
    if data.get("backend", "local") == "local":
        data["local"] = {**data.get("local", {}), "root": str(tmp_path / "root")}
    if patch is not None:
        patch(data)
    path = tmp_path / Path(name).name
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], env=env)


def dry_run(config: Path, name: str, *args: str, env: dict[str, str] | None = None) -> list[Any]:
    """``feed NAME --dry-run``: the payloads it would enqueue (asserts the run succeeded)."""
    result = invoke(config, "feed", name, "--dry-run", "--output", "-", *args, env=env)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def feeders_of(config: Path) -> set[str]:
    return set(load_settings(config, env={}).feeders)


def workflow_of(payload: dict[str, Any]) -> str:
    return str(payload["process"][0]["workflow"])


def test_shipped_configs_are_all_covered_here() -> None:
    assert {str(p.relative_to(CONFIG)) for p in SHIPPED} == COVERED


def test_shipped_local_config_builds_and_answers(tmp_path: Path) -> None:
    config = shipped("local.yaml", tmp_path)
    before = invoke(config, "state", "counts", "--json")
    CliRunner().invoke(cli, ["--config", str(config), "enqueue", "-"], input="")  # a write
    after = invoke(config, "state", "counts", "--json")

    assert before.exit_code == 0, before.output
    assert set(json.loads(before.stdout).values()) == {0}
    assert "no state yet" in before.stderr  # reading created nothing
    assert after.exit_code == 0, after.output
    assert set(json.loads(after.stdout).values()) == {0}
    assert (tmp_path / "root" / "state.sqlite").exists()


def test_shipped_demo_config_reads_the_demo_folder(tmp_path: Path) -> None:
    config = shipped("demo.yaml", tmp_path)
    CliRunner().invoke(cli, ["demo", "--root", str(tmp_path / "root")], env={})

    result = invoke(config, "state", "counts", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["FAILED"] == 1  # the demo's always-fails sample


class Deployment:
    """The Cirrus resources a shipped AWS config names, on moto, and the variables that
    point the config at them (Cirrus's own, which win over the file)."""

    def __init__(self, client: Callable[[str], Any], endpoint: str) -> None:
        from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore
        from cirrus_feed.backends.aws.dynamodb_feeds import DynamoDbFeedStore

        tag = uuid.uuid4().hex[:8]
        self.s3 = client("s3")
        DynamoDbStateStore.create_table(client("dynamodb"), f"s{tag}-state")
        DynamoDbFeedStore.create_table(client("dynamodb"), f"s{tag}-feeds")
        self.s3.create_bucket(Bucket=f"s{tag}-payloads")
        sqs = client("sqs")
        queue = sqs.create_queue(QueueName=f"s{tag}-process")["QueueUrl"]
        self.env = {
            "AWS_REGION": "us-east-1",
            "CIRRUS_FEED_AWS_ENDPOINT_URL": endpoint,
            "CIRRUS_STATE_DB": f"s{tag}-state",
            "CIRRUS_PAYLOAD_BUCKET": f"s{tag}-payloads",
            "CIRRUS_BASE_WORKFLOW_ARN": f"{SFN_ARN_PREFIX}s{tag}-",
            "CIRRUS_PROCESS_QUEUE_URL": queue,
            "CIRRUS_FEED_FEED_TABLE": f"s{tag}-feeds",
        }
        self.tag = tag


@pytest.fixture
def deployment(make_aws_client: Callable[[str], Any], aws_endpoint: str) -> Deployment:
    return Deployment(make_aws_client, aws_endpoint)


@pytest.mark.aws
def test_shipped_aws_example_builds_and_answers(deployment: Deployment, tmp_path: Path) -> None:
    result = invoke(
        shipped("aws.example.yaml", tmp_path), "state", "counts", "--json", env=deployment.env
    )

    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout).values()) == {0}


def test_shipped_stac_api_config_feeds_from_a_stac_api(
    fake_stac: FakeStacApi, tmp_path: Path
) -> None:
    fake_stac.items = [
        {**make_item(f"S2B_{n}", f"2026-11-0{n}T10:00:00Z"), "collection": "sentinel-2-l2a"}
        for n in range(1, 4)
    ]

    def patch(data: dict[str, Any]) -> None:
        data["feeders"]["earth-search-s2"]["url"] = fake_stac.url

    config = shipped("feeders/stac-api.yaml", tmp_path, patch)
    payloads = dry_run(config, "earth-search-s2", "--until", "2026-11-10T00:00:00Z")

    assert feeders_of(config) == {"earth-search-s2"}
    assert sorted(p["features"][0]["id"] for p in payloads) == ["S2B_1", "S2B_2", "S2B_3"]
    assert {workflow_of(p) for p in payloads} == {"cog-archive"}
    searched = [body for _, path, body, _ in fake_stac.requests if path.endswith("/search")]
    assert searched, "the feeder never searched"
    assert searched[0]["collections"] == ["sentinel-2-l2a"]
    assert searched[0]["bbox"] == [5.9, 45.8, 10.5, 47.8]


def ndjson_of(tmp_path: Path, *cases: str) -> Path:
    """Message fixtures as the NDJSON `feed --input` reads: one message a line."""
    path = tmp_path / f"{'-'.join(cases)}.ndjson"
    lines = [json.dumps(json.loads((FIXTURES / f"{case}.json").read_text())) for case in cases]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shipped_events_config_feeds_saved_s3_notifications(tmp_path: Path) -> None:
    config = shipped("feeders/events.yaml", tmp_path)

    payloads = dry_run(config, "uploads", "--input", str(ndjson_of(tmp_path, "s3_sqs_two_records")))

    assert feeders_of(config) == {"uploads"}
    assert payloads, "no .tif upload became a payload"
    for payload in payloads:
        item = payload["features"][0]
        assert item["collection"] == "drone-orthos"
        assert list(item["assets"]) == ["ortho"]
        assert item["assets"]["ortho"]["href"].endswith(".tif")
        assert workflow_of(payload) == "publish-only"


def test_shipped_earth_search_config_feeds_saved_scene_messages(tmp_path: Path) -> None:
    config = shipped("feeders/events-earth-search.yaml", tmp_path)

    s2 = dry_run(
        config, "earth-search-s2", "--input", str(ndjson_of(tmp_path, "sentinel2_l2a_sns"))
    )
    landsat = dry_run(
        config,
        "earth-search-landsat",
        "--input",
        str(ndjson_of(tmp_path, "landsat_c2_tiers_sns_sqs")),
    )

    assert feeders_of(config) == {"earth-search-s2", "earth-search-landsat"}
    assert s2
    for payload in s2:  # Earth Search's own ids: the md5 of the tileInfo.json URL
        item = payload["features"][0]
        assert item["collection"] == "roda-sentinel2"
        assert re.fullmatch(r"[0-9a-f]{32}", item["id"]), item["id"]
        assert workflow_of(payload) == "sentinel2-to-stac"
    assert landsat
    for payload in landsat:
        item = payload["features"][0]
        assert item["collection"] == "usgs-landsat-c2l2"
        assert re.fullmatch(r"L[CO]0\d_L2S[PR]_\d{6}_\d{8}_\d{8}_02_T[12]_SR", item["id"]), item[
            "id"
        ]
        assert workflow_of(payload) == "landsat-to-stac"


def test_shipped_rerun_config_feeds_the_timed_out_failures(tmp_path: Path) -> None:
    from cirrus_feed.app import build_app
    from cirrus_feed.model import layout
    from cirrus_feed.model.executions import execution_arn, execution_name
    from cirrus_feed.model.payload import ProcessPayload
    from cirrus_feed.model.states import State

    config = shipped("feeders/rerun.yaml", tmp_path)
    # Given two failed payloads of the selected collection/workflow, one timed out.
    app = build_app(load_settings(config, env={}))
    try:
        for item, error in (("timed-out", "States.Timeout: took too long"), ("broke", "boom")):
            payload = ProcessPayload.from_dict(
                {
                    "type": "FeatureCollection",
                    "features": [{"type": "Feature", "id": item, "collection": "sentinel-2-l2a"}],
                    "process": [{"workflow": "cog-archive"}],
                }
            )
            b = app.backends
            name = execution_name(payload.id, (), b.runner.region)
            arn = execution_arn(b.runner.base_arn, "cog-archive", name)
            claimed = b.state.claim(payload.id, arn)
            b.store.put_json(layout.input_key(payload.id, name), payload.to_dict())
            b.state.finish(claimed, arn, State.FAILED, error)
    finally:
        app.close()

    payloads = dry_run(config, "retry-timeouts")

    assert feeders_of(config) == {"retry-timeouts"}
    assert [p["features"][0]["id"] for p in payloads] == ["timed-out"]
    assert workflow_of(payloads[0]) == "cog-archive"


@pytest.mark.aws
def test_shipped_s3_listing_config_feeds_a_bucket(
    make_aws_client: Callable[[str], Any], aws_endpoint: str, tmp_path: Path
) -> None:
    s3, bucket = make_aws_client("s3"), f"drone-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for key in (
        "surveys/a/site-1.tif",
        "surveys/b/site-2.tif",
        "surveys/b/notes.txt",
        "other/x.tif",
    ):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    def patch(data: dict[str, Any]) -> None:
        data["feeders"]["drone-uploads"].update(bucket=bucket, endpoint_url=aws_endpoint)

    config = shipped("feeders/s3-listing.yaml", tmp_path, patch)
    payloads = dry_run(config, "drone-uploads")

    assert feeders_of(config) == {"drone-uploads"}
    assert sorted(p["features"][0]["id"] for p in payloads) == ["site-1", "site-2"]
    for payload in payloads:
        item = payload["features"][0]
        assert item["collection"] == "drone-orthos"
        assert item["assets"]["ortho"]["href"].startswith(f"s3://{bucket}/surveys/")
        assert workflow_of(payload) == "publish-only"


@pytest.mark.aws
def test_shipped_s3_inventory_config_feeds_an_inventory_report(
    deployment: Deployment, aws_endpoint: str, tmp_path: Path
) -> None:
    bucket = f"inventories-{deployment.tag}"
    deployment.s3.create_bucket(Bucket=bucket)
    scene = "collection02/level-2/standard/oli-tirs/2024/118/039/LC09_L2SP_118039_20240501_02_T1"
    name = scene.rsplit("/", 1)[1]
    keys = [f"{scene}/{name}_MTL.json", f"{scene}/{name}_SR_B4.TIF", f"{scene}/{name}_QA.TIF"]
    report = write_report(deployment.s3, bucket, "landsat", "CSV", [[row(k) for k in keys]])

    def patch(data: dict[str, Any]) -> None:
        feeder = data["feeders"]["landsat-backfill"]
        feeder["destination"] = report.destination
        feeder["aws"] = {**feeder.get("aws", {}), "endpoint_url": aws_endpoint}

    config = shipped("feeders/s3-inventory.yaml", tmp_path, patch)
    payloads = dry_run(config, "landsat-backfill", env=deployment.env)

    assert feeders_of(config) == {"landsat-backfill"}
    assert len(payloads) == 1  # one item per scene, the MTL file its anchor
    item = payloads[0]["features"][0]
    assert item["collection"] == "landsat-c2-l2"
    assert item["id"] == scene.replace("/", "-")
    assert sorted(item["assets"]) == sorted([f"{name}_MTL", f"{name}_SR_B4"])  # QA filtered out
    assert workflow_of(payloads[0]) == "landsat-to-stac"
