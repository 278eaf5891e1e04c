"""The AWS part of ``bench/process.py``: cirrus-feed and cirrus-geo 2.0.0 side by side.

Both implementations' process and update-state run on one moto server, each on its own
deployment, over the same SQS events, set by set, interleaved: cirrus-geo's set, then
cirrus-feed's. Prints each side's payloads/s per stage, the ratio cirrus-feed ÷ cirrus-geo,
and both sides' API calls per payload by operation; exits non-zero (``SystemExit``) unless
every payload was started, updated and ended SUCCEEDED on both sides. See ``bench/README.md``.

Imported by ``bench/process.py`` only when it runs the AWS part: it loads boto3, which the
local loop's subprocesses must not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from _cirrus_geo import (
    CIRRUS_GEO_VERSION,
    CirrusGeoRunner,
    CirrusGeoSide,
    default_python,
    default_venv,
    ensure_venv,
)
from _moto import CallCounter, MotoServer, deploy, new_session

from cirrus_feed.app import App, build_aws
from cirrus_feed.backends.base import ExecutionOutcome
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.reports import StageReport
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.enqueue import Enqueuer
from cirrus_feed.pipeline.process import Processor
from cirrus_feed.pipeline.update_state import StateUpdater

# payloads(count, prefix): the bench's deterministic one-item payloads, ids from the prefix
Payloads = Callable[[int, str], Iterator[dict[str, Any]]]

PROCESS, BATCHED, SINGLE = "process", "update-state", "update-state (batches of 1)"
# Set A's outcomes reach cirrus-feed's update-state in batches of 10 (EventBridge → SQS →
# Lambda), set B's one at a time (EventBridge → Lambda): cirrus-geo takes only the latter.
SETS = (("A", BATCHED, 10), ("B", SINGLE, 1))
GOAL_CALLS = {PROCESS: 3.0, BATCHED: 1.5}  # cirrus-feed's API calls per payload
GOAL_RATIO = 5.0  # cirrus-feed's payloads/s ÷ cirrus-geo 2.0.0's, same server, same events


@dataclass
class Side:
    """One implementation's tallies: API calls and HTTP attempts by stage and operation,
    payloads by stage, and every payload id it was given (checked SUCCEEDED at the end)."""

    name: str
    calls: dict[str, Counter[str]] = field(default_factory=dict)
    attempts: dict[str, Counter[str]] = field(default_factory=dict)
    payloads: Counter[str] = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)


def sqs_event(bodies: Sequence[dict[str, Any]], start: int) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{start + i}",
                "receiptHandle": f"r{start + i}",
                "body": json.dumps(body),
                "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": "1"},
            }
            for i, body in enumerate(bodies)
        ]
    }


@dataclass(frozen=True)
class PayloadSet:
    """A set's SQS Lambda events of 10 records (the same dicts go to both sides) and the
    Cirrus ids of its payloads."""

    name: str
    events: list[dict[str, Any]]
    ids: list[str]

    @classmethod
    def build(cls, name: str, payloads: Payloads, count: int) -> PayloadSet:
        bodies = list(payloads(count, name))
        events = [sqs_event(batch, i * 10) for i, batch in enumerate(batches(bodies, 10))]
        return cls(name, events, [payload_id(body) for body in bodies])


def payload_id(body: dict[str, Any]) -> str:
    """``<collection>/workflow-<workflow>/<item id>`` of a one-item payload."""
    item = body["features"][0]
    return f"{item['collection']}/workflow-{body['process'][0]['workflow']}/{item['id']}"


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def expect(report: StageReport, outcome: str, count: int, what: str) -> None:
    counts = report.counts
    if counts.get(outcome) != count:
        raise SystemExit(f"{what}: expected {count} {outcome}, got {counts}")


def feed_set(
    app: App, counter: CallCounter, side: Side, given: PayloadSet, label: str, update_batch: int
) -> dict[str, float]:
    """cirrus-feed's process and update-state over one set; payloads/s of each stage."""
    count = len(given.ids)
    with counter.counting(PROCESS):
        start = time.perf_counter()
        for event in given.events:
            started = len(event["Records"])
            expect(app.processor.process(normalize(event)), "started", started, "cirrus-feed")
        process_s = time.perf_counter() - start
    outcomes = wait_for_executions(app, given.ids)
    with counter.counting(label):
        start = time.perf_counter()
        for batch in batches(outcomes, update_batch):
            expect(app.updater.update(batch), "updated", len(batch), f"cirrus-feed {label}")
        update_s = time.perf_counter() - start
    side.payloads.update({PROCESS: count, label: count})
    side.ids += given.ids
    return {PROCESS: count / process_s, label: count / update_s}


