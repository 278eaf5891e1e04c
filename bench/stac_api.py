"""Benchmark of the stac-api feeder: payloads/s against raw pystac-client paging, and peak RSS.

Run by hand (never by CI), from the repository root::

    .venv/bin/python bench/stac_api.py [--sizes 10000,100000] [--cap 5000] [--page-size 250]
        [--rounds 2] [--modes raw,feed,runner]

For each size, N generated Sentinel-2-like items (uniform over ten days, some on half
seconds) are served by ``rustac serve`` on 127.0.0.1, and every mode below runs in a fresh
subprocess against that same server, so each peak RSS is its own. The modes run in turn,
``--rounds`` times, so the baseline is measured in the same run, interleaved with the rest:

* ``raw``: ``Client.search(method="POST", collections, datetime, limit=page_size)``
  ``.items_as_dicts()`` over the whole range: the floor the feeder cannot go below.
* ``feed``: the feeder's ``feed()`` generator, counting payloads.
* ``runner``: the configured feeder through `FeedRunner` into the local SQLite queue
  (dedupe, pacing checks, enqueue, checkpoints).
* ``feed-nosplit`` (only when asked): ``feed()`` with a cap above N (diagnosis).

Each row's ratio is to the ``raw`` run of the same round; the verdict takes the median over
rounds. The run checks that it did what it claims: every mode fed each served item once
(payloads = items served) and the feeder fetched each item once (items read from the API
= items served); it exits 1 when either fails. CPU seconds are the child's (all threads):
on a shared machine they say more than the wall clock.

Goals (issue 12): feed and runner ≥ 0.9 x raw at 10k and 100k items; peak RSS flat.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

COLLECTION = "bench-s2"
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=10)
MODES = ("raw", "feed", "runner")
GOAL_RATIO = 0.9


# -- data and server (parent) --------------------------------------------------------------


def items(count: int) -> Iterator[dict[str, Any]]:
    """``count`` items uniform over `SPAN`; every 10th on a half second. Deterministic."""
    rng = random.Random(count)
    step = SPAN / count
    for n in range(count):
        when = START + step * n + timedelta(seconds=rng.random() * step.total_seconds())
        when = when.replace(microsecond=500_000 if n % 10 == 0 else 0)
        lon, lat = n % 350 - 175, n % 160 - 80
        yield {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"S2B_BENCH_{n:07d}_{when:%Y%m%dT%H%M%S}",
            "collection": COLLECTION,
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[lon, lat], [lon + 1, lat], [lon + 1, lat + 1], [lon, lat + 1], [lon, lat]]
                ],
            },
            "bbox": [lon, lat, lon + 1, lat + 1],
            "properties": {
                "datetime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "eo:cloud_cover": n % 100,
                "platform": "sentinel-2b",
            },
            "assets": {
                band: {"href": f"s3://bench/{n:07d}/{band}.tif", "type": "image/tiff"}
                for band in ("B02", "B03", "B04", "B08", "SCL", "thumbnail")
            },
            "links": [{"rel": "self", "href": f"http://bench.test/items/{n:07d}"}],
        }


def write_catalog(directory: Path, count: int) -> list[Path]:
    collection = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION,
        "description": "benchmark items",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[START.isoformat(), None]]},
        },
        "links": [],
    }
    (directory / "collection.json").write_text(json.dumps(collection))
    with (directory / "items.ndjson").open("w") as stream:
        for item in items(count):
            stream.write(json.dumps(item) + "\n")
    return [directory / "collection.json", directory / "items.ndjson"]


def start_rustac(files: list[Path]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    rustac = Path(sys.executable).parent / "rustac"
    command = [str(rustac), "serve", "--addr", f"127.0.0.1:{port}", *map(str, files)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"rustac serve exited with {process.returncode}") from None
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"rustac serve did not answer on {url}")


# -- one measurement (child) ---------------------------------------------------------------


def feeder_settings(url: str, cap: int, page_size: int) -> dict[str, Any]:
    return {
        "type": "stac-api",
        "url": url,
        "search": {"collections": [COLLECTION]},
        "datetime": {"start": START.isoformat(), "end": (START + SPAN).isoformat()},
        "max_items_per_window": cap,
        "page_size": page_size,
        "process": {"workflow": "publish-only"},
    }


def run_raw(url: str, page_size: int) -> dict[str, int]:
    from pystac_client import Client

    search = Client.open(url).search(
        method="POST",
        collections=[COLLECTION],
        datetime=(START, START + SPAN),
        limit=page_size,
    )
    count = sum(1 for _ in search.items_as_dicts())
    return {"payloads": count, "fetched": count}


def run_feed(url: str, cap: int, page_size: int) -> dict[str, int]:
    from cirrus_feed.feeding.contract import Checkpoint, FeedRequest
    from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
    from cirrus_feed.testing import feeder_context
    from feeders.stac_api.feeder import StacApiConfig, StacApiFeeder

    config = StacApiConfig.model_validate(feeder_settings(url, cap, page_size))
    feeder = StacApiFeeder("bench", config, feeder_context())
    payloads = windows = 0
    for out in feeder.feed(FeedRequest()):
        payloads += isinstance(out, PreparedPayload | ProcessPayload)
        windows += isinstance(out, Checkpoint)
    stats = feeder.stats
    return {
        "payloads": payloads,
        "fetched": stats.items,
        "requests": stats.requests,
        "windows": windows,
    }


def run_runner(url: str, cap: int, page_size: int, root: Path) -> dict[str, int]:
    from cirrus_feed.app import build_app
    from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
    from cirrus_feed.config import LocalSettings, Settings
    from cirrus_feed.feeding.contract import FeedRequest
    from cirrus_feed.feeding.runner import FeedRunner

    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"publish-only": Workflow(tasks=[TaskSpec(task="publish")])},
        feeders={"bench": feeder_settings(url, cap, page_size)},
    )
    app = build_app(settings)
    feeder = app.feeders["bench"]
    result = FeedRunner(app).run("bench", feeder, FeedRequest())
    queued = app.backends.queue.depth().visible  # what is really on the queue
    app.close()
    if not result.ok:
        raise RuntimeError(f"feed run failed: {result.run}")
    stats = getattr(feeder, "stats", None)
    counts = {"payloads": result.counts["enqueued"], "queued": queued}
    if stats is not None:
        counts.update(fetched=stats.items, requests=stats.requests)
    return counts


def child(mode: str, url: str, cap: int, page_size: int, root: Path) -> dict[str, Any]:
    import cirrus_feed.app  # noqa: F401  (imports are not part of the measurement)
    import feeders.stac_api.feeder  # noqa: F401

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "raw":
        counts = run_raw(url, page_size)
    elif mode == "feed":
        counts = run_feed(url, cap, page_size)
    elif mode == "feed-nosplit":
        counts = run_feed(url, 10_000_000, page_size)
    else:
        counts = run_runner(url, cap, page_size, root)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        **counts,
        "seconds": seconds,
        "cpu": cpu,
        "base_mib": base_rss / 1024,
        "peak_mib": peak / 1024,
    }


# -- driver ----------------------------------------------------------------------------------


def measure(mode: str, url: str, cap: int, page_size: int, workdir: Path) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{mode}-"))
    command = [sys.executable, __file__, "--child", mode, "--url", url]
    command += ["--cap", str(cap), "--page-size", str(page_size), "--root", str(root)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def bench_size(
    count: int, cap: int, page_size: int, workdir: Path, modes: Sequence[str], rounds: int
) -> list[dict[str, Any]]:
    directory = workdir / f"n{count}"
    directory.mkdir()
    process, url = start_rustac(write_catalog(directory, count))
    rows = []
    try:
        for round_ in range(rounds):
            for mode in modes:
                row = measure(mode, url, cap, page_size, directory)
                row.update(
                    mode=mode, size=count, round=round_, rate=row["payloads"] / row["seconds"]
                )
                rows.append(row)
                print(
                    f"  n={count:>7} round {round_} {mode:<13} {row['rate']:>8.0f}/s"
                    f" cpu {row['cpu']:.2f}s",
                    file=sys.stderr,
                )
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows


def problems(rows: list[dict[str, Any]]) -> list[str]:
    """What the run did not do that it claims: every item fed once, fetched once."""
    found = []
    for row in rows:
        where = f"n={row['size']} {row['mode']} round {row['round']}"
        if row["payloads"] != row["size"]:
            found.append(f"{where}: {row['payloads']} payloads for {row['size']} items served")
        if row.get("queued", row["size"]) != row["size"]:
            found.append(f"{where}: {row['queued']} payloads queued for {row['size']} items")
        if "fetched" in row and row["mode"] != "feed-nosplit" and row["fetched"] != row["size"]:
            found.append(f"{where}: {row['fetched']} items fetched for {row['size']} served")
    return found


def ratio(row: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    """``row``'s rate over the raw rate of the same size and round."""
    raw = next(
        r for r in rows if (r["size"], r["round"], r["mode"]) == (row["size"], row["round"], "raw")
    )
    return float(row["rate"] / raw["rate"])


