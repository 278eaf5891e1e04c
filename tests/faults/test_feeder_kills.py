"""Fault suite: every feeder killed with SIGKILL at seeded random moments, then resumed.

Each experiment feeds 200 to 450 source records through ``cirrus-feed
feed NAME`` subprocesses on the local backend: ``stac-api`` against rustac, ``s3-listing``
and ``s3-inventory`` against moto's server, ``events`` from an SQS queue on moto. Five
runs are killed mid-run, then one runs to the end. Then: every expected payload id was
queued at least once; after the local workers drained the queue each is SUCCEEDED with
exactly one execution; no run is left ``running``, the killed ones are ``abandoned``.
``max_rate`` (about a tenth of the records a second) slows the killed runs so each kill lands
mid-run; the resume run is not paced.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .feeder_kills import (
    Experiment,
    Outcome,
    feeder_test_module,
    kill_loop,
    payload_id,
    resume,
    wait_until,
)

KILLS = 5
SEED = 20261203


@pytest.fixture(scope="module")
def stac_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, set[str]]]:
    """rustac (the feeder tests' starter) serving 300 items over one day; their ids."""
    stac_data = feeder_test_module("stac_data")
    starter = feeder_test_module("conftest")
    items = [
        stac_data.make_item(f"K{n:04d}", f"2024-01-01T{n // 25 * 2:02d}:{n % 25 * 2:02d}:07Z")
        for n in range(300)
    ]
    process, url = starter._start_rustac(tmp_path_factory.mktemp("rustac-kills"), items)
    yield url, {payload_id(stac_data.COLLECTION, item["id"]) for item in items}
    process.terminate()
    process.wait(timeout=10)


def check(experiment: Experiment, kills: int, resumed: subprocess.CompletedProcess[str]) -> Outcome:
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    outcome = Outcome.of(experiment)
    print(outcome.summary(experiment, kills))  # the report's numbers (pytest -s)
    assert set(outcome.queued) >= experiment.expected  # every expected id queued
    assert set(outcome.queued) == experiment.expected  # and nothing else
    assert outcome.succeeded == experiment.expected
    assert outcome.executions == Counter(experiment.expected)  # SUCCEEDED exactly once
    assert outcome.statuses == {"abandoned": kills, "succeeded": 1}  # none left running
    return outcome


def test_feeder_kills_stac_api(stac_server: tuple[str, set[str]], tmp_path: Path) -> None:
    url, expected = stac_server
    settings = {
        "type": "stac-api",
        "url": url,
        "datetime": "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z",
        "max_items_per_window": 150,  # > the flush size: kills re-send
        "max_rate": 30,
    }
    experiment = Experiment(tmp_path, "stac", settings, expected)

    kills = kill_loop(experiment, random.Random(SEED), KILLS, most=len(expected) // 8)

    check(experiment, kills, resume(experiment))


@pytest.fixture
def make_bucket(make_aws_client: Callable[[str], Any]) -> Callable[[str], str]:
    s3 = make_aws_client("s3")

    def make(name: str) -> str:
        s3.create_bucket(Bucket=name)
        return name

    return make


@pytest.mark.aws
def test_feeder_kills_s3_listing(
    make_aws_client: Callable[[str], Any],
    make_bucket: Callable[[str], str],
    aws_endpoint: str,
    tmp_path: Path,
) -> None:
    s3 = make_aws_client("s3")
    bucket = make_bucket(f"kills-listing-{random.Random(SEED).randrange(10**8)}")
    keys = [f"{prefix}/{n:04d}.tif" for prefix in "abc" for n in range(100)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    settings = {
        "type": "s3-listing",
        "bucket": bucket,
        "endpoint_url": aws_endpoint,
        "shard_depth": 1,
        "page_size": 40,
        "checkpoint_every": 150,  # > the flush size: kills re-send
        "item": {"collection": "c"},
        "max_rate": 30,
    }
    expected = {payload_id("c", key.replace("/", "-")) for key in keys}
    experiment = Experiment(tmp_path, "listing", settings, expected)

    kills = kill_loop(experiment, random.Random(SEED + 1), KILLS, most=len(keys) // 8)

    check(experiment, kills, resume(experiment))


@pytest.mark.aws
def test_feeder_kills_s3_inventory(
    make_aws_client: Callable[[str], Any],
    make_bucket: Callable[[str], str],
    aws_endpoint: str,
    tmp_path: Path,
) -> None:
    inventory_data = feeder_test_module("inventory_data")
    s3 = make_aws_client("s3")
    bucket = make_bucket(f"kills-inventory-{random.Random(SEED).randrange(10**8)}")
    files = [[inventory_data.row(f"f{f}/{n:04d}.json", n) for n in range(150)] for f in range(3)]
    report = inventory_data.write_report(s3, bucket, "inv", "CSV", files)
    settings = {
        "type": "s3-inventory",
        "manifest": report.manifest_url,
        "aws": {"endpoint_url": aws_endpoint},
        "item": {"collection": "c"},
        "checkpoint_items": 30,
        "max_rate": 60,
    }
    keys = [row["key"] for rows in files for row in rows]
    expected = {payload_id("c", key.replace("/", "-")) for key in keys}
    experiment = Experiment(tmp_path, "inventory", settings, expected)

    kills = kill_loop(experiment, random.Random(SEED + 2), KILLS, most=len(keys) // 16)

    check(experiment, kills, resume(experiment))


def s3_notification(bucket: str, key: str, sequencer: int) -> str:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1, "sequencer": f"{sequencer:016X}"},
        },
    }
    return json.dumps({"Records": [record]})


@pytest.mark.aws
def test_feeder_kills_events_from_sqs(
    make_aws_client: Callable[[str], Any], aws_endpoint: str, tmp_path: Path
) -> None:
    sqs = make_aws_client("sqs")
    queue = sqs.create_queue(QueueName=f"kills-{random.Random(SEED).randrange(10**8)}")
    url = queue["QueueUrl"]
    keys = [f"drop/{n:04d}.tif" for n in range(200)]
    for start in range(0, len(keys), 10):
        entries = [
            {"Id": str(n), "MessageBody": s3_notification("uploads", key, start + n)}
            for n, key in enumerate(keys[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
    settings = {
        "type": "events",
        "source": {
            "sqs": {
                "queue_url": url,
                "endpoint_url": aws_endpoint,
                "wait_seconds": 0,
                "visibility_timeout": 2,
            }
        },
        "mapper": "s3-object",
        "options": {"item": {"collection": "c"}},
        "max_rate": 20,
    }
    expected = {payload_id("c", key.replace("/", "-")) for key in keys}
    experiment = Experiment(tmp_path, "events", settings, expected)

    kills = kill_loop(experiment, random.Random(SEED + 3), KILLS, most=len(keys) // 16)

    # The killed runs' unacked messages reappear once their visibility timeout ran out.
    def in_flight() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessagesNotVisible"])

    wait_until(lambda: in_flight() == 0, timeout=20)
    check(experiment, kills, resume(experiment))
    assert (
        int(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
                "ApproximateNumberOfMessages"
            ]
        )
        == 0
    )  # every message acked
