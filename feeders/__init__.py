"""Feeder plugins, one subpackage per source, registered under `cirrus_feed.feeders`."""
