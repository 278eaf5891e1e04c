"""`feeders.s3.objects`'s compiled work gives what the per-object path gave: template
renderers compiled once, media types looked up once per run of suffixes, the fields
without ``key_url`` when no template needs it."""

from __future__ import annotations

import json
import mimetypes
from datetime import UTC, datetime
from typing import Any

import pytest

from cirrus_feed.feeding.contract import SourceRejection
from feeders.s3.objects import ItemBuilder, ItemTemplate, S3Object, media_type_of
from feeders.s3.templates import Template

KEYS = [
    "scenes/00001/scene-0000001.tif",
    "a/scene 1/B01.TIF",
    "b/ünï/cödé.Tif",
    "c/README",
    "c/.hidden",
    "c/.tar.gz",
    "d/archive.tar.gz",
    "d/archive.tgz",
    "d/ARCHIVE.TGZ",
    "d/data.json.bz2",
    "d/data.JSON.gz",
    "d/x.Z",
    "e/two..dots.jp2",
    "e/dots.in.name.v1.0.tif",
    "f.d/no-suffix",
    "f.d/",
    "data:text/x;y,abc.tif",
    "scheme:a/b.tif",
    "g//double//slash.png",
    "/leading.xml",
    "//x.txt",
    "h/name.unknownsuffix",
    "h/trailing.",
]


@pytest.mark.parametrize("key", KEYS)
def test_media_type_of_is_what_guess_type_says(key: str) -> None:
    expected = mimetypes.guess_type(key, strict=False)[0]
    assert media_type_of(key) == expected
    assert media_type_of(key) == expected  # the cached answer too


def fields_of(key: str) -> dict[str, str]:
    return S3Object("bkt", key).fields()


@pytest.mark.parametrize(
    "text",
    [
        "{stem}",
        "s3://{bucket}/{key}",
        "{dirname}/{{literal}}/{basename}.{ext}",
        "fixed",
        "{{only braces}}",
        "{key|replace('/', '-')}",
        "{stem|upper}-{ext|lower}",
        "{md5(key)}",
        "{key_url}",
    ],
)
@pytest.mark.parametrize("key", KEYS)
def test_a_compiled_renderer_renders_what_render_does(text: str, key: str) -> None:
    template = Template(text)
    assert template.renderer()(fields_of(key)) == template.render(fields_of(key))


@pytest.mark.parametrize("text", ["{stem}", "a/{nope}", "{nope|upper}"])
def test_a_compiled_renderer_raises_the_same_key_error(text: str) -> None:
    template = Template(text)
    with pytest.raises(KeyError) as compiled:
        template.renderer()({"stem": "s"} if "stem" not in text else {})
    with pytest.raises(KeyError) as plain:
        template.render({"stem": "s"} if "stem" not in text else {})
    assert str(compiled.value) == str(plain.value)


def reference_item(template: ItemTemplate, obj: S3Object) -> dict[str, Any] | None:
    """The item as the per-object path built it: `fields`, `render`, `guess_type`."""
    values = obj.fields()
    rendered = {name: t.render(values) for name, t in template.templates().items()}
    if not rendered["asset"]:
        return None
    asset: dict[str, Any] = {"href": rendered["href"]}
    media_type = mimetypes.guess_type(obj.key, strict=False)[0]
    if media_type is not None:
        asset["type"] = media_type
    when = obj.last_modified
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": rendered["id"],
        "collection": rendered["collection"],
        "geometry": None,
        "properties": {
            **template.properties,
            "datetime": when.astimezone(UTC).isoformat().replace("+00:00", "Z") if when else None,
        },
        "assets": {rendered["asset"]: asset},
        "links": [],
    }


TEMPLATES = [
    ItemTemplate(collection="scenes", id="{stem}", asset="image"),
    ItemTemplate(collection="c-{dirname|replace('/', '_')}", href="https://h/{key_url}"),
    ItemTemplate(collection="{bucket}", id="{md5(key)}", properties={"a": 1}),
]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("key", [key for key in KEYS if not key.endswith("/")])
def test_an_item_is_the_item_the_per_object_path_built(template: ItemTemplate, key: str) -> None:
    when = datetime(2026, 11, 28, 1, 2, 3, 4000, tzinfo=UTC)
    obj = S3Object("bkt", key, 10, when, "etag")
    (item,) = ItemBuilder(template).push(obj)
    expected = reference_item(template, obj)
    if expected is None:
        assert isinstance(item, SourceRejection)
    else:
        assert json.dumps(item) == json.dumps(expected)  # the same text: key order too
