"""Benchmark of the ``events`` feeder: S3 notifications through normalise → map → enqueue.

Run by hand (never by CI), from the repository root::

    .venv/bin/python bench/events.py [--messages 100000]

Generates ``--messages`` SQS records, each an S3 ``ObjectCreated`` notification, into an
NDJSON file, then in a fresh subprocess per measurement:

* baseline: `envelopes.normalize` alone over the same messages (the floor: what any
  consumer must pay to read them);
* feed: the ``events`` feeder (``s3-object`` mapper) reading the file through `FeedRunner`
  into the local pipeline's queue (dedupe, seen-message cache, enqueue, run records).

Prints messages/s, the ratio against the baseline, and peak RSS (``VmHWM``). Goal: ≥ 5,000
messages/s through the whole feed on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 5_000


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


def measure_baseline(messages: Path) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from cirrus_feed.model.envelopes import normalize

    lines = messages.read_text().splitlines()
    start = time.perf_counter()
    count = 0
    for line in lines:
        count += len(normalize(json.loads(line)))
    seconds = time.perf_counter() - start
    return {"messages": count, "seconds": seconds, "rss": peak_rss_mib()}


def measure_feed(messages: Path, root: Path) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from cirrus_feed.app import build_app
    from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
    from cirrus_feed.config import LocalSettings, Settings
    from cirrus_feed.feeding.contract import FeedRequest
    from cirrus_feed.feeding.runner import FeedRunner

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
    start = time.perf_counter()
    result = FeedRunner(app).run("uploads", app.feeders["uploads"], FeedRequest())
    seconds = time.perf_counter() - start
    app.close()
    return {
        "messages": result.counts["seen"],
        "enqueued": result.counts["enqueued"],
        "seconds": seconds,
        "rss": peak_rss_mib(),
    }


def in_subprocess(kind: str, messages: Path, root: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(messages), str(root)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, messages, root = args.child
        result = (
            measure_baseline(Path(messages))
            if kind == "baseline"
            else measure_feed(Path(messages), Path(root))
        )
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        messages = Path(tmp) / "messages.ndjson"
        write_messages(messages, args.messages)
        base = in_subprocess("baseline", messages, Path(tmp) / "unused")
        feed = in_subprocess("feed", messages, Path(tmp) / "root")
    base_rate = base["messages"] / base["seconds"]
    feed_rate = feed["messages"] / feed["seconds"]
    print(f"{'':<22}{'messages':>10}{'msg/s':>10}{'ratio':>8}{'peak RSS':>12}")
    print(
        f"{'normalize (floor)':<22}{base['messages']:>10,.0f}{base_rate:>10,.0f}"
        f"{1:>8.2f}{base['rss']:>10.1f}MiB"
    )
    print(
        f"{'events feed':<22}{feed['messages']:>10,.0f}{feed_rate:>10,.0f}"
        f"{feed_rate / base_rate:>8.2f}{feed['rss']:>10.1f}MiB"
    )
    verdict = "meets" if feed_rate >= GOAL else "MISSES"
    print(
        f"\nevents feed: {feed_rate:,.0f} messages/s ({feed['enqueued']:,.0f} payloads "
        f"enqueued) = {feed_rate / base_rate:.2f}x normalize alone; {verdict} the goal of "
        f"{GOAL:,}/s"
    )


if __name__ == "__main__":
    main()
