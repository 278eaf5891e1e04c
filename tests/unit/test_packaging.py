"""The Lambda zip's stripping rules on a small tree (the real build: test_lambda_zip.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirrus_feed.errors import ConfigError
from cirrus_feed.packaging import LambdaZip, check_extras, platform_tag, remove_sdk, strip_tree


def dist(tree: Path, name: str, requires: list[str], files: list[str]) -> None:
    info = tree / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = [f"Name: {name}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(["Metadata-Version: 2.1", *lines]) + "\n")
    for file in files:
        (tree / file).parent.mkdir(parents=True, exist_ok=True)
        (tree / file).write_text("x = 1\n")
    record = [f"{f},sha256=x,6" for f in files] + [
        f"{info.name}/METADATA,,",
        f"{info.name}/RECORD,,",
    ]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def result() -> LambdaZip:
    return LambdaZip(Path("x.zip"), "manylinux2014_x86_64", (), 0, 0, compiled=False)


def test_remove_sdk_keeps_what_something_else_needs(tmp_path: Path) -> None:
    extra = 'pyarrow; extra == "inventory"'
    dist(tmp_path, "cirrus-feed", ["boto3>=1.35", "requests", extra], ["cirrus_feed/__init__.py"])
    dist(tmp_path, "boto3", ["botocore (<2)", "s3transfer", "jmespath"], ["boto3/__init__.py"])
    botocore = ["urllib3!=2.2.0,<3", "python-dateutil", "jmespath"]
    dist(tmp_path, "botocore", botocore, ["botocore/__init__.py"])
    dist(tmp_path, "s3transfer", ["botocore"], ["s3transfer/__init__.py"])
    dist(tmp_path, "jmespath", [], ["jmespath/__init__.py"])
    dist(tmp_path, "python-dateutil", ["six>=1.5"], ["dateutil/__init__.py"])
    dist(tmp_path, "six", [], ["six.py"])
    dist(tmp_path, "requests", ["urllib3<3,>=1.21.1"], ["requests/__init__.py"])
    dist(tmp_path, "urllib3", [], ["urllib3/__init__.py"])
    built = result()

    removed = remove_sdk(tmp_path, built)

    assert removed == ["boto3", "botocore", "jmespath", "python-dateutil", "s3transfer", "six"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [
        "cirrus_feed", "cirrus_feed-1.0.dist-info", "requests", "requests-1.0.dist-info",
        "urllib3", "urllib3-1.0.dist-info",
    ]  # fmt: skip
    # each: its module, METADATA and RECORD
    assert built.removed_files["AWS SDK (in the Lambda runtime)"] == 6 * 3


def test_strip_tree_keeps_metadata_and_entry_points(tmp_path: Path) -> None:
    for name in (
        "pkg/__init__.py", "pkg/__init__.pyi", "pkg/tests/test_x.py", "pkg/include/arrow.h",
        "pkg/_lib.pyx", "pkg/__pycache__/x.cpython-311.pyc", "bin/tool", "test/keep.py",
        "pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/entry_points.txt",
        "pkg-1.0.dist-info/RECORD", "pkg-1.0.dist-info/INSTALLER",
    ):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    built = result()

    strip_tree(tmp_path, built)

    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == [
        "pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/entry_points.txt",
        "pkg/__init__.py", "test/keep.py",  # a top-level module named test is not a test suite
    ]  # fmt: skip
    assert set(built.removed_files) == {
        "__pycache__", "tests", "type stubs", "C/C++ headers and Cython sources",
        "console scripts", "dist-info bookkeeping",
    }  # fmt: skip


def test_platforms_and_extras_are_checked() -> None:
    assert platform_tag("aarch64") == "manylinux2014_aarch64"
    assert platform_tag("manylinux2014_x86_64") == "manylinux2014_x86_64"
    with pytest.raises(ConfigError, match="platform 'arm64': one of x86_64, aarch64"):
        platform_tag("arm64")
    assert check_extras(["stac", " inventory", ""]) == ("inventory", "stac")
    with pytest.raises(ConfigError, match="extras serve: a Lambda zip takes stac, inventory"):
        check_extras(["serve"])
