"""The `events` feeder: SNS/SQS/S3/EventBridge messages, mapped to items."""
