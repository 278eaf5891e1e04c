"""Least-privilege IAM statements for the template's functions, one ``Sid`` per purpose
(docs/deploy-aws.md explains each). Every resource is a named table, queue, topic, bucket
prefix, parameter, log group or state machine prefix of the stack's parameters: no ``*``
action, no ``*`` resource."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]
NO_VALUE = {"Ref": "AWS::NoValue"}

STATE_TABLE = {
    "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}"
    ":table/${StateTableName}"
}
STATE_INDEXES = {
    "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}"
    ":table/${StateTableName}/index/*"
}
PAYLOADS = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${PayloadBucket}/${PayloadRootPrefix}/*"}
CONFIG_PARAMETER = {
    "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
    ":parameter${FeederConfigParameterName}"
}
WORKFLOWS = {"Fn::Sub": "${BaseWorkflowArn}*"}
# arn:...:stateMachine:<prefix> → arn:...:execution:<prefix>*: the executions of those machines.
EXECUTIONS = {
    "Fn::Join": [
        "",
        [
            {
                "Fn::Join": [
                    ":execution:",
                    {"Fn::Split": [":stateMachine:", {"Ref": "BaseWorkflowArn"}]},
                ]
            },
            "*",
        ],
    ]
}
WORKFLOW_LOG_GROUP = {
    "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
    ":log-group:${WorkflowLogGroup}:*"
}


def statement(sid: str, actions: list[str], resources: list[Any]) -> Json:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def when(condition: str, item: Json) -> Json:
    """``item`` only when ``condition`` holds (an optional topic or log group)."""
    return {"Fn::If": [condition, item, NO_VALUE]}


def own_logs(log_group: str) -> Json:
    return statement(
        "WriteOwnLogs",
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        [{"Fn::GetAtt": [log_group, "Arn"]}],
    )


def read_config() -> Json:
    return statement("ReadFeederConfig", ["ssm:GetParameter"], [CONFIG_PARAMETER])


def feed_store() -> Json:
    return statement(
        "FeedStore",
        ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"],
        [{"Fn::GetAtt": ["FeedTable", "Arn"]}],
    )


def read_state() -> Json:
    return statement(
        "ReadState",
        ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"],
        [STATE_TABLE, STATE_INDEXES],
    )


def write_state() -> Json:
    return statement(
        "ClaimAndRecordState",
        ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"],
        [STATE_TABLE],
    )


def payloads() -> Json:
    return statement("Payloads", ["s3:GetObject", "s3:PutObject"], [PAYLOADS])


def enqueue() -> Json:
    return statement(
        "Enqueue",
        ["sqs:SendMessage", "sqs:GetQueueAttributes"],
        [{"Ref": "ProcessQueueArn"}],
    )


def consume(sid: str, queue_arn: Any) -> Json:
    """What the event source mapping needs to poll ``queue_arn`` for the function."""
    return statement(
        sid,
        [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        ],
        [queue_arn],
    )


def read_sources(buckets: list[str]) -> list[Json]:
    """The source buckets of s3-listing / s3-inventory feeders: list them, read objects."""
    if not buckets:
        return []
    arns = [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"} for bucket in buckets]
    objects = [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/*"} for bucket in buckets]
    return [
        statement("ListSources", ["s3:ListBucket"], arns),
        statement("ReadSources", ["s3:GetObject"], objects),
    ]


def read_allowed(buckets: list[str]) -> list[Json]:
    """``aws.allowed_buckets``: payloads given as ``{"url": "s3://..."}`` may live there."""
    if not buckets:
        return []
    objects = [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/*"} for bucket in buckets]
    return [statement("ReadAllowedBuckets", ["s3:GetObject"], objects)]


def start_workflows() -> Json:
    return statement("StartWorkflows", ["states:StartExecution"], [WORKFLOWS])


def describe_executions() -> Json:
    return statement("DescribeExecutions", ["states:DescribeExecution"], [EXECUTIONS])


def announce(topics: list[tuple[str, str, str]]) -> list[Json]:
    """sns:Publish (PublishBatch) to each ``(sid, condition, topic parameter)`` that is set."""
    return [
        when(cond, statement(sid, ["sns:Publish"], [{"Ref": param}])) for sid, cond, param in topics
    ]


def workflow_metrics() -> Json:
    return when(
        "HasWorkflowLogGroup",
        statement(
            "WorkflowMetrics",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [WORKFLOW_LOG_GROUP],
        ),
    )


def role(name: str, service: str, statements: list[Json], *, same_account: bool = False) -> Json:
    """An ``AWS::IAM::Role`` that ``service`` assumes, with ``statements`` inline;
    ``same_account``: only on behalf of this account (the confused-deputy guard Scheduler
    documents)."""
    trust: Json = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if same_account:
        trust["Condition"] = {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
            "Policies": [
                {
                    "PolicyName": name,
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }
