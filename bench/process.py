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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.base import StateQuery
from cirrus_feed.backends.local.sqlite_queue import SqlitePayloadQueue
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, ProcessSettings, Settings
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.enqueue import SEND_CHUNK
from cirrus_feed.service.worker import LocalWorker, WorkTotals, run_workers

WORKFLOW = "publish-only"
WORKFLOWS = {WORKFLOW: Workflow(tasks=[TaskSpec(task="publish")])}
GOAL_LOCAL_RATIO = 0.25  # the local loop's rate ÷ the queue-only floor's (issue 12)


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
    """The peak RSS of this process or of its largest ended child (a worker process)."""
    whose = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    return max(resource.getrusage(w).ru_maxrss for w in whose) / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads, and of its ended children (the
    worker processes): against wall time it shows whether the loop computes (≈ 1 core per
    busy worker) or waits (disk, locks)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def system_seconds() -> float:
    """Kernel CPU time (this process and its ended children): file creation, writes, locks."""
    return sum(
        resource.getrusage(who).ru_stime for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )


# -- local loop (each run in a fresh subprocess) ----------------------------------------------


def local_app(root: Path) -> App:
    settings = Settings(
        local=LocalSettings(root=root),
        workflows=WORKFLOWS,
        process=ProcessSettings(wait_seconds=0),
    )
    return build_app(settings)


def measure_loop(
    size: int, workers: int, profile: bool, tmpdir: str | None, processes: bool = False
) -> dict[str, Any]:
    """enqueue → process → inline publish → update-state for ``size`` payloads; with
    ``processes`` the workers are OS processes (their CPU time is counted as children's)."""
    with tempfile.TemporaryDirectory(prefix="cirrus-feed-bench-", dir=tmpdir) as tmp:
        app = local_app(Path(tmp) / "root")
        try:
            setup_rss = peak_rss_mib()
            # CPU time, not wall time: on a shared machine waits for the CPU would blur it.
            profiler = cProfile.Profile(time.process_time) if profile else None
            sys_start = system_seconds()
            cpu_start, start = cpu_seconds(), time.perf_counter()
            queued = app.enqueuer.enqueue(payloads(size))
            enqueued = time.perf_counter()
            if profiler is not None:  # cProfile sees one thread: drain on this one
                totals = WorkTotals()
                profiler.runcall(LocalWorker(app).drain, totals)
            else:
                totals = run_workers(
                    app, workers, once=True, stop=threading.Event(), processes=processes
                )
            done, cpu_done = time.perf_counter(), cpu_seconds()
            sys_done = system_seconds()
            # Read before clean-up: removing the temp folder (N directories) costs memory too.
            peak_rss = peak_rss_mib()
            succeeded = app.backends.state.count(StateQuery(state=State.SUCCEEDED))
        finally:
            app.close()
    return {
        "size": size,
        "workers": f"{workers}p" if processes else str(workers),
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
    return measure_loop(
        job["size"], job["workers"], job["profile"], job["tmpdir"], job.get("processes", False)
    )


# -- output -------------------------------------------------------------------------------------


def print_local(loops: list[dict[str, Any]], floors: dict[int, dict[str, Any]], where: str) -> bool:
    """Print the table; whether every run ended with every payload SUCCEEDED."""
    print("\nLocal loop: enqueue → process → inline publish → update-state (publish-only)")
    size = len(json.dumps(make_payload(0)))
    print(f"local.root under {where}; payloads of {size:,} bytes; one fresh subprocess per row;")
    print("rates in payloads/s;")
    print("floor = SqlitePayloadQueue send+receive+delete of the same bodies, nothing else;")
    print("cpu ms = CPU time (all threads, user+sys) per payload, of which sys ms in the kernel;")
    print("xcpu = the floor's cpu ms ÷ the run's (the ratio a busy, shared machine blurs least);")
    print("busy = CPU time / wall time (1.00 = one core busy all along)\n")
    header = (
        f"{'N':>7} {'workers':>7} {'enqueue':>8} {'loop':>6} {'total':>6} {'xfloor':>7} "
        f"{'cpu ms':>6} {'sys ms':>6} {'xcpu':>6} {'busy':>5} {'RSS setup':>10} {'RSS peak':>9}"
        "  check"
    )
    print(header)
    print("-" * len(header))
    all_ok = True
    for size, floor in floors.items():
        floor_rate = size / floor["total_s"]
        floor_cpu = floor["cpu_s"] / size * 1e3
        print(
            f"{size:>7,} {'floor':>7} {'':>8} {'':>6} {floor_rate:>6,.0f} {'1.000x':>7} "
            f"{floor_cpu:>6.3f} {'':>6} {'1.000x':>6} "
            f"{floor['cpu_s'] / floor['total_s']:>5.2f} "
            f"{floor['setup_rss_mib']:>7.1f}MiB {floor['peak_rss_mib']:>6.1f}MiB"
        )
        for run in (r for r in loops if r["size"] == size):
            total = size / run["total_s"]
            cpu = run["cpu_s"] / size * 1e3
            ok = run["succeeded"] == size
            all_ok = all_ok and ok
            check = "ok" if ok else f"{run['succeeded']} SUCCEEDED"
            print(
                f"{size:>7,} {run['workers']:>7} {size / run['enqueue_s']:>8,.0f} "
                f"{size / run['loop_s']:>6,.0f} {total:>6,.0f} {total / floor_rate:>6.3f}x "
                f"{cpu:>6.3f} {run['sys_s'] / size * 1e3:>6.3f} {floor_cpu / cpu:>5.3f}x "
                f"{run['cpu_s'] / run['total_s']:>5.2f} "
                f"{run['setup_rss_mib']:>7.1f}MiB {run['peak_rss_mib']:>6.1f}MiB  {check}"
            )
    print()
    for run in loops:
        size = run["size"]
        floor_rate = size / floors[size]["total_s"]
        total = size / run["total_s"]
        ratio = total / floor_rate
        verdict = "meets" if ratio >= GOAL_LOCAL_RATIO else "MISSES"
        print(
            f"N={size:,}, {run['workers']} worker(s): full loop {total:,.0f} payloads/s = "
            f"{ratio:.3f}x the queue-only floor ({floor_rate:,.0f}/s); "
            f"{verdict} the goal of {GOAL_LOCAL_RATIO}x"
        )
    return all_ok


def print_load(when: str) -> None:
    # Wall-clock rates are only comparable on an otherwise idle machine: say how busy it was.
    one, five, _ = os.getloadavg()
    print(f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs")


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
    """The AWS part, side by side with cirrus-geo 2.0.0: ``bench/_aws_process.py``."""
    from _aws_process import run  # loads boto3: only when the AWS part runs

    run(args, payloads, WORKFLOW)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000", help="payload counts, comma-separated")
    parser.add_argument("--workers", default="1,2", help="local worker counts, comma-separated")
    parser.add_argument("--aws-payloads", type=int, default=200, help="payloads per AWS set")
    parser.add_argument("--skip-aws", action="store_true", help="local loop only")
    add_aws_arguments(parser)
    parser.add_argument(
        "--processes", action="store_true", help="also run each worker count as OS processes"
    )
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
        in_subprocess(kind="loop", size=size, workers=w, profile=False, tmpdir=tmp, processes=p)
        for size in sizes
        for w in workers
        for p in ((False, True) if args.processes else (False,))
    ]
    local_ok = print_local(loops, floors, tmp or tempfile.gettempdir())
    if args.profile:
        profiled = in_subprocess(kind="loop", size=max(sizes), workers=1, profile=True, tmpdir=tmp)
        print(f"\ncProfile of one worker draining {max(sizes):,} payloads (main thread):")
        print(profiled["profile"])
    if not args.skip_aws:
        run_aws(args)
    print_load("after")
    if not local_ok:
        raise SystemExit("local loop: not every payload ended SUCCEEDED (see the check column)")


if __name__ == "__main__":
    main()
