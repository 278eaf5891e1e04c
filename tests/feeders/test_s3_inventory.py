"""The ``s3-inventory`` feeder through the runner, reading reports from moto's S3 server.

Reports are generated with pyarrow (`inventory_data`); payloads land in the local
pipeline's queue, read back from its SQLite file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import sqlite3
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import TYPE_CHECKING, Any

import inventory_data as inv
import pytest
from botocore.exceptions import ReadTimeoutError

from cirrus_feed.app import App, LocalPaths, build_app
from cirrus_feed.backends.base import FeedStore
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import Checkpoint, FeedRequest
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.runner import FeedResult, FeedRunner
from cirrus_feed.model.payload import PreparedPayload
from feeders.s3 import inventory_formats, inventory_reader
from feeders.s3.inventory import S3InventoryFeeder
from feeders.s3.objects import ObjectFilter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.aws

ODD_KEYS = [
    "scenes/a b/one.json",
    "scenes/a,b/two.json",
    "scenes/a+b/three.json",
    "scenes/100%/four.json",
    "scenes/ünïcödé/five.json",
    'scenes/quote"d/six.json',
    "scenes/plain/seven.txt",
]


def feeds_of(app: App) -> FeedStore:
    """The app's feed-run store (the local backend always has one)."""
    assert app.backends.feeds is not None
    return app.backends.feeds


@pytest.fixture
def s3(make_aws_client: Callable[[str], Any]) -> S3Client:
    client: S3Client = make_aws_client("s3")
    return client


@pytest.fixture
def bucket(s3: S3Client) -> str:
    name = f"inv-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def make_app(root: Path, endpoint: str, **feeder: Any) -> App:
    point = EntryPoint(
        "s3-inventory", "feeders.s3.inventory:S3InventoryFeeder", "cirrus_feed.feeders"
    )
    config = {
        "type": "s3-inventory",
        "process": {"workflow": "wf"},
        "aws": {"endpoint_url": endpoint},
        "item": {"collection": "c"},
    } | feeder
    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])},
        feeders={"inv": config},
    )
    return build_app(settings, FeederRegistry({"s3-inventory": point}))


def run(app: App, **runner: Any) -> FeedResult:
    return FeedRunner(app, **runner).run("inv", app.feeders["inv"], FeedRequest())


def enqueued(app: App) -> list[str]:
    """Every payload id ever sent to the local queue, in order, duplicates kept."""
    with sqlite3.connect(LocalPaths(app.settings.local.root).queue) as db:
        bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM messages ORDER BY id")]
    return [body["id"] for body in bodies]


def pid(key: str) -> str:
    return f"c/workflow-wf/{key.replace('/', '-')}"


def rows(keys: list[str]) -> list[dict[str, Any]]:
    return [inv.row(key, n) for n, key in enumerate(keys)]


@pytest.mark.parametrize("fmt", ["CSV", "ORC", "Parquet"])
def test_inventory_feeds_every_format_with_odd_keys(
    fmt: str, s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    """Keys with spaces, commas, plus, percent, quotes and unicode survive every format."""
    report = inv.write_report(s3, bucket, "inv", fmt, [rows(ODD_KEYS[:4]), rows(ODD_KEYS[4:])])
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url, filter={"suffix": ".json"})

    result = run(app)

    assert result.ok, result.run
    assert sorted(enqueued(app)) == sorted(pid(k) for k in ODD_KEYS if k.endswith(".json"))
    not_json = sum(not k.endswith(".json") for k in ODD_KEYS)
    assert not_json
    assert result.counts["filtered"] == result.counts["filtered:object-filter"] == not_json
    payload = app.backends.queue.receive(1)[0].body
    feature = json.loads(payload)["features"][0]
    assert feature["assets"][next(iter(feature["assets"]))]["href"].startswith(
        f"s3://{inv.SOURCE_BUCKET}/scenes/"
    )
    assert feature["properties"]["datetime"].startswith("2024-05-01T")
    cursor = feeds_of(app).get_cursor("inv")
    assert cursor is not None
    assert cursor["complete"] is True
    assert all(
        f == {"row": len(r), "done": True}
        for f, r in zip(cursor["files"].values(), (ODD_KEYS[:4], ODD_KEYS[4:]), strict=True)
    )


