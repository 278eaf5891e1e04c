"""Feeder plugins: one module per source, registered under `cirrus_feed.feeders`."""