def report(rows: list[dict[str, Any]], cap: int, page_size: int) -> None:
    print(f"\nstac-api feeder vs raw pystac-client (cap {cap}, page size {page_size})\n")
    header = f"{'items':>8} {'round':>5} {'mode':<13} {'payloads/s':>10} {'x raw':>6}"
    header += f" {'seconds':>8} {'cpu s':>6} {'cpu x raw':>9} {'fetched/item':>12}"
    header += f" {'requests':>8} {'windows':>7} {'peak RSS MiB':>12} {'(after imports)':>15}"
    print(header)
    print("-" * len(header))
    for row in sorted(rows, key=lambda r: (r["size"], r["round"])):
        raw = next(
            r
            for r in rows
            if (r["size"], r["round"], r["mode"]) == (row["size"], row["round"], "raw")
        )
        fetched = f"{row['fetched'] / row['size']:.3f}" if "fetched" in row else "-"
        print(
            f"{row['size']:>8} {row['round']:>5} {row['mode']:<13} {row['rate']:>10.0f}"
            f" {ratio(row, rows):>6.2f} {row['seconds']:>8.2f} {row['cpu']:>6.2f}"
            f" {row['cpu'] / raw['cpu']:>9.2f} {fetched:>12} {row.get('requests', '-')!s:>8}"
            f" {row.get('windows', '-')!s:>7} {row['peak_mib']:>12.0f} {row['base_mib']:>15.0f}"
        )
    print(f"\ngoal: feed and runner ≥ {GOAL_RATIO} x raw (median over rounds); RSS flat")
    for mode in sorted({r["mode"] for r in rows} - {"raw"}):
        parts, met = [], True
        for size in sorted({r["size"] for r in rows}):
            ratios = [ratio(r, rows) for r in rows if (r["mode"], r["size"]) == (mode, size)]
            median = statistics.median(ratios)
            met = met and median >= GOAL_RATIO
            peak = max(r["peak_mib"] for r in rows if (r["mode"], r["size"]) == (mode, size))
            parts.append(f"n={size}: {median:.2f} x raw, peak {peak:.0f} MiB")
        print(f"  {mode:<13} {'; '.join(parts)} ({'met' if met else 'NOT met'})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--cap", type=int, default=5000, help="max_items_per_window")
    parser.add_argument("--page-size", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES), help="raw is always run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.url, args.cap, args.page_size, args.root)))
        return 0
    modes = ["raw", *(m for m in args.modes.split(",") if m and m != "raw")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-stac-api-") as workdir:
        for size in (int(s) for s in args.sizes.split(",")):
            rows += bench_size(size, args.cap, args.page_size, Path(workdir), modes, args.rounds)
    report(rows, args.cap, args.page_size)
    found = problems(rows)
    for problem in found:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
