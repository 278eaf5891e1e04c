"""``cirrus-feed feed`` and ``cirrus-feed feeders``: run configured feeders, list them and
their runs. Registered on the main group by `cirrus_feed.cli.main`."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import click

from cirrus_feed.app import feeder_configs
from cirrus_feed.backends.base import FeedRun
from cirrus_feed.cli.boundary import INTERRUPTED
from cirrus_feed.cli.main import Context, cli, pass_context
from cirrus_feed.errors import CirrusFeedError
from cirrus_feed.feeding.contract import FeedRequest, Previewable
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.push import PushTarget
from cirrus_feed.feeding.runner import FeedResult, FeedRunner, abandon_expired
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock


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

    def __init__(self, name: str, total: int | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.name = name
        self._counts: Mapping[str, int] = {}
        self._clock = clock
        self._started = clock.monotonic()
        self._total = total
        self.enabled = sys.stderr.isatty()
        # Without a total, an iterable of unknown length makes the bar count up instead.
        self._bar = click.progressbar(
            iterable=None if total is not None else _unsized(),
            length=total,
            label=name,
            file=sys.stderr,
            hidden=not self.enabled,  # click would still print the label once when piped
            show_pos=True,
            show_eta=False,  # its ETA reads the wall clock; ours is in `_describe`
            item_show_func=lambda _: self._describe(),
            # a bar needs a total; without one, the count and the outcomes alone
            bar_template="%(label)s  [%(bar)s]  %(info)s" if total else "%(label)s  %(info)s",
        )

    def _describe(self) -> str:
        counts = sorted(self._counts.items())
        text = ", ".join(f"{n} {k}" for k, n in counts if n and k != "seen")
        elapsed = self._clock.monotonic() - self._started
        seen = self._counts.get("seen", 0)
        if elapsed <= 0 or not seen:
            return text
        rate = seen / elapsed
        text += f"  {rate:.1f}/s"
        if self._total is not None and seen < self._total:  # the rate so far, on the clock
            text += f"  eta {timedelta(seconds=round((self._total - seen) / rate))}"
        return text

    def __call__(self, counts: Mapping[str, int]) -> None:
        steps = counts.get("seen", 0) - self._counts.get("seen", 0)
        self._counts = dict(counts)
        self._bar.update(max(steps, 0))

    def done(self) -> None:
        self._bar.render_finish()


def expected_total(feeder: object, limit: int | None) -> int | None:
    """How many payloads a run will feed, for the progress bar: known for feeders that can
    preview (a count query), and only worth asking on a terminal."""
    if not sys.stderr.isatty() or not isinstance(feeder, Previewable):
        return None
    total, _ = feeder.preview(0)
    if not isinstance(total, int):  # "N+": more than the feeder's own limit counts
        return limit
    return min(total, limit) if limit else total


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
@click.option(
    "--output", "output_path", help="With --dry-run: file for the payloads (default - = stdout)."
)
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
    """Run the configured feeder NAME once (--dry-run: write its payloads to stdout or
    --output instead of enqueueing them)."""
    _known_feeder(ctx, name)
    if output_path is not None and not dry_run:
        raise click.UsageError("--output needs --dry-run (without it, payloads are enqueued)")
    output_path = output_path or ("-" if dry_run else None)  # a dry run shows what it would send
    start, end = _when(since, "--since"), _when(until, "--until")
    if start is not None and end is not None and start >= end:
        raise click.UsageError(f"--since {since} is not before --until {until}")
    app = ctx.with_feeders([name])
    feeder = app.feeders[name]
    if input_path is not None:
        if not isinstance(feeder, PushTarget):
            raise click.BadParameter(f"'{name}' is not an events feeder", param_hint="--input")
        feeder = feeder.from_file(input_path)
    if restart and app.backends.feeds is not None and not dry_run:
        app.backends.feeds.clear_cursor(name)  # a dry run starts afresh anyway
    request = FeedRequest(since=start, until=end, limit=limit, dry_run=dry_run)
    progress = Progress(name, total=expected_total(feeder, limit))
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
    exit_for(result)


def exit_for(result: FeedResult) -> None:
    """Exit 130 for a run stopped by a signal, 1 for one that failed or had failures."""
    if result.run.status == "interrupted":
        sys.exit(INTERRUPTED)
    if not result.ok:
        sys.exit(1)


def _known_feeder(ctx: Context, name: str) -> None:
    if name not in ctx.settings.feeders:
        known = ", ".join(sorted(ctx.settings.feeders)) or "none configured"
        raise click.BadParameter(f"no feeder '{name}' in the config ({known})", param_hint="NAME")


def run_json(run: FeedRun) -> dict[str, object]:
    return {k: v for k, v in asdict(run).items() if v is not None}


@cli.group()
def feeders() -> None:
    """Configured feeders and their runs."""


@feeders.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def feeders_list(ctx: Context, as_json: bool) -> None:
    """Configured feeders (name, type, status, schedule) and the installed feeder types.

    Each is validated as `feed` would (plugin, settings, workflows) and built; a broken one
    shows why (exit 1)."""
    registry = FeederRegistry()
    rows = []
    for name, raw in ctx.settings.feeders.items():
        status = _feeder_status(ctx, registry, name)
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
    else:
        for row in rows:
            schedule = json.dumps(row["schedule"]) if row["schedule"] else "-"
            click.echo(f"{row['name']:<24} {row['type']!s:<14} {row['status']:<8} {schedule}")
        click.echo(f"installed types: {', '.join(registry.names()) or 'none'}", err=True)
    if any(row["status"] != "ok" for row in rows):
        sys.exit(1)


def _feeder_status(ctx: Context, registry: FeederRegistry, name: str) -> str:
    """``ok`` or ``broken: <why>``: the config checks of `feed`, then (when there is state
    to open, so that listing creates none) building the feeder itself."""
    try:
        feeder_configs(ctx.settings, registry, [name], runs_here=True)
        if not _missing_local_state(ctx):
            ctx.with_feeders([name])
    except CirrusFeedError as exc:  # a broken feeder is reported, not fatal, when listing
        return f"broken: {exc}"
    except Exception as exc:  # noqa: BLE001 - a plugin's own bug, shown on its row
        return f"broken: {type(exc).__name__}: {exc}"
    return "ok"


def _missing_local_state(ctx: Context) -> bool:
    return ctx.settings.backend == "local" and not ctx.settings.local.root.exists()


@feeders.command("runs")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="NDJSON run records.")
@pass_context
def feeders_runs(ctx: Context, name: str, limit: int, as_json: bool) -> None:
    """Recent runs of feeder NAME (or of `dlq-replay`, `rerun:CW`, `reconcile:NAME`),
    newest first (runs whose process died: abandoned). A name neither configured nor with
    recorded runs is a usage error."""
    if ctx.no_state_yet():
        _known_feeder(ctx, name)
        return
    feeds = ctx.app.backends.feeds
    if feeds is None:
        raise click.UsageError("feed runs are not recorded: set aws.feed_table")
    if not feeds.list_runs(name, limit=1):  # a feeder removed from the config keeps its runs
        _known_feeder(ctx, name)
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
