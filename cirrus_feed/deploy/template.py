"""`render_template`: the CloudFormation template of a cirrus-feed deployment for a feeder
config, in two shapes chosen by the ``ReplaceCirrusStages`` parameter:

* next to an existing Cirrus (default): the feed-store table, the feeder config as an SSM
  parameter, per scheduled feeder a function (``feed_handler``) and an EventBridge Scheduler
  schedule, per push feeder (``events``) a queue + dead-letter queue and a function
  (``events_handler``) on it;
* ``ReplaceCirrusStages=true`` adds ``process`` and ``update-state`` functions on Cirrus's
  process queue and on a new update-state queue fed by an EventBridge rule on the workflows'
  status changes (turn Cirrus's own off: docs/deploy-aws.md).

The output is deterministic (sorted JSON): the example under ``deploy/`` is checked to be
exactly what this renders.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cirrus_feed.app import feeder_configs
from cirrus_feed.config import Settings
from cirrus_feed.deploy import policies, resources
from cirrus_feed.deploy.policies import Json
from cirrus_feed.deploy.schedules import schedule_properties
from cirrus_feed.deploy.stages import stage_resources
from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.push import PushTarget
from cirrus_feed.support.s3uri import parse_s3_uri

# SSM parameter tiers' value limits (Standard is free; Advanced costs per parameter-month).
SSM_STANDARD_BYTES, SSM_ADVANCED_BYTES = 4096, 8192
EVENTS_TIMEOUT = 60  # seconds; the events queue's visibility is six times it (AWS's advice)

PARAMETERS: dict[str, Json] = {
    "CodeBucket": {"Type": "String", "Description": "S3 bucket of the Lambda zip"},
    "CodeKey": {"Type": "String", "Description": "S3 key of the Lambda zip (cirrus-feed package)"},
    "Architecture": {
        "Type": "String",
        "Default": "x86_64",
        "AllowedValues": ["x86_64", "arm64"],
        "Description": "What the zip was built for (manylinux2014 x86_64 or aarch64)",
    },
    "MemorySize": {"Type": "Number", "Default": 1024, "MinValue": 128, "MaxValue": 10240},
    "FeederTimeout": {
        "Type": "Number",
        "Default": 300,
        "MinValue": 30,
        "MaxValue": 900,
        "Description": "Seconds a scheduled feeder runs before it checkpoints and stops",
    },
    "LogRetentionDays": {
        "Type": "Number",
        "Default": 30,
        "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 180, 365, 731, 1827, 3653],
    },
    "StateTableName": {"Type": "String", "Description": "Cirrus's state table (CIRRUS_STATE_DB)"},
    "PayloadBucket": {"Type": "String", "Description": "Cirrus's payload bucket"},
    "PayloadRootPrefix": {
        "Type": "String",
        "Default": "cirrus",
        "AllowedPattern": "^[^/].*[^/]$|^[^/]$",
        "Description": "Key prefix of Cirrus's payloads in the bucket (no leading/trailing /)",
    },
    "ProcessQueueUrl": {"Type": "String", "Description": "Cirrus's process queue URL"},
    "ProcessQueueArn": {"Type": "String", "Description": "Cirrus's process queue ARN"},
    "BaseWorkflowArn": {
        "Type": "String",
        "AllowedPattern": "^arn:[^:]+:states:[^:]+:[0-9]{12}:stateMachine:.*$",
        "Description": "State machine ARN prefix; the workflow name is appended",
    },
    "WorkflowEventTopicArn": {"Type": "String", "Default": "", "Description": "'' = none"},
    "PublishTopicArn": {"Type": "String", "Default": "", "Description": "'' = none"},
    "WorkflowLogGroup": {"Type": "String", "Default": "", "Description": "'' = none"},
    "FeederConfigParameterName": {
        "Type": "String",
        "Default": "/cirrus-feed/feeders",
        "AllowedPattern": "^/[A-Za-z0-9_.\\-/]+$",
        "Description": "SSM parameter the template stores the feeder config in",
    },
    "EventSourceArns": {
        "Type": "CommaDelimitedList",
        "Default": "",
        "Description": "S3 buckets / SNS topics allowed to send to the events queues",
    },
    "ReplaceCirrusStages": {
        "Type": "String",
        "Default": "false",
        "AllowedValues": ["false", "true"],
        "Description": "true: also deploy process and update-state (turn Cirrus's off)",
    },
}

CONDITIONS: dict[str, Json] = {
    "ReplaceStages": {"Fn::Equals": [{"Ref": "ReplaceCirrusStages"}, "true"]},
    "HasPublishTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "PublishTopicArn"}, ""]}]},
    "HasWorkflowEventTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkflowEventTopicArn"}, ""]}]},
    "HasWorkflowLogGroup": {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkflowLogGroup"}, ""]}]},
    "HasEventSources": {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "EventSourceArns"}]}, ""]}]
    },
}


def render_template(settings: Settings, registry: FeederRegistry | None = None) -> Json:
    """The template for the feeders of ``settings`` (validated by their types first).

    Raises:
        ConfigError: a feeder config is invalid, its schedule cannot be said in EventBridge
            Scheduler terms, two feeder names map to one resource name, or the stored
            config is over SSM's 8 KiB.
    """
    configs = feeder_configs(settings, registry or FeederRegistry())
    out: dict[str, Json] = {
        "FeedTable": _feed_table(),
        "FeederConfig": _config_parameter(settings),
    }
    scheduled: list[str] = []
    pushed: list[str] = []
    unscheduled: list[str] = []
    ids: dict[str, str] = {}  # logical id → feeder name
    for name, (cls, config) in sorted(configs.items()):
        logical = _logical_id(name)
        if logical in ids:
            raise ConfigError(
                f"{settings.source}: feeders {ids[logical]!r} and {name!r} both become "
                f"{logical!r} in the template: rename one"
            )
        ids[logical] = name
        if issubclass(cls, PushTarget):
            out |= _events_feeder(name, logical)
            pushed.append(name)
        elif config.schedule is not None:
            when = schedule_properties(name, config.schedule)
            out |= _scheduled_feeder(name, logical, _source_buckets(settings.feeders[name]))
            out[f"Feed{logical}Schedule"] = resources.schedule(name, f"Feed{logical}Function", when)
            scheduled.append(name)
        else:
            unscheduled.append(name)
    if scheduled:
        out["SchedulerRole"] = _scheduler_role(_function_ids(out))
    out |= stage_resources(settings.aws.allowed_buckets)
    # cfn-lint warns of unused parameters and conditions: leave out what no feeder needs.
    unused = set() if scheduled else {"FeederTimeout"}
    unused |= set() if pushed else {"EventSourceArns", "HasEventSources"}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "cirrus-feed feeders next to a Cirrus deployment (docs/deploy-aws.md)",
        "Metadata": {
            "cirrus-feed": {
                "scheduled": scheduled,
                "pushed": pushed,
                "not deployed (no schedule)": unscheduled,
            }
        },
        "Parameters": {k: v for k, v in PARAMETERS.items() if k not in unused},
        "Conditions": {k: v for k, v in CONDITIONS.items() if k not in unused},
        "Resources": out,
        "Outputs": _outputs(pushed, ids),
    }


def dumps(template: Json) -> str:
    """The template as the committed JSON text."""
    return json.dumps(template, indent=2, sort_keys=True) + "\n"


def stored_config(settings: Settings) -> Json:
    """What the SSM parameter holds: the feeders and what they need that the environment
    does not give (the backend comes from Cirrus's variables, so it is left out)."""
    stored: Json = {"feeders": settings.feeders}
    if settings.events_feeder is not None:
        stored["events_feeder"] = settings.events_feeder
    if settings.aws.allowed_buckets:
        stored["aws"] = {"allowed_buckets": settings.aws.allowed_buckets}
    return stored


def _logical_id(feeder: str) -> str:
    """``earth-search-s2`` → ``EarthSearchS2``: CloudFormation ids are alphanumeric."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", feeder))


def _feed_table() -> Json:
    # Retained on delete and replace: runs, cursors and the seen cache outlive a rollback.
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    }


def _config_parameter(settings: Settings) -> Json:
    text = json.dumps(stored_config(settings), sort_keys=True, separators=(",", ":"))
    size = len(text.encode())
    if size > SSM_ADVANCED_BYTES:
        raise ConfigError(
            f"{settings.source}: the stored feeder config is {size} bytes, over SSM's "
            f"{SSM_ADVANCED_BYTES}: split the feeders over two stacks"
        )
    return {
        "Type": "AWS::SSM::Parameter",
        "Properties": {
            "Name": {"Ref": "FeederConfigParameterName"},
            "Description": "cirrus-feed feeder config (CIRRUS_FEED_CONFIG_PARAMETER)",
            "Type": "String",
            "Tier": "Standard" if size <= SSM_STANDARD_BYTES else "Advanced",
            "Value": text,
        },
    }


def _common_feeder_statements() -> list[Json]:
    return [
        policies.read_config(),
        policies.feed_store(),
        policies.read_state(),
        policies.payloads(),
        policies.enqueue(),
    ]


def _scheduled_feeder(name: str, logical: str, buckets: list[str]) -> dict[str, Json]:
    # One instance at a time: two runs of one feeder would race for its cursor.
    return resources.function(
        f"Feed{logical}",
        "feed_handler",
        resources.feeder_environment(),
        [*_common_feeder_statements(), *policies.read_sources(buckets)],
        timeout={"Ref": "FeederTimeout"},
        description=f"cirrus-feed scheduled feeder {name}",
        concurrency=1,
    )


def _events_feeder(name: str, logical: str) -> dict[str, Json]:
    prefix = f"Events{logical}"
    queue_arn = {"Fn::GetAtt": [f"{prefix}Queue", "Arn"]}
    out = resources.queue(prefix, 6 * EVENTS_TIMEOUT)
    out |= resources.function(
        prefix,
        "events_handler",
        resources.feeder_environment(name),
        [*_common_feeder_statements(), policies.consume("ConsumeEvents", queue_arn)],
        timeout=EVENTS_TIMEOUT,
        description=f"cirrus-feed events feeder {name}",
    )
    out[f"{prefix}Mapping"] = resources.mapping(f"{prefix}Function", queue_arn)
    out[f"{prefix}QueuePolicy"] = _events_queue_policy(prefix)
    return out


def _events_queue_policy(prefix: str) -> Json:
    """S3 notifications and SNS subscriptions from the listed sources may send."""
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Condition": "HasEventSources",
        "Properties": {
            "Queues": [{"Ref": f"{prefix}Queue"}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "EventSourcesSend",
                        "Effect": "Allow",
                        "Principal": {"Service": ["s3.amazonaws.com", "sns.amazonaws.com"]},
                        "Action": "sqs:SendMessage",
                        "Resource": {"Fn::GetAtt": [f"{prefix}Queue", "Arn"]},
                        "Condition": {"ArnLike": {"aws:SourceArn": {"Ref": "EventSourceArns"}}},
                    }
                ],
            },
        },
    }


def _source_buckets(raw: dict[str, Any]) -> list[str]:
    """The S3 buckets an s3-listing (``bucket``) or s3-inventory (``manifest`` /
    ``destination``) feeder reads, from its raw settings."""
    buckets = {raw["bucket"]} if isinstance(raw.get("bucket"), str) else set()
    for key in ("manifest", "destination", "since_manifest"):
        url = raw.get(key)
        if isinstance(url, str) and url.startswith("s3://"):
            buckets.add(parse_s3_uri(url, prefix=True).bucket)
    return sorted(buckets)


def _function_ids(out: dict[str, Json]) -> list[str]:
    return sorted(k for k in out if k.startswith("Feed") and k.endswith("Function"))


def _scheduler_role(functions: list[str]) -> Json:
    invoke = policies.statement(
        "InvokeScheduledFeeders",
        ["lambda:InvokeFunction"],
        [{"Fn::GetAtt": [f, "Arn"]} for f in functions],
    )
    return policies.role("invoke-feeders", "scheduler.amazonaws.com", [invoke], same_account=True)


def _outputs(pushed: list[str], ids: dict[str, str]) -> dict[str, Json]:
    by_name = {name: logical for logical, name in ids.items()}
    out: dict[str, Json] = {
        "FeedTableName": {"Value": {"Ref": "FeedTable"}},
        "FeederConfigParameter": {"Value": {"Ref": "FeederConfig"}},
        "UpdateStateQueueUrl": {"Condition": "ReplaceStages", "Value": {"Ref": "UpdateStateQueue"}},
    }
    for name in pushed:
        prefix = f"Events{by_name[name]}"
        out[f"{prefix}QueueArn"] = {
            "Description": f"send S3 notifications / SNS messages for {name} here",
            "Value": {"Fn::GetAtt": [f"{prefix}Queue", "Arn"]},
        }
        out[f"{prefix}QueueUrl"] = {"Value": {"Ref": f"{prefix}Queue"}}
    return out
