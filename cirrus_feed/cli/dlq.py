"""``cirrus-feed dlq`` and ``cirrus-feed invalid``: the process queue's dead letters and the
records rejected as invalid. Registered on the main group by `cirrus_feed.cli.main`; the
reading is the backends' (`DeadLetterQueue`, `InvalidStore`), the replay
`cirrus_feed.feeding.replay`'s."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from cirrus_feed.backends.base import DeadLetter, DeadLetterQueue, InvalidRecord, InvalidStore
from cirrus_feed.cli.boundary import INTERRUPTED
from cirrus_feed.cli.feeds import Progress, run_json
from cirrus_feed.cli.main import Context, cli, pass_context
from cirrus_feed.feeding.replay import (
    DLQ_REPLAY,
    ReplayConfig,
    letter_payload_id,
    replay_dead_letters,
)
from cirrus_feed.feeding.runner import FeedRunner


def _letters(ctx: Context) -> DeadLetterQueue:
    letters = ctx.app.backends.dead_letters
    if letters is None:
        raise click.UsageError("this backend has no dead-letter queue wired")
    return letters


def letter_json(letter: DeadLetter, *, body: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "message_id": letter.message_id,
        "when": letter.when,
        "receive_count": letter.receive_count,
        "reason": letter.reason,
        "payload_id": letter_payload_id(letter.body),
    }
    if body:
        data["body"] = letter.body
    return data


@cli.group()
def dlq() -> None:
    """The process queue's dead letters: list, show, replay."""


@dlq.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="NDJSON, one letter a line.")
@pass_context
def dlq_list(ctx: Context, limit: int | None, as_json: bool) -> None:
    """One line per dead letter: id, when, receive count, reason, payload id.

    On SQS a look receives the messages and makes them visible again at once."""
    letters = [] if ctx.no_state_yet() else _letters(ctx).peek(limit)
    for letter in letters:
        data = letter_json(letter)
        if as_json:
            click.echo(json.dumps(data))
        else:
            click.echo(
                f"{letter.message_id}  {letter.when or '-'}  {letter.receive_count:>3}  "
                f"{data['payload_id'] or '-'}  {letter.reason}"
            )
    click.echo(f"{len(letters)} dead letters", err=True)


@dlq.command("show")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def dlq_show(ctx: Context, message_id: str, as_json: bool) -> None:
    """The full body and reason of dead letter MESSAGE_ID."""
    letter = _letters(ctx).get(message_id)
    data = letter_json(letter, body=True)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key in ("message_id", "when", "receive_count", "reason", "payload_id"):
        click.echo(f"{key}: {data[key]}")
    try:
        pretty = json.dumps(json.loads(letter.body), indent=2)
    except ValueError:
        pretty = letter.body
    click.echo(f"body:\n{pretty}")


@dlq.command("replay")
@click.argument("message_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--max-rate", type=click.FloatRange(min=0, min_open=True), default=20.0,
              show_default=True, help="Payloads a second.")  # fmt: skip
@click.option("--max-in-flight", type=click.IntRange(min=1), help="Queued+running cap.")
@click.option("--max-queue-depth", type=click.IntRange(min=0),
              help="Pause while the process queue holds more than this.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@pass_context
def dlq_replay(
    ctx: Context,
    /,
    message_ids: tuple[str, ...],
    replay_all: bool,
    max_rate: float,
    max_in_flight: int | None,
    max_queue_depth: int | None,
    as_json: bool,
) -> None:
    """Send dead letters again with their original body through the normal, paced enqueue
    path, recorded as the feed 'dlq-replay'. A letter leaves the dead-letter queue only once
    its payload was sent (or was already done, or kept in the invalid store)."""
    if bool(message_ids) == replay_all:
        raise click.UsageError("name the MESSAGE_IDS to replay, or pass --all (not both)")
    config = ReplayConfig(
        max_rate=max_rate, max_in_flight=max_in_flight, max_queue_depth=max_queue_depth
    )
    progress = Progress(DLQ_REPLAY)
    runner = FeedRunner(ctx.app, progress=progress)
    previous = {
        sig: signal.signal(sig, lambda *_: runner.stop(now=runner.stopping))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        result, feeder = replay_dead_letters(
            ctx.app, _letters(ctx), message_ids or None, config=config, runner=runner
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    progress.done()
    run = result.run
    missing = sorted(set(message_ids) - set(feeder.deleted) - set(feeder.kept))
    if as_json:
        summary = run_json(run) | {"deleted": feeder.deleted, "kept": feeder.kept}
        click.echo(json.dumps(summary | {"not_found": missing}))
    else:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items())) or "nothing"
        error = f" ({run.error})" if run.error else ""
        click.echo(f"{DLQ_REPLAY}: {run.status}: {counts}{error}")
        click.echo(
            f"removed from the dead-letter queue: {len(feeder.deleted)}, kept: {len(feeder.kept)}"
        )
        for message_id in missing:
            click.echo(f"not found: {message_id}", err=True)
    if run.status == "interrupted":
        sys.exit(INTERRUPTED)
    if not result.ok or feeder.kept or missing:
        sys.exit(1)


# -- invalid ----------------------------------------------------------------------------------


def _invalid(ctx: Context) -> InvalidStore:
    store = ctx.app.backends.invalid
    if store is None:
        raise click.UsageError("this backend has no invalid store wired")
    return store


def invalid_json(record: InvalidRecord, *, raw: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "record_id": record.record_id,
        "rejected_at": record.rejected_at,
        "stage": record.stage,
        "payload_id": record.payload_id,
        "reason": record.reason,
        "url": record.url,
    }
    if raw:
        data["record"] = record.record
    return data


@cli.group()
def invalid() -> None:
    """Records rejected as invalid, kept with their reason."""


@invalid.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="NDJSON, one record a line.")
@pass_context
def invalid_list(ctx: Context, limit: int, as_json: bool) -> None:
    """The newest rejected records: id, when, stage, payload id, reason."""
    if ctx.no_state_yet():
        return
    store = _invalid(ctx)
    records = store.recent(limit)
    for record in records:
        if as_json:
            click.echo(json.dumps(invalid_json(record)))
        else:
            click.echo(
                f"{record.record_id}  {record.rejected_at or '-'}  {record.stage or '-':<8} "
                f"{record.payload_id or '-'}  {record.reason or '(no reason kept)'}"
            )
    click.echo(f"{len(records)} of {store.count()} invalid records", err=True)


@invalid.command("show")
@click.argument("record_id")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def invalid_show(ctx: Context, record_id: str, as_json: bool) -> None:
    """One rejected record in full: why, where it came from and the record as received."""
    record = _invalid(ctx).get(record_id)
    data = invalid_json(record, raw=True)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key in ("record_id", "rejected_at", "stage", "payload_id", "reason", "url"):
        click.echo(f"{key}: {data[key]}")
    click.echo(f"record:\n{json.dumps(record.record, indent=2)}")
