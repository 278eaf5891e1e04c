"""The CLI's file and stdin inputs: records read by `cirrus_feed.support.json_records`,
envelopes peeled, every failure kept as a reason that names the input and the line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

import click

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.model.envelopes import Envelope, normalize
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.pipeline.enqueue import Unreadable
from cirrus_feed.support.json_decode import RecordLimits
from cirrus_feed.support.json_records import Item, Rejection, read_records

STDIN = "-"


def read_input(path: str, limits: RecordLimits) -> Iterator[Item]:
    """The records of ``path`` (``-``: stdin), named ``stdin`` or by the path in messages.

    Raises:
        click.BadParameter: the file cannot be opened or read (exit 2).
    """
    if path == STDIN:
        yield from read_records(sys.stdin.buffer, "stdin", limits)
        return
    try:
        stream: IO[bytes] = Path(path).open("rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="PATH") from exc
    with stream:
        _refuse_binary(stream, path)
        try:
            yield from read_records(stream, path, limits)
        except OSError as exc:
            raise click.BadParameter(f"error reading {path}: {exc}", param_hint="PATH") from exc


_SNIFF_BYTES = 8192


def _refuse_binary(stream: IO[bytes], path: str) -> None:
    """A file with NUL bytes near its start is no JSON text (a NUL inside a JSON string must
    be escaped): one usage error, not one rejection per "line" of an image or a binary."""
    try:
        head = stream.read(_SNIFF_BYTES)
        stream.seek(0)
    except OSError as exc:
        raise click.BadParameter(f"error reading {path}: {exc}", param_hint="PATH") from exc
    if b"\x00" in head:
        raise click.BadParameter(
            f"{path} is a binary file, not JSON or NDJSON text", param_hint="PATH"
        )


def payload_inputs(path: str, limits: RecordLimits) -> Iterator[ProcessPayload | Unreadable]:
    """Every payload in ``path``: plain payloads, NDJSON, arrays, or any supported envelope
    (SQS, SNS, SNS-in-SQS, ...), validated; what cannot be read or is not a valid payload
    comes back as `Unreadable`, its reason naming the input and the line."""
    for item in read_input(path, limits):
        if isinstance(item, Rejection):
            yield Unreadable(item.raw(), item.message)
            continue
        for envelope in normalize(item.value):
            if envelope.kind == "payload":
                try:
                    yield ProcessPayload.from_dict(envelope.body)
                except PayloadValidationError as exc:
                    yield Unreadable(envelope.body, f"{item.where}: {exc}", exc.payload_id)
            elif envelope.kind == "error":
                yield Unreadable(envelope.raw, f"{item.where}: {envelope.error}")
            elif envelope.kind != "ignored":
                reason = f"{item.where}: a {envelope.kind} record is not a process payload"
                yield Unreadable(envelope.raw, reason)


def execution_inputs(path: str, limits: RecordLimits) -> Iterator[Envelope]:
    """Every record of ``path`` as envelopes for update-state; any that is not an execution
    event carries an ``error`` naming the input and the line (it is recorded invalid)."""
    for item in read_input(path, limits):
        if isinstance(item, Rejection):
            yield Envelope(
                "error", None, item.raw(), "file", error=item.message, reason=item.reason
            )
            continue
        for envelope in normalize(item.value):
            if envelope.kind != "execution":
                why = envelope.error or f"a {envelope.kind} record is not an execution event"
                envelope = replace(envelope, error=f"{item.where}: {why}")
            yield envelope