def geo_set(geo: CirrusGeoSide, side: Side, given: PayloadSet, label: str) -> dict[str, float]:
    """cirrus-geo's own handlers over the same set: process per SQS event, then update_state
    per EventBridge status-change event (its only input shape); payloads/s of each."""
    count = len(given.ids)
    report = geo.runner.invoke("process", given.events)
    started = sum(report["results"])  # its return value: how many it started
    geo_check(report, "process", started == count, f"started {started} of {count} payloads")
    updated = geo.runner.invoke("update-state", geo.status_change_events(given.ids))
    geo_check(updated, "update_state", len(updated["results"]) == count, "events unanswered")
    for stage, done in ((PROCESS, report), (SINGLE, updated)):
        side.calls.setdefault(stage, Counter()).update(done["calls"])
        side.attempts.setdefault(stage, Counter()).update(done["attempts"])
        side.payloads[stage] += count
    side.ids += given.ids
    return {PROCESS: count / report["seconds"], label: count / updated["seconds"]}


def geo_check(report: dict[str, Any], handler: str, ok: bool, why: str) -> None:
    if report["errors"] or not ok:
        errors = report["errors"]
        raise SystemExit(f"cirrus-geo {handler}: {why}; {len(errors)} errors, e.g. {errors[:3]}")


def verify(side: Side, state: Any) -> None:
    """Every payload the side was given ended SUCCEEDED in its state DB."""
    records = state.get_many(side.ids)
    bad = [i for i in side.ids if i not in records or records[i].state is not State.SUCCEEDED]
    if bad:
        raise SystemExit(f"{side.name}: {len(bad)} of {len(side.ids)} not SUCCEEDED: {bad[:3]}")


def measure_aws(
    payloads: Payloads, workflow: str, count: int, rounds: int, geo_python: Path | None
) -> dict[str, Any]:
    """Both implementations on one moto server, each with its own deployment (same schema,
    bucket layout, queue, topics, log group and Pass machine), so the same payload ids and
    events go to both; sets interleaved cirrus-geo, cirrus-feed, cirrus-geo, cirrus-feed."""
    server = MotoServer.start()
    try:
        settings = deploy(server.endpoint, [workflow])
        session = new_session()
        counter = CallCounter()
        counter.attach(session)  # before build_aws: clients copy the session's handlers
        backends = build_aws(settings, session=session)
        app = App(
            settings,
            backends,
            Enqueuer(backends.queue, backends.store),
            Processor(backends),
            StateUpdater(backends),
        )
        feed, geo_side, pairs = Side("cirrus-feed"), Side("cirrus-geo"), []
        with ExitStack() as stack:
            geo = None
            if geo_python is not None:
                geo_settings = deploy(server.endpoint, [workflow])
                log = stack.enter_context(open_log())
                geo = CirrusGeoSide(
                    runner=CirrusGeoRunner(geo_python, geo_settings, log),
                    # Set-up session: reads of cirrus-geo's state and executions go uncounted.
                    reader=build_aws(geo_settings, session=new_session()),
                    sfn=new_session().client("stepfunctions", endpoint_url=server.endpoint),
                )
                stack.callback(geo.reader.close)
                stack.callback(geo.runner.close)
            for number in range(1, rounds + 1):
                for name, label, update_batch in SETS:
                    given = PayloadSet.build(f"R{number}{name}", payloads, count)
                    start = time.perf_counter()
                    geo_rates = geo_set(geo, geo_side, given, label) if geo else {}
                    middle = time.perf_counter()
                    rates = feed_set(app, counter, feed, given, label, update_batch)
                    took = f"cirrus-geo {middle - start:.1f} s, " if geo else ""
                    took += f"cirrus-feed {time.perf_counter() - middle:.1f} s"
                    print(f"set {number}{name}: {took} (with polling)", flush=True)
                    for stage, rate in rates.items():
                        pairs.append((f"{number}{name}", stage, rate, geo_rates.get(stage)))
            feed.calls, feed.attempts = counter.calls, counter.attempts
            verify(feed, app.backends.state)
            if geo is not None:
                verify(geo_side, geo.reader.state)
                print(f"cirrus-geo runner log (its stderr): {log.name}")
        app.close()
    finally:
        server.stop()
    return {
        "count": count,
        "rounds": rounds,
        "version": CIRRUS_GEO_VERSION,
        "feed": feed,
        "geo": geo_side,
        "pairs": pairs,
    }


def open_log() -> IO[str]:
    return tempfile.NamedTemporaryFile(  # closed by the caller's ExitStack
        "w+", prefix="cirrus-geo-runner-", suffix=".log", delete=False
    )


