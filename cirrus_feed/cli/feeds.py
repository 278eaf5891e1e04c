"""``cirrus-feed feed`` and ``cirrus-feed feeders``: run configured feeders, list them and
their runs. Registered on the main group by `cirrus_feed.cli.main`."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click

from cirrus_feed.backends.base import FeedRun
from cirrus_feed.cli.main import Context, cli, pass_context
from cirrus_feed.errors import PluginError
from cirrus_feed.feeding.contract import FeedRequest
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.push import PushTarget
from cirrus_feed.feeding.runner import FeedRunner, abandon_expired


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO datetime; naive values are UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO datetime", param_hint=option) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Progress:
    """A feed's progress on a terminal: click's progress bar on stderr, with the counts;
    hidden when stderr is not a terminal. ``total``: the expected payloads, when known."""

    def __init__(self, name: str, total: int | None = None) -> None:
        self.name = name
        self._counts: Mapping[str, int] = {}
        self.enabled = sys.stderr.isatty()
        # Without a total, an iterable of unknown length makes the bar count up instead.
        self._bar = click.progressbar(
            iterable=None if total is not None else _unsized(),
            length=total,
            label=name,
            file=sys.stderr,
            hidden=not self.enabled,  # click would still print the label once when piped
            show_pos=True,
            show_eta=total is not None,
            item_show_func=lambda _: self._describe(),
            # a bar needs a total; without one, the count and the outcomes alone
            bar_template="%(label)s  [%(bar)s]  %(info)s" if total else "%(label)s  %(info)s",
        )

    def _describe(self) -> str:
        counts = sorted(self._counts.items())
        return ", ".join(f"{n} {k}" for k, n in counts if n and k != "seen")

    def __call__(self, counts: Mapping[str, int]) -> None:
        steps = counts.get("seen", 0) - self._counts.get("seen", 0)
        self._counts = dict(counts)
        self._bar.update(max(steps, 0))

    def done(self) -> None:
        self._bar.render_finish()


def _unsized() -> Iterator[None]:
    yield from ()


@contextmanager
def _output(path: str | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
    elif path == "-":
        yield sys.stdout
    else:
        with Path(path).open("w") as stream:
            yield stream


@cli.command()
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Write the payloads (NDJSON); enqueue nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many payloads.")
@click.option("--since", help="Start of the window (ISO datetime; default: the watermark).")
@click.option("--until", help="End of the window (ISO datetime, exclusive; default: now).")
@click.option("--restart", is_flag=True, help="Forget the saved cursor and start over.")
@click.option("--output", "output_path", help="With --dry-run: file for the payloads, - = stdout.")
@click.option("--input", "input_path", help="events feeders: read messages (NDJSON) from here.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@pass_context
def feed(
    ctx: Context,
    /,
    name: str,
    dry_run: bool,
    limit: int | None,
    since: str | None,
    until: str | None,
    restart: bool,
    output_path: str | None,
    input_path: str | None,
    as_json: bool,
) -> None:
    """Run the configured feeder NAME once."""
    app = ctx.app
    feeder = app.feeders.get(name)
    if feeder is None:
        known = ", ".join(sorted(app.feeders)) or "none configured"
        raise click.BadParameter(f"no feeder '{name}' in the config ({known})", param_hint="NAME")
    if input_path is not None:
        if not isinstance(feeder, PushTarget):
            raise click.BadParameter(f"'{name}' is not an events feeder", param_hint="--input")
        feeder = feeder.from_file(input_path)
    if restart and app.backends.feeds is not None and not dry_run:
        app.backends.feeds.clear_cursor(name)  # a dry run starts afresh anyway
    request = FeedRequest(
        since=_when(since, "--since"), until=_when(until, "--until"), limit=limit, dry_run=dry_run
    )
    progress = Progress(name)
    runner = FeedRunner(app, progress=progress)

    def stop(*_: object) -> None:
        # The first signal stops at the next checkpoint, a second one at once.
        runner.stop(now=runner.stopping)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    with _output(output_path if dry_run else None) as stream:
        result = runner.run(name, feeder, request, output=stream)
    progress.done()
    run = result.run
    summary = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items())) or "nothing"
    if as_json:
        click.echo(json.dumps(run_json(run)))
    else:
        click.echo(
            f"{name}: {run.status}: {summary}" + (f" ({run.error})" if run.error else ""),
            err=dry_run and output_path == "-",
        )
    if not result.ok:
        sys.exit(1)


def run_json(run: FeedRun) -> dict[str, object]:
    return {k: v for k, v in asdict(run).items() if v is not None}


@cli.group()
def feeders() -> None:
    """Configured feeders and their runs."""


@feeders.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def feeders_list(ctx: Context, as_json: bool) -> None:
    """Configured feeders (name, type, status, schedule) and the installed feeder types."""
    registry = FeederRegistry()
    rows = []
    for name, raw in ctx.settings.feeders.items():
        try:
            registry.load(str(raw.get("type")))
            status = "ok"
        except PluginError as exc:  # a broken plugin is reported, not fatal, when listing
            status = f"broken: {exc}"
        rows.append(
            {
                "name": name,
                "type": raw.get("type"),
                "status": status,
                "schedule": raw.get("schedule"),
            }
        )
    if as_json:
        click.echo(json.dumps({"feeders": rows, "installed": registry.names()}))
        return
    for row in rows:
        schedule = json.dumps(row["schedule"]) if row["schedule"] else "-"
        click.echo(f"{row['name']:<24} {row['type']!s:<14} {row['status']:<8} {schedule}")
    click.echo(f"installed types: {', '.join(registry.names()) or 'none'}", err=True)


@feeders.command("runs")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="NDJSON run records.")
@pass_context
def feeders_runs(ctx: Context, name: str, limit: int, as_json: bool) -> None:
    """Recent runs of feeder NAME, newest first (runs whose process died: abandoned)."""
    feeds = ctx.app.backends.feeds
    if feeds is None:
        raise click.UsageError("feed runs are not recorded: set aws.feed_table")
    abandon_expired(feeds, name, ctx.app.clock)
    for run in feeds.list_runs(name, limit=limit):
        if as_json:
            click.echo(json.dumps(run_json(run)))
        else:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items())) or "-"
            click.echo(
                f"{run.started}  {run.status:<11} {counts}"
                + (f"  [{run.checkpoint}]" if run.checkpoint else "")
                + (f"  {run.error}" if run.error else "")
            )
