"""Benchmark of the pipeline: local loop throughput; AWS calls and throughput vs cirrus-geo.

Run by hand (never by CI), from the repository root::

    .venv/bin/python bench/process.py [--sizes 1000,10000] [--workers 1,2]
                                      [--aws-payloads 200] [--skip-aws] [--profile]
    .venv/bin/python bench/process.py --skip-local [--aws-payloads 200] [--aws-rounds 2]

See ``bench/README.md`` for what the numbers mean. Every local measurement runs in a fresh
subprocess, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cirrus_feed.app import App, build_app, build_aws
from cirrus_feed.backends.base import ExecutionOutcome, StateQuery
from cirrus_feed.backends.local.sqlite_queue import SqlitePayloadQueue
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, ProcessSettings, Settings
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.reports import StageReport
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.enqueue import SEND_CHUNK, Enqueuer
from cirrus_feed.pipeline.process import Processor
from cirrus_feed.pipeline.update_state import StateUpdater
from cirrus_feed.service.worker import LocalWorker, WorkTotals, run_workers

WORKFLOW = "publish-only"
WORKFLOWS = {WORKFLOW: Workflow(tasks=[TaskSpec(task="publish")])}
GOAL_LOCAL_RATE = 1000.0  # payloads/s on a 2-core machine


def make_payload(index: int, prefix: str = "BENCH") -> dict[str, Any]:
    """A Sentinel-2-like one-item payload for the publish-only workflow (~1 KB as JSON)."""
    item_id = f"{prefix}_{index:07d}_L2A"
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": item_id,
                "collection": "bench-s2-l2a",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[14, 52], [15.6, 52], [15.6, 53], [14, 53], [14, 52]]],
                },
                "bbox": [14.0, 52.0, 15.6, 53.0],
                "properties": {"datetime": "2026-11-21T10:15:00Z", "eo:cloud_cover": 12.5},
                "assets": {
                    name: {
                        "href": f"s3://bench-bucket/s2/33/U/UP/{item_id}/{name}.tif",
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    }
                    for name in ("visual", "red", "green", "blue")
                },
                "links": [],
            }
        ],
        "process": [
            {
                "workflow": WORKFLOW,
                "upload_options": {"path_template": "${collection}/${year}/${month}/${id}"},
            }
        ],
    }


def payloads(count: int, prefix: str = "BENCH") -> Iterator[dict[str, Any]]:
    # A generator, so the bench itself holds no N-sized list (RSS must not grow with N).
    return (make_payload(i, prefix) for i in range(count))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: against wall time it shows
    whether the loop computes (≈ 1 core per busy thread) or waits (disk, locks)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def system_seconds() -> float:
    """Kernel CPU time: file creation, fsync-free writes, locks."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


# -- local loop (each run in a fresh subprocess) ----------------------------------------------


def local_app(root: Path) -> App:
    settings = Settings(
        local=LocalSettings(root=root),
        workflows=WORKFLOWS,
        process=ProcessSettings(wait_seconds=0),
    )
    return build_app(settings)


def measure_loop(size: int, workers: int, profile: bool, tmpdir: str | None) -> dict[str, Any]:
    """enqueue → process → inline publish → update-state for ``size`` payloads."""
    with tempfile.TemporaryDirectory(prefix="cirrus-feed-bench-", dir=tmpdir) as tmp:
        app = local_app(Path(tmp) / "root")
        try:
            setup_rss = peak_rss_mib()
            profiler = cProfile.Profile() if profile else None
            sys_start = system_seconds()
            cpu_start, start = cpu_seconds(), time.perf_counter()
            queued = app.enqueuer.enqueue(payloads(size))
            enqueued = time.perf_counter()
            if profiler is not None:  # cProfile sees one thread: drain on this one
                totals = WorkTotals()
                profiler.runcall(LocalWorker(app).drain, totals)
            else:
                totals = run_workers(app, workers, once=True, stop=threading.Event())
            done, cpu_done = time.perf_counter(), cpu_seconds()
            sys_done = system_seconds()
            # Read before clean-up: removing the temp folder (N directories) costs memory too.
            peak_rss = peak_rss_mib()
            succeeded = app.backends.state.count(StateQuery(state=State.SUCCEEDED))
        finally:
            app.close()
    return {
        "size": size,
        "workers": workers,
        "enqueue_s": enqueued - start,
        "loop_s": done - enqueued,
        "total_s": done - start,
        "cpu_s": cpu_done - cpu_start,
        "sys_s": sys_done - sys_start,
        "queued": queued.counts,
        "process": totals.process.counts,
        "update": totals.update.counts,
        "succeeded": succeeded,
        "setup_rss_mib": setup_rss,
        "peak_rss_mib": peak_rss,
        "profile": _profile_text(profiler) if profiler is not None else None,
    }


