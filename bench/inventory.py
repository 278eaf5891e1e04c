"""Benchmark of the ``s3-inventory`` feeder against raw pyarrow: scan and feed rates, memory.

Run by hand (never by CI), from the repository root::

    .venv/bin/python bench/inventory.py [--rows 1000000] [--rss-rows 1000000,5000000]
                                        [--formats Parquet,CSV] [--profile] [--direct]

Inventories (``bucket, key, size, last_modified_date``; keys ~30 chars) are generated with
pyarrow into a temporary directory, then uploaded to a moto server started in its own
process (``moto_server``), so the feeder reads them over HTTP as from S3 and moto does not
compete for this process's GIL (its CPU time is reported apart). For each format and size:

* **raw** (the floor): pyarrow reading the columns the feeder reads (``key``,
  ``last_modified_date``) from the same local file, with the same key regex in Arrow per
  batch. It runs right before and right after each feeder run (interleaved), and the ratios
  use the two together;
* **scan**: the feeder through `FeedRunner` into a fresh local pipeline with a filter that
  keeps 1 % of the rows; **feed**: the same keeping 10 % (at ``--rows`` only);
* each prints rows/s and its ratio to raw by wall time and by CPU time (user + system of
  the feeder's process, all threads: the fair measure on a shared machine), payloads/s for
  feed, peak RSS (``VmHWM``), and where the CPU went: the reader threads (read, filter,
  build payloads), the runner's flush (dedupe's state query, enqueue, the SQLite queue's
  send), checkpoints (cursor, run record), the rest of the main thread (the runner's loop,
  the feeder's generator, start-up: S3 client, manifest) and Arrow's own threads.

Every run is checked: succeeded, every row accounted for (payloads seen and enqueued = the
rows the filter keeps, ``filtered`` = the others, nothing invalid, failed or duplicate), the
queue holds exactly the payloads fed, and sampled bodies are valid payloads of the feed. A
run that fails a check makes the bench exit 1 after printing what was wrong. The goals of
issue 12 (scan >= 0.5x raw, feed >= 50,000 payloads/s, peak RSS < 300 MB) are printed met or
missed, by wall and by CPU time.

``--direct`` runs the feeder alone (items counted and dropped, no runner or queue; no
checks): the feeder's own share. ``--profile`` adds cProfiles of the main thread and of the
reader threads (wall clock: a blocked reader shows as lock waits). Every feeder run is a
fresh subprocess, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import hashlib
import io
import json
import os
import pstats
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "inventory-bench"
CHUNK_ROWS = 500_000
SCHEMA = {
    "CSV": "Bucket, Key, Size, LastModifiedDate",
    "Parquet": "message s3.inventory { required binary bucket (STRING); required binary key "
    "(STRING); optional int64 size; optional int64 last_modified_date "
    "(TIMESTAMP(MILLIS,true)); }",
}
FILTERS = {"scan": r"00\.json$", "feed": r"0\.json$"}  # 1 % and 10 % of the rows
SHARE = {"scan": 100, "feed": 10}  # one row in this many is fed
NAMES = ["bucket", "key", "size", "last_modified_date"]
COLUMNS = ["key", "last_modified_date"]  # what the feeder reads for its item template
TIME = pa.timestamp("ms", "UTC")
RSS_GOAL_MB = 300


def chunk(start: int, rows: int) -> pa.Table:
    numbers = pa.array(range(start, start + rows), pa.int64())
    text = pc.utf8_lpad(pc.cast(numbers, pa.string()), 9, "0")
    keys = pc.binary_join_element_wise(
        "scenes/", pc.utf8_slice_codeunits(text, 0, 4), "/", text, ".json", ""
    )
    times = pc.cast(
        pc.add(pc.multiply(numbers, 1000), 1_714_521_600_000), pa.timestamp("ms", tz="UTC")
    )
    return pa.table(
        {
            "bucket": pa.array(["source-data"] * rows, pa.string()),
            "key": keys,
            "size": pc.add(numbers, 1000),
            "last_modified_date": times,
        }
    )


def generate(fmt: str, rows: int, path: Path) -> None:
    if fmt == "Parquet":
        with pq.ParquetWriter(path, chunk(0, 1).schema) as writer:
            for start in range(0, rows, CHUNK_ROWS):
                writer.write_table(chunk(start, min(CHUNK_ROWS, rows - start)), 131_072)
        return
    with gzip.open(path, "wb", compresslevel=6) as out:
        for start in range(0, rows, CHUNK_ROWS):
            table = chunk(start, min(CHUNK_ROWS, rows - start))
            stamps = pc.strftime(table["last_modified_date"], "%Y-%m-%dT%H:%M:%SZ")
            table = table.set_column(3, "last_modified_date", stamps)
            buffer = io.BytesIO()
            options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
            pacsv.write_csv(table, buffer, options)
            out.write(buffer.getvalue())


def raw_scan(fmt: str, path: Path, regex: str) -> dict[str, float]:
    """The floor: pyarrow reading the columns the feeder reads from the same local file,
    with the same key filter in Arrow, and nothing else. Rows, wall and CPU seconds."""
    started, cpu, rows = time.perf_counter(), time.process_time(), 0
    if fmt == "Parquet":
        batches: Any = pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=COLUMNS)
    else:
        batches = pacsv.open_csv(
            pa.input_stream(path, compression="gzip"),
            read_options=pacsv.ReadOptions(column_names=NAMES),
            convert_options=pacsv.ConvertOptions(
                include_columns=COLUMNS, column_types={"last_modified_date": TIME}
            ),
        )
    for batch in batches:
        rows += batch.num_rows
        pc.sum(pc.match_substring_regex(batch.column("key"), regex))
    return {
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
    }


def upload(s3: Any, fmt: str, path: Path, name: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    extension = "parquet" if fmt == "Parquet" else "csv.gz"
    key = f"inv/source-data/{name}/data/part-0.{extension}"
    s3.upload_file(str(path), BUCKET, key)
    manifest = {
        "sourceBucket": "source-data",
        "destinationBucket": f"arn:aws:s3:::{BUCKET}",
        "version": "2016-11-30",
        "creationTimestamp": "1714521600000",
        "fileFormat": fmt,
        "fileSchema": SCHEMA[fmt],
        "files": [{"key": key, "size": path.stat().st_size, "MD5checksum": digest.hexdigest()}],
    }
    raw = json.dumps(manifest).encode()
    base = f"inv/source-data/{name}/2024-05-01T00-00Z"
    s3.put_object(Bucket=BUCKET, Key=f"{base}/manifest.json", Body=raw)
    md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    s3.put_object(Bucket=BUCKET, Key=f"{base}/manifest.checksum", Body=md5)
    return f"s3://{BUCKET}/{base}/manifest.json"


# -- the measured child ---------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak RSS. Not ``ru_maxrss``: Linux carries that over ``exec`` from
    the parent, which here generated the data."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Feed one manifest through the runner on a fresh local pipeline; report the numbers."""
    from cirrus_feed.app import build_app
    from cirrus_feed.backends.base import FeedRun
    from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
    from cirrus_feed.config import LocalSettings, Settings
    from cirrus_feed.feeding.contract import FeedRequest
    from cirrus_feed.feeding.runner import FeedResult, FeedRunner

    baseline = peak_rss_mb()
    settings = Settings(
        local=LocalSettings(root=Path(spec["root"])),
        workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])},
        feeders={
            "inv": {
                "type": "s3-inventory",
                "process": {"workflow": "wf"},
                "manifest": spec["manifest"],
                "aws": {"endpoint_url": spec["endpoint"]},
                "filter": {"key_regex": spec["regex"]},
                "item": {"collection": "bench"},
            }
        },
    )
    app = build_app(settings)
    runner = FeedRunner(app)
    profiles = _profile_readers() if spec["profile"] else []
    shares = _CpuShares() if not profiles else None
    started, cpu, main_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    if profiles:
        profiles[0].enable()
    if spec.get("direct"):  # the feeder alone, items dropped: isolates it from the runner
        result = FeedResult(FeedRun("direct", "inv", "", status="succeeded"))
        for item in app.feeders["inv"].feed(FeedRequest()):
            kind = type(item).__name__
            result.counts["seen" if kind in PAYLOAD_TYPES else kind] += 1
        result.counts["enqueued"] = result.counts["seen"]
    else:
        result = runner.run("inv", app.feeders["inv"], FeedRequest())
    if profiles:
        profiles[0].disable()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    main_cpu = time.thread_time() - main_cpu
    depth = app.backends.queue.depth()
    out: dict[str, Any] = {
        "seconds": seconds,
        "cpu": cpu,
        "status": result.run.status,
        "error": result.run.error,
        "counts": dict(result.counts),
        "queued": depth.visible + depth.in_flight,
        "sample": _sample(app.backends.queue),
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": baseline,
    }
    if profiles:
        out |= _report(profiles)
    if shares is not None:
        out["cpu_shares"] = shares.report(cpu, main_cpu)
    app.close()
    return out


