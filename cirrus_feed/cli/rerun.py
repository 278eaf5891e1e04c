"""``cirrus-feed rerun``: re-enqueue stored payloads selected from the state DB, ad hoc.

Builds a feeder of the registered type ``rerun`` from the options (no config entry needed),
wired by the app like a configured one, and runs it through `FeedRunner` as the feed ``rerun:<cw>``:
paced, recorded as a feed run, resumable (the same selection continues where a stopped run
left off). Registered on the main group by `cirrus_feed.cli.main`.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import click
from pydantic import ValidationError

from cirrus_feed.cli.feeds import Progress, exit_for, expected_total, run_json
from cirrus_feed.cli.main import Context, cli, pass_context
from cirrus_feed.config import describe_validation_error
from cirrus_feed.errors import PluginError
from cirrus_feed.feeding.contract import FeedRequest, Previewable
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.model.states import State

RERUN_TYPE = "rerun"  # the feeder type this command runs, found like any plugin

_STATES = click.Choice([s.value for s in State] + ["ANY"], case_sensitive=False)


def _override(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg})", param_hint="--process-override") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--process-override")
    return parsed


@cli.command()
@click.option("--collections-workflow", "-c", required=True, help="e.g. sentinel-2-l2a_cog")
@click.option("--state", default="FAILED", show_default=True, type=_STATES, help="ANY = all.")
@click.option("--since", help="Only records changed in the last 7d / 24h / 1h30m.")
@click.option("--error-prefix", help="Only records whose last_error starts with this.")
@click.option("--limit", type=click.IntRange(min=1), help="Rerun at most this many.")
@click.option("--process-override", help="JSON object deep-merged into process[0].")
@click.option("--max-rate", type=click.FloatRange(min=0, min_open=True), help="Payloads/s.")
@click.option("--max-in-flight", type=click.IntRange(min=1), help="Queued+running cap.")
@click.option("--dry-run", is_flag=True, help="Print the count and the first ids; send none.")
@click.option("--show", type=click.IntRange(min=0), default=10, show_default=True,
              help="With --dry-run: how many ids to print.")  # fmt: skip
@click.option("--restart", is_flag=True, help="Forget where a stopped rerun got to.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def rerun(
    ctx: Context,
    /,
    collections_workflow: str,
    state: str,
    since: str | None,
    error_prefix: str | None,
    limit: int | None,
    process_override: str | None,
    max_rate: float | None,
    max_in_flight: int | None,
    dry_run: bool,
    show: int,
    restart: bool,
    as_json: bool,
) -> None:
    """Re-enqueue the stored input payloads of matching records, with replace set."""
    try:
        feeder_type = FeederRegistry().load(RERUN_TYPE)
    except PluginError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        config = feeder_type.Config.model_validate(
            {
                "type": RERUN_TYPE,
                "collections_workflow": collections_workflow,
                "state": state,
                "since": since,
                "error_prefix": error_prefix,
                "limit": limit,
                "process_override": _override(process_override),
                "max_rate": max_rate,
                "max_in_flight": max_in_flight,
            }
        )
    except ValidationError as exc:
        raise click.UsageError(describe_validation_error(exc)) from exc
    name = f"rerun:{collections_workflow}"
    app = ctx.app
    feeder = app.build_feeder(name, feeder_type, config)
    if dry_run:
        if not isinstance(feeder, Previewable):
            raise click.UsageError(f"feeder type '{RERUN_TYPE}' cannot preview (--dry-run)")
        total, ids = feeder.preview(show)
        if as_json:
            click.echo(json.dumps({"count": total, "first": ids}))
        else:
            click.echo(f"{name}: {total} selected" + (f"; first {len(ids)}:" if ids else ""))
            for payload_id in ids:
                click.echo(f"  {payload_id}")
        return
    if restart and app.backends.feeds is not None:
        app.backends.feeds.clear_cursor(name)
    progress = Progress(name, total=expected_total(feeder, limit))
    runner = FeedRunner(app, progress=progress)

    def stop(*_: object) -> None:
        # The first signal stops at the next checkpoint, a second one at once.
        runner.stop(now=runner.stopping)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = runner.run(name, feeder, FeedRequest(limit=limit))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    progress.done()
    run = result.run
    if as_json:
        click.echo(json.dumps(run_json(run)))
    else:
        summary = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items())) or "nothing"
        click.echo(f"{name}: {run.status}: {summary}" + (f" ({run.error})" if run.error else ""))
    exit_for(result)
