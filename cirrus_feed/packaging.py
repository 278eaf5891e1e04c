"""`cirrus-feed package`: a Lambda deployment zip of this project and its chosen extras.

Steps: build the project's wheel (``pip wheel --no-deps``); install it with its extras into
a folder for the Lambda platform (``pip install --target --platform manylinux2014_<arch>
--only-binary=:all: --python-version 3.11 --implementation cp``, so every compiled wheel is
the Lambda's, whatever machine builds); strip what a function never reads; optionally compile
bytecode; zip (sorted entries, fixed timestamps: the same inputs give the same zip).

Stripped, and reported by category:

* the AWS SDK (boto3, botocore, s3transfer, jmespath, and what only they need): every Python
  Lambda runtime ships it, and botocore alone is ~30 MB. ``with_boto3`` keeps our own copy
  instead (AWS's advice for a pinned SDK version; it fits the 250 MB limit easily);
* ``__pycache__`` written by pip (by whatever interpreter ran it; see ``compile`` below);
* test suites (``tests``/``test`` folders inside packages), type stubs (``*.pyi``), C/C++
  headers, ``include`` folders and Cython sources, console scripts (``bin/``);
* install bookkeeping in ``*.dist-info``: RECORD, INSTALLER, REQUESTED, direct_url.json.
  METADATA and entry_points.txt stay: the feeder registry reads the entry points.

``bytecode``: /var/task is read-only, so a function without bytecode recompiles every module
it imports on each cold start. When the building interpreter is the target's version, the
tree is compiled with unchecked-hash pycs (valid whatever the zip's timestamps).
"""

from __future__ import annotations

import compileall
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from cirrus_feed.errors import CirrusFeedError, ConfigError

PLATFORMS = {"x86_64": "manylinux2014_x86_64", "aarch64": "manylinux2014_aarch64"}
EXTRAS = ("stac", "inventory")  # what a Lambda function may run (serve is a long-running host)
SDK = ("boto3", "botocore", "s3transfer", "jmespath")
PYTHON_VERSION = "3.11"
# Lambda's limits: 250 MB unzipped (function and layers), 50 MB for a zip uploaded directly.
MAX_UNZIPPED = 250 * 2**20
_BOOKKEEPING = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
_SOURCES = (".pyi", ".h", ".hpp", ".pxd", ".pyx", ".pxi", ".c", ".cc", ".cpp")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackagingError(CirrusFeedError):
    """pip failed, or the tree is over Lambda's size limit."""


@dataclass
class LambdaZip:
    """A built zip: where, how big, and what was stripped (category → files, bytes)."""

    path: Path
    platform: str
    extras: tuple[str, ...]
    unzipped_bytes: int
    zipped_bytes: int
    compiled: bool
    removed_files: Counter[str] = field(default_factory=Counter)
    removed_bytes: Counter[str] = field(default_factory=Counter)
    sdk_removed: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "platform": self.platform,
            "extras": list(self.extras),
            "unzipped_bytes": self.unzipped_bytes,
            "zipped_bytes": self.zipped_bytes,
            "compiled": self.compiled,
            "removed": {
                kind: {"files": self.removed_files[kind], "bytes": self.removed_bytes[kind]}
                for kind in sorted(self.removed_files)
            },
            "sdk_removed": self.sdk_removed,
        }


def platform_tag(name: str) -> str:
    """``x86_64``/``aarch64`` (or the full manylinux2014 tag) → the pip platform tag."""
    if name in PLATFORMS.values():
        return name
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ConfigError(f"platform {name!r}: one of {', '.join(PLATFORMS)}") from None


def check_extras(extras: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sorted({e.strip() for e in extras if e.strip()}))
    unknown = [e for e in chosen if e not in EXTRAS]
    if unknown:
        raise ConfigError(f"extras {', '.join(unknown)}: a Lambda zip takes {', '.join(EXTRAS)}")
    return chosen


