"""The S3 feeders, `s3-listing` and `s3-inventory`, and the S3 object model they share."""
