"""The start of each claimed payload's execution: input put, then StartExecution (spec §3.5).

`start_all` runs the starts of one batch side by side in a few threads when the runner is
remote (Step Functions: each start is a round trip; boto3 clients are thread-safe), as one
`put_many` and one `start_many` when it runs in this process (the inline runner: a
transaction each for the batch).
Each record keeps its order: its input is put before its execution is started. No state is
written here: each start ends in a `Started` the process stage then records (quirk Q8:
an ambiguous failure is resolved by describing the deterministically named execution).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from cirrus_feed.backends.base import Backends, LocalExecutor
from cirrus_feed.errors import (
    BackendError,
    BackendUnavailableError,
    ExecutionAlreadyExistsError,
    PayloadNotFoundError,
    WorkflowNotFoundError,
)
from cirrus_feed.model import layout
from cirrus_feed.model.executions import name_from_arn
from cirrus_feed.model.payload import ProcessPayload, fits_inline

log = logging.getLogger(__name__)

THREADS = 10  # one per record of an SQS batch

# started: this call started it; resumed: it existed already (ExecutionAlreadyExists);
# fail: it was not started and cannot be (record FAILED); keep: not known (stays CLAIMED).
StartKind = Literal["started", "resumed", "fail", "keep"]


@dataclass(frozen=True, slots=True)
class Started:
    kind: StartKind
    input_url: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StartRequest:
    payload: ProcessPayload
    execution_arn: str


def parallel_calls(backends: Backends) -> int:
    """How many of a batch's remote calls (starts, output archives) run at once: 1 when
    the runner executes in this process (a local deployment: nothing to wait for)."""
    return 1 if isinstance(backends.runner, LocalExecutor) else THREADS


def start_all(
    backends: Backends, requests: Sequence[StartRequest], *, threads: int
) -> list[Started | Exception]:
    """Start each request; one `Started` (or the unexpected error of that record) each."""
    start: Callable[[StartRequest], Started | Exception] = lambda r: _guarded(backends, r)  # noqa: E731
    if threads <= 1 and len(requests) > 1:
        return _start_batch(backends, requests)
    if threads <= 1 or len(requests) <= 1:
        return [start(r) for r in requests]
    with ThreadPoolExecutor(max_workers=min(threads, len(requests))) as pool:
        return list(pool.map(start, requests))


def _start_batch(b: Backends, requests: Sequence[StartRequest]) -> list[Started | Exception]:
    """The starts of a runner in this process as one `put_many` of the inputs and one
    `start_many` (a transaction each, not two a record). Anything but a clean start or an
    `ExecutionAlreadyExists` is started again alone, through the per-record decisions
    (Q8): the input put is an idempotent overwrite, the start refused as already existing."""
    try:
        names = [name_from_arn(r.execution_arn) for r in requests]
        documents = [r.payload.to_dict() for r in requests]
        urls = b.store.put_many(
            [
                (layout.input_key(r.payload.id, name), document)
                for r, name, document in zip(requests, names, documents, strict=True)
            ]
        )
        starts = [
            (r.payload.workflow, name, _inline_input(b, document))
            for r, name, document in zip(requests, names, documents, strict=True)
        ]
        arns = b.runner.start_many(starts)
    except Exception:  # each record then takes its own path, as if alone
        log.warning("batched start of %d failed; one at a time", len(requests), exc_info=True)
        return [_guarded(b, r) for r in requests]
    results: list[Started | Exception] = []
    for request, url, arn in zip(requests, urls, arns, strict=True):
        if isinstance(arn, str):
            results.append(Started("started", url))
        elif isinstance(arn, ExecutionAlreadyExistsError):
            results.append(Started("resumed", url))
        else:
            results.append(_guarded(b, request))
    return results


def _guarded(backends: Backends, request: StartRequest) -> Started | Exception:
    try:
        return _start(backends, request)
    except Exception as exc:  # noqa: BLE001 - fails this record only
        return exc


def _start(b: Backends, request: StartRequest) -> Started:
    payload, arn = request.payload, request.execution_arn
    name = name_from_arn(arn)
    input_url: str | None = None
    try:
        input_url = b.store.put_json(layout.input_key(payload.id, name), payload.to_dict())
        b.runner.start(payload.workflow, name, _execution_input(b, payload))
    except ExecutionAlreadyExistsError:
        # Idempotent restart: someone started this very execution before.
        return Started("resumed", input_url)
    except WorkflowNotFoundError as exc:
        return Started("fail", input_url, str(exc))
    except BackendUnavailableError as exc:
        # Ambiguous: the start (or an earlier attempt's) may have gone through.
        if _exists(b, arn) is not True:
            return Started("keep", error=f"failed starting workflow ({exc})")
        return Started("started", input_url or _input_url(b, payload.id, name))
    except BackendError as exc:
        error = f"failed starting workflow ({exc})"
        exists = _exists(b, arn)
        if exists is None:
            return Started("keep", error=error)
        if not exists:
            return Started("fail", input_url, error)
        return Started("started", input_url or _input_url(b, payload.id, name))
    return Started("started", input_url)


def _exists(b: Backends, arn: str) -> bool | None:
    """Whether execution ``arn`` exists (the deterministic name makes it ours); None when
    that cannot be told now."""
    try:
        b.runner.describe(arn)
    except PayloadNotFoundError:
        return False
    except BackendError:
        log.warning("could not tell whether %s was started", arn, exc_info=True)
        return None
    return True


def _input_url(b: Backends, payload_id: str, name: str) -> str:
    """Where the started execution's input was put (by the attempt that started it)."""
    return b.store.url_for(layout.input_key(payload_id, name))


def _execution_input(b: Backends, payload: ProcessPayload) -> dict[str, Any]:
    return _inline_input(b, payload.to_dict())


def _inline_input(b: Backends, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` itself when it fits an execution's input, else a pointer to it."""
    if fits_inline(data):
        return data
    return {"url": b.store.put_json(layout.oversized_key(), data)}
