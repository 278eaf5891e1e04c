"""One fixture per port, each parametrised over both backends (``local`` and ``aws``).

Every port fixture derives from the single ``backend`` parameter, so a test that uses two
ports runs once per backend, never on a mix. Adapters are imported inside the fixtures: the
suite collects even while an adapter module is missing (its tests then error, not vanish).
AWS resources are uniquely named per test on the shared moto server, local ones live in
``tmp_path``.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed.backends.base import (
    ExecutionOutcome,
    Notifier,
    PayloadQueue,
    PayloadStore,
    StateRecord,
    StateStore,
    WorkflowRunner,
)
from cirrus_feed.support.clock import FakeClock

AWS_REGION = "us-east-1"  # as in tests/conftest.py
AWS_ACCOUNT = "123456789012"  # moto's default account
DRIVE_TIMEOUT_SECONDS = 15.0


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["local", pytest.param("aws", marks=pytest.mark.aws)])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def aws_client(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    """Clients for the adapters, built by the adapter package's own factory."""
    endpoint: str = request.getfixturevalue("aws_endpoint")
    from cirrus_feed.backends.aws.clients import make_client

    def make(service: str) -> Any:
        return make_client(service, region=AWS_REGION, endpoint_url=endpoint)

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 31, 21, 36, 41, 123456, tzinfo=UTC))


@pytest.fixture
def advance_clock(clock: FakeClock) -> Callable[[float], datetime]:
    """Move the adapters' clock forward by some seconds; returns the new now."""

    def advance(seconds: float) -> datetime:
        clock.advance(seconds)
        return clock.now()

    return advance


@pytest.fixture
def elapse(backend: str, clock: FakeClock) -> Callable[[float], None]:
    """Let ``seconds`` pass for the queue: the local adapter's fake clock is advanced; moto's
    SQS times visibility on the wall clock and cannot be told, so there the test waits."""
    if backend == "local":
        return clock.advance
    return time.sleep


# -- state store ----------------------------------------------------------------------------


@dataclass
class StateEnv:
    store: StateStore
    # Writes a record exactly as Cirrus would store it (DynamoDB attribute names, plain values).
    put_raw: Callable[[Mapping[str, Any]], None]


def _dynamodb_value(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"S": value}
    return {"L": [{"S": v} for v in value]}


def _sqlite_put_raw(path: Path) -> Callable[[Mapping[str, Any]], None]:
    # Writes the row straight into the adapter's table, bypassing its state checks.
    def put(item: Mapping[str, Any]) -> None:
        row = dict(item)
        row["payload_id"] = StateRecord.id_from_key(row["collections_workflow"], row["itemids"])
        for name in ("executions", "outputs"):
            if name in row:
                row[name] = json.dumps(list(row[name]))
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        conn = sqlite3.connect(path)
        try:
            with conn:
                conn.execute(
                    f"INSERT OR REPLACE INTO state ({columns}) VALUES ({marks})",
                    list(row.values()),
                )
        finally:
            conn.close()

    return put