FLOOR_REPEATS = 3  # the floor takes well under a second: keep the best of a few


def measure_floor(size: int, tmpdir: str | None) -> dict[str, Any]:
    """The queue-only floor: SQLite send (chunks as the enqueuer sends them) + receive(10)
    + delete of the same bodies, one thread, nothing else; best of `FLOOR_REPEATS`."""
    setup_rss = peak_rss_mib()
    best_wall = best_cpu = float("inf")
    for _ in range(FLOOR_REPEATS):
        with tempfile.TemporaryDirectory(prefix="cirrus-feed-bench-", dir=tmpdir) as tmp:
            queue = SqlitePayloadQueue(Path(tmp) / "queue.sqlite")
            try:
                cpu_start, start = cpu_seconds(), time.perf_counter()
                bodies = (json.dumps(p) for p in payloads(size))
                while chunk := list(islice(bodies, SEND_CHUNK)):
                    queue.send(chunk)
                received = 0
                while messages := queue.receive(10):
                    received += len(messages)
                    queue.delete([m.receipt for m in messages])
                best_wall = min(best_wall, time.perf_counter() - start)
                best_cpu = min(best_cpu, cpu_seconds() - cpu_start)
                peak_rss = peak_rss_mib()
            finally:
                queue.close()
        assert received == size, f"floor received {received} of {size} messages"
    return {
        "size": size,
        "total_s": best_wall,
        "cpu_s": best_cpu,
        "setup_rss_mib": setup_rss,
        "peak_rss_mib": peak_rss,
    }


def _profile_text(profiler: cProfile.Profile, top: int = 30) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def in_subprocess(**job: Any) -> dict[str, Any]:
    """Run `child` with ``job`` in a fresh interpreter; its JSON result (last stdout line)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(job: dict[str, Any]) -> dict[str, Any]:
    if job["kind"] == "floor":
        return measure_floor(job["size"], job["tmpdir"])
    return measure_loop(job["size"], job["workers"], job["profile"], job["tmpdir"])


# -- AWS: cirrus-feed and cirrus-geo 2.0.0 side by side on moto's server ----------------------

PROCESS, BATCHED, SINGLE = "process", "update-state", "update-state (batches of 1)"
# Set A's outcomes reach cirrus-feed's update-state in batches of 10 (EventBridge → SQS →
# Lambda), set B's one at a time (EventBridge → Lambda): cirrus-geo takes only the latter.
SETS = (("A", BATCHED, 10), ("B", SINGLE, 1))
GOAL_CALLS = {PROCESS: 3.0, BATCHED: 1.5}  # cirrus-feed's API calls per payload
GOAL_RATIO = 5.0  # cirrus-feed's payloads/s ÷ cirrus-geo 2.0.0's, same server, same events

if TYPE_CHECKING:  # imported where used: the local loop's children must not load boto3
    from _cirrus_geo import CirrusGeoSide
    from _moto import CallCounter


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


def set_events(prefix: str, count: int) -> list[dict[str, Any]]:
    """The set's SQS Lambda events of 10 records: the same ones go to both sides."""
    bodies = list(payloads(count, prefix))
    return [sqs_event(batch, i * 10) for i, batch in enumerate(batches(bodies, 10))]


def set_ids(prefix: str, count: int) -> list[str]:
    return [f"bench-s2-l2a/workflow-{WORKFLOW}/{prefix}_{i:07d}_L2A" for i in range(count)]


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def expect(report: StageReport, outcome: str, count: int, what: str) -> None:
    counts = report.counts
    if counts.get(outcome) != count:
        raise SystemExit(f"{what}: expected {count} {outcome}, got {counts}")