def project_root() -> Path:
    """The source tree this module was loaded from (the zip is built from it)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise ConfigError(f"{root}: no pyproject.toml; package from a source checkout")
    return root


def build_lambda_zip(
    output: Path,
    *,
    platform: str = "x86_64",
    extras: Iterable[str] = (),
    with_boto3: bool = False,
    bytecode: bool | None = None,  # None: when this interpreter is the target version
    project: Path | None = None,
    python_version: str = PYTHON_VERSION,
) -> LambdaZip:
    """Build the zip at ``output``.

    Raises:
        ConfigError: an unknown platform or extra.
        PackagingError: pip failed (its output in the message), or over `MAX_UNZIPPED`.
    """
    tag, chosen = platform_tag(platform), check_extras(extras)
    root = project or project_root()
    native = f"{sys.version_info.major}.{sys.version_info.minor}" == python_version
    compiled = native if bytecode is None else bytecode
    if compiled and not native:
        running = sys.version.split()[0]
        raise ConfigError(f"bytecode: this is Python {running}, not {python_version}")
    with tempfile.TemporaryDirectory(prefix="cirrus-feed-lambda-") as scratch:
        wheels, tree = Path(scratch) / "wheels", Path(scratch) / "tree"
        _pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(root))
        (wheel,) = wheels.glob("*.whl")
        target = f"{wheel}[{','.join(chosen)}]" if chosen else str(wheel)
        _pip(
            "install", "--target", str(tree), "--platform", tag, "--only-binary=:all:",
            "--python-version", python_version, "--implementation", "cp", "--no-compile",
            target,
        )  # fmt: skip
        result = LambdaZip(output, tag, chosen, 0, 0, compiled)
        if not with_boto3:
            result.sdk_removed = remove_sdk(tree, result)
        strip_tree(tree, result)
        if compiled:
            _compile(tree)
        result.unzipped_bytes = sum(p.stat().st_size for p in _files(tree))
        if result.unzipped_bytes > MAX_UNZIPPED:
            raise PackagingError(
                f"{result.unzipped_bytes / 2**20:.0f} MB unzipped is over Lambda's 250 MB"
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        _zip(tree, output)
    result.zipped_bytes = output.stat().st_size
    return result


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise PackagingError(f"pip {args[0]} failed: {(done.stderr or done.stdout).strip()}")


def _files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def _remove(path: Path, kind: str, result: LambdaZip) -> None:
    files = [path] if path.is_file() else _files(path)
    if files:  # a folder emptied file by file is not a category of its own
        result.removed_files[kind] += len(files)
        result.removed_bytes[kind] += sum(f.stat().st_size for f in files)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def strip_tree(tree: Path, result: LambdaZip) -> None:
    for path in sorted(tree.rglob("*"), reverse=True):  # children before their folders
        if not path.exists():
            continue
        if path.is_dir():
            if path.name == "__pycache__":
                _remove(path, "__pycache__", result)
            elif path.name in ("tests", "test") and path.parent != tree:
                _remove(path, "tests", result)
            elif path.name == "include" and path.parent != tree:
                _remove(path, "C/C++ headers", result)
        elif path.parent.name.endswith(".dist-info") and path.name in _BOOKKEEPING:
            _remove(path, "dist-info bookkeeping", result)
        elif path.suffix == ".pyi":
            _remove(path, "type stubs", result)
        elif path.suffix in _SOURCES:
            _remove(path, "C/C++ headers and Cython sources", result)
    if (tree / "bin").is_dir():
        _remove(tree / "bin", "console scripts", result)


# -- the AWS SDK ----------------------------------------------------------------------------


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class _Dist:
    info: Path
    requires: frozenset[str]
    files: tuple[Path, ...]


def _dists(tree: Path) -> dict[str, _Dist]:
    dists = {}
    for info in tree.glob("*.dist-info"):
        metadata = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        requires = {
            _normal(re.split(r"[\s;(<>=!~\[]", line, maxsplit=1)[0])
            for line in metadata.get_all("Requires-Dist") or []
            if "extra ==" not in line.replace('"', "'").replace("extra==", "extra ==")
        }
        record = info / "RECORD"
        lines = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
        files = tuple(tree / line.rsplit(",", 2)[0] for line in lines if line)
        dists[_normal(str(metadata["Name"]))] = _Dist(info, frozenset(requires), files)
    return dists


def _closure(dists: dict[str, _Dist], roots: Collection[str]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in dists]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [r for r in dists[name].requires if r in dists]
    return seen


def remove_sdk(tree: Path, result: LambdaZip) -> list[str]:
    """Remove the SDK and what nothing else needs; the names removed."""
    dists = _dists(tree)
    candidates = _closure(dists, SDK)
    # What the rest needs, the SDK aside (the runtime's copy serves whoever imports it).
    keep = _closure({n: d for n, d in dists.items() if n not in SDK}, set(dists) - candidates)
    removed = sorted(candidates - keep)
    for name in removed:
        for path in dists[name].files:
            if path.is_file() and tree in path.resolve().parents:
                _remove(path, "AWS SDK (in the Lambda runtime)", result)
        shutil.rmtree(dists[name].info, ignore_errors=True)
    for folder in sorted((p for p in tree.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _compile(tree: Path) -> None:
    compileall.compile_dir(
        tree,
        quiet=2,
        ddir="/var/task",  # tracebacks name the deployed path
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        workers=1,
    )


def _zip(tree: Path, output: Path) -> None:
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in _files(tree):
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), _ZIP_TIME)
            info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix: the permission bits above count
            archive.writestr(info, path.read_bytes(), compresslevel=6)
    partial.replace(output)
