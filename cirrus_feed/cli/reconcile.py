"""``cirrus-feed reconcile NAME``: which of a feeder's source items did not make it.

NDJSON gaps on stdout, a summary on stderr; exit 1 when there are gaps (with ``--fix``:
when any is left unfixed), 0 when none. The logic is `cirrus_feed.feeding.reconcile`'s.
Registered on the main group by `cirrus_feed.cli.main`.
"""

from __future__ import annotations

import json
import sys

import click

from cirrus_feed.cli.feeds import _when, run_json
from cirrus_feed.cli.main import Context, _note, cli, pass_context
from cirrus_feed.feeding.reconcile import Gap, catalog_for, reconcile


@cli.command("reconcile")
@click.argument("name")
@click.option("--since", help="Start of the window (ISO datetime; default: the feeder's).")
@click.option("--until", help="End of the window (ISO datetime, exclusive; default: now).")
@click.option("--fix", is_flag=True, help="Re-enqueue the missing and failed ones (paced).")
@pass_context
def reconcile_command(
    ctx: Context, /, name: str, since: str | None, until: str | None, fix: bool
) -> None:
    """Compare feeder NAME's source with the state DB and the output catalog (when the
    feeder's `reconcile:` setting names one): never fed, fed but not SUCCEEDED, SUCCEEDED
    but not in the catalog."""
    if name not in ctx.settings.feeders:
        known = ", ".join(sorted(ctx.settings.feeders)) or "none configured"
        raise click.BadParameter(f"no feeder '{name}' in the config ({known})", param_hint="NAME")
    app = ctx.with_feeders([name])
    feeder = app.feeders[name]
    start, end = _when(since, "--since"), _when(until, "--until")
    if start is not None and end is not None and start >= end:
        raise click.BadParameter(f"{since} is not before --until {until}", param_hint="--since")
    unfixed = 0

    def show(gap: Gap) -> None:
        nonlocal unfixed
        unfixed += not gap.fixable
        click.echo(json.dumps(gap.to_json()))

    result = reconcile(
        app, name, feeder, since=start, until=end, catalog=catalog_for(feeder), fix=fix, on_gap=show
    )
    counts = result.counts
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if n) or "empty source"
    _note(f"{name}: {summary}", counts=dict(counts))
    if result.fix is not None:
        run = result.fix.run
        fixed = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items()) if n) or "nothing"
        _note(f"{run.feeder}: {run.status}: {fixed}", run=run_json(run))
        if not result.fix.ok or unfixed:
            sys.exit(1)
        return
    if result.gaps:
        sys.exit(1)
