"""DESIGN.md's import directions: errors <- layout, diff, run <- bundle, remote, attest <- build <- cli."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pybuild"

# What each part may import from pybuild (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "layout": {"errors"},
    "diff": {"errors"},
    "run": {"errors"},
    "bundle": {"errors", "layout", "diff", "run"},
    "remote": {"errors", "layout", "diff"},
    "attest": {"errors", "layout", "diff"},
    "build": {"errors", "layout", "diff", "run", "bundle", "remote", "attest"},
    "cli": {"errors", "layout", "diff", "run", "bundle", "remote", "build", "attest"},
}


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else "__init__"


def _is_part(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def imported_parts(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # The package this module lives in, then `level - 1` steps up.
                package = list(pkg_parts[:-1])
                base = package[: len(package) - (node.level - 1)]
                if node.module:
                    names = [".".join([*base, node.module])]
                else:
                    names = [".".join([*base, a.name]) for a in node.names]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            # only submodules count: `from . import __version__` names an attribute of the package
            if parts[0] == "pybuild" and len(parts) > 1 and _is_part(parts[1]):
                found.add(parts[1])
    return found


def test_import_directions() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        if part in ("__init__", "__main__"):
            continue
        assert part in ALLOWED, f"{path}: new part {part!r}: add it to DESIGN.md and ALLOWED"
        for other in imported_parts(path) - {part}:
            if other not in ALLOWED[part]:
                problems.append(f"{path.relative_to(PACKAGE.parent)} ({part}) imports pybuild.{other}")
    assert not problems, "\n".join(problems)


def test_checker_sees_relative_imports(tmp_path: Path) -> None:
    # The walker must notice `from ..build import x` inside pybuild/layout/.
    fake = PACKAGE / "layout" / "_probe_for_test.py"
    try:
        fake.write_text("from ..build import parser\n")
        assert "build" in imported_parts(fake)
    finally:
        fake.unlink()
