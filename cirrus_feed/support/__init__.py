"""Mechanisms every layer shares, one copy each: the clock, durations, S3 URIs, retries,
entry-point registries. Imports nothing else of cirrus_feed but `errors`."""