def feed_set(
    app: App,
    counter: CallCounter,
    side: Side,
    prefix: str,
    count: int,
    label: str,
    update_batch: int,
) -> dict[str, float]:
    """cirrus-feed's process and update-state over one set; payloads/s of each stage."""
    events = set_events(prefix, count)
    with counter.counting(PROCESS):
        start = time.perf_counter()
        for event in events:
            started = len(event["Records"])
            expect(app.processor.process(normalize(event)), "started", started, "cirrus-feed")
        process_s = time.perf_counter() - start
    ids = set_ids(prefix, count)
    outcomes = wait_for_executions(app, ids)
    with counter.counting(label):
        start = time.perf_counter()
        for batch in batches(outcomes, update_batch):
            expect(app.updater.update(batch), "updated", len(batch), f"cirrus-feed {label}")
        update_s = time.perf_counter() - start
    side.payloads.update({PROCESS: count, label: count})
    side.ids += ids
    return {PROCESS: count / process_s, label: count / update_s}


def geo_set(
    geo: CirrusGeoSide, side: Side, prefix: str, count: int, label: str
) -> dict[str, float]:
    """cirrus-geo's own handlers over the same set: process per SQS event, then update_state
    per EventBridge status-change event (its only input shape); payloads/s of each."""
    report = geo.runner.invoke("process", set_events(prefix, count))
    started = sum(report["results"])  # its return value: how many it started
    geo_check(report, "process", started == count, f"started {started} of {count} payloads")
    ids = set_ids(prefix, count)
    updated = geo.runner.invoke("update-state", geo.status_change_events(ids))
    geo_check(updated, "update_state", len(updated["results"]) == count, "events unanswered")
    for stage, done in ((PROCESS, report), (SINGLE, updated)):
        side.calls.setdefault(stage, Counter()).update(done["calls"])
        side.attempts.setdefault(stage, Counter()).update(done["attempts"])
        side.payloads[stage] += count
    side.ids += ids
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


def measure_aws(count: int, rounds: int, geo_python: Path | None) -> dict[str, Any]:
    """Both implementations on one moto server, each with its own deployment (same schema,
    bucket layout, queue, topics, log group and Pass machine), so the same payload ids and
    events go to both; sets interleaved cirrus-geo, cirrus-feed, cirrus-geo, cirrus-feed."""
    from _cirrus_geo import CIRRUS_GEO_VERSION, CirrusGeoRunner, CirrusGeoSide
    from _moto import CallCounter, MotoServer, deploy, new_session

    server = MotoServer.start()
    try:
        settings = deploy(server.endpoint, [WORKFLOW])
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
                geo_settings = deploy(server.endpoint, [WORKFLOW])
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
                    prefix = f"R{number}{name}"
                    start = time.perf_counter()
                    geo_rates = geo_set(geo, geo_side, prefix, count, label) if geo else {}
                    middle = time.perf_counter()
                    rates = feed_set(app, counter, feed, prefix, count, label, update_batch)
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


# -- output -------------------------------------------------------------------------------------


