"""The template's building blocks: a function with its role and log group, a queue with
its dead-letter queue, an event source mapping, a schedule. Values are CloudFormation JSON."""

from __future__ import annotations

import json
from typing import Any

from cirrus_feed.deploy import policies
from cirrus_feed.deploy.policies import NO_VALUE, Json

RUNTIME = "python3.11"
HANDLERS = "cirrus_feed.lambdas."
MAX_RECEIVES = 5  # then the message goes to the dead-letter queue
DLQ_RETENTION = 1209600  # 14 days, SQS's maximum: time to look at what failed


def cirrus_environment(*, topics: bool) -> Json:
    """Cirrus's own variables (`cirrus_feed.config.CIRRUS_ENV`): they select the aws backend.
    ``topics``: also the topics and metric log group (the stages announce; feeders do not)."""
    env: Json = {
        "CIRRUS_STATE_DB": {"Ref": "StateTableName"},
        "CIRRUS_PAYLOAD_BUCKET": {"Ref": "PayloadBucket"},
        "CIRRUS_PAYLOAD_ROOT_PREFIX": {"Ref": "PayloadRootPrefix"},
        "CIRRUS_BASE_WORKFLOW_ARN": {"Ref": "BaseWorkflowArn"},
        "CIRRUS_PROCESS_QUEUE_URL": {"Ref": "ProcessQueueUrl"},
    }
    if topics:
        for var, param, cond in (
            ("CIRRUS_PUBLISH_TOPIC_ARN", "PublishTopicArn", "HasPublishTopic"),
            ("CIRRUS_WORKFLOW_EVENT_TOPIC_ARN", "WorkflowEventTopicArn", "HasWorkflowEventTopic"),
            ("CIRRUS_WORKFLOW_LOG_GROUP", "WorkflowLogGroup", "HasWorkflowLogGroup"),
        ):
            env[var] = {"Fn::If": [cond, {"Ref": param}, NO_VALUE]}
    return env


def feeder_environment(feeder: str | None = None) -> Json:
    """A feeder function's: Cirrus's variables, the feed store and the config parameter;
    ``feeder`` names the push target of an events function."""
    env = cirrus_environment(topics=False)
    env["CIRRUS_FEED_FEED_TABLE"] = {"Ref": "FeedTable"}
    env["CIRRUS_FEED_CONFIG_PARAMETER"] = {"Ref": "FeederConfigParameterName"}
    if feeder is not None:
        env["CIRRUS_FEED_EVENTS_FEEDER"] = feeder
    return env


def function(
    prefix: str,
    handler: str,
    environment: Json,
    statements: list[Json],
    *,
    timeout: Any,
    description: str,
    condition: str | None = None,
    concurrency: int | None = None,
) -> dict[str, Json]:
    """``<prefix>Function``, its ``<prefix>Role`` and ``<prefix>Logs`` (the log group the
    function writes to, so its role can name it)."""
    logs, role, name = f"{prefix}Logs", f"{prefix}Role", f"{prefix}Function"
    properties: Json = {
        "Description": description,
        "Runtime": RUNTIME,
        "Handler": HANDLERS + handler,
        "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
        "Role": {"Fn::GetAtt": [role, "Arn"]},
        "Architectures": [{"Ref": "Architecture"}],
        "MemorySize": {"Ref": "MemorySize"},
        "Timeout": timeout,
        "Environment": {"Variables": environment},
        "LoggingConfig": {"LogGroup": {"Ref": logs}, "LogFormat": "Text"},
    }
    if concurrency is not None:
        properties["ReservedConcurrentExecutions"] = concurrency
    resources: dict[str, Json] = {
        logs: {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {"RetentionInDays": {"Ref": "LogRetentionDays"}},
        },
        role: policies.role(name, "lambda.amazonaws.com", [policies.own_logs(logs), *statements]),
        name: {"Type": "AWS::Lambda::Function", "Properties": properties},
    }
    if condition is not None:
        for resource in resources.values():
            resource["Condition"] = condition
    return resources


def queue(prefix: str, visibility: int, *, condition: str | None = None) -> dict[str, Json]:
    """``<prefix>Queue`` with its ``<prefix>DeadLetterQueue`` (after `MAX_RECEIVES`)."""
    dlq = f"{prefix}DeadLetterQueue"
    resources: dict[str, Json] = {
        dlq: {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": DLQ_RETENTION, "SqsManagedSseEnabled": True},
        },
        f"{prefix}Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": visibility,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                    "maxReceiveCount": MAX_RECEIVES,
                },
            },
        },
    }
    if condition is not None:
        for resource in resources.values():
            resource["Condition"] = condition
    return resources


def mapping(function_name: str, queue_arn: Any, *, condition: str | None = None) -> Json:
    """An SQS event source mapping reporting per-message failures (``batchItemFailures``)."""
    resource: Json = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": queue_arn,
            "FunctionName": {"Ref": function_name},
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    }
    if condition is not None:
        resource["Condition"] = condition
    return resource


def schedule(feeder: str, function_name: str, when: Json) -> Json:
    """An EventBridge Scheduler schedule invoking ``function_name`` with ``{"feeder": ...}``."""
    return {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "Description": f"cirrus-feed feeder {feeder}",
            "State": "ENABLED",
            "ScheduleExpression": when["ScheduleExpression"],
            "ScheduleExpressionTimezone": when["ScheduleExpressionTimezone"],
            "FlexibleTimeWindow": when["FlexibleTimeWindow"],
            "Target": {
                "Arn": {"Fn::GetAtt": [function_name, "Arn"]},
                "RoleArn": {"Fn::GetAtt": ["SchedulerRole", "Arn"]},
                "Input": json.dumps({"feeder": feeder}),
                "RetryPolicy": when["RetryPolicy"],
            },
        },
    }
