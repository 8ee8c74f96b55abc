"""DESIGN.md's import rules, checked on the source with ast:

- directions between the parts: errors <- layout, diff <- run <- bundle, remote, attest <- builder <- cli;
- no circle of module-level imports inside a package (an import inside a function does not count);
- no private name (``_name``) imported from, or reached into, another module.

The walkers take the package root as an argument, so their own tests run on a fake package tree in
tmp_path and never write into pybuild/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pybuild"

# What each part may import from pybuild (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "layout": {"errors"},
    "diff": {"errors"},
    "run": {"errors", "layout", "diff"},
    "bundle": {"errors", "layout", "diff", "run"},
    "remote": {"errors", "layout", "diff"},
    "attest": {"errors", "layout", "diff"},
    "builder": {"errors", "layout", "diff", "run", "bundle", "remote", "attest"},
    "cli": {"errors", "layout", "diff", "run", "bundle", "remote", "builder", "attest"},
}


def module_name(package: Path, path: Path) -> str:
    """``pybuild.layout.store`` for ``pybuild/layout/store.py``; ``pybuild.layout`` for its __init__."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(package: Path, path: Path) -> str:
    rel = path.relative_to(package)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else "__init__"


def _is_module(package: Path, dotted: str) -> bool:
    """Whether ``dotted`` (``pybuild.x.y``) names a module or package file under ``package``."""
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    base = package / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _absolute(package: Path, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    here = module_name(package, path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package this module lives in
    base = here[: len(here) - (node.level - 1)]
    return ".".join([*base, node.module]) if node.module else ".".join(base)


def _type_checking_only(parents: list[ast.AST]) -> bool:
    return any(
        isinstance(p, ast.If) and isinstance(p.test, ast.Name) and p.test.id == "TYPE_CHECKING"
        for p in parents
    )


Found = tuple[ast.AST, str, list[str], bool]


def imports(package: Path, path: Path) -> Iterator[Found]:
    """(node, module, imported names, module-level?) for every import of a pybuild module in ``path``.

    ``from . import x`` where x is a submodule yields module ``pybuild.pkg.x`` with no names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    root = package.name

    def visit(node: ast.AST, parents: list[ast.AST], top: bool) -> Iterator[Found]:
        for child in ast.iter_child_nodes(node):
            in_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == root:
                        yield child, alias.name, [], top and not _type_checking_only(parents)
            elif isinstance(child, ast.ImportFrom):
                module = _absolute(package, path, child)
                if module.split(".")[0] == root:
                    level = top and not _type_checking_only(parents)
                    names = []
                    for alias in child.names:
                        sub = f"{module}.{alias.name}"
                        if _is_module(package, sub):
                            yield child, sub, [], level
                        else:
                            names.append(alias.name)
                    if names:
                        yield child, module, names, level
            yield from visit(child, [*parents, child], top and not in_function)

    yield from visit(tree, [], True)


def imported_parts(package: Path, path: Path) -> set[str]:
    found = set()
    for _, module, _, _ in imports(package, path):
        parts = module.split(".")
        # only submodules count: `from . import __version__` names an attribute of the package
        if len(parts) > 1 and _is_module(package, ".".join(parts[:2])):
            found.add(parts[1])
    return found


def direction_problems(package: Path, allowed: dict[str, set[str]]) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        part = part_of(package, path)
        if part in ("__init__", "__main__"):
            continue
        if part not in allowed:
            rel = path.relative_to(package.parent)
            problems.append(f"{rel}: new part {part!r}: add it to DESIGN.md and ALLOWED")
            continue
        for other in imported_parts(package, path) - {part}:
            if other not in allowed[part]:
                problems.append(f"{path.relative_to(package.parent)} ({part}) imports {package.name}.{other}")
    return problems


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports at module level."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        name = module_name(package, path)
        pkg = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
        edges = graph.setdefault(name, set())
        for _, module, _, top in imports(package, path):
            if not top or module == name:
                continue
            # importing pybuild.a.b also runs pybuild.a's __init__, but that edge is the package's
            # own business (a module may always use its package's other modules)
            target = module
            while target and not _is_module(package, target):
                target = target.rsplit(".", 1)[0]
            if target and (target.rsplit(".", 1)[0] == pkg or target == pkg) and target != pkg:
                edges.add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def private_crossings(package: Path) -> list[str]:
    """``from other import _name``, and ``module._name`` where ``module`` is another pybuild module
    imported by name."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        here = module_name(package, path)
        rel = path.relative_to(package.parent)
        aliases: dict[str, str] = {}
        for node, module, names, _ in imports(package, path):
            if module == here:
                continue
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    problems.append(f"{rel}:{node.lineno} imports {name} from {module}")
            assert isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names:
                if isinstance(node, ast.ImportFrom) and module.endswith("." + alias.name):
                    aliases[alias.asname or alias.name] = module
                elif isinstance(node, ast.Import) and alias.asname:
                    aliases[alias.asname] = module
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                problems.append(f"{rel}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return problems


# --- the rules, on pybuild ------------------------------------------------------------------------


def test_import_directions() -> None:
    problems = direction_problems(PACKAGE, ALLOWED)
    assert not problems, "\n".join(problems)


def test_no_circles_inside_a_package() -> None:
    found = circles(import_graph(PACKAGE))
    assert not found, "\n".join(" <-> ".join(group) for group in found)


def test_no_private_names_cross_modules() -> None:
    problems = private_crossings(PACKAGE)
    assert not problems, "\n".join(problems)


# --- the checkers, on a fake package in tmp_path ----------------------------------------------------


def fake_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pybuild"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [package, *[p for p in package.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return package


def test_checker_sees_relative_imports(tmp_path: Path) -> None:
    package = fake_package(
        tmp_path,
        {
            "layout/probe.py": "from ..build import parser\n",
            "layout/other.py": "from ...outside import x\nfrom . import store\n",
            "layout/store.py": "",
            "cli.py": "from . import __version__\n",
            "build/parser.py": "",
        },
    )
    assert imported_parts(package, package / "layout" / "probe.py") == {"build"}
    assert imported_parts(package, package / "layout" / "other.py") == {"layout"}
    assert imported_parts(package, package / "cli.py") == set()
    problems = direction_problems(package, {"layout": {"errors"}, "build": {"layout"}})
    assert problems == [
        "pybuild/cli.py: new part 'cli': add it to DESIGN.md and ALLOWED",
        "pybuild/layout/probe.py (layout) imports pybuild.build",
    ]


def test_checker_finds_circles_at_module_level_only(tmp_path: Path) -> None:
    package = fake_package(
        tmp_path,
        {
            "run/a.py": "from .b import thing\n",
            "run/b.py": "from . import c\n",
            "run/c.py": "from pybuild.run.a import other\n",
            "run/d.py": "from .e import x\n",
            "run/e.py": "def later():\n    from .d import y\n",
            "run/f.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .g import T\n",
            "run/g.py": "from .f import U\n",
        },
    )
    assert circles(import_graph(package)) == [["pybuild.run.a", "pybuild.run.b", "pybuild.run.c"]]


def test_checker_finds_private_names_crossing_modules(tmp_path: Path) -> None:
    package = fake_package(
        tmp_path,
        {
            "run/userns.py": "def _libc(): ...\n_private = 1\n",
            "run/rootfs.py": "from .userns import _libc, current\n",
            "run/modes.py": "from . import userns\nuserns._private\nuserns.__name__\n",
            "run/fine.py": "from .userns import current\n_mine = 1\nprint(_mine)\n",
            "build/x.py": "from ..run import userns as u\ndef f():\n    return u._libc()\n",
        },
    )
    assert private_crossings(package) == [
        "pybuild/build/x.py:3 uses pybuild.run.userns._libc",
        "pybuild/run/modes.py:2 uses pybuild.run.userns._private",
        "pybuild/run/rootfs.py:1 imports _libc from pybuild.run.userns",
    ]