def print_local(loops: list[dict[str, Any]], floors: dict[int, dict[str, Any]], where: str) -> None:
    print("\nLocal loop: enqueue → process → inline publish → update-state (publish-only)")
    size = len(json.dumps(make_payload(0)))
    print(f"local.root under {where}; payloads of {size:,} bytes; one fresh subprocess per row;")
    print("rates in payloads/s;")
    print("floor = SqlitePayloadQueue send+receive+delete of the same bodies, nothing else;")
    print("cpu ms = CPU time (all threads, user+sys) per payload, of which sys ms in the kernel;")
    print("busy = CPU time / wall time (1.00 = one core busy all along)\n")
    header = (
        f"{'N':>7} {'workers':>7} {'enqueue':>8} {'loop':>6} {'total':>6} {'xfloor':>7} "
        f"{'cpu ms':>6} {'sys ms':>6} {'busy':>5} {'RSS setup':>10} {'RSS peak':>9}  check"
    )
    print(header)
    print("-" * len(header))
    for size, floor in floors.items():
        floor_rate = size / floor["total_s"]
        print(
            f"{size:>7,} {'floor':>7} {'':>8} {'':>6} {floor_rate:>6,.0f} {'1.000x':>7} "
            f"{floor['cpu_s'] / size * 1e3:>6.3f} {'':>6} "
            f"{floor['cpu_s'] / floor['total_s']:>5.2f} "
            f"{floor['setup_rss_mib']:>7.1f}MiB {floor['peak_rss_mib']:>6.1f}MiB"
        )
        for run in (r for r in loops if r["size"] == size):
            total = size / run["total_s"]
            check = "ok" if run["succeeded"] == size else f"{run['succeeded']} SUCCEEDED"
            print(
                f"{size:>7,} {run['workers']:>7} {size / run['enqueue_s']:>8,.0f} "
                f"{size / run['loop_s']:>6,.0f} {total:>6,.0f} {total / floor_rate:>6.3f}x "
                f"{run['cpu_s'] / size * 1e3:>6.3f} {run['sys_s'] / size * 1e3:>6.3f} "
                f"{run['cpu_s'] / run['total_s']:>5.2f} "
                f"{run['setup_rss_mib']:>7.1f}MiB {run['peak_rss_mib']:>6.1f}MiB  {check}"
            )
    print()
    for run in loops:
        size = run["size"]
        floor_rate = size / floors[size]["total_s"]
        total = size / run["total_s"]
        verdict = "meets" if total >= GOAL_LOCAL_RATE else "MISSES"
        print(
            f"N={size:,}, {run['workers']} worker(s): full loop {total:,.0f} payloads/s = "
            f"{total / floor_rate:.3f}x the queue-only floor ({floor_rate:,.0f}/s); "
            f"{verdict} the goal of {GOAL_LOCAL_RATE:,.0f}/s"
        )


def print_load(when: str) -> None:
    # Wall-clock rates are only comparable on an otherwise idle machine: say how busy it was.
    one, five, _ = os.getloadavg()
    print(f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs")


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


# -- command line -------------------------------------------------------------------------------


def add_aws_arguments(parser: argparse.ArgumentParser) -> None:
    aws = parser.add_argument_group("AWS (moto server), side by side with cirrus-geo 2.0.0")
    aws.add_argument("--skip-local", action="store_true", help="AWS only")
    aws.add_argument("--aws-rounds", type=int, default=2, help="rounds of sets A and B")
    aws.add_argument(
        "--no-cirrus-geo", action="store_true", help="cirrus-feed only (no venv, no ratios)"
    )
    aws.add_argument(
        "--cirrus-geo-python", help="Python >= 3.12 to build cirrus-geo's venv (default: pyenv's)"
    )
    aws.add_argument("--cirrus-geo-venv", type=Path, help="cirrus-geo's venv, built if missing")


def run_aws(args: argparse.Namespace) -> None:
    from _cirrus_geo import default_python, default_venv, ensure_venv

    geo_python = None
    if not args.no_cirrus_geo:
        venv = args.cirrus_geo_venv or default_venv()
        geo_python = ensure_venv(venv, args.cirrus_geo_python or default_python())
    print_aws(measure_aws(args.aws_payloads, args.aws_rounds, geo_python))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000", help="payload counts, comma-separated")
    parser.add_argument("--workers", default="1,2", help="local worker counts, comma-separated")
    parser.add_argument("--aws-payloads", type=int, default=200, help="payloads per AWS set")
    parser.add_argument("--skip-aws", action="store_true", help="local loop only")
    add_aws_arguments(parser)
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile one worker on the largest size"
    )
    parser.add_argument(
        "--tmpdir", help="where local roots are created (default: the system temp folder)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.skip_local:
        print_load("before")
        run_aws(args)
        print_load("after")
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    tmp = args.tmpdir
    print_load("before")
    floors = {size: in_subprocess(kind="floor", size=size, tmpdir=tmp) for size in sizes}
    loops = [
        in_subprocess(kind="loop", size=size, workers=w, profile=False, tmpdir=tmp)
        for size in sizes
        for w in workers
    ]
    print_local(loops, floors, tmp or tempfile.gettempdir())
    if args.profile:
        profiled = in_subprocess(kind="loop", size=max(sizes), workers=1, profile=True, tmpdir=tmp)
        print(f"\ncProfile of one worker draining {max(sizes):,} payloads (main thread):")
        print(profiled["profile"])
    if not args.skip_aws:
        run_aws(args)
    print_load("after")


if __name__ == "__main__":
    main()