def test_inventory_chooses_newest_complete_report(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    """Newer reports without a checksum, or with a wrong one, are passed over."""
    good = inv.write_report(
        s3, bucket, "inv", "CSV", [rows(["old/a.json"])], stamp="2024-05-01T01-00Z"
    )
    inv.write_report(
        s3,
        bucket,
        "inv",
        "CSV",
        [rows(["bad/a.json"])],
        stamp="2024-05-02T01-00Z",
        checksum="0" * 32,
    )
    inv.write_report(
        s3, bucket, "inv", "CSV", [rows(["new/a.json"])], stamp="2024-05-03T01-00Z", checksum=False
    )
    app = make_app(tmp_path, aws_endpoint, destination=good.destination)

    result = run(app)

    assert result.ok
    assert enqueued(app) == [pid("old/a.json")]
    cursor = feeds_of(app).get_cursor("inv")
    assert cursor is not None
    assert cursor["report"] == good.manifest_url
    again = run(app)  # the same report is not fed twice
    assert again.counts["seen"] == 0
    assert enqueued(app) == [pid("old/a.json")]


def test_inventory_no_complete_report_is_a_failed_run(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    report = inv.write_report(s3, bucket, "inv", "CSV", [rows(["a.json"])], checksum=False)
    app = make_app(tmp_path, aws_endpoint, destination=report.destination)

    result = run(app)

    assert result.run.status == "failed"
    assert "no complete inventory report" in (result.run.error or "")


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_inventory_corrupt_file_is_reported_and_the_others_feed(
    fmt: str, s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    files = [rows([f"f{n}/k{i}.json" for i in range(3)]) for n in range(3)]
    report = inv.write_report(s3, bucket, "inv", fmt, files, corrupt=[1])
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url)

    result = run(app)

    ids = set(enqueued(app))
    assert {pid(f"f{n}/k{i}.json") for n in (0, 2) for i in range(3)} <= ids
    if fmt == "Parquet":  # hashed before reading: nothing of the corrupt file is fed
        assert not any(i.startswith(pid("f1")) for i in ids)
    assert result.counts["invalid"] == 1
    invalid = list((tmp_path / "payloads" / "cirrus" / "tmp" / "invalid").glob("*.json"))
    [kept] = [json.loads(p.read_text()) for p in invalid]
    assert report.data_keys[1] in kept["error"]
    assert "MD5" in kept["error"]
    cursor = feeds_of(app).get_cursor("inv")
    assert cursor is not None
    assert cursor["files"][report.data_keys[1]]["done"] is True  # a retry would not help


def test_inventory_resume_after_random_kills_enqueues_each_id_once(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    """200,000 rows in 4 files read 2 at a time; stopped at random points, then resumed."""
    total, files = 200_000, 4
    per = total // files
    data = [[inv.row(f"p{f}/{i:06d}.json", i) for i in range(per)] for f in range(files)]
    report = inv.write_report(
        s3, bucket, "inv", "Parquet", data, columns=("bucket", "key"), row_group_rows=16_384
    )
    app = make_app(
        tmp_path,
        aws_endpoint,
        manifest=report.manifest_url,
        filter={"key_regex": r"[05]\.json$"},  # a fifth of the rows: 40,000 payloads
        # a fixed datetime: no timestamp column to convert, the fastest path
        item={"collection": "c", "datetime": "2024-05-01T00:00:00Z"},
        checkpoint_rows=7_000,
    )
    rng = random.Random(5)
    kills, statuses = 0, []
    while True:
        stop_at = rng.randrange(500, 6_000) if kills < 6 else None  # 6 x 6k < 40k
        runner = FeedRunner(app)

        def progress(
            counts: Mapping[str, int], runner: FeedRunner = runner, at: int | None = stop_at
        ) -> None:
            if at is not None and counts["enqueued"] >= at:
                runner.stopping = True

        runner.progress = progress
        result = runner.run("inv", app.feeders["inv"], FeedRequest())
        statuses.append(result.run.status)
        if result.run.status == "succeeded":
            break
        kills += 1

    assert kills >= 5
    assert statuses.count("interrupted") == kills
    sent = enqueued(app)
    twice = [k for k, n in Counter(sent).items() if n > 1]
    assert twice == []
    expected = {pid(f"p{f}/{i:06d}.json") for f in range(files) for i in range(0, per, 5)}
    assert set(sent) == expected


@pytest.mark.parametrize("grouped", [False, True])
def test_inventory_chained_limit_runs_enqueue_each_id_exactly_once(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path, grouped: bool
) -> None:
    """Runs of --limit 37 (limits fall inside chunks of 11 items, two readers interleaving)
    until one feeds nothing: every payload is sent exactly once."""
    data = [[inv.row(f"p{f}/s{i:03d}/{b}.tif", i) for i in range(60) for b in "ab"] for f in "xyz"]
    report = inv.write_report(s3, bucket, "inv", "CSV", data)
    item: dict[str, Any] = {"collection": "c", "datetime": "2024-05-01T00:00:00Z"}
    if grouped:
        item |= {"id": "{dirname|replace('/', '-')}", "group_by": "{dirname}"}
    app = make_app(
        tmp_path, aws_endpoint, manifest=report.manifest_url, item=item, checkpoint_items=11
    )
    runs, partial = 0, 0
    while True:
        result = FeedRunner(app).run("inv", app.feeders["inv"], FeedRequest(limit=37))
        assert result.ok, result.run
        cursor = feeds_of(app).get_cursor("inv") or {}
        partial += any("sent" in f for f in cursor.get("files", {}).values())
        runs += 1
        if result.counts["seen"] == 0:
            break

    keys = [row["key"] for rows_ in data for row in rows_]
    expected = sorted({pid(k.rsplit("/", 1)[0]) for k in keys} if grouped else map(pid, keys))
    assert sorted(enqueued(app)) == expected  # each exactly once
    assert runs == -(-len(expected) // 37) + 1
    assert partial >= runs // 2  # most limits fell inside a chunk


def test_inventory_reader_crash_resumes_without_loss(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that dies mid-file fails the run; the next run continues from the cursor."""
    data = [[inv.row(f"k{f}/{i:04d}.json", i) for i in range(3_000)] for f in range(2)]
    report = inv.write_report(s3, bucket, "inv", "CSV", data, columns=("bucket", "key"))
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url, batch_rows=500)
    real = inventory_formats.read_batches
    calls = Counter[str]()

    def dying(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for n, batch in enumerate(real(*args, **kwargs)):
            if n == 2 and not calls["killed"]:  # the first file to reach its third batch
                calls["killed"] += 1
                raise RuntimeError("reader process killed")
            yield batch

    monkeypatch.setattr(inventory_reader, "read_batches", dying)
    first = run(app)
    monkeypatch.setattr(inventory_reader, "read_batches", real)
    second = run(app)

    assert first.run.status == "failed"
    assert "reader process killed" in (first.run.error or "")
    assert second.ok
    expected = {pid(f"k{f}/{i:04d}.json") for f in range(2) for i in range(3_000)}
    assert set(enqueued(app)) == expected


def test_inventory_diff_feeds_only_new_and_changed_keys(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    old_rows = rows(["d/same.json", "d/changed.json", "d/deleted.json"])
    old = inv.write_report(s3, bucket, "inv", "ORC", [old_rows], stamp="2024-05-01T01-00Z")
    new_rows = rows(["d/same.json", "d/changed.json", "d/added.json"])
    new_rows[1]["e_tag"] = "f" * 32
    new = inv.write_report(s3, bucket, "inv", "Parquet", [new_rows], stamp="2024-05-02T01-00Z")

    previous = make_app(
        tmp_path / "a", aws_endpoint, destination=new.destination, since_manifest="previous"
    )
    explicit = make_app(
        tmp_path / "b", aws_endpoint, manifest=new.manifest_url, since_manifest=old.manifest_url
    )

    for app in (previous, explicit):
        result = run(app)
        assert result.ok
        assert sorted(enqueued(app)) == [pid("d/added.json"), pid("d/changed.json")]
        assert result.counts["skipped:unchanged"] == 1  # d/same.json, in the run record
        assert feeds_of(app).list_runs("inv")[0].counts["skipped"] == 1


def test_feeder_checkpoints_cover_only_yielded_rows_under_interleaving(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    """With 3 readers interleaving, each checkpoint's row offsets match the items before it."""
    data = [[inv.row(f"i{f}/{i:04d}.json", i) for i in range(1_000)] for f in range(3)]
    report = inv.write_report(s3, bucket, "inv", "CSV", data, columns=("bucket", "key"))
    app = make_app(
        tmp_path, aws_endpoint, manifest=report.manifest_url, concurrency=3, batch_rows=100
    )
    feeder = app.feeders["inv"]
    seen: Counter[str] = Counter()
    file_of = {f"i{f}": report.data_keys[f] for f in range(3)}
    checkpoints = 0
    for item in feeder.feed(FeedRequest()):
        if isinstance(item, Checkpoint):
            checkpoints += 1
            assert item.cursor is not None
            for prefix, key in file_of.items():
                assert item.cursor["files"][key]["row"] == seen[prefix]
        else:
            assert isinstance(item, PreparedPayload)  # not a rejection: built on columns
            seen[item.to_dict()["features"][0]["id"][:2]] += 1
    assert checkpoints >= 3_000 // 99
    assert sum(seen.values()) == 3_000


# -- the old feed-s3-inventory's bugs (prior-art §2.2), one test each -----------------------


def test_old_bug1_every_file_of_a_multi_file_report_is_read(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    files = [rows([f"m{n}/a.json", f"m{n}/b.json"]) for n in range(5)]
    report = inv.write_report(s3, bucket, "inv", "CSV", files)
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url, concurrency=1)
    assert run(app).ok
    assert len(set(enqueued(app))) == 10


def test_old_bug2_date_filter_uses_canonical_columns_for_csv_and_orc(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    for n, fmt in enumerate(("CSV", "ORC")):
        report = inv.write_report(
            s3, bucket, f"inv{n}", fmt, [rows(["t/0.json", "t/1.json", "t/2.json"])]
        )
        app = make_app(
            tmp_path / fmt,
            aws_endpoint,
            manifest=report.manifest_url,
            filter={"modified_after": "2024-05-01T00:01:00Z"},
        )
        assert run(app).ok
        assert sorted(enqueued(app)) == [pid("t/1.json"), pid("t/2.json")]


def test_old_bug3_csv_keys_are_decoded_and_commas_parsed(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    keys = ["q/a,b,c.json", "q/x y.json", "q/1+1=2%.json"]
    report = inv.write_report(s3, bucket, "inv", "CSV", [rows(keys)])
    app = make_app(
        tmp_path, aws_endpoint, manifest=report.manifest_url, filter={"key_regex": r"^q/"}
    )
    assert run(app).ok
    assert sorted(enqueued(app)) == sorted(pid(k) for k in keys)


def test_old_bug4_parquet_is_supported(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    report = inv.write_report(s3, bucket, "inv", "Parquet", [rows(["pq/a.json"])])
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url)
    assert run(app).ok
    assert enqueued(app) == [pid("pq/a.json")]


def test_old_bug5_discovery_finds_an_older_weekly_report(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    """Not only 'today': the newest complete report, whatever its date."""
    report = inv.write_report(
        s3, bucket, "inv", "CSV", [rows(["w/a.json"])], stamp="2020-01-05T00-00Z"
    )
    app = make_app(tmp_path, aws_endpoint, destination=report.destination)
    assert run(app).ok
    assert enqueued(app) == [pid("w/a.json")]


def test_old_bug6_data_files_are_verified_and_downloaded_once(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MD5 is checked; one temporary file per data file, none with ``download: false``."""
    report = inv.write_report(s3, bucket, "inv", "CSV", [rows(["v/a.json"])], corrupt=[0])
    made: list[str] = []
    real = tempfile.TemporaryFile

    def spy(*args: Any, **kwargs: Any) -> Any:
        made.append("temp")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    streamed = make_app(tmp_path / "s", aws_endpoint, manifest=report.manifest_url, download=False)
    assert run(streamed).counts["invalid"] == 1
    assert made == []
    downloaded = make_app(tmp_path / "d", aws_endpoint, manifest=report.manifest_url)
    result = run(downloaded)
    assert made == ["temp"]
    assert result.counts["invalid"] == 1
    assert enqueued(downloaded) == []  # downloaded files are verified before any row is fed


def _open_in(directory: Path) -> list[str]:
    """Files of this process still open under ``directory`` (named or deleted)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith(str(directory)):
                found.append(target)
    return found


@pytest.mark.parametrize("fmt", ["CSV", "ORC", "Parquet"])
def test_inventory_downloads_each_file_once_and_removes_the_copy(
    fmt: str,
    s3: S3Client,
    bucket: str,
    aws_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given: a report with a good and a corrupt file, temporary files in ``spool/``."""
    files = [rows([f"g{n}/k{i}.json" for i in range(4)]) for n in range(2)]
    report = inv.write_report(s3, bucket, "inv", fmt, files, corrupt=[1])
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    gets: list[str] = []
    open_during: list[str] = []
    app = make_app(tmp_path / "app", aws_endpoint, manifest=report.manifest_url, concurrency=1)
    client = app.feeders["inv"].bucket.client  # type: ignore[attr-defined]

    def counted(**kwargs: Any) -> None:
        if "/data/" in kwargs["params"]["Key"]:
            gets.append(kwargs["params"]["Key"] + str(kwargs["params"].get("Range", "")))
            open_during.extend(_open_in(spool_dir))

    client.meta.events.register("before-parameter-build.s3.GetObject", counted)

    # When: it is fed
    result = run(app)

    # Then: each data file was fetched once, whole; the corrupt one is an error naming it
    assert sorted(gets) == sorted(report.data_keys)
    assert set(enqueued(app)) == {pid(f"g0/k{i}.json") for i in range(4)}
    invalid = list((tmp_path / "app" / "payloads" / "cirrus" / "tmp" / "invalid").glob("*.json"))
    [kept] = [json.loads(p.read_text()) for p in invalid]
    assert report.data_keys[1] in kept["error"]
    assert "does not match the manifest's MD5checksum" in kept["error"]
    assert result.counts["invalid"] == 1
    # and the copy of the first file was closed before the second was fetched; none is left
    assert open_during == []
    assert _open_in(spool_dir) == []
    assert list(spool_dir.iterdir()) == []


def test_inventory_copy_is_removed_when_the_transfer_fails(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transfer cut off mid-file: the file is retried by the next run, no copy remains."""
    report = inv.write_report(s3, bucket, "inv", "Parquet", [rows(["t/a.json", "t/b.json"])])
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    app = make_app(tmp_path / "app", aws_endpoint, manifest=report.manifest_url)
    client = app.feeders["inv"].bucket.client  # type: ignore[attr-defined]

    def note_key(params: Any, context: Any, **_: Any) -> None:
        context["test_key"] = params["Key"]

    def broken_body(parsed: Any, context: Any, **_: Any) -> None:
        if "/data/" in context.get("test_key", "") and "Body" in parsed:

            class Broken:
                def read(self, _size: int = -1) -> bytes:
                    raise ReadTimeoutError(endpoint_url="s3")

                def close(self) -> None:
                    pass

            parsed["Body"] = Broken()

    client.meta.events.register("before-parameter-build.s3.GetObject", note_key)
    client.meta.events.register("after-call.s3.GetObject", broken_body)

    result = run(app)

    assert result.counts["invalid"] == 1  # the file's failure, recorded
    assert enqueued(app) == []
    cursor = feeds_of(app).get_cursor("inv")
    assert cursor is not None
    progress = cursor["files"][report.data_keys[0]]
    assert progress["done"] is False  # retried by the next run
    assert "error" in progress
    assert _open_in(spool_dir) == []
    assert list(spool_dir.iterdir()) == []


def test_old_bug7_progress_is_recorded_per_file(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    report = inv.write_report(s3, bucket, "inv", "CSV", [rows(["r/a.json"]), rows(["r/b.json"])])
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url)
    run(app)
    assert app.backends.feeds is not None
    cursor = app.backends.feeds.get_cursor("inv")
    assert cursor is not None
    assert set(cursor["files"]) == set(report.data_keys)
    [record] = app.backends.feeds.list_runs("inv")
    assert record.checkpoint == f"{report.manifest_url} done"


def test_old_bug8_sibling_files_become_one_item(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    keys = ["L8/s1/B1.TIF", "L8/s1/B2.TIF", "L8/s1/s1_MTL.txt", "L8/s2/B1.TIF", "L8/s2/s2_MTL.txt"]
    report = inv.write_report(s3, bucket, "inv", "CSV", [rows(keys)])
    item = {
        "collection": "c",
        "id": "{dirname|replace('/', '-')}",
        "group_by": "{dirname}",
        "anchor": "_MTL.txt",
    }
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url, item=item)
    assert run(app).ok
    assert sorted(enqueued(app)) == [pid("L8/s1"), pid("L8/s2")]


def test_config_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of 'manifest' and 'destination'"):
        make_app(tmp_path, "http://x")
    with pytest.raises(ConfigError, match="unknown field"):
        make_app(
            tmp_path, "http://x", manifest="s3://b/m.json", item={"collection": "c", "id": "{nope}"}
        )


def test_feeder_is_registered_as_entry_point() -> None:
    assert FeederRegistry().load("s3-inventory") is S3InventoryFeeder


def test_csv_reader_reads_empty_fields_as_null_and_decodes_keys() -> None:
    """A delete marker's row has empty Size and LastModifiedDate; keys are form-encoded."""
    data = b'"b","a%20b%2B","","","true"\n"b","c+d%2C","12","2024-01-01T00:00:00.000Z","false"\n'
    names = ["bucket", "key", "size", "last_modified_date", "is_delete_marker"]
    [batch] = inventory_formats.read_batches(
        "CSV", io.BytesIO(gzip.compress(data)), all_columns=names, columns=names[1:], batch_rows=10
    )
    assert batch.column("key").to_pylist() == ["a b+", "c d,"]
    assert batch.column("size").to_pylist() == [None, 12]
    assert batch.column("last_modified_date").null_count == 1
    assert ObjectFilter().mask(batch).to_pylist() == [False, True]  # delete markers never feed


def test_inventory_reader_that_dies_before_reading_fails_the_run_instead_of_hanging(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = inv.write_report(s3, bucket, "inv", "CSV", [rows(["h/a.json"])])
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("reader could not start")

    monkeypatch.setattr(inventory_reader.FileReader, "__init__", broken)
    result = run(app)

    assert result.run.status == "failed"
    assert "reader could not start" in (result.run.error or "")


def test_rows_that_cannot_be_payloads_are_invalid_naming_the_field_beside_plain_rows(
    s3: S3Client, bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    """Plain rows are built on columns; a row whose id cannot be stored, or with no asset
    name, goes per row and is recorded invalid or rejected, with a reason naming it."""
    long_key = "bad/" + "x" * 300 + ".json"
    keys = ["ok/a.json", long_key, "folder/", "ok/ü.json", "ok/b.json"]
    report = inv.write_report(s3, bucket, "inv", "CSV", [rows(keys)])
    app = make_app(tmp_path, aws_endpoint, manifest=report.manifest_url)

    result = run(app)

    assert sorted(enqueued(app)) == sorted(map(pid, ["ok/a.json", "ok/ü.json", "ok/b.json"]))
    # Every row accounted for: 3 queued, the long key a payload found invalid, the folder
    # marker a rejection (recorded invalid too, never counted as a payload).
    assert (result.counts["enqueued"], result.counts["seen"], result.counts["invalid"]) == (3, 4, 2)
    invalid = list((tmp_path / "payloads" / "cirrus" / "tmp" / "invalid").glob("*.json"))
    errors = sorted(json.loads(p.read_text())["error"] for p in invalid)
    assert any("features[0].id" in e and "file name limit" in e for e in errors), errors
    assert any("'folder/'" in e and "asset name is empty" in e for e in errors), errors
