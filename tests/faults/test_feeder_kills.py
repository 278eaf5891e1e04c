"""Fault suite: every feeder killed with SIGKILL at seeded random moments, then resumed.

Each experiment feeds 200 to 450 source records through ``cirrus-feed
feed NAME`` subprocesses on the local backend: ``stac-api`` against rustac, ``s3-listing``
and ``s3-inventory`` against moto's server, ``events`` from an SQS queue on moto. Five
runs are killed mid-run, then one runs to the end; the four experiments run side by side
(threads driving subprocesses), each test checks one. Then: every expected payload id was
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
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
AWS_REGION = "us-east-1"

pytestmark = pytest.mark.aws  # the experiments share one module fixture, on moto's server


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


@dataclass
class Setup:
    """One experiment, how to kill it, and what to do before its resume run."""

    experiment: Experiment
    seed: int
    most: int  # each kill waits for 1..most more queued messages
    before_resume: Callable[[], None] = lambda: None
    after: Callable[[], None] = lambda: None  # checks of the source once all is done

    def run(self) -> tuple[int, subprocess.CompletedProcess[str]]:
        kills = kill_loop(self.experiment, random.Random(self.seed), KILLS, most=self.most)
        self.before_resume()
        return kills, resume(self.experiment)


def stac_setup(root: Path, url: str, expected: set[str]) -> Setup:
    settings = {
        "type": "stac-api",
        "url": url,
        "datetime": "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z",
        "max_items_per_window": 150,
        "flush_size": 100,  # < the checkpoint's 150: kills re-send
        "max_rate": 30,
    }
    experiment = Experiment(root, "stac", settings, expected)
    return Setup(experiment, SEED, most=len(expected) // 8)


def listing_setup(root: Path, aws: Callable[[str], Any], endpoint: str) -> Setup:
    s3 = aws("s3")
    bucket = f"kills-listing-{random.Random(SEED).randrange(10**8)}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"{prefix}/{n:04d}.tif" for prefix in "abc" for n in range(100)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    settings = {
        "type": "s3-listing",
        "bucket": bucket,
        "endpoint_url": endpoint,
        "shard_depth": 1,
        "page_size": 40,
        "checkpoint_every": 150,
        "flush_size": 100,  # < the checkpoint's 150: kills re-send
        "item": {"collection": "c"},
        "max_rate": 30,
    }
    expected = {payload_id("c", key.replace("/", "-")) for key in keys}
    return Setup(Experiment(root, "listing", settings, expected), SEED + 1, len(keys) // 8)


def inventory_setup(root: Path, aws: Callable[[str], Any], endpoint: str) -> Setup:
    inventory_data = feeder_test_module("inventory_data")
    s3 = aws("s3")
    bucket = f"kills-inventory-{random.Random(SEED).randrange(10**8)}"
    s3.create_bucket(Bucket=bucket)
    files = [[inventory_data.row(f"f{f}/{n:04d}.json", n) for n in range(150)] for f in range(3)]
    report = inventory_data.write_report(s3, bucket, "inv", "CSV", files)
    settings = {
        "type": "s3-inventory",
        "manifest": report.manifest_url,
        "aws": {"endpoint_url": endpoint},
        "item": {"collection": "c"},
        "checkpoint_items": 30,
        "max_rate": 60,
    }
    keys = [row["key"] for rows in files for row in rows]
    expected = {payload_id("c", key.replace("/", "-")) for key in keys}
    return Setup(Experiment(root, "inventory", settings, expected), SEED + 2, len(keys) // 16)


def s3_notification(bucket: str, key: str, sequencer: int) -> str:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": AWS_REGION,
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1, "sequencer": f"{sequencer:016X}"},
        },
    }
    return json.dumps({"Records": [record]})


def events_setup(root: Path, aws: Callable[[str], Any], endpoint: str) -> Setup:
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName=f"kills-{random.Random(SEED).randrange(10**8)}")["QueueUrl"]
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
                "endpoint_url": endpoint,
                "wait_seconds": 0,
                "visibility_timeout": 2,
            }
        },
        "mapper": "s3-object",
        "options": {"item": {"collection": "c"}},
        "max_rate": 20,
    }
    expected = {payload_id("c", key.replace("/", "-")) for key in keys}

    def count(attribute: str) -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])
        return int(attributes["Attributes"][attribute])

    def visible_again() -> None:
        # The killed runs' unacked messages reappear once their visibility timeout ran out.
        wait_until(lambda: count("ApproximateNumberOfMessagesNotVisible") == 0, timeout=20)

    def all_acked() -> None:
        assert count("ApproximateNumberOfMessages") == 0

    experiment = Experiment(root, "events", settings, expected)
    return Setup(experiment, SEED + 3, len(keys) // 16, visible_again, all_acked)


@pytest.fixture(scope="module")
def aws(moto_server: str) -> Callable[[str], Any]:
    """Plain boto3 clients for moto's server (the conftest's, at module scope)."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=AWS_REGION
    )

    def make(service: str) -> Any:
        return session.client(service, endpoint_url=moto_server)  # type: ignore[call-overload]  # boto3-stubs type client() per literal service name

    return make


Fed = dict[str, tuple[Setup, "Future[tuple[int, subprocess.CompletedProcess[str]]]"]]


@pytest.fixture(scope="module")
def fed(
    stac_server: tuple[str, set[str]],
    aws: Callable[[str], Any],
    moto_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fed]:
    """Every experiment set up, then its kill loop and resume run started in a thread."""
    root = tmp_path_factory.mktemp("kills")
    setups = {
        "stac": stac_setup(root / "stac", *stac_server),
        "listing": listing_setup(root / "listing", aws, moto_server),
        "inventory": inventory_setup(root / "inventory", aws, moto_server),
        "events": events_setup(root / "events", aws, moto_server),
    }
    with ThreadPoolExecutor(len(setups), thread_name_prefix="kills") as pool:
        yield {name: (setup, pool.submit(setup.run)) for name, setup in setups.items()}


@pytest.mark.parametrize("name", ["stac", "listing", "inventory", "events"])
def test_feeder_kills_then_resume_loses_nothing(fed: Fed, name: str) -> None:
    setup, future = fed[name]

    kills, resumed = future.result(timeout=300)

    check(setup.experiment, kills, resumed)
    setup.after()