# Methods whose CPU time (`time.thread_time`, so waiting is not counted) the bench adds up:
# (label, module, class, method). Nested ones are also inside their parents.
LOCAL = "cirrus_feed.backends.local"
READER = ("FileReader", "run")
TIMED = [
    ("reader threads (feeder: read, filter, build)", "feeders.s3.inventory_reader", *READER),
    ("main thread: runner total", "cirrus_feed.feeding.runner", "FeedRunner", "run"),
    ("  flush (dedupe + enqueue)", "cirrus_feed.feeding.runner", "_Batch", "flush"),
    ("    dedupe", "cirrus_feed.feeding.runner", "_Batch", "_dedupe"),
    ("      state get_many", f"{LOCAL}.sqlite_state", "SqliteStateStore", "get_many"),
    ("    enqueue", "cirrus_feed.pipeline.enqueue", "Enqueuer", "enqueue"),
    ("      SQLite queue send", f"{LOCAL}.sqlite_queue", "SqlitePayloadQueue", "send"),
    ("  checkpoints", "cirrus_feed.feeding.runner", "_Batch", "_checkpoint"),
    ("    set_cursor", f"{LOCAL}.sqlite_feeds", "SqliteFeedStore", "set_cursor"),
    ("    save_run", f"{LOCAL}.sqlite_feeds", "SqliteFeedStore", "save_run"),
]


