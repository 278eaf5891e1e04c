"""Mechanisms every layer shares, one copy each: the clock, durations, S3 URIs, retries,
batching, entry-point registries, reading JSON records from bytes, and the classification of
AWS errors. Imports nothing else
of cirrus_feed but `errors` (`aws_errors` is the one module here that imports botocore)."""
