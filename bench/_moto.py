"""moto's server, a throw-away Cirrus deployment on it, and an AWS API call counter.

Used by ``bench/process.py`` only. The deployment mirrors what the integration tests build
(state table, payload bucket, process queue, two SNS topics, Pass state machines), but the
bench never imports from ``tests/``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore
from cirrus_feed.config import Settings

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
PASS_MACHINE = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


def dummy_credentials() -> dict[str, str]:
    """Environment that keeps botocore from looking for real credentials or config."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@dataclass
class MotoServer:
    """A `moto.server.ThreadedMotoServer` on 127.0.0.1 with Step Functions in execute mode,
    in its own interpreter (this file run as a script).

    Its own process, so neither side of the bench shares a GIL with the server: cirrus-feed
    in the bench's process and cirrus-geo in its runner are both plain HTTP clients of it.
    """

    process: subprocess.Popen[str]
    endpoint: str

    @classmethod
    def start(cls) -> MotoServer:
        os.environ.update(dummy_credentials())
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
        if not endpoint.startswith("http://"):
            process.kill()
            raise SystemExit(f"moto server did not start (said {endpoint!r})")
        return cls(process, endpoint)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the server stops at end of input
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve() -> None:
    """Run moto's server until stdin closes; print its endpoint first."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(dummy_credentials())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's Step Functions interpreter calls the other services back on $MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)
    endpoint = f"http://{host}:{port}"
    # Must precede any CreateStateMachine: machines created before never execute.
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    print(endpoint, flush=True)
    sys.stdin.read()
    server.stop()


def new_session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


def deploy(endpoint: str, workflows: list[str]) -> Settings:
    """Create a fresh deployment (one Pass state machine per workflow); its AWS settings.

    Built with its own session, so none of these calls reach a `CallCounter`.
    """
    session = new_session()

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]  # boto3-stubs type client() per literal service name

    tag = uuid.uuid4().hex[:10]
    prefix = f"bench{tag}-"
    DynamoDbStateStore.create_table(client("dynamodb"), f"{prefix}state")
    bucket = f"bench-{tag}"
    client("s3").create_bucket(Bucket=bucket)
    queue = client("sqs").create_queue(QueueName=f"{prefix}process")["QueueUrl"]
    sns = client("sns")
    topics = {kind: sns.create_topic(Name=f"{prefix}{kind}")["TopicArn"] for kind in ("ev", "pub")}
    log_group = f"{prefix}workflow-event-metrics"
    client("logs").create_log_group(logGroupName=log_group)
    sfn = client("stepfunctions")
    for workflow in workflows:
        sfn.create_state_machine(
            name=f"{prefix}{workflow}",
            definition=json.dumps(PASS_MACHINE),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
        )
    return Settings.model_validate(
        {
            "backend": "aws",
            "aws": {
                "region": REGION,
                "endpoint_url": endpoint,
                "state_db": f"{prefix}state",
                "payload_bucket": bucket,
                "base_workflow_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{prefix}",
                "process_queue_url": queue,
                "publish_topic_arn": topics["pub"],
                "workflow_event_topic_arn": topics["ev"],
                "workflow_log_group": log_group,  # metric log events, as Cirrus's metrics.yaml
            },
        }
    )


@dataclass
class CallCounter:
    """Counts API calls (``before-call``) and HTTP attempts (``before-send``, so retries
    show) per ``service.Operation``, under the label set by `counting`; nothing while no
    label is set (the bench's own set-up and polling).

    Attach it to a session *before* building clients from it: clients copy the session's
    event handlers when they are created.
    """

    calls: dict[str, Counter[str]] = field(default_factory=dict)
    attempts: dict[str, Counter[str]] = field(default_factory=dict)
    label: str | None = None

    def attach(self, session: boto3.session.Session) -> None:
        session.events.register("before-call", self._on_call, unique_id="bench-calls")
        session.events.register("before-send", self._on_send, unique_id="bench-sends")

    @contextmanager
    def counting(self, label: str) -> Iterator[None]:
        self.calls.setdefault(label, Counter())
        self.attempts.setdefault(label, Counter())
        previous, self.label = self.label, label
        try:
            yield
        finally:
            self.label = previous

    def _on_call(self, model: Any, **_: Any) -> None:
        if self.label is not None:
            self.calls[self.label][f"{model.service_model.service_name}.{model.name}"] += 1

    def _on_send(self, event_name: str, **_: Any) -> None:
        # event_name is "before-send.<service id>.<Operation>"
        if self.label is not None:
            self.attempts[self.label][event_name.split(".", 1)[1]] += 1


if __name__ == "__main__":
    serve()
