"""``cirrus-feed state list --stuck``: the printing; `cirrus_feed.pipeline.stuck` finds them."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cirrus_feed.cli.main import Context
from cirrus_feed.pipeline.stuck import find_stuck
from cirrus_feed.support.durations import parse_duration

DEFAULT_OLDER_THAN = "1h"


def list_stuck(
    ctx: Context, older_than: str | None, limit: int, as_json: bool, filters: dict[str, Any]
) -> None:
    """Print stuck records (one line or one JSON object each); exit 1 when there are any."""
    refused = [
        f"--{key.replace('_', '-')}"
        for key, value in filters.items()
        if value and key != "collections_workflow"
    ]
    if refused:
        raise click.UsageError(
            f"--stuck lists CLAIMED/PROCESSING records: drop {', '.join(refused)}"
        )
    try:
        age = parse_duration(older_than or DEFAULT_OLDER_THAN)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    if ctx.no_state_yet():
        return
    app = ctx.app
    found = find_stuck(
        app.backends.state,
        app.backends.runner,
        age,
        collections_workflow=filters.get("collections_workflow"),
        clock=app.clock,
    )
    shown = 0
    for stuck in found:
        if as_json:
            click.echo(json.dumps(stuck.to_json()))
        else:
            record = stuck.record
            line = f"{record.state.value:<10} {record.updated}  {record.payload_id}"
            click.echo(f"{line}  {stuck.reason}")
        shown += 1
        if shown >= limit:
            break
    click.echo(f"{shown} stuck (not updated for {older_than or DEFAULT_OLDER_THAN})", err=True)
    if shown:
        sys.exit(1)