@pytest.fixture
def state_env(
    backend: str,
    clock: FakeClock,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[StateEnv]:
    if backend == "local":
        from cirrus_feed.backends.local.sqlite_state import SqliteStateStore

        path = tmp_path / "state.db"
        local_store = SqliteStateStore(path, clock=clock)
        yield StateEnv(local_store, _sqlite_put_raw(path))
        local_store.close()
        return

    from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore

    client = request.getfixturevalue("aws_client")("dynamodb")
    table = unique("state-")
    DynamoDbStateStore.create_table(client, table)

    def put_raw(item: Mapping[str, Any]) -> None:
        client.put_item(TableName=table, Item={k: _dynamodb_value(v) for k, v in item.items()})

    aws_store = DynamoDbStateStore(table, client=client, clock=clock)
    yield StateEnv(aws_store, put_raw)
    aws_store.close()
    client.delete_table(TableName=table)


@pytest.fixture
def state_store(state_env: StateEnv) -> StateStore:
    return state_env.store


@pytest.fixture
def put_raw_state(state_env: StateEnv) -> Callable[[Mapping[str, Any]], None]:
    """Store a record as Cirrus writes it (attribute names of spec §4.2), bypassing checks."""
    return state_env.put_raw


# -- queue ----------------------------------------------------------------------------------

MAX_RECEIVES = 2


@pytest.fixture
def payload_queue(
    backend: str, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[PayloadQueue]:
    """A fresh, empty queue that dead-letters a message on its third receive."""
    if backend == "local":
        from cirrus_feed.backends.local.sqlite_queue import SqlitePayloadQueue

        local_queue = SqlitePayloadQueue(
            tmp_path / "queue.db", max_receives=MAX_RECEIVES, clock=clock
        )
        yield local_queue
        local_queue.close()
        return

    from cirrus_feed.backends.aws.sqs import SqsPayloadQueue

    client = request.getfixturevalue("aws_client")("sqs")
    name = unique("q-")
    dlq_url = client.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
    queue_url = client.create_queue(
        QueueName=name, Attributes={"RedrivePolicy": json.dumps(redrive)}
    )["QueueUrl"]
    aws_queue = SqsPayloadQueue(queue_url, client=client)
    yield aws_queue
    aws_queue.close()
    client.delete_queue(QueueUrl=queue_url)
    client.delete_queue(QueueUrl=dlq_url)


# -- payload store --------------------------------------------------------------------------


@dataclass
class StoreEnv:
    store: PayloadStore
    # Writes raw bytes at ``key`` (relative to the store root) and returns the object's URL.
    put_raw: Callable[[str, bytes], str]
    # URLs of objects that exist and would read fine, but lie outside the allowed locations.
    forbidden_urls: list[str]
    root_url: str  # URL of the root prefix, ending "/": every key's URL is this + key


@pytest.fixture
def store_env(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StoreEnv]:
    secret = b'{"secret": true}'
    web = ["http://example.com/cirrus/x.json", "https://example.com/cirrus/x.json"]
    if backend == "local":
        from cirrus_feed.backends.local.files import FilePayloadStore

        root = tmp_path / "payloads"
        local_store = FilePayloadStore(root)
        (tmp_path / "outside.json").write_bytes(secret)

        def put_file(key: str, data: bytes) -> str:
            path = root / "cirrus" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return local_store.url_for(key)

        inside = put_file("executions/x/input.json", secret)
        forbidden = [
            *web,
            (tmp_path / "outside.json").as_uri(),
            inside.replace("/executions/x/input.json", "/../../outside.json"),
            "/etc/hostname",
        ]
        yield StoreEnv(local_store, put_file, forbidden, f"{(root / 'cirrus').resolve().as_uri()}/")
        local_store.close()
        return

    from cirrus_feed.backends.aws.s3 import S3PayloadStore

    client = request.getfixturevalue("aws_client")("s3")
    bucket, foreign = unique("payloads-"), unique("foreign-")
    for name in (bucket, foreign):
        client.create_bucket(Bucket=name)
    client.put_object(Bucket=foreign, Key="cirrus/x.json", Body=secret)
    client.put_object(Bucket=bucket, Key="outside.json", Body=secret)
    aws_store = S3PayloadStore(bucket, client=client)

    def put_object(key: str, data: bytes) -> str:
        client.put_object(Bucket=bucket, Key=f"cirrus/{key}", Body=data)
        return aws_store.url_for(key)

    forbidden = [
        *web,
        f"s3://{foreign}/cirrus/x.json",
        f"s3://{bucket}/cirrus/../outside.json",
    ]
    yield StoreEnv(aws_store, put_object, forbidden, f"s3://{bucket}/cirrus/")
    aws_store.close()


@pytest.fixture
def payload_store(store_env: StoreEnv) -> PayloadStore:
    return store_env.store


@pytest.fixture
def put_raw_object(store_env: StoreEnv) -> Callable[[str, bytes], str]:
    """Write bytes at a key of the store (bypassing ``put_json``); returns the URL."""
    return store_env.put_raw


@pytest.fixture
def store_root_url(store_env: StoreEnv) -> str:
    """The URL of the store's root prefix (``s3://<bucket>/cirrus/``, ``file://…/cirrus/``)."""
    return store_env.root_url


@pytest.fixture
def forbidden_urls(store_env: StoreEnv) -> list[str]:
    """URLs of objects that exist and would read fine but are outside the allowed places."""
    return store_env.forbidden_urls


# -- workflow runner ------------------------------------------------------------------------

# moto refuses custom Fail errors named "States.*" (reserved), so a plain name is used.
FAIL_ERROR = "TaskFailed"
FAIL_CAUSE = "the wf-fail workflow always fails"

Drive = Callable[[WorkflowRunner, str], ExecutionOutcome]


def _create_state_machines(client: Any, base_arn: str) -> None:
    role = f"arn:aws:iam::{AWS_ACCOUNT}:role/cirrus-feed-test"
    prefix = base_arn.rsplit(":", 1)[-1]
    definitions = {
        "wf-pass": {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}},
        "wf-fail": {
            "StartAt": "Boom",
            "States": {"Boom": {"Type": "Fail", "Error": FAIL_ERROR, "Cause": FAIL_CAUSE}},
        },
    }
    for workflow, definition in definitions.items():
        client.create_state_machine(
            name=f"{prefix}{workflow}", definition=json.dumps(definition), roleArn=role
        )


@pytest.fixture
def workflow_runner(
    backend: str, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[WorkflowRunner]:
    """A runner with two workflows: ``wf-pass`` (returns its input) and ``wf-fail``."""
    if backend == "local":
        from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner
        from cirrus_feed.backends.local.workflows import TaskSpec, Workflow

        workflows = {
            "wf-pass": Workflow(tasks=[TaskSpec(task="noop")]),
            "wf-fail": Workflow(
                tasks=[TaskSpec(task="fail", options={"error": FAIL_ERROR, "message": FAIL_CAUSE})]
            ),
        }
        local_runner = InlineWorkflowRunner(tmp_path / "runner.db", workflows, clock=clock)
        yield local_runner
        local_runner.close()
        return

    from cirrus_feed.backends.aws.stepfunctions import StepFunctionsWorkflowRunner

    client = request.getfixturevalue("aws_client")("stepfunctions")
    base_arn = f"arn:aws:states:{AWS_REGION}:{AWS_ACCOUNT}:stateMachine:{unique('t')}-"
    _create_state_machines(client, base_arn)
    aws_runner = StepFunctionsWorkflowRunner(base_arn, client=client, region=AWS_REGION)
    yield aws_runner
    aws_runner.close()


def _drive_local(runner: WorkflowRunner, execution_arn: str) -> ExecutionOutcome:
    from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner

    assert isinstance(runner, InlineWorkflowRunner)
    for pending in runner.claim_pending(max_count=10):
        runner.complete(runner.execute(pending))
    outcome = runner.describe(execution_arn)
    assert outcome is not None, f"{execution_arn} did not finish"
    return outcome


def _drive_aws(runner: WorkflowRunner, execution_arn: str) -> ExecutionOutcome:
    deadline = time.monotonic() + DRIVE_TIMEOUT_SECONDS
    while (outcome := runner.describe(execution_arn)) is None:
        assert time.monotonic() < deadline, f"{execution_arn} did not finish"
        time.sleep(0.05)
    return outcome


@pytest.fixture
def expected_failure() -> tuple[str, str]:
    """``(error, cause)`` of every ``wf-fail`` execution."""
    return FAIL_ERROR, FAIL_CAUSE


@pytest.fixture
def drive(backend: str) -> Drive:
    """Run an execution to its end and return its outcome."""
    return _drive_local if backend == "local" else _drive_aws


# -- notifier -------------------------------------------------------------------------------


# (message body, {attribute name: (data type, value)})
Delivered = tuple[dict[str, Any], dict[str, tuple[str, str]]]


@dataclass
class NotifierEnv:
    notifier: Notifier
    events: Callable[[], list[Delivered]]  # workflow events delivered so far, in order
    items: Callable[[], list[Delivered]]  # published items delivered so far, in order


def subscribe_queue(sns: Any, sqs: Any, topic_arn: str) -> Callable[[], list[Delivered]]:
    """Subscribe a new SQS queue to ``topic_arn`` (SNS envelopes, not raw); returns a reader
    of everything delivered so far."""
    queue_url = sqs.create_queue(QueueName=unique("sub-"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "false"},
    )
    seen: list[Delivered] = []

    def read() -> list[Delivered]:
        while messages := sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300
        ).get("Messages", []):
            for message in messages:
                envelope = json.loads(message["Body"])
                attributes = envelope.get("MessageAttributes", {})
                body = json.loads(envelope["Message"])
                seen.append((body, {k: (v["Type"], v["Value"]) for k, v in attributes.items()}))
        return list(seen)

    return read


@pytest.fixture
def notifier_env(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[NotifierEnv]:
    if backend == "local":
        from cirrus_feed.backends.local.event_log import EventLogNotifier

        log = EventLogNotifier(tmp_path / "events.db")

        def local_events() -> list[Delivered]:
            # The event log keeps message bodies only: attributes are an SNS notion.
            return [(dict(event.to_message()), {}) for event in log.events()]

        def local_items() -> list[Delivered]:
            return list(zip(log.items(), log.item_attributes(), strict=True))

        yield NotifierEnv(log, local_events, local_items)
        log.close()
        return

    from cirrus_feed.backends.aws.sns import SnsNotifier

    make = request.getfixturevalue("aws_client")
    sns, sqs = make("sns"), make("sqs")
    event_topic = sns.create_topic(Name=unique("events-"))["TopicArn"]
    publish_topic = sns.create_topic(Name=unique("publish-"))["TopicArn"]
    notifier = SnsNotifier(
        client=sns,
        region=AWS_REGION,
        workflow_event_topic_arn=event_topic,
        publish_topic_arn=publish_topic,
    )
    yield NotifierEnv(
        notifier,
        subscribe_queue(sns, sqs, event_topic),
        subscribe_queue(sns, sqs, publish_topic),
    )
    notifier.close()


@pytest.fixture
def notifier(notifier_env: NotifierEnv) -> Notifier:
    return notifier_env.notifier


@pytest.fixture
def delivered_events(notifier_env: NotifierEnv) -> Callable[[], list[Delivered]]:
    """Workflow events delivered so far, oldest first (AWS: with SNS message attributes)."""
    return notifier_env.events


@pytest.fixture
def delivered_items(notifier_env: NotifierEnv) -> Callable[[], list[Delivered]]:
    """Published items delivered so far, oldest first, with their message attributes."""
    return notifier_env.items
