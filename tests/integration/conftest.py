"""A whole pipeline per test, on the local backend and on AWS (moto's server over HTTP).

`Harness` drives the stages the way the Lambda handlers and workers do, and reads back what
happened (workflow events, executions started) from the real backends.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed.app import App, LocalPaths, build_app, build_aws
from cirrus_feed.backends.base import Backends, ExecutionOutcome, StateRecord
from cirrus_feed.backends.local.event_log import EventLogNotifier
from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.errors import PayloadNotFoundError
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.reports import RecordResult, StageReport
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.enqueue import Enqueuer
from cirrus_feed.pipeline.process import Processor
from cirrus_feed.pipeline.update_state import StateUpdater

REGION = "us-east-1"
ACCOUNT = "123456789012"
WORKFLOWS = {
    "test-workflow1": Workflow(tasks=[TaskSpec(task="noop")]),
    "publish-only": Workflow(tasks=[TaskSpec(task="publish")]),
    "wf-fail": Workflow(tasks=[TaskSpec(task="fail", options={"message": "boom"})]),
}
PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
FAIL = {
    "StartAt": "Boom",
    "States": {"Boom": {"Type": "Fail", "Error": "TaskFailed", "Cause": "boom"}},
}
MACHINES = {"test-workflow1": PASS, "publish-only": PASS, "wf-fail": FAIL}


def make_payload(
    item_id: str = "test-id1",
    workflow: str = "test-workflow1",
    collection: str = "test-collection-input1",
    **process: Any,
) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": item_id,
                "collection": collection,
                "bbox": [0, 0, 1, 1],
                "properties": {"datetime": "2025-01-01T00:00:00Z"},
                "assets": {},
                "links": [],
            }
        ],
        "process": [{"workflow": workflow, **process}],
    }


def payload_id(
    item_id: str = "test-id1",
    workflow: str = "test-workflow1",
    collection: str = "test-collection-input1",
) -> str:
    return f"{collection}/workflow-{workflow}/{item_id}"


class Harness:
    """One pipeline; subclasses know how to read back events and executions."""

    name: str

    def __init__(self, app: App) -> None:
        self.app = app
        self.b: Backends = app.backends
        self._message = 0

    def use_state(self, state: Any) -> None:
        """Swap the state store (to inject a specific failure) in every stage."""
        self.b = Backends(state, self.b.queue, self.b.store, self.b.runner, self.b.notifier)
        self.app = App(
            self.app.settings,
            self.b,
            Enqueuer(self.b.queue, self.b.store),
            Processor(self.b),
            StateUpdater(self.b),
        )

    def sqs_event(self, *bodies: Any) -> dict[str, Any]:
        records = []
        for body in bodies:
            self._message += 1
            records.append(
                {
                    "messageId": f"m{self._message}",
                    "receiptHandle": f"r{self._message}",
                    "body": body if isinstance(body, str) else json.dumps(body),
                    "eventSource": "aws:sqs",
                }
            )
        return {"Records": records}

    def process(self, *bodies: Any) -> StageReport:
        return self.app.processor.process(normalize(self.sqs_event(*bodies)))

    def record(self, pid: str) -> StateRecord | None:
        try:
            return self.b.state.get(pid)
        except PayloadNotFoundError:
            return None

    def state_of(self, pid: str) -> State:
        """The state of a record that must exist."""
        record = self.record(pid)
        assert record is not None, f"no state record for {pid}"
        return record.state

    def kept(self, result: RecordResult) -> Any:
        """The JSON document an invalid ``result`` was kept as (at ``result.url``)."""
        assert result.url is not None, "the result names no kept document"
        return self.b.store.get_json(result.url)

    def finish_all(self) -> StageReport:
        """Wait for every started execution to end and apply update-state to each."""
        return self.app.updater.update(self.outcomes())

    def outcomes(self) -> list[ExecutionOutcome]:
        raise NotImplementedError

    def event_types(self) -> list[str]:
        """Workflow events announced since the last call, in order."""
        raise NotImplementedError

    def executions(self, workflow: str) -> int:
        raise NotImplementedError


class LocalHarness(Harness):
    name = "local"

    def __init__(self, root: Path) -> None:
        super().__init__(build_app(Settings(local=LocalSettings(root=root), workflows=WORKFLOWS)))
        self.paths = LocalPaths(root)
        self._seen = 0
        self.items_seen = 0

    @property
    def notifier(self) -> EventLogNotifier:
        """The local backend's notifier (it also logs the events and published items)."""
        notifier = self.b.notifier
        assert isinstance(notifier, EventLogNotifier)
        return notifier

    def outcomes(self) -> list[ExecutionOutcome]:
        runner = self.b.runner
        assert isinstance(runner, InlineWorkflowRunner)
        outcomes = []
        while pending := runner.claim_pending(50):
            for item in pending:
                outcome = runner.execute(item)
                runner.complete(outcome)
                outcomes.append(outcome)
        return outcomes

    def event_types(self) -> list[str]:
        events = self.notifier.events()
        new, self._seen = events[self._seen :], len(events)
        return [e.event_type for e in new]

    def executions(self, workflow: str) -> int:
        with sqlite3.connect(self.paths.executions) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM executions WHERE workflow = ?", (workflow,)
                ).fetchone()[0]
            )


