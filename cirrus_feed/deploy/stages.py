"""The ``ReplaceStages`` shape: cirrus-feed's ``process`` and ``update-state`` in place of
Cirrus's, each function behind an SQS queue, and the EventBridge rule that sends the
workflows' status changes to the update-state queue."""

from __future__ import annotations

from cirrus_feed.deploy import policies, resources
from cirrus_feed.deploy.policies import Json

REPLACE = "ReplaceStages"
STAGE_TIMEOUT = 60  # below Cirrus's process queue visibility (180 s), as Lambda requires
# The outcomes update-state records (cirrus_feed.pipeline.execution_events).
FINAL_STATUSES = ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"]
TOPICS = [("AnnounceWorkflowEvents", "HasWorkflowEventTopic", "WorkflowEventTopicArn")]
ALL_TOPICS = [*TOPICS, ("PublishItems", "HasPublishTopic", "PublishTopicArn")]


def stage_resources(allowed_buckets: list[str]) -> dict[str, Json]:
    """Every resource of the replacing shape, each under the ``ReplaceStages`` condition."""
    update_queue = {"Fn::GetAtt": ["UpdateStateQueue", "Arn"]}
    out = resources.function(
        "Process",
        "process_handler",
        resources.cirrus_environment(topics=True),
        [
            policies.consume("ConsumeProcessQueue", {"Ref": "ProcessQueueArn"}),
            policies.write_state(),
            policies.payloads(),
            *policies.read_allowed(allowed_buckets),
            policies.start_workflows(),
            policies.describe_executions(),
            *policies.announce(TOPICS),
            policies.workflow_metrics(),
        ],
        timeout=STAGE_TIMEOUT,
        description="cirrus-feed process (replaces Cirrus's)",
        condition=REPLACE,
    )
    out["ProcessMapping"] = resources.mapping(
        "ProcessFunction", {"Ref": "ProcessQueueArn"}, condition=REPLACE
    )
    out |= resources.queue("UpdateState", 6 * STAGE_TIMEOUT, condition=REPLACE)
    out |= resources.function(
        "UpdateState",
        "update_state_handler",
        resources.cirrus_environment(topics=True),
        [
            policies.consume("ConsumeUpdateStateQueue", update_queue),
            policies.write_state(),
            policies.payloads(),
            *policies.read_allowed(allowed_buckets),
            policies.describe_executions(),
            policies.statement("Chain", ["sqs:SendMessage"], [{"Ref": "ProcessQueueArn"}]),
            *policies.announce(ALL_TOPICS),
            policies.workflow_metrics(),
        ],
        timeout=STAGE_TIMEOUT,
        description="cirrus-feed update-state (replaces Cirrus's)",
        condition=REPLACE,
    )
    out["UpdateStateMapping"] = resources.mapping(
        "UpdateStateFunction", update_queue, condition=REPLACE
    )
    out["WorkflowStatusRule"] = _status_rule(update_queue)
    out["UpdateStateQueuePolicy"] = _rule_may_send(update_queue)
    return out


def status_pattern() -> Json:
    """Final status changes of the deployment's state machines (base ARN prefix)."""
    return {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "status": FINAL_STATUSES,
            "stateMachineArn": [{"prefix": {"Ref": "BaseWorkflowArn"}}],
        },
    }


def _status_rule(queue_arn: Json) -> Json:
    return {
        "Type": "AWS::Events::Rule",
        "Condition": REPLACE,
        "Properties": {
            "Description": "cirrus-feed: workflow outcomes to the update-state queue",
            "State": "ENABLED",
            "EventPattern": status_pattern(),
            "Targets": [{"Id": "update-state", "Arn": queue_arn}],
        },
    }


def _rule_may_send(queue_arn: Json) -> Json:
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Condition": REPLACE,
        "Properties": {
            "Queues": [{"Ref": "UpdateStateQueue"}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "StatusRuleSends",
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": queue_arn,
                        "Condition": {
                            "ArnEquals": {
                                "aws:SourceArn": {"Fn::GetAtt": ["WorkflowStatusRule", "Arn"]}
                            }
                        },
                    }
                ],
            },
        },
    }
