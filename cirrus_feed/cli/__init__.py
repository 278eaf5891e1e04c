"""The ``cirrus-feed`` command line: parse, load settings, call the app; no logic here."""

from cirrus_feed.cli.main import main

__all__ = ["main"]