class _CpuShares:
    """CPU seconds spent in the `TIMED` methods, summed over calls and threads."""

    def __init__(self) -> None:
        import importlib
        import threading

        self.seconds: dict[str, float] = dict.fromkeys([label for label, *_ in TIMED], 0.0)
        self.lock = threading.Lock()
        for label, module, cls, name in TIMED:
            try:  # older trees (the "before" runs) lack some: those count 0
                owner = getattr(importlib.import_module(module), cls)
                setattr(owner, name, self._timed(label, getattr(owner, name)))
            except (ImportError, AttributeError):
                continue

    def _timed(self, label: str, method: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self.lock:
                    self.seconds[label] += spent

        return timed

    def report(self, cpu: float, main_cpu: float) -> dict[str, float]:
        """The timed parts, what is left of the main thread (the runner's loop over items,
        the feeder's generator, start-up: S3 client, manifest) and of other threads."""
        out = dict(self.seconds)
        runner = out["main thread: runner total"]
        if runner:
            out["  rest: runner take loop + feeder generator + start-up (S3 client, manifest)"] = (
                runner - out["  flush (dedupe + enqueue)"] - out["  checkpoints"]
            )
        else:  # --direct: no runner
            out = {k: v for k, v in out.items() if k.startswith("reader")}
            out["main thread: feeder generator + start-up (S3 client, manifest)"] = main_cpu
        readers = out["reader threads (feeder: read, filter, build)"]
        out["other threads (Arrow's pools: Parquet decoding, CSV reading)"] = (
            cpu - readers - main_cpu
        )
        return out


PAYLOAD_TYPES = {"PreparedPayload", "ProcessPayload", "dict", "Tagged"}


def _sample(queue: Any) -> list[str]:
    """Problems of a few queued bodies: each must be a valid payload (left on the queue)."""
    from cirrus_feed.errors import PayloadValidationError
    from cirrus_feed.model.payload import ProcessPayload

    problems = []
    for message in queue.receive(10, visibility_timeout=0):
        try:
            payload = ProcessPayload.from_dict(json.loads(message.body))
        except (ValueError, PayloadValidationError) as exc:
            problems.append(f"{message.body[:80]}...: {exc}")
            continue
        if not payload.id.startswith("bench/workflow-wf/scenes-"):
            problems.append(f"unexpected id {payload.id}")
    return problems


def _profile_readers() -> list[cProfile.Profile]:
    """Profiles: the main thread's first, then one per inventory reader thread."""
    from feeders.s3 import inventory_reader

    profiles = [cProfile.Profile()]
    real = inventory_reader.FileReader.run

    def profiled(self: Any, *args: Any, **kwargs: Any) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            real(self, *args, **kwargs)
        finally:
            profile.disable()

    inventory_reader.FileReader.run = profiled  # type: ignore[method-assign]
    return profiles


# Where the main thread's time goes: (label, file suffix, function), cumulative.
PARTS = [
    ("runner total", "feeding/runner.py", "run"),
    ("feeder generator (main thread; includes waiting for readers)", "s3/inventory.py", "feed"),
    ("runner flush (dedupe + enqueue)", "feeding/runner.py", "flush"),
    ("  dedupe (state get_many)", "feeding/runner.py", "_dedupe"),
    ("  enqueue", "pipeline/enqueue.py", "enqueue"),
    ("    SQLite queue send", "local/sqlite_queue.py", "send"),
    ("checkpoints (cursor + run record)", "feeding/runner.py", "_checkpoint"),
]


def _report(profiles: list[cProfile.Profile]) -> dict[str, Any]:
    main = pstats.Stats(profiles[0])
    raw: dict[Any, Any] = main.stats  # type: ignore[attr-defined]
    shares = {}
    for label, suffix, name in PARTS:
        shares[label] = sum(
            v[3] for (file, _, func), v in raw.items() if file.endswith(suffix) and func == name
        )
    text = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=text)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)
    readers = 0.0
    if len(profiles) > 1:
        threads = pstats.Stats(profiles[1], stream=text)
        for profile in profiles[2:]:
            threads.add(profile)
        readers = sum(v[2] for v in threads.stats.values())  # type: ignore[attr-defined]
        text.write("\n--- reader threads ---\n")
        threads.sort_stats("tottime").print_stats(25)
    shares["reader threads (own time, all)"] = readers
    return {"profile": text.getvalue(), "shares": shares}


