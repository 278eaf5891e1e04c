"""Benchmark of the ``events`` feeder: S3 notifications through normalise → map → enqueue.

Run by hand (never by CI), from the repository root::

    .venv/bin/python bench/events.py [--messages 50000] [--rounds 3] [--profile]

Generates ``--messages`` SQS records, each an S3 ``ObjectCreated`` notification, into an
NDJSON file, then runs, ``--rounds`` times and interleaved, each in a fresh subprocess:

* baseline: ``json.loads`` of each line and `envelopes.normalize` of it (the floor: what any
  consumer must pay to read the messages);
* feed: the ``events`` feeder (``s3-object`` mapper) reading the file through `FeedRunner`
  into the local pipeline's queue (seen-message cache, dedupe, enqueue, run records).

Both sides count the same unit, messages. The feed is checked: the run succeeded, it
enqueued one payload per message and the queue holds exactly that many; if not, the bench
exits 1. Prints, per side, the best round's messages/s by wall time and by CPU time (user +
system of the process) and the ratio feed ÷ baseline of each. The goal (at least 0.5x) is judged
on CPU time, which other processes on a shared machine do not inflate.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.5  # feed ÷ normalize, messages/s


def write_messages(path: Path, count: int) -> None:
    with path.open("w") as out:
        for n in range(count):
            record = {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-28T01:02:03.000Z",
                "s3": {
                    "bucket": {"name": "uploads"},
                    "object": {
                        "key": f"scenes/{n // 100:05d}/scene-{n:07d}.tif",
                        "size": 1024,
                        "eTag": f"{n:032x}",
                        "sequencer": f"{n:016X}",
                    },
                },
            }
            body = json.dumps({"Records": [record]})
            out.write(
                json.dumps(
                    {
                        "messageId": f"m{n}",
                        "receiptHandle": f"r{n}",
                        "body": body,
                        "eventSource": "aws:sqs",
                    }
                )
                + "\n"
            )


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def measure_baseline(messages: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from cirrus_feed.model.envelopes import normalize

    lines = messages.read_text().splitlines()
    start, cpu = time.perf_counter(), _cpu()
    count = envelopes = 0
    for line in lines:
        envelopes += len(normalize(json.loads(line)))
        count += 1
    return {
        "messages": count,
        "envelopes": envelopes,
        "seconds": time.perf_counter() - start,
        "cpu": _cpu() - cpu,
        "rss": peak_rss_mib(),
    }


def measure_feed(messages: Path, root: Path, profile: Path | None = None) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from cirrus_feed.app import build_app
    from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
    from cirrus_feed.config import LocalSettings, Settings
    from cirrus_feed.feeding.contract import FeedRequest
    from cirrus_feed.feeding.runner import FeedRunner

    expected = sum(1 for _ in messages.open("rb"))
    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])},
        feeders={
            "uploads": {
                "type": "events",
                "mapper": "s3-object",
                "options": {"item": {"collection": "scenes", "id": "{stem}", "asset": "image"}},
                "source": {"file": str(messages)},
                "process": {"workflow": "wf"},
            }
        },
    )
    app = build_app(settings)
    runner = FeedRunner(app)
    profiler = cProfile.Profile() if profile is not None else None
    start, cpu = time.perf_counter(), _cpu()
    if profiler is not None:
        profiler.enable()
    result = runner.run("uploads", app.feeders["uploads"], FeedRequest())
    if profiler is not None:
        profiler.disable()
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    depth = app.backends.queue.depth()
    sample = app.backends.queue.receive(1)
    first = json.loads(sample[0].body) if sample else {}
    app.close()
    problems = []
    if not result.ok:
        problems.append(f"run not ok (status {result.run.status}): {dict(result.counts)}")
    if result.counts["enqueued"] != expected:
        problems.append(f"enqueued {result.counts['enqueued']:,} of {expected:,} messages")
    if depth.visible + depth.in_flight != expected:
        problems.append(f"the queue holds {depth.visible + depth.in_flight:,}, not {expected:,}")
    if not str(first.get("id", "")).startswith("scenes/workflow-wf/scene-"):
        problems.append(f"queued body is not a payload of the feed: {str(first)[:200]}")
    return {
        "messages": expected,
        "enqueued": result.counts["enqueued"],
        "queued": depth.visible + depth.in_flight,
        "seconds": seconds,
        "cpu": cpu,
        "rss": peak_rss_mib(),
        "problems": problems,
    }


def in_subprocess(kind: str, *args: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def child(kind: str, args: list[str]) -> None:
    if kind == "baseline":
        result = measure_baseline(Path(args[0]))
    else:
        profile = Path(args[2]) if len(args) > 2 else None
        result = measure_feed(Path(args[0]), Path(args[1]), profile)
    print(json.dumps(result))


def best(rounds: list[dict[str, Any]], key: str) -> float:
    return min(float(r[key]) for r in rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one extra feed run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1:])
        return 0
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        messages = Path(tmp) / "messages.ndjson"
        write_messages(messages, args.messages)
        bases, feeds = [], []
        for number in range(args.rounds):  # interleaved, so a busy spell hits both sides
            bases.append(in_subprocess("baseline", messages))
            feeds.append(in_subprocess("feed", messages, Path(tmp) / f"root{number}"))
        if args.profile:
            stats = Path(tmp) / "feed.prof"
            in_subprocess("feed", messages, Path(tmp) / "profiled", stats)
            report = pstats.Stats(str(stats))
            report.sort_stats("tottime").print_stats(25)
            report.sort_stats("cumulative").print_stats(40)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    count = args.messages
    rows = [("normalize (floor)", bases), ("events feed", feeds)]
    wall = {name: count / best(r, "seconds") for name, r in rows}
    cpu = {name: count / best(r, "cpu") for name, r in rows}
    print(f"{'':<20}{'messages':>10}{'msg/s':>10}{'msg/s CPU':>11}{'µs CPU/msg':>12}{'RSS':>10}")
    for name, r in rows:
        print(
            f"{name:<20}{count:>10,}{wall[name]:>10,.0f}{cpu[name]:>11,.0f}"
            f"{1e6 / cpu[name]:>12.1f}{max(x['rss'] for x in r):>7.1f}MiB"
        )
    ratio_wall = wall["events feed"] / wall["normalize (floor)"]
    ratio_cpu = cpu["events feed"] / cpu["normalize (floor)"]
    problems = sorted({p for r in feeds for p in r["problems"]})
    verdict = "meets" if ratio_cpu >= GOAL else "MISSES"
    print(
        f"\nevents feed ÷ normalize, best of {args.rounds} interleaved rounds: "
        f"{ratio_cpu:.2f}x by CPU time, {ratio_wall:.2f}x by wall time; "
        f"{verdict} the goal of {GOAL}x (CPU)"
    )
    if problems:
        print("\nFEED CHECK FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"checked: every round enqueued {count:,} payloads, one per message, all on the queue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