def wait_for_executions(app: App, ids: list[str]) -> list[ExecutionOutcome]:
    """Poll every execution of these payloads to its end (not counted: the bench's own)."""
    records = app.backends.state.get_many(ids)
    outcomes = []
    deadline = time.monotonic() + 120
    for payload_id in ids:
        arn = records[payload_id].latest_execution
        assert arn is not None, payload_id
        while (outcome := app.backends.runner.describe(arn)) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"execution {arn} did not finish")
            time.sleep(0.02)
        outcomes.append(outcome)
    return outcomes


def print_aws(results: dict[str, Any]) -> None:
    feed, geo, pairs = results["feed"], results["geo"], results["pairs"]
    with_geo = bool(geo.ids)
    print(
        f"\nAWS, moto server: cirrus-feed vs cirrus-geo {results['version']}'s own process and "
        "update_state handlers"
    )
    print(
        f"{results['count']} payloads a set, sets A and B in each of {results['rounds']} round(s), "
        "each set to cirrus-geo first, then the same SQS events of 10 records to cirrus-feed;"
    )
    print("update-state: set A in batches of 10 on cirrus-feed, set B one outcome per call;")
    print("cirrus-geo's update_state takes one EventBridge event per invocation (both sets);")
    print("payloads/s = payloads ÷ wall time of the stage's own calls (polling not included)\n")
    header = f"{'set':<4} {'stage':<28} {'cirrus-feed':>11} {'cirrus-geo':>11} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, stage, ours, theirs in pairs:
        print(f"{name:<4} {stage:<28} {ours:>11,.1f} {_rate(theirs):>11} {_ratio(ours, theirs):>7}")
    print("-" * len(header))
    for stage in (PROCESS, BATCHED, SINGLE):
        ours = statistics.median(p[2] for p in pairs if p[1] == stage)
        theirs = statistics.median(p[3] for p in pairs if p[1] == stage) if with_geo else None
        ratios = [p[2] / p[3] for p in pairs if p[1] == stage and p[3]]
        ratio = statistics.median(ratios) if ratios else None
        verdict = ""
        if ratio is not None:
            verdict = f"{'meets' if ratio >= GOAL_RATIO else 'MISSES'} ≥{GOAL_RATIO:.0f}x"
        print(
            f"{'med':<4} {stage:<28} {ours:>11,.1f} {_rate(theirs):>11} "
            f"{'—' if ratio is None else f'{ratio:.2f}x':>7}  {verdict}"
        )
    print("(ratio = median of the per-set ratios: each pair ran back to back)")
    print("\nAWS API calls per payload, all sets, by operation\n")
    header = f"{'stage / operation':<36} {'cirrus-feed':>11} {'cirrus-geo':>11}   goal (ours)"
    print(header)
    print("-" * len(header))
    for stage in (PROCESS, BATCHED, SINGLE):
        mine, count = feed.calls.get(stage, Counter()), feed.payloads[stage]
        geo_stage = SINGLE if stage == BATCHED else stage  # geo has one update-state shape
        theirs, geo_count = geo.calls.get(geo_stage, Counter()), geo.payloads[geo_stage]
        goal = GOAL_CALLS.get(stage)
        ours = sum(mine.values()) / count
        verdict = "" if goal is None else f"≤ {goal}  {'ok' if ours <= goal else 'MISSED'}"
        geo_total = sum(theirs.values()) / geo_count if geo_count else None
        print(f"{stage:<36} {ours:>11.2f} {_calls(geo_total):>11}   {verdict}")
        for operation in sorted(set(mine) | set(theirs), key=lambda op: -mine[op] - theirs[op]):
            geo_n = theirs[operation] / geo_count if geo_count else None
            print(f"    {operation:<32} {mine[operation] / count:>11.2f} {_calls(geo_n):>11}")
    if with_geo:
        print(f"(cirrus-geo's {BATCHED} row: its one update_state shape, the batches-of-1 one)")
    for side in (feed, geo) if with_geo else (feed,):
        retried = {
            k: sum(v.values()) - sum(side.calls[k].values()) for k, v in side.attempts.items()
        }
        print(f"HTTP attempts beyond one per call (botocore retries), {side.name}: {retried}")


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _ratio(ours: float, theirs: float | None) -> str:
    return "—" if not theirs else f"{ours / theirs:.2f}x"


def _calls(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace, payloads: Payloads, workflow: str) -> None:
    """The AWS part with ``bench/process.py``'s options (`add_arguments`)."""
    geo_python = None
    if not args.no_cirrus_geo:
        venv = args.cirrus_geo_venv or default_venv()
        geo_python = ensure_venv(venv, args.cirrus_geo_python or default_python())
    print_aws(measure_aws(payloads, workflow, args.aws_payloads, args.aws_rounds, geo_python))
