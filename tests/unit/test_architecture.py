"""The import rules of docs/architecture.md hold for every module of the tree.

The rules are read from the table in docs/architecture.md, so the document and the test
cannot drift: a module may import its own package and the packages its row lists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
OURS = ("cirrus_feed", "feeders")


def rules() -> dict[str, set[str]]:
    """package → the packages it may import, from the doc's table."""
    table: dict[str, set[str]] = {}
    section = DOC.read_text().split("## Packages and what each owns", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        package = cells[0].strip("`")
        table[package] = set(re.findall(r"`([\w.]+)`", cells[2]))
    return table


def is_container(module: str, packages: set[str]) -> bool:
    """A package that only holds packages of the table (``cirrus_feed``, ``.backends``)."""
    return any(p.startswith(module + ".") for p in packages)


def package_of(module: str, packages: set[str]) -> str | None:
    """The most specific package of the table that ``module`` belongs to."""
    matches = [p for p in packages if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def imports(path: Path, module: str) -> set[str]:
    """Every module of ours that ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            # `from cirrus_feed import x` may name a submodule
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


def modules() -> list[tuple[Path, str]]:
    result = []
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            result.append((path, name))
    return result


def test_architecture_doc_has_a_row_for_every_package() -> None:
    table = rules()
    assert "cirrus_feed.model" in table
    assert "feeders" in table
    unplaced = [
        name
        for _, name in modules()
        if package_of(name, set(table)) is None and not is_container(name, set(table))
    ]
    assert unplaced == []


def test_architecture_doc_rules_name_only_known_packages() -> None:
    table = rules()
    unknown = {(p, a) for p, allowed in table.items() for a in allowed if a not in table}
    assert unknown == set()


@pytest.mark.parametrize(("path", "module"), modules(), ids=lambda v: str(v))
def test_architecture_imports_follow_the_rules(path: Path, module: str) -> None:
    table = rules()
    packages = set(table)
    own = package_of(module, packages)
    if own is None:  # a container package (`cirrus_feed` re-exports the public names)
        assert is_container(module, packages)
        return
    allowed = table[own] | {own}
    wrong = sorted(
        name
        for name in imports(path, module)
        if (target := package_of(name, packages)) is not None
        and target not in allowed
        # `from cirrus_feed import x` also yields the bare package; judged by its names
        and name not in OURS
    )
    assert wrong == [], f"{module} ({own}) may import only {sorted(allowed)}"


def test_architecture_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    # Given a core module that imports a plugin
    bad = tmp_path / "bad.py"
    bad.write_text("from feeders.events.feeder import EventsFeeder\n")

    found = imports(bad, "cirrus_feed.pipeline.bad")

    assert package_of("feeders.events.feeder", set(rules())) == "feeders"
    assert "feeders" not in rules()["cirrus_feed.pipeline"]
    assert "feeders.events.feeder" in found
