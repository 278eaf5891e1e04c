"""Benchmark of the ``s3-inventory`` feeder: scan and enqueue rates, peak memory.

Run by hand (never by CI), from the repository root::

    .venv/bin/python bench/inventory.py [--rows 1000000] [--rss-rows 1000000,5000000]
                                        [--formats Parquet,CSV] [--profile]

Inventories (``bucket, key, size, last_modified_date``; keys ~30 chars) are generated with
pyarrow into a temporary directory, then uploaded to a moto server started in its own
process (``moto_server``), so the feeder reads them over HTTP exactly as from S3 and moto
does not compete for this process's GIL. Reported per format:

* raw: pyarrow reading the same local file (``ParquetFile.iter_batches`` / ``open_csv``),
  with an Arrow ``ends_with`` per batch, measured in the same run;
* scan: the feeder through `FeedRunner` into the local pipeline's queue with a filter that
  keeps 1 % of the rows (rows/s = rows scanned / wall time);
* feed: the same with a filter keeping 10 % (payloads/s = payloads enqueued / wall time);
* peak RSS (``VmHWM``) of a scan at each ``--rss-rows`` size.

Every feeder measurement runs in a fresh subprocess, so its peak RSS is its own.
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


def raw_rate(fmt: str, path: Path) -> float:
    started, rows = time.perf_counter(), 0
    if fmt == "Parquet":
        batches: Any = pq.ParquetFile(path).iter_batches(batch_size=65_536)
    else:
        names = ["bucket", "key", "size", "last_modified_date"]
        batches = pacsv.open_csv(
            pa.input_stream(path, compression="gzip"),
            read_options=pacsv.ReadOptions(column_names=names, block_size=4 << 20),
            convert_options=pacsv.ConvertOptions(
                column_types={"size": pa.int64(), "last_modified_date": pa.timestamp("ms", "UTC")}
            ),
        )
    for batch in batches:
        rows += batch.num_rows
        pc.sum(pc.ends_with(batch.column("key"), "00.json"))
    return rows / (time.perf_counter() - started)


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
    profiler = cProfile.Profile() if spec["profile"] else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    if spec.get("direct"):  # the feeder alone, items dropped: isolates it from the runner
        enqueued = sum(isinstance(i, dict) for i in app.feeders["inv"].feed(FeedRequest()))
        result = FeedResult(FeedRun("direct", "inv", "", status="succeeded"))
        result.counts["enqueued"] = enqueued
    else:
        result = runner.run("inv", app.feeders["inv"], FeedRequest())
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    out = {
        "seconds": seconds,
        "status": result.run.status,
        "error": result.run.error,
        "enqueued": result.counts["enqueued"],
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": baseline,
    }
    if profiler is not None:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(15)
        out["profile"] = text.getvalue()
    app.close()
    return out


def measure(spec: dict[str, Any]) -> dict[str, Any]:
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
    return result


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
    try:
        for fmt in args.formats.split(","):
            sizes = sorted({args.rows, *(int(n) for n in args.rss_rows.split(","))} - {0})
            for rows in sizes:
                path = work / f"{fmt}-{rows}"
                generate(fmt, rows, path)
                manifest = upload(s3, fmt, path, f"{fmt.lower()}-{rows}")
                spec = {"manifest": manifest, "endpoint": endpoint, "profile": args.profile}
                spec |= {"direct": args.direct}
                line = f"{fmt:8} {rows:>9,} rows {path.stat().st_size / 2**20:6.1f} MiB"
                scan = measure(spec | {"regex": FILTERS["scan"]})
                line += (
                    f" | scan {rows / scan['seconds']:>9,.0f} rows/s"
                    f" peak RSS {scan['peak_rss_mb']:5.0f} MB"
                    f" (after imports {scan['import_rss_mb']:.0f})"
                )
                if rows == args.rows:
                    line += f" | raw pyarrow {raw_rate(fmt, path):>11,.0f} rows/s"
                    feed = measure(spec | {"regex": FILTERS["feed"]})
                    line += (
                        f" | feed {feed['enqueued'] / feed['seconds']:>7,.0f} payloads/s"
                        f" ({feed['enqueued']:,} in {feed['seconds']:.1f} s,"
                        f" {rows / feed['seconds']:,.0f} rows/s)"
                    )
                    if args.profile:
                        print(feed["profile"])
                print(line, flush=True)
                path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
