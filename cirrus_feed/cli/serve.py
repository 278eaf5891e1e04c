"""``cirrus-feed serve``: scheduled feeders and (locally) the process workers in one process.
Registered on the main group by `cirrus_feed.cli.main`."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from cirrus_feed.cli.main import Context, cli, pass_context
from cirrus_feed.errors import CirrusFeedError, ConfigError
from cirrus_feed.feeding.push import push, push_target
from cirrus_feed.support.extras import raise_missing_extra

if TYPE_CHECKING:  # imported when serving: they need the `serve` extra
    from cirrus_feed.service.scheduler import OnceResult, Service
    from cirrus_feed.service.sns_endpoint import SnsEndpoint

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@cli.command()
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker threads (local; AWS with aws.serve_workers).",
)
@click.option("--no-workers", is_flag=True, help="Only feed; leave processing to others.")
@click.option("--once", is_flag=True, help="Run each scheduled feeder now, drain, then exit.")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where the HTTP server (status page, /metrics, /healthz, /readyz) listens "
    "(default: http.address, 127.0.0.1:8089; port 0 picks a free one).",
)
@click.option(
    "--http",
    "http_address",
    metavar="HOST:PORT",
    help="Also receive SNS HTTP(S) deliveries (every POST), listening here (signatures "
    "verified; only from the topics in sns_endpoint.topics). Same as http.sns: true.",
)
@click.option("--http-feeder", help="The events feeder SNS deliveries go to (if several).")
@pass_context
def serve(
    ctx: Context,
    /,
    workers: int | None,
    no_workers: bool,
    once: bool,
    listen: str | None,
    http_address: str | None,
    http_feeder: str | None,
) -> None:
    """Run every feeder that has a schedule and the process workers (local backend; AWS when
    aws.serve_workers is set).

    SIGTERM or Ctrl-C: running feeds stop at their next checkpoint, then exit 0; a second
    signal stops them after their current item.
    """
    if workers is not None and no_workers:
        raise click.UsageError("--workers and --no-workers exclude each other")
    try:
        from cirrus_feed.service.scheduler import Service
    except ModuleNotFoundError as exc:
        raise_missing_extra(exc, "cirrus-feed serve")
    count = 0 if no_workers else workers or ctx.settings.process.workers
    if listen and http_address:
        raise click.UsageError("--listen and --http both set the address: give one")
    service = Service(ctx.with_feeders(), workers=count)
    sns = bool(http_address) or ctx.settings.http.sns
    if not service.schedules and not service.workers and not sns:
        raise click.UsageError("nothing to serve: no feeder has a schedule and no workers run")
    http = None
    if not once:
        try:
            from cirrus_feed.service.http_app import ServiceHttp  # needs prometheus-client
        except ModuleNotFoundError as exc:
            raise_missing_extra(exc, "cirrus-feed serve")

        endpoint = _endpoint(ctx, http_feeder) if sns else None
        http = ServiceHttp(service, address=listen or http_address, sns=endpoint)
    # The handler only flags: the stopping itself happens on the main thread, below.
    previous = {sig: signal.signal(sig, lambda *_: service.request_stop()) for sig in _STOP_SIGNALS}
    try:
        if http is not None:
            host, port = http.start()
            routes = "status page, /metrics, /healthz, /readyz" + (", SNS (POST)" if sns else "")
            click.echo(f"http://{_host(host)}:{port}/: {routes}", err=True)
        if once:
            _report(service.run_once())
        else:
            _serve(service)
    finally:  # the handlers close over this call's service: put the caller's back
        if http is not None:
            http.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _serve(service: Service) -> None:
    names = ", ".join(sorted(service.schedules)) or "none"
    service.start()
    click.echo(
        f"serving: scheduled feeders: {names}; workers: {service.workers}; Ctrl-C to stop",
        err=True,
    )
    try:
        service.wait()
    finally:
        service.stop()
    totals = service.totals
    counts = {"process": totals.process.counts, "update_state": totals.update.counts}
    summary = "; ".join(
        f"{stage}: " + (", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "nothing")
        for stage, c in counts.items()
    )
    click.echo(f"stopped ({summary})", err=True)
    if service.failed:
        sys.exit(1)


def _report(result: OnceResult) -> None:
    """One line per feeder, one per stage; exit 1 when a run failed or records did."""
    bad = False
    for name, feed in sorted(result.feeds.items()):
        if feed is None:
            click.echo(f"{name}: not run (stopping)")
            continue
        run = feed.run
        summary = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items())) or "nothing"
        click.echo(f"{name}: {run.status}: {summary}" + (f" ({run.error})" if run.error else ""))
        # An interrupted run was asked to stop: not a failure.
        bad |= run.status == "failed" or bool(feed.counts["failed"] or feed.counts["invalid"])
    work = result.work
    for stage, report in (("process", work.process), ("update_state", work.update)):
        counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items())) or "nothing"
        click.echo(f"{stage}: {counts}")
    if work.crashed:
        click.echo("a worker crashed (see the log)", err=True)
    if bad or work.crashed or not (work.process.ok and work.update.ok):
        sys.exit(1)


def _endpoint(ctx: Context, feeder_name: str | None) -> SnsEndpoint:
    """An SNS endpoint whose verified notifications go through the events feeder."""
    try:
        from cirrus_feed.service.sns_endpoint import SnsEndpoint
        from cirrus_feed.service.sns_signature import SnsSignatureVerifier
    except ModuleNotFoundError as exc:
        raise_missing_extra(exc, "cirrus-feed serve --http")
    app = ctx.with_feeders()
    topics = app.settings.sns_endpoint.topics
    if not topics:
        raise ConfigError(
            f"{app.settings.source}: serve --http needs sns_endpoint.topics, the SNS topic "
            "ARN patterns allowed to deliver (e.g. arn:aws:sns:us-west-2:123456789012:*)"
        )
    name, feeder = push_target(
        app.feeders, feeder_name or app.settings.events_feeder, app.settings.source
    )

    def handle(message: dict[str, Any]) -> None:
        # As an SNS record, so the MessageId reaches the seen-message cache.
        pushed = push(
            app, name, feeder, [{"Records": [{"EventSource": "aws:sns", "Sns": message}]}]
        )
        if pushed.failed or pushed.result.run.status == "failed":
            raise CirrusFeedError(f"events {name}: message {message.get('MessageId')} failed")

    verifier = SnsSignatureVerifier(allowed_topics=topics, clock=app.clock)
    return SnsEndpoint(handle, verifier)
