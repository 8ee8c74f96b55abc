"""Make a self-contained pybuild tree: pybuild with its own Python, libraries and helper tools, on a
tree of its own (/pybuild in the pybuild image, see ../Containerfile).

In-place mode (pybuild/run/inplace.py) puts the image being built into the container's own ``/``,
so pybuild must not live in the image's paths (/usr, /lib...): this tree depends on nothing outside
itself. The interpreter and tools are patched (patchelf) to load their ELF interpreter and libraries
from DEST/lib.

    python3 contrib/bundle.py DEST [--prefix /pybuild] [--tools newuidmap,newgidmap,fuse-overlayfs]

``--prefix`` is where the tree will be seen when it runs (default: DEST itself).

Run it with the Python environment pybuild is installed in (a venv): pybuild's package and its
runtime requirements are copied from there. Needs ldd and patchelf.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

SKIP_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}


def _elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _needed(path: Path) -> tuple[set[Path], Path | None]:
    """The shared libraries ``path`` loads (resolved by ldd) and its ELF interpreter."""
    out = subprocess.run(["ldd", str(path)], check=False, capture_output=True, text=True).stdout
    libs: set[Path] = set()
    interp = None
    for line in out.splitlines():
        found = re.search(r"=>\s+(/\S+)", line)
        if found:
            libs.add(Path(found[1]))
        elif re.match(r"\s*/\S*ld-linux\S*", line):
            interp = Path(line.split()[0])
    return libs, interp


def _distributions(root: str) -> list[metadata.Distribution]:
    """``root``'s distribution and its runtime requirements, transitively (no extras)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        dist = metadata.distribution(name)
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _copy_distribution(dist: metadata.Distribution, packages: Path) -> None:
    import pybuild

    if dist.metadata["Name"] == "pybuild":  # an editable install names its source tree: copy that
        shutil.copytree(
            Path(pybuild.__file__).parent, packages / "pybuild", ignore=shutil.ignore_patterns("__pycache__")
        )
        return
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file)))
        if file.parts[0] == ".." or "__pycache__" in file.parts or not source.is_file():
            continue
        target = packages / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def bundle(dest: Path, prefix: Path, tools: list[str]) -> None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    (dest / "bin").mkdir(parents=True)
    (dest / "lib").mkdir()
    shutil.copy2(python, dest / "bin" / "python3")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(
        stdlib,
        dest / "lib" / version,
        symlinks=True,
        ignore=lambda d, names: [n for n in names if Path(d) == stdlib and n in SKIP_STDLIB],
    )
    packages = dest / "packages"
    packages.mkdir()
    for dist in _distributions("pybuild"):
        _copy_distribution(dist, packages)
    patched = [dest / "bin" / "python3"]
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            raise SystemExit(f"bundle: {tool} is not installed")
        shutil.copy2(os.path.realpath(found), dest / "bin" / tool)
        os.chmod(dest / "bin" / tool, 0o755)  # no setuid bit: the installer decides (setcap, chmod u+s)
        patched.append(dest / "bin" / tool)
    elves = patched + [p for p in (dest / "lib").rglob("*.so*") if _elf(p)] + list(packages.rglob("*.so"))
    interp = None
    libs: set[Path] = set()
    for elf in elves:
        found, their_interp = _needed(elf)
        libs |= found
        interp = interp or their_interp
    if interp is None:
        raise SystemExit("bundle: ldd names no ELF interpreter for python")
    for lib in sorted(libs):
        shutil.copy2(os.path.realpath(lib), dest / "lib" / lib.name)
    shutil.copy2(os.path.realpath(interp), dest / "lib" / interp.name)
    for elf in patched:
        subprocess.run(
            [
                "patchelf",
                "--set-interpreter",
                str(prefix / "lib" / interp.name),
                "--force-rpath",
                "--set-rpath",
                str(prefix / "lib"),
                str(elf),
            ],
            check=True,
        )
    launcher = dest / "bin" / "pybuild"
    launcher.write_text(
        f"#!{prefix}/bin/python3 -I\n"
        "import sys\n"
        f"sys.path.insert(0, {str(prefix / 'packages')!r})\n"
        "from pybuild.cli import main\n"
        "main()\n"
    )
    launcher.chmod(0o755)
    compileall.compile_dir(str(packages), quiet=1, workers=0)
    compileall.compile_dir(str(dest / "lib" / version), quiet=1, workers=0)  # what is not yet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="the tree to make (must not exist)")
    parser.add_argument("--prefix", type=Path, help="where the tree is seen when it runs (default: DEST)")
    parser.add_argument("--tools", default="", help="helper tools to bundle too, comma-separated")
    args = parser.parse_args()
    if args.dest.exists():
        raise SystemExit(f"bundle: {args.dest} exists")
    dest = args.dest.absolute()
    bundle(dest, args.prefix or dest, [t for t in args.tools.split(",") if t])


if __name__ == "__main__":
    main()
