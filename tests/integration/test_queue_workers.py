"""AWS queue workers (`service.queue_worker`) on moto's server: `cirrus-feed process` polls
the process queue and the update-state queue instead of the Lambdas; `serve` runs them when
``aws.serve_workers`` says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from cirrus_feed.backends.base import PayloadQueue
from cirrus_feed.cli.main import cli
from cirrus_feed.errors import BackendUnavailableError
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.model.states import State
from cirrus_feed.service.queue_worker import QueueWorker
from cirrus_feed.service.worker import WorkTotals

from .conftest import AwsHarness, make_payload, payload_id
from .test_lambdas import ending, status_change

pytestmark = pytest.mark.aws

ROOT = Path(__file__).resolve().parents[2]


class Deployment:
    """A Cirrus deployment on moto plus the SQS queue its EventBridge rule would target."""

    def __init__(self, harness: AwsHarness, tmp_path: Path) -> None:
        self.h = harness
        self.update_queue: str = harness.sqs.create_queue(QueueName=f"{harness.prefix}update")[
            "QueueUrl"
        ]
        self.tmp_path = tmp_path

    def config(self, **extra: Any) -> Path:
        aws = self.h.app.settings.aws
        settings = {
            "backend": "aws",
            "aws": {
                **aws.model_dump(include={"region", "endpoint_url", "state_db", "payload_bucket"}),
                **aws.model_dump(include={"base_workflow_arn", "process_queue_url"}),
                **aws.model_dump(include={"publish_topic_arn", "workflow_event_topic_arn"}),
                "update_state_queue_url": self.update_queue,
                **extra.pop("aws", {}),
            },
            "process": {"workers": 2, "wait_seconds": 1, "visibility_timeout": 30},
            **extra,
        }
        path = self.tmp_path / f"aws-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    def send(self, queue_url: str, *bodies: Any) -> None:
        for body in bodies:
            text = body if isinstance(body, str) else json.dumps(body)
            self.h.sqs.send_message(QueueUrl=queue_url, MessageBody=text)

    def depth(self, queue_url: str) -> int:
        attributes = self.h.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


@pytest.fixture
def deployment(make_aws_client: Any, aws_endpoint: str, tmp_path: Path) -> Iterator[Deployment]:
    harness = AwsHarness(make_aws_client, aws_endpoint)
    yield Deployment(harness, tmp_path)
    harness.app.close()


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_process_once_on_aws_runs_both_stages_through_their_queues(d: Deployment) -> None:
    # Given a good payload, one whose workflow has no state machine, and a body that is none.
    h, queue = d.h, d.h.app.settings.aws.process_queue_url
    assert queue is not None
    good, lost = f"ok-{uuid.uuid4().hex[:6]}", f"lost-{uuid.uuid4().hex[:6]}"
    d.send(queue, make_payload(good), make_payload(lost, "no-such-machine"), "not json")
    config = d.config()

    # When `process --once` drains the process queue.
    first = invoke(config, "process", "--once", "--json")

    # Then the good one started, the bad workflow failed, the garbage is invalid: exit 1,
    # and only the failed message is left on the queue for redrive.
    assert first.exit_code == 1, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary == {"process": {"started": 1, "failed": 1, "invalid": 1}, "update_state": {}}
    assert h.state_of(payload_id(good)) is State.PROCESSING
    assert d.depth(queue) == 1

    # When the execution's EventBridge event arrives on the update-state queue.
    d.send(d.update_queue, status_change(ending(h, payload_id(good))), {"not": "an event"})
    second = invoke(config, "process", "--once", "--json")

    # Then update-state recorded it (and kept the stray record as invalid), queue drained.
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["update_state"] == {"updated": 1, "invalid": 1}
    assert h.state_of(payload_id(good)) is State.SUCCEEDED
    assert d.depth(d.update_queue) == 0


@pytest.fixture
def d(deployment: Deployment) -> Deployment:
    return deployment


def test_process_on_aws_exits_zero_when_all_succeeded(d: Deployment) -> None:
    queue = d.h.app.settings.aws.process_queue_url
    assert queue is not None
    d.send(queue, make_payload(f"ok-{uuid.uuid4().hex[:6]}"))

    result = invoke(d.config(), "process", "--once")

    assert result.exit_code == 0, result.output
    assert "process: 1 started" in result.stdout


def test_serve_once_on_aws_runs_workers_only_when_configured(d: Deployment) -> None:
    queue = d.h.app.settings.aws.process_queue_url
    assert queue is not None
    item = f"serve-{uuid.uuid4().hex[:6]}"
    d.send(queue, make_payload(item))

    off = invoke(d.config(), "serve", "--once")
    on = invoke(d.config(aws={"serve_workers": True}), "serve", "--once")

    assert off.exit_code == 2  # nothing to serve: the Lambdas process
    assert on.exit_code == 0, on.output
    assert "process: 1 started" in on.stdout
    assert d.h.state_of(payload_id(item)) is State.PROCESSING


def test_process_on_aws_stops_gracefully_on_sigterm(d: Deployment, tmp_path: Path) -> None:
    # Given `cirrus-feed process` running in its own interpreter, polling forever.
    queue = d.h.app.settings.aws.process_queue_url
    assert queue is not None
    item = f"term-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", "from cirrus_feed.cli import main; main()"]
    worker = subprocess.Popen(  # our interpreter, our module
        [*command, "--config", str(d.config()), "process", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        # When a payload arrives, is processed, and SIGTERM follows.
        d.send(queue, make_payload(item))
        deadline = time.monotonic() + 60
        while d.h.record(payload_id(item)) is None or d.depth(queue):
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker did not process the payload"
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

    # Then it finished its work, reported it and exited 0.
    assert worker.returncode == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["process"] == {"started": 1}


# -- QueueWorker on an SQS queue ---------------------------------------------------------------


def queue_of(d: Deployment) -> PayloadQueue:
    """A plain SQS queue: the worker only moves messages, the stage decides their fate."""
    from cirrus_feed.backends.aws.sqs import SqsPayloadQueue

    return SqsPayloadQueue(d.update_queue, client=d.h.sqs)


def test_queue_worker_leaves_exactly_the_failed_messages(d: Deployment) -> None:
    queue = queue_of(d)
    d.send(d.update_queue, "a", "b", "c")

    def stage(envelopes: Sequence[Envelope]) -> StageReport:
        report = StageReport()
        for i, e in enumerate(envelopes):
            bad = e.raw["body"] == "b"
            outcome = Outcome.FAILED if bad else Outcome.UPDATED
            report.add(RecordResult(i, outcome, message_id=e.message_id))
        return report

    worker = QueueWorker("test", queue, stage, wait_seconds=0, visibility_timeout=3)
    totals = WorkTotals()
    worker.drain(totals)

    assert totals.process.counts == {"updated": 2, "failed": 1}
    time.sleep(3.5)  # the failed one comes back once its visibility times out
    again = queue.receive(10, wait_seconds=1)
    assert [m.body for m in again] == ["b"]


def test_queue_worker_keeps_a_slow_batch_invisible(d: Deployment) -> None:
    queue = queue_of(d)
    d.send(d.update_queue, "slow")
    seen_meanwhile: list[int] = []

    def stage(envelopes: Sequence[Envelope]) -> StageReport:
        time.sleep(4)  # longer than the visibility timeout
        seen_meanwhile.append(len(queue.receive(10)))
        return StageReport([RecordResult(0, Outcome.UPDATED, message_id=envelopes[0].message_id)])

    worker = QueueWorker("test", queue, stage, wait_seconds=0, visibility_timeout=3)
    report = worker.step()

    assert report is not None
    assert report.counts == {"updated": 1}
    assert seen_meanwhile == [0]  # extended: nobody else got it while it was worked on
    assert d.depth(d.update_queue) == 0


def test_queue_worker_whole_batch_failure_deletes_nothing(d: Deployment) -> None:
    queue = queue_of(d)
    d.send(d.update_queue, "a", "b")

    def stage(envelopes: Sequence[Envelope]) -> StageReport:
        raise BackendUnavailableError("state DB throttled")

    worker = QueueWorker("test", queue, stage, wait_seconds=0, visibility_timeout=3)

    with pytest.raises(BackendUnavailableError):
        worker.step()
    assert d.depth(d.update_queue) == 2  # both come back for another try
