"""The ``s3-listing`` feeder against moto's S3 server, run through the local pipeline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from cirrus_feed.app import App, build_app, client_factory
from cirrus_feed.backends.aws.clients import make_client
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.feeding.contract import FeedRequest
from cirrus_feed.feeding.runner import FeedResult, FeedRunner
from cirrus_feed.testing import clients_returning, feeder_context
from feeders.s3.listing import S3ListingConfig, S3ListingFeeder

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.aws

KEYS = [
    "top.txt",
    "a/x.tif",
    "a/b/y.tif",
    "a/b/c/z.tif",
    "a/b/c/z2.tif",
    "b/q.tif",
    "c/d/e.tif",
    "c/d/f/g.tif",
    "c/h.tif",
]


def make_bucket(s3: S3Client, keys: list[str]) -> str:
    bucket = f"listing-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    upload(s3, bucket, keys)
    return bucket


def upload(s3: S3Client, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")


def make_app(root: Path) -> App:
    return build_app(Settings(local=LocalSettings(root=root)))


def make_feeder(
    endpoint: str, bucket: str, *, client: Any = None, **config: Any
) -> S3ListingFeeder:
    raw = {
        "type": "s3-listing",
        "bucket": bucket,
        "endpoint_url": endpoint,
        "process": {"workflow": "wf"},
        "item": {"collection": "c"},
        **config,
    }
    clients = clients_returning(client) if client is not None else client_factory(Settings())
    return S3ListingFeeder(
        "listing", S3ListingConfig.model_validate(raw), feeder_context(clients=clients)
    )


def run(app: App, feeder: S3ListingFeeder, **request: Any) -> FeedResult:
    return FeedRunner(app).run("listing", feeder, FeedRequest(**request))


def queued_items(app: App) -> list[dict[str, Any]]:
    items = []
    while messages := app.backends.queue.receive(10):
        items += [f for m in messages for f in json.loads(m.body)["features"]]
        app.backends.queue.delete([m.receipt for m in messages])
    return items


def item_id(key: str) -> str:
    return key.replace("/", "-")


@pytest.mark.parametrize(("depth", "shards"), [(0, 1), (1, 4), (2, 6)])
def test_s3_listing_sharding_yields_every_object_once(
    tmp_path: Path,
    aws_endpoint: str,
    make_aws_client: Callable[[str], Any],
    depth: int,
    shards: int,
) -> None:
    bucket = make_bucket(make_aws_client("s3"), KEYS)
    app = make_app(tmp_path)
    feeder = make_feeder(aws_endpoint, bucket, shard_depth=depth, concurrency=3, page_size=2)

    result = run(app, feeder)

    # depth 1: "" direct, a/, b/, c/; depth 2: + a/ b/ c/ direct, a/b/, c/d/ (b/ has none)
    assert len(feeder.discover()) == shards
    assert result.ok
    ids = [i["id"] for i in queued_items(app)]
    assert sorted(ids) == sorted(item_id(k) for k in KEYS)
    assert app.backends.feeds is not None
    assert app.backends.feeds.get_cursor("listing") == {}  # complete, not incremental


def test_s3_listing_filters_and_groups_siblings_per_shard(
    tmp_path: Path, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> None:
    keys = [
        "scenes/S1/B01.tif",
        "scenes/S1/B02.tif",
        "scenes/S1/MTD.xml",
        "scenes/S1/notes.txt",  # not in the suffix filter
        "scenes/S2/B01.tif",  # no anchor: rejected
        "scenes/S3/B01.tif",
        "scenes/S3/MTD.xml",
        "other/S9/MTD.xml",  # outside the filter prefix
    ]
    bucket = make_bucket(make_aws_client("s3"), keys)
    app = make_app(tmp_path)
    feeder = make_feeder(
        aws_endpoint,
        bucket,
        shard_depth=2,
        page_size=1,
        filter={
            "prefix": "scenes/",
            "suffix": [".tif", ".xml"],
            "key_regex": r"^scenes/(?P<scene>[^/]+)/",
        },
        item={
            "id": "{scene|lower}",
            "collection": "c",
            "asset": "{stem}",
            "group_by": "{dirname}",
            "anchor": "MTD.xml",
        },
    )

    result = run(app, feeder)

    items = {i["id"]: i for i in queued_items(app)}
    assert sorted(items) == ["s1", "s3"]
    assert sorted(items["s1"]["assets"]) == ["B01", "B02", "MTD"]
    assert items["s1"]["properties"]["scene"] == "S1"
    assert items["s3"]["assets"]["B01"]["href"] == f"s3://{bucket}/scenes/S3/B01.tif"
    assert result.counts["invalid"] == 1  # S2
    assert result.counts["filtered:object-filter"] == 2  # notes.txt, other/S9/MTD.xml


def test_s3_listing_sends_requester_pays(
    tmp_path: Path, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> None:
    s3 = make_aws_client("s3")
    bucket = make_bucket(s3, KEYS)
    s3.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})
    client = make_client("s3", region="us-east-1", endpoint_url=aws_endpoint)
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: calls.append(dict(params))
    )
    feeder = make_feeder(aws_endpoint, bucket, client=client, requester_pays=True, shard_depth=1)

    result = run(make_app(tmp_path), feeder)

    assert result.counts["enqueued"] == len(KEYS)
    assert len(calls) >= 5  # discovery + 4 shards
    assert {c.get("RequestPayer") for c in calls} == {"requester"}


def test_s3_listing_resumes_after_a_limit_and_feeds_the_rest_once(
    tmp_path: Path, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> None:
    keys = [f"{p}/{n:03d}.tif" for p in "abc" for n in range(12)]
    bucket = make_bucket(make_aws_client("s3"), keys)
    app = make_app(tmp_path)
    config = {"shard_depth": 1, "concurrency": 2, "page_size": 5}

    first = run(app, make_feeder(aws_endpoint, bucket, **config), limit=15)
    first_ids = [i["id"] for i in queued_items(app)]
    second = run(app, make_feeder(aws_endpoint, bucket, **config))
    second_ids = [i["id"] for i in queued_items(app)]

    assert first.counts["enqueued"] == 15
    assert second.counts["enqueued"] == len(keys) - 15
    assert sorted(first_ids + second_ids) == sorted(item_id(k) for k in keys)


def test_s3_listing_chained_limit_runs_of_grouped_scenes_feed_each_once(
    tmp_path: Path, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> None:
    keys = [f"{p}/s{n:02d}/{f}" for p in "ab" for n in range(12) for f in ("1.tif", "MTD.xml")]
    bucket = make_bucket(make_aws_client("s3"), keys)
    app = make_app(tmp_path)
    config = {
        "shard_depth": 1,
        "concurrency": 2,
        "page_size": 3,
        "item": {"collection": "c", "group_by": "{dirname}", "anchor": "MTD.xml"},
    }
    assert app.backends.feeds is not None
    fed: list[str] = []
    for _ in range(10):  # a complete listing resets the cursor: the next run starts over
        run(app, make_feeder(aws_endpoint, bucket, **config), limit=5)
        fed += [i["id"] for i in queued_items(app)]
        if app.backends.feeds.get_cursor("listing") == {}:
            break

    scenes = sorted({k.rsplit("/", 1)[0] for k in keys})
    assert len(fed) == len(scenes)  # 24 scenes in runs of 5, none twice
    assert len(set(fed)) == len(scenes)


class FailingClient:
    """An S3 client whose ``fail_at``-th listing call answers 503 SlowDown (once)."""

    def __init__(self, client: Any, fail_at: int) -> None:
        self.client, self.fail_at, self.calls = client, fail_at, 0

    def list_objects_v2(self, **params: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "slow down"}}, "ListObjectsV2"
            )
        return self.client.list_objects_v2(**params)


def test_s3_listing_crash_mid_listing_resumes_each_shard_exactly_once(
    tmp_path: Path, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> None:
    """Given grouped scenes split across pages, a crash then a resume feeds every scene once."""
    keys = [f"{p}/s{n:02d}/{f}" for p in "ab" for n in range(10) for f in ("1.tif", "2.tif")]
    bucket = make_bucket(make_aws_client("s3"), keys)
    app = make_app(tmp_path)
    config = {
        "shard_depth": 1,
        "concurrency": 2,
        "page_size": 3,  # groups straddle pages
        "checkpoint_every": 1,
        "item": {"id": "{dirname|replace('/', '-')}", "collection": "c", "group_by": "{dirname}"},
    }
    client = make_client("s3", region="us-east-1", endpoint_url=aws_endpoint)

    crashed = run(
        app, make_feeder(aws_endpoint, bucket, client=FailingClient(client, 10), **config)
    )
    first_ids = [i["id"] for i in queued_items(app)]
    resumed = run(app, make_feeder(aws_endpoint, bucket, **config))
    second_ids = [i["id"] for i in queued_items(app)]

    assert crashed.run.status == "failed"
    assert "SlowDown" in (crashed.run.error or "")
    assert resumed.ok
    assert 0 < len(first_ids) < 20
    expected = sorted(f"{p}-s{n:02d}" for p in "ab" for n in range(10))
    assert sorted(first_ids + second_ids) == expected
    assert all(len(i["assets"]) == 2 for i in queued_items(app))


def test_s3_listing_modified_since_second_run_feeds_only_new_objects(
    tmp_path: Path, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> None:
    s3 = make_aws_client("s3")
    bucket = make_bucket(s3, KEYS)
    app = make_app(tmp_path)
    config = {
        "shard_depth": 1,
        "modified_since": "2000-01-01T00:00:00Z",
        "clock_skew_seconds": 0,
    }
    first = run(app, make_feeder(aws_endpoint, bucket, **config))
    queued_items(app)
    time.sleep(1.1)  # S3 LastModified has one-second resolution
    upload(s3, bucket, ["a/new.tif", "zz-top.txt"])

    second = run(app, make_feeder(aws_endpoint, bucket, **config))

    assert first.counts["enqueued"] == len(KEYS)
    assert sorted(i["id"] for i in queued_items(app)) == ["a-new.tif", "zz-top.txt"]
    assert second.counts["enqueued"] == 2
    assert second.counts["skipped:unchanged"] == len(KEYS)
    assert app.backends.feeds is not None
    cursor = app.backends.feeds.get_cursor("listing")
    assert cursor is not None
    assert set(cursor["shards"]) == {"#direct", "a/", "b/", "c/"}
    assert all(
        datetime.fromisoformat(s["watermark"]) > datetime(2000, 1, 2, tzinfo=UTC)
        for s in cursor["shards"].values()
    )


def test_s3_listing_config_rejects_unknown_template_field() -> None:
    with pytest.raises(ValueError, match="scene"):
        S3ListingConfig.model_validate(
            {
                "type": "s3-listing",
                "bucket": "b",
                "process": {"workflow": "wf"},
                "item": {"id": "{scene}", "collection": "c"},
            }
        )