def measure(spec: dict[str, Any], moto_pid: int) -> dict[str, Any]:
    moto_before = process_cpu(moto_pid)
    with tempfile.TemporaryDirectory() as root:
        spec = spec | {"root": root}
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            env=os.environ
            | {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
            | {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull},
        )
    if done.returncode:
        raise RuntimeError(f"child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["moto_cpu"] = process_cpu(moto_pid) - moto_before
    return result


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check(run: dict[str, Any], rows: int, kind: str) -> list[str]:
    """What the run should have done and did not: every row accounted for (fed or counted
    as filtered), every expected payload enqueued once and on the queue, nothing invalid."""
    expected = -(-rows // SHARE[kind])
    counts = run["counts"]
    wrong = [] if run["status"] == "succeeded" else [f"status {run['status']}: {run['error']}"]
    wanted = {
        "seen": expected,
        "enqueued": expected,
        "filtered": rows - expected,
        "invalid": 0,
        "failed": 0,
        "duplicate": 0,
    }
    for name, number in wanted.items():
        if counts.get(name, 0) != number:
            wrong.append(f"{name} {counts.get(name, 0):,}, expected {number:,}")
    if run["queued"] != expected:
        wrong.append(f"queue holds {run['queued']:,}, expected {expected:,}")
    return wrong + [str(problem) for problem in run["sample"]]


# -- driver ---------------------------------------------------------------------------------


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return process, endpoint
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not start")


def describe(kind: str, run: dict[str, Any], raw: dict[str, float], rows: int) -> str:
    """One result line: rates by wall time and by CPU time, each against the raw floor."""
    counts, wall, cpu = run["counts"], run["seconds"], run["cpu"]
    raw_rate, raw_cpu_rate = raw["rows"] / raw["seconds"], raw["rows"] / raw["cpu"]
    line = (
        f"  {kind:4} {rows / wall:>10,.0f} rows/s = {rows / wall / raw_rate:4.2f}x raw"
        f" | CPU {cpu:5.2f} s + moto {run['moto_cpu']:5.2f} s:"
        f" {rows / cpu:>10,.0f} rows/CPU-s = {rows / cpu / raw_cpu_rate:4.2f}x raw"
    )
    if kind == "feed":
        line += (
            f" | {counts['enqueued'] / wall:>7,.0f} payloads/s,"
            f" {counts['enqueued'] / cpu:>7,.0f} per CPU-s ({counts['enqueued']:,} in {wall:.1f} s)"
        )
    return line + f" | peak RSS {run['peak_rss_mb']:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rss-rows", default="1000000,5000000")
    parser.add_argument("--formats", default="Parquet,CSV")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--direct", action="store_true", help="feeder only, no runner/queue")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    moto, endpoint = start_moto()
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    work = Path(tempfile.mkdtemp(prefix="inventory-bench-"))
    failures: list[str] = []
    goals: list[str] = []
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    try:
        for fmt in args.formats.split(","):
            sizes = sorted({args.rows, *(int(n) for n in args.rss_rows.split(",") if n)} - {0})
            for rows in sizes:
                path = work / f"{fmt}-{rows}"
                generate(fmt, rows, path)
                manifest = upload(s3, fmt, path, f"{fmt.lower()}-{rows}")
                spec = {"manifest": manifest, "endpoint": endpoint, "profile": args.profile}
                spec |= {"direct": args.direct}
                print(f"{fmt} {rows:,} rows, {path.stat().st_size / 2**20:.1f} MiB", flush=True)
                kinds = ["scan", "feed"] if rows == args.rows else ["scan"]
                for kind in kinds:
                    # The floor right before and after each run, on the same file.
                    before = raw_scan(fmt, path, FILTERS[kind])
                    run = measure(spec | {"regex": FILTERS[kind]}, moto.pid)
                    after = raw_scan(fmt, path, FILTERS[kind])
                    raw = {k: before[k] + after[k] for k in before}
                    print(
                        f"  raw  {raw['rows'] / raw['seconds']:>10,.0f} rows/s"
                        f" | CPU {raw['cpu'] / 2:5.2f} s per pass",
                        flush=True,
                    )
                    print(describe(kind, run, raw, rows), flush=True)
                    if not args.direct:
                        for problem in check(run, rows, kind):
                            failures.append(f"{fmt} {rows:,} {kind}: {problem}")
                    goals += _goals(fmt, rows, kind, run, raw, args.rows)
                    for label, value in run.get("cpu_shares", {}).items():
                        print(f"      CPU {label:75} {value:5.2f} s", flush=True)
                    if args.profile:
                        print(run["profile"])
                        for label, value in run["shares"].items():
                            print(f"    {label:65} {value:6.2f} s", flush=True)
                path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        moto.terminate()
        moto.wait(timeout=10)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    for goal in goals:
        print(goal)
    if failures:
        print("NOT EVERY ROW ACCOUNTED FOR:", *failures, sep="\n  ")
        sys.exit(1)


def _goals(
    fmt: str, rows: int, kind: str, run: dict[str, Any], raw: dict[str, float], main_rows: int
) -> list[str]:
    """The issue's goals for this run, each met or missed (by wall time and by CPU time)."""
    out = []
    rss = run["peak_rss_mb"]
    out.append(f"goal {fmt} {rows:,} peak RSS < {RSS_GOAL_MB} MB: {rss:.0f} MB {_met(rss < 300)}")
    if rows != main_rows:
        return out
    if kind == "scan":
        wall = rows / run["seconds"] / (raw["rows"] / raw["seconds"])
        cpu = rows / run["cpu"] / (raw["rows"] / raw["cpu"])
        out.append(
            f"goal {fmt} scan >= 0.5x raw: wall {wall:.2f}x {_met(wall >= 0.5)},"
            f" CPU {cpu:.2f}x {_met(cpu >= 0.5)}"
        )
    else:
        wall = run["counts"]["enqueued"] / run["seconds"]
        cpu = run["counts"]["enqueued"] / run["cpu"]
        out.append(
            f"goal {fmt} feed >= 50k payloads/s: wall {wall:,.0f} {_met(wall >= 50_000)},"
            f" per CPU-s {cpu:,.0f} {_met(cpu >= 50_000)}"
        )
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    main()
