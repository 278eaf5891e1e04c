"""A deployed stack on moto's server, and the Lambda service's part played by the test:
read each function's configuration back, run its handler in-process with exactly that
environment, and deliver queue messages the way an event source mapping does."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from cirrus_feed import lambdas

REGION = "us-east-1"
# Resource types moto's CloudFormation does not implement: it skips them with a warning.
# `Stack.create_schedules` creates the schedules through the Scheduler API instead.
SKIPPED_BY_MOTO = ("AWS::Scheduler::Schedule", "AWS::SQS::QueuePolicy")


class LambdaContext:
    """What a handler reads from Lambda's context object: the time left."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Stack:
    """One created stack: its resources by logical id, its functions' configurations."""

    name: str
    template: dict[str, Any]
    client: Callable[[str], Any]
    endpoint: str
    physical: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        client: Callable[[str], Any],
        endpoint: str,
        name: str,
        template: dict[str, Any],
        parameters: dict[str, str],
    ) -> Stack:
        cfn = client("cloudformation")
        # moto warns (in its server thread, on every read of the stack) for SKIPPED_BY_MOTO.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Tried to parse AWS::(Scheduler|SQS::Q)")
            cfn.create_stack(
                StackName=name,
                TemplateBody=json.dumps(template),
                Parameters=[
                    {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
                ],
                Capabilities=["CAPABILITY_IAM"],
            )
            status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
            resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
        assert status == "CREATE_COMPLETE", status
        stack = cls(name, template, client, endpoint)
        for resource in resources:
            if "PhysicalResourceId" in resource:  # not for the types moto skipped
                stack.physical[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
        # What is missing is what moto skips, or what a condition left out.
        declared = template["Resources"]
        missing = {
            logical
            for logical in set(declared) - set(stack.physical)
            if declared[logical]["Type"] not in SKIPPED_BY_MOTO
            and "Condition" not in declared[logical]
        }
        assert not missing, f"not created: {sorted(missing)}"
        return stack

    def of_type(self, resource_type: str) -> list[str]:
        return sorted(
            logical
            for logical, resource in self.template["Resources"].items()
            if resource["Type"] == resource_type
        )

    def function(self, logical: str) -> dict[str, Any]:
        config: dict[str, Any] = self.client("lambda").get_function_configuration(
            FunctionName=self.physical[logical]
        )
        return config

    def queue_url(self, logical: str) -> str:
        return self.physical[logical]  # an SQS queue's physical id is its URL

    def queue_arn(self, logical: str) -> str:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url(logical), AttributeNames=["QueueArn"]
        )
        arn: str = attributes["Attributes"]["QueueArn"]
        return arn

    def mappings(self, function: str) -> list[dict[str, Any]]:
        listed = self.client("lambda").list_event_source_mappings(
            FunctionName=self.physical[function]
        )
        found: list[dict[str, Any]] = listed["EventSourceMappings"]
        return found

    def take_over_mappings(self) -> list[dict[str, Any]]:
        """Disable every event source mapping (moto would run the function in Docker on each
        send) and return them: the test delivers their queues' messages itself."""
        mappings = []
        for function in self.of_type("AWS::Lambda::Function"):
            if function not in self.physical:  # left out by a condition
                continue
            for mapping in self.mappings(function):
                self.client("lambda").update_event_source_mapping(
                    UUID=mapping["UUID"], Enabled=False
                )
                mappings.append(mapping)
        return mappings

    def create_schedules(self) -> dict[str, dict[str, Any]]:
        """The template's schedules, created as written through the Scheduler API (moto's
        CloudFormation skips them), with their targets resolved; read back by logical id."""
        scheduler = self.client("scheduler")
        created = {}
        for logical in self.of_type("AWS::Scheduler::Schedule"):
            properties = self.template["Resources"][logical]["Properties"]
            target = dict(properties["Target"])
            target["Arn"] = self.function(target["Arn"]["Fn::GetAtt"][0])["FunctionArn"]
            role = self.physical[target["RoleArn"]["Fn::GetAtt"][0]]
            target["RoleArn"] = self.client("iam").get_role(RoleName=role)["Role"]["Arn"]
            name = f"{self.name}-{logical}"[:64]
            scheduler.create_schedule(Name=name, **{**properties, "Target": target})
            created[logical] = scheduler.get_schedule(Name=name)
        return created

    @contextmanager
    def runtime(self, logical: str) -> Iterator[dict[str, str]]:
        """The process environment of function ``logical``: its variables as configured, the
        runtime's own, and the SDK's ``AWS_ENDPOINT_URL`` standing in for AWS itself;
        nothing else of cirrus-feed's or Cirrus's."""
        config = self.function(logical)
        env = {
            **config.get("Environment", {}).get("Variables", {}),
            "AWS_LAMBDA_FUNCTION_NAME": config["FunctionName"],
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }
        with pytest.MonkeyPatch.context() as patch:
            for var in list(os.environ):
                if var.startswith(("CIRRUS_", "AWS_ENDPOINT_URL", "AWS_LAMBDA_")):
                    patch.delenv(var)
            for var, value in env.items():
                patch.setenv(var, value)
            lambdas._app.cache_clear()  # a fresh instance: settings read at its cold start
            try:
                yield env
            finally:
                lambdas._app.cache_clear()

    def invoke(self, logical: str, event: dict[str, Any], context: Any = None) -> Any:
        """Run function ``logical``'s configured handler on ``event``, in-process."""
        handler = self.function(logical)["Handler"]
        module, _, name = handler.rpartition(".")
        assert module == lambdas.__name__, handler
        with self.runtime(logical):
            return getattr(lambdas, name)(event, context)

    def deliver(self, queue: str, function: str) -> dict[str, Any]:
        """Receive what is on queue ``queue`` (logical id or URL) and hand it to ``function``
        as its SQS event source mapping would; delete what the handler did not report
        failed. Returns the handler's response."""
        url = self.physical.get(queue, queue)
        sqs = self.client("sqs")
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        assert messages, f"nothing on {queue}"
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn["Attributes"]["QueueArn"],
                    "awsRegion": REGION,
                }
                for m in messages
            ]
        }
        response: dict[str, Any] = self.invoke(function, event)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        return response
