"""The ``cirrus-feed`` command: parse arguments, load settings, call the app; no logic here.

Exit codes (`cirrus_feed.cli.boundary`): 0 ok, 1 some records failed or were invalid,
2 usage or config error, 130 interrupted. Ordinary errors are one line and a hint; the
traceback only with ``--debug``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import click

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.base import StateQuery
from cirrus_feed.cli.boundary import BoundaryGroup
from cirrus_feed.cli.inputs import execution_inputs, payload_inputs
from cirrus_feed.cli.logs import setup_logging
from cirrus_feed.cli.views import record_view
from cirrus_feed.config import Settings, load_settings
from cirrus_feed.model.payload import ProcessPayload, payload_id_to_key
from cirrus_feed.model.reports import StageReport
from cirrus_feed.model.states import State
from cirrus_feed.model.storable import escape_unsafe
from cirrus_feed.pipeline.enqueue import Unreadable
from cirrus_feed.pipeline.execution_events import apply_execution_events
from cirrus_feed.support.durations import parse_duration
from cirrus_feed.support.json_decode import RecordLimits


class Context:
    """What the group hands its commands: settings now, the app on first use."""

    def __init__(self, settings: Settings, log_format: str = "text") -> None:
        self.settings = settings
        self.log_format = log_format
        self._app: App | None = None

    @property
    def app(self) -> App:
        """The backends and stages; no feeders, so a broken feeder plugin fails only the
        commands that use it (`with_feeders`)."""
        if self._app is None:
            self._app = build_app(self.settings, only=())
        return self._app

    def with_feeders(self, names: Collection[str] | None = None) -> App:
        """The app with the configured feeders ``names`` (None: all) built.

        Raises:
            ConfigError: a name not configured, or its config or plugin is broken.
        """
        self.app.load_feeders(names)
        return self.app

    def no_state_yet(self) -> bool:
        """True (and a note on stderr) when the embedded default's folder does not exist: a
        command that only reads says so instead of creating it by opening the app."""
        root = self.settings.local.root
        if self.settings.backend != "local" or root.exists():
            return False
        click.echo(f"no state yet at {root} (run `cirrus-feed demo` or `enqueue`)", err=True)
        return True

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_context = click.make_pass_decorator(Context)


_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)


@click.group(cls=BoundaryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cirrus-feed", message="%(prog)s %(version)s")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML settings (default: $CIRRUS_FEED_CONFIG or config/local.yaml).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Logs go to stderr; json = one object per line.",
)
@click.option("--log-level", type=_LEVELS, default="WARNING", show_default=True)
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, log_format: str, log_level: str, debug: bool
) -> None:
    """Feeders and event bridge for Cirrus STAC pipelines.

    Exit codes: 0 ok, 1 failures (records failed, gaps found, a backend unreachable),
    2 usage or config error, 130 interrupted."""
    setup_logging(log_format, log_level, tracebacks=debug)
    context = Context(load_settings(config_path), log_format)
    ctx.obj = context
    ctx.call_on_close(context.close)


def main() -> None:
    cli.main(prog_name="cirrus-feed")


def _note(message: str, level: str = "INFO", **fields: Any) -> None:
    """A note for people on stderr; a JSON line under ``--log-format json`` so that stderr
    stays machine-readable there (results go to stdout either way)."""
    context = click.get_current_context().find_object(Context)
    if context is not None and context.log_format == "json":
        line = {"level": level, "logger": __name__, "message": message, **fields}
        click.echo(json.dumps(line), err=True)
    else:
        click.echo(escape_unsafe(message), err=True)


def _report(report: StageReport, as_json: bool) -> None:
    for result in report.results:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        k: v
                        for k, v in {
                            "index": result.index,
                            "outcome": result.outcome.value,
                            "payload_id": result.payload_id,
                            "reason": result.reason,
                            "url": result.url,
                        }.items()
                        if v is not None
                    }
                )
            )
        else:
            line = f"{result.outcome.value:<9} {result.payload_id or '-'}"
            line += f"  ({result.reason})" if result.reason else ""
            click.echo(escape_unsafe(line))  # one result, one line, whatever the input held
    summary = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items())) or "nothing"
    _note(summary, counts=report.counts)
    if not report.ok:
        sys.exit(1)


# -- payload ----------------------------------------------------------------------------------


@cli.group()
def payload() -> None:
    """Inspect payloads without touching any backend."""


@payload.command("id")
@click.argument("path", default="-")
@click.option("--json", "as_json", is_flag=True, help='One {"payload_id": ...} per line.')
def payload_id(path: str, as_json: bool) -> None:
    """Print the payload id of every payload in PATH (a payload, NDJSON or an envelope)."""

    def show(p: ProcessPayload) -> None:
        click.echo(json.dumps({"payload_id": p.id}) if as_json else p.id)

    bad = _each_payload(path, show)
    sys.exit(1 if bad else 0)


@payload.command("validate")
@click.argument("path", default="-")
def payload_validate(path: str) -> None:
    """Validate every payload in PATH like Cirrus does; print `ok <id>` or the error."""
    bad = _each_payload(path, lambda p: click.echo(f"ok {p.id}"))
    sys.exit(1 if bad else 0)


def _each_payload(path: str, emit: Any) -> int:
    bad = 0
    for body in payload_inputs(path, _limits()):
        if isinstance(body, Unreadable):
            _note(f"invalid: {body.reason}", "ERROR", payload_id=body.payload_id)
            bad += 1
        else:
            emit(body)
    return bad


def _limits() -> RecordLimits:
    context = click.get_current_context().find_object(Context)
    return context.settings.inputs.limits() if context is not None else RecordLimits()


# -- pipeline ---------------------------------------------------------------------------------


@cli.command()
@click.argument("path", default="-")
@click.option("--json", "as_json", is_flag=True, help="One JSON result per line.")
@pass_context
def enqueue(ctx: Context, path: str, as_json: bool) -> None:
    """Validate and put payloads (file, NDJSON or envelopes) on the process queue."""
    _report(ctx.app.enqueuer.enqueue(payload_inputs(path, _limits())), as_json)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@cli.command()
@click.option("--once", is_flag=True, help="Stop when the queue is drained.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker threads.")
@click.option(
    "--processes", is_flag=True, help="Workers as OS processes, not threads (local backend)."
)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def process(ctx: Context, once: bool, workers: int | None, processes: bool, as_json: bool) -> None:
    """Receive payloads, claim them, run their workflows and record the outcome."""
    from cirrus_feed.service.worker import run_workers

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        totals = run_workers(
            ctx.app,
            workers or ctx.settings.process.workers,
            once=once,
            stop=stop,
            processes=processes,
        )
    finally:  # the handlers close over this call's `stop`: put the caller's back
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = {"process": dict(totals.process.counts), "update_state": dict(totals.update.counts)}
    click.echo(json.dumps(summary) if as_json else _summary_text(summary))
    if totals.crashed or not (totals.process.ok and totals.update.ok):
        sys.exit(1)


def _summary_text(summary: dict[str, dict[str, int]]) -> str:
    return "\n".join(
        f"{stage}: " + (", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "nothing")
        for stage, c in summary.items()
    )


@cli.command("update-state")
@click.argument("path", default="-")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def update_state(ctx: Context, path: str, as_json: bool) -> None:
    """Apply Step Functions status-change events (EventBridge JSON, NDJSON) to the state DB."""
    envelopes = list(execution_inputs(path, _limits()))
    app = ctx.app
    _report(
        apply_execution_events(app.updater, app.backends.store, envelopes, clock=app.clock),
        as_json,
    )


# -- state ------------------------------------------------------------------------------------

_STATES = click.Choice([s.value for s in State], case_sensitive=False)


def _query_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option("--collections-workflow", "-c", help="e.g. sentinel-2-l2a_cog-archive"),
            click.option("--state", "state", type=_STATES),
            click.option("--since", help="Only records changed in the last 7d / 24h / 1h30m."),
            click.option("--error-prefix", help="Only records whose last_error starts with this."),
        ]
    ):
        f = option(f)
    return f


def _query(
    collections_workflow: str | None, state: str | None, since: str | None, error_prefix: str | None
) -> StateQuery:
    try:
        delta = parse_duration(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    return StateQuery(
        collections_workflow=collections_workflow,
        state=State(state.upper()) if state else None,
        since=delta,
        error_prefix=error_prefix,
    )


@cli.group()
def state() -> None:
    """Query the state DB."""


@state.command("get")
@click.argument("payload_id")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def state_get(ctx: Context, payload_id: str, as_json: bool) -> None:
    """Show one payload's state record."""
    try:
        payload_id_to_key(payload_id)
    except ValueError as exc:  # no record can have it: say why, not just "not found"
        raise click.BadParameter(str(exc), param_hint="PAYLOAD_ID") from None
    if ctx.no_state_yet():
        click.echo(f"error: payload not found: {payload_id}", err=True)
        sys.exit(1)
    b = ctx.app.backends
    view = record_view(b.state.get(payload_id), b.store, b.runner.region)
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        for key, value in view.items():
            if value is not None and value != []:  # an unset field says nothing
                click.echo(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


@state.command("list")
@_query_options
@click.option("--limit", type=click.IntRange(1, 50_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="NDJSON records.")
@click.option("--stuck", is_flag=True, help="CLAIMED/PROCESSING with no live execution.")
@click.option("--older-than", help="With --stuck: not updated for this long (default 1h).")
@pass_context
def state_list(
    ctx: Context, /, limit: int, as_json: bool, stuck: bool, older_than: str | None, **filters: Any
) -> None:
    """List state records, newest first (--stuck: those whose execution is gone)."""
    if stuck or older_than:
        from cirrus_feed.cli.stuck import list_stuck

        list_stuck(ctx, older_than, limit, as_json, filters)
        return
    query, shown, next_key = _query(**filters), 0, None
    if ctx.no_state_yet():
        return
    b = ctx.app.backends
    while shown < limit:
        page = b.state.query(query, limit=min(100, limit - shown), next_key=next_key)
        for record in page.records:
            if as_json:
                click.echo(json.dumps(record_view(record, b.store, b.runner.region)))
            else:
                error = f"  {record.last_error}" if record.last_error else ""
                click.echo(f"{record.state.value:<10} {record.updated}  {record.payload_id}{error}")
        shown += len(page.records)
        next_key = page.next_key
        if next_key is None:
            break


@state.command("counts")
@_query_options
@click.option("--limit", type=click.IntRange(min=1), help="Count up to this, then say N+.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def state_counts(ctx: Context, /, limit: int | None, as_json: bool, **filters: Any) -> None:
    """Count records per state (or for one --state)."""
    query = _query(**filters)
    states = [query.state] if query.state else list(State)
    empty = ctx.no_state_yet()
    counts = {
        s.value: 0
        if empty
        else ctx.app.backends.state.count(
            StateQuery(query.collections_workflow, s, query.since, query.error_prefix),
            limit=limit,
        )
        for s in states
    }
    if as_json:
        click.echo(json.dumps(counts))
    else:
        for name, count in counts.items():
            click.echo(f"{name:<10} {count}")


# -- demo -------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the demo's files (default: <local.root>/demo, wiped first).",
)
@pass_context
def demo(ctx: Context, root: Path | None) -> None:
    """Run sample payloads end to end on the embedded default and print the state counts."""
    from cirrus_feed.demo.run import run_demo

    run_demo(ctx.settings, root or ctx.settings.local.root / "demo", echo=click.echo)


# Subcommands that live in their own modules; importing them registers them on `cli`.
from cirrus_feed.cli import deploy, dlq, feeds, package, reconcile, rerun, serve  # noqa: E402, F401
