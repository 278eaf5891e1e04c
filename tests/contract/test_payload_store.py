"""Contract of `PayloadStore` (base.py docstrings, spec §4.7), run against files and S3."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cirrus_feed.backends.base import PayloadStore
from cirrus_feed.backends.limits import S3_MAX_KEY_BYTES
from cirrus_feed.errors import ForbiddenUrlError, LimitExceededError, PayloadNotFoundError
from cirrus_feed.model import layout

PAYLOAD_ID = "sentinel-s2-l2a/workflow-cog-archive/S2A_10SEG_20250101_0_L2A"
EXECUTION = "3c1b7a8e-6f37-5d5c-9a65-5b3a7c1f0e21"
PAYLOAD = {"id": PAYLOAD_ID, "process": [{"workflow": "cog-archive"}], "features": []}
PutRaw = Callable[[str, bytes], str]


def test_payload_store_url_for_follows_bucket_layout(
    payload_store: PayloadStore, store_root_url: str
) -> None:
    key = layout.input_key(PAYLOAD_ID, EXECUTION)

    url = payload_store.url_for(key)

    assert url == f"{store_root_url}executions/{PAYLOAD_ID}/{EXECUTION}/input.json"


def test_payload_store_put_then_get_round_trip(payload_store: PayloadStore) -> None:
    key = layout.input_key(PAYLOAD_ID, EXECUTION)

    url = payload_store.put_json(key, PAYLOAD)

    assert url == payload_store.url_for(key)
    assert payload_store.is_allowed(url)
    assert payload_store.get_json(url) == PAYLOAD


def test_payload_store_put_many_returns_urls_in_order(payload_store: PayloadStore) -> None:
    keys = [layout.input_key(PAYLOAD_ID, EXECUTION), "tmp/oversized/many.json"]

    urls = payload_store.put_many([(keys[0], PAYLOAD), (keys[1], {"n": 2})])

    assert urls == [payload_store.url_for(k) for k in keys]
    assert [payload_store.get_json(u) for u in urls] == [PAYLOAD, {"n": 2}]


def test_payload_store_put_overwrites(payload_store: PayloadStore) -> None:
    key = layout.output_key(PAYLOAD_ID, EXECUTION)
    payload_store.put_json(key, {"version": 1})

    url = payload_store.put_json(key, {"version": 2})

    assert payload_store.get_json(url) == {"version": 2}


def test_payload_store_reads_what_another_writer_stored(
    payload_store: PayloadStore, put_raw_object: PutRaw
) -> None:
    url = put_raw_object("tmp/oversized/plain.json", json.dumps(PAYLOAD).encode())

    assert payload_store.get_json(url) == PAYLOAD


def test_payload_store_gunzips_gz_keys(payload_store: PayloadStore, put_raw_object: PutRaw) -> None:
    url = put_raw_object(
        "tmp/oversized/packed.json.gz", gzip.compress(json.dumps(PAYLOAD).encode())
    )

    assert payload_store.get_json(url) == PAYLOAD


def test_payload_store_get_missing_raises_not_found(payload_store: PayloadStore) -> None:
    url = payload_store.url_for(layout.output_key(PAYLOAD_ID, "never-ran"))

    with pytest.raises(PayloadNotFoundError):
        payload_store.get_json(url)


def test_payload_store_refuses_urls_outside_the_store(
    payload_store: PayloadStore, forbidden_urls: list[str]
) -> None:
    # Each of these exists and would read fine: refusal must come before any fetch.
    for url in forbidden_urls:
        assert not payload_store.is_allowed(url), url
        with pytest.raises(ForbiddenUrlError):
            payload_store.get_json(url)


@pytest.mark.aws
def test_payload_store_reads_allowed_extra_bucket(aws_client: Callable[[str], Any]) -> None:
    from cirrus_feed.backends.aws.s3 import S3PayloadStore

    s3 = aws_client("s3")
    bucket, extra = f"payloads-{uuid.uuid4().hex[:10]}", f"extra-{uuid.uuid4().hex[:10]}"
    for name in (bucket, extra):
        s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=extra, Key="anywhere/payload.json", Body=json.dumps(PAYLOAD).encode())
    store = S3PayloadStore(bucket, client=s3, allowed_buckets=(extra,))

    url = f"s3://{extra}/anywhere/payload.json"

    assert store.is_allowed(url)
    assert store.get_json(url) == PAYLOAD
    assert store.url_for("tmp/x.json") == f"s3://{bucket}/cirrus/tmp/x.json"
    store.close()


@pytest.mark.aws
def test_payload_store_honours_root_prefix(aws_client: Callable[[str], Any]) -> None:
    from cirrus_feed.backends.aws.s3 import S3PayloadStore

    s3 = aws_client("s3")
    bucket = f"payloads-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    store = S3PayloadStore(bucket, client=s3, root="deploy/cirrus")

    url = store.put_json("tmp/x.json", PAYLOAD)

    assert url == f"s3://{bucket}/deploy/cirrus/tmp/x.json"
    stored = s3.get_object(Bucket=bucket, Key="deploy/cirrus/tmp/x.json")["Body"].read()
    assert json.loads(stored) == PAYLOAD
    store.close()


# -- limits (S3 key size, on every backend: see `PayloadStore`) -----------------------------


def key_of_size(total: int) -> str:
    """A key whose object key (root prefix ``cirrus/`` + key) is ``total`` bytes, in path
    segments any file system takes."""
    key = "/".join(["k" * 99] * 10) + "/"
    key += "k" * (total - len("cirrus/") - len(key))
    assert len(f"cirrus/{key}".encode()) == total
    return key


def test_payload_store_refuses_key_over_1024_bytes(
    payload_store: PayloadStore, store_root_url: str
) -> None:
    key = key_of_size(S3_MAX_KEY_BYTES + 1)

    with pytest.raises(LimitExceededError, match="over the S3 limit"):
        payload_store.put_json(key, PAYLOAD)

    with pytest.raises(PayloadNotFoundError):
        payload_store.get_json(f"{store_root_url}{key}")


def test_payload_store_accepts_key_of_1024_bytes(payload_store: PayloadStore) -> None:
    key = key_of_size(S3_MAX_KEY_BYTES)

    url = payload_store.put_json(key, PAYLOAD)

    assert payload_store.get_json(url) == PAYLOAD
