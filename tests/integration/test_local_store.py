"""The local payload store without a directory per execution (issue 12): ``executions/``
objects are rows of ``objects.sqlite``; every URL it hands out still reads back, also after
a reopen and from another process's store; other keys stay files users can read."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from cirrus_feed.backends.local.files import FilePayloadStore
from cirrus_feed.errors import BackendError, ForbiddenUrlError, PayloadNotFoundError
from cirrus_feed.model import layout

PAYLOAD_ID = "sentinel-2-l2a/workflow-publish-only/S2B_33UUP_20261121_0_L2A"


def test_execution_objects_make_no_directories_and_read_back_after_a_reopen(
    tmp_path: Path,
) -> None:
    store = FilePayloadStore(tmp_path / "payloads")
    urls = {}
    for i in range(20):
        for key in (
            layout.input_key(f"{PAYLOAD_ID}{i}", "n"),
            layout.output_key(f"{PAYLOAD_ID}{i}", "n"),
        ):
            urls[key] = store.put_json(key, {"key": key, "i": i})
    store.close()

    reopened = FilePayloadStore(tmp_path / "payloads")

    assert not (tmp_path / "payloads" / "cirrus" / "executions").exists()
    for key, url in urls.items():
        assert url == reopened.url_for(key)
        assert reopened.is_allowed(url)
        assert reopened.get_json(url)["key"] == key
    reopened.close()


def _put_in_child(root: str, key: str) -> str:
    store = FilePayloadStore(Path(root))
    try:
        return store.put_json(key, {"from": "child"})
    finally:
        store.close()


def test_an_object_put_by_another_process_is_read_by_its_url(tmp_path: Path) -> None:
    key = layout.input_key(PAYLOAD_ID, "other-process")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        url = pool.apply(_put_in_child, (str(tmp_path / "payloads"), key))
    store = FilePayloadStore(tmp_path / "payloads")

    assert store.get_json(url) == {"from": "child"}
    store.close()


def test_put_overwrites_a_row_and_the_row_wins_over_an_old_file(tmp_path: Path) -> None:
    store = FilePayloadStore(tmp_path / "payloads")
    key = layout.output_key(PAYLOAD_ID, "e1")
    # What an older version left: the object as a file at the URL's path.
    old = tmp_path / "payloads" / "cirrus" / key
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"version": 0}))
    url = store.url_for(key)
    assert store.get_json(url) == {"version": 0}  # no row yet: the file is read

    store.put_json(key, {"version": 1})
    store.put_json(key, {"version": 2})

    assert store.get_json(url) == {"version": 2}
    store.close()


def test_keys_outside_executions_stay_files(tmp_path: Path) -> None:
    store = FilePayloadStore(tmp_path / "payloads")

    url = store.put_json("tmp/invalid/x.json", {"reason": "r"})

    path = tmp_path / "payloads" / "cirrus" / "tmp" / "invalid" / "x.json"
    assert json.loads(path.read_text()) == {"reason": "r"}
    assert url == path.resolve().as_uri()
    store.close()


def test_key_spellings_name_one_object(tmp_path: Path) -> None:
    store = FilePayloadStore(tmp_path / "payloads")

    url = store.put_json("executions//a/./b/input.json", {"one": 1})

    assert url == store.url_for("executions/a/b/input.json")
    assert (
        url == (tmp_path / "payloads" / "cirrus" / "executions/a/b/input.json").resolve().as_uri()
    )
    assert store.get_json(url) == {"one": 1}
    store.close()


@pytest.mark.parametrize("key", ["", "/abs/input.json", "executions/../../x.json", "."])
def test_keys_that_leave_the_store_are_refused(tmp_path: Path, key: str) -> None:
    store = FilePayloadStore(tmp_path / "payloads")

    with pytest.raises(BackendError, match="relative path"):
        store.put_json(key, {})
    store.close()


def test_the_objects_file_itself_cannot_be_read_by_url(tmp_path: Path) -> None:
    store = FilePayloadStore(tmp_path / "payloads")
    store.put_json(layout.input_key(PAYLOAD_ID, "e"), {"secret": True})
    objects = (tmp_path / "payloads" / "objects.sqlite").resolve().as_uri()
    # A URL reaching a row through a path outside the store's folder is refused too.
    sneaky = store.url_for(layout.input_key(PAYLOAD_ID, "e")).replace(
        "/cirrus/executions/", "/cirrus/../cirrus/executions/"
    )

    for url in (objects, sneaky):
        assert not store.is_allowed(url)
        with pytest.raises(ForbiddenUrlError):
            store.get_json(url)
    with pytest.raises(PayloadNotFoundError):
        store.get_json(store.url_for(layout.input_key(PAYLOAD_ID, "never-put")))
    store.close()


def test_put_many_writes_rows_in_one_go_and_files_as_files(tmp_path: Path) -> None:
    store = FilePayloadStore(tmp_path / "payloads")
    keys = [layout.input_key(f"{PAYLOAD_ID}{i}", "n") for i in range(5)] + ["tmp/oversized/o.json"]

    urls = store.put_many([(key, {"key": key}) for key in keys])

    assert urls == [store.url_for(key) for key in keys]
    assert [store.get_json(url)["key"] for url in urls] == keys
    assert (tmp_path / "payloads" / "cirrus" / "tmp" / "oversized" / "o.json").is_file()
    assert not (tmp_path / "payloads" / "cirrus" / "executions").exists()
    with pytest.raises(BackendError, match="relative path"):
        store.put_many([(layout.input_key(PAYLOAD_ID, "ok"), {}), ("../x.json", {})])
    with pytest.raises(PayloadNotFoundError):  # a bad key in the batch: nothing written
        store.get_json(store.url_for(layout.input_key(PAYLOAD_ID, "ok")))
    store.close()
