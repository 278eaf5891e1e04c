"""AWS adapters of the ports: DynamoDB, SQS, S3, Step Functions, SNS and CloudWatch Logs.

The only package (besides S3-reading feeders) that imports boto3/botocore. Clients are built
by `clients.make_client` and injected; botocore errors are translated by `clients.translate`
into the `cirrus_feed.errors` tree.

| port             | adapter                                       |
| ---------------- | --------------------------------------------- |
| `StateStore`     | `dynamodb.DynamoDbStateStore`                 |
| `PayloadQueue`   | `sqs.SqsPayloadQueue`                         |
| `PayloadStore`   | `s3.S3PayloadStore`                           |
| `WorkflowRunner` | `stepfunctions.StepFunctionsWorkflowRunner`   |
| `Notifier`       | `sns.SnsNotifier`                             |
| `MetricLog`      | `cloudwatch_logs.CloudWatchMetricLog`         |
| `DeadLetterQueue` | `sqs_dead_letters.SqsDeadLetterQueue`         |
| `InvalidStore`   | `s3_invalid.S3InvalidStore`                   |
"""