class AwsHarness(Harness):
    name = "aws"

    def __init__(self, client: Callable[[str], Any], endpoint: str, session: Any = None) -> None:
        """``session`` (a boto3 session) builds the app's clients, e.g. one carrying the
        event hooks of `faults.FaultInjector`; ``client`` builds the test's own."""
        from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore

        tag = uuid.uuid4().hex[:10]
        self.prefix = f"t{tag}-"
        self.sfn, self.sqs = client("stepfunctions"), client("sqs")
        DynamoDbStateStore.create_table(client("dynamodb"), f"{self.prefix}state")
        bucket = f"cf-{tag}"
        client("s3").create_bucket(Bucket=bucket)
        dlq = self.sqs.create_queue(QueueName=f"{self.prefix}dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
        queue = self.sqs.create_queue(
            QueueName=f"{self.prefix}process",
            Attributes={
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 5}
                )
            },
        )["QueueUrl"]
        self.logs = client("logs")
        self.log_group = f"{self.prefix}workflow-event-metrics"  # as Cirrus's template names it
        self.logs.create_log_group(logGroupName=self.log_group)
        sns = client("sns")
        topics = {
            kind: sns.create_topic(Name=f"{self.prefix}{kind}")["TopicArn"]
            for kind in ("events", "publish")
        }
        self.taps = {kind: self._tap(sns, arn, kind) for kind, arn in topics.items()}
        for name, definition in (
            ("test-workflow1", PASS),
            ("publish-only", PASS),
            ("wf-fail", FAIL),
        ):
            self.sfn.create_state_machine(
                name=f"{self.prefix}{name}",
                definition=json.dumps(definition),
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
            )
        self.base_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.prefix}"
        settings = Settings.model_validate(
            {
                "backend": "aws",
                "aws": {
                    "region": REGION,
                    "endpoint_url": endpoint,
                    "state_db": f"{self.prefix}state",
                    "payload_bucket": bucket,
                    "base_workflow_arn": self.base_arn,
                    "process_queue_url": queue,
                    "publish_topic_arn": topics["publish"],
                    "workflow_event_topic_arn": topics["events"],
                    "workflow_log_group": self.log_group,
                },
            }
        )
        if session is None:
            app = build_app(settings)
        else:
            backends = build_aws(settings, session)
            app = App(
                settings,
                backends,
                Enqueuer(backends.queue, backends.store),
                Processor(backends),
                StateUpdater(backends),
            )
        super().__init__(app)
        self.applied: set[str] = set()

    def _tap(self, sns: Any, topic_arn: str, kind: str) -> str:
        url: str = self.sqs.create_queue(QueueName=f"{self.prefix}tap-{kind}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"])
        return url

    def tap_messages(self, kind: str) -> list[dict[str, Any]]:
        """Every SNS notification delivered to the tap queue of a topic since the last call."""
        messages = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.taps[kind], MaxNumberOfMessages=10
        ).get("Messages", []):
            messages += [json.loads(m["Body"]) for m in batch]
            self.sqs.delete_message_batch(
                QueueUrl=self.taps[kind],
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
        return messages

    def event_types(self) -> list[str]:
        return [json.loads(m["Message"])["event_type"] for m in self.tap_messages("events")]

    def _arns(self) -> list[str]:
        arns = []
        for workflow in MACHINES:
            listed = self.sfn.list_executions(stateMachineArn=f"{self.base_arn}{workflow}")
            arns += [e["executionArn"] for e in listed["executions"]]
        return arns

    def executions(self, workflow: str) -> int:
        listed = self.sfn.list_executions(stateMachineArn=f"{self.base_arn}{workflow}")
        return len(listed["executions"])

    def outcomes(self) -> list[ExecutionOutcome]:
        outcomes = []
        for arn in self._arns():
            if arn in self.applied:
                continue
            deadline = time.monotonic() + 15
            while (outcome := self.b.runner.describe(arn)) is None:
                assert time.monotonic() < deadline, f"execution {arn} did not finish"
                time.sleep(0.05)
            self.applied.add(arn)
            outcomes.append(outcome)
        return outcomes


@pytest.fixture(params=["local", pytest.param("aws", marks=pytest.mark.aws)])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        h: Harness = LocalHarness(tmp_path / "cirrus-feed")
    else:
        endpoint: str = request.getfixturevalue("aws_endpoint")
        make: Callable[[str], Any] = request.getfixturevalue("make_aws_client")
        h = AwsHarness(make, endpoint)
    yield h
    h.app.close()


def outcomes_of(report: StageReport) -> list[str]:
    return [r.outcome.value for r in report.results]


def by_id(report: StageReport) -> dict[str | None, str]:
    return {r.payload_id: r.outcome.value for r in report.results}


__all__: Sequence[str] = ["Harness", "by_id", "make_payload", "outcomes_of", "payload_id"]
