"""sync_root (run/rootsync.py), which in-place mode uses on `/`, on a scratch folder: it makes the
folder show a stack's view, keeps what it may, copies again only what differs from what it holds,
and never touches skipped paths or the directories on the way to them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pybuild.diff.overlay import LowerStack
from pybuild.diff.trees import TreeRecord
from pybuild.run.rootsync import Held, identity, origins_of, sync_root


def _layers(tmp_path: Path) -> tuple[Path, Path]:
    bottom, top = tmp_path / "bottom", tmp_path / "top"
    (bottom / "d").mkdir(parents=True)
    (bottom / "a").write_text("a0\n")
    (bottom / "b").write_text("b\n")
    (bottom / "d" / "x").write_text("x\n")
    (bottom / "h1").write_text("linked\n")
    os.link(bottom / "h1", bottom / "h2")
    os.symlink("d/x", bottom / "s")
    os.chmod(bottom / "d", 0o750)
    top.mkdir()
    (top / "a").write_text("a1\n")
    os.mknod(top / "b", stat.S_IFCHR, 0)  # a whiteout: b is gone
    (top / "c").write_text("c\n")
    return bottom, top


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for rel, m in TreeRecord.of(root).entries.items():
        path = root / rel
        content = path.read_text() if stat.S_ISREG(m.mode) else (m.link or "")
        out[rel] = (m.mode, content)
    return out


def _view_tree(lowers: list[Path]) -> dict[str, tuple[int, str]]:
    out = {}
    for rel, entry in LowerStack(lowers).view().items():
        mode = entry.st.st_mode
        content = Path(entry.source).read_text() if stat.S_ISREG(mode) else ""
        if stat.S_ISLNK(mode):
            content = os.readlink(entry.source)
        out[rel] = (mode, content)
    return out


def test_sync_keeps_what_it_may_and_copies_what_differs(tmp_path: Path) -> None:
    bottom, top = _layers(tmp_path)
    root = tmp_path / "root"
    (root / "keep" / "inner").mkdir(parents=True)
    (root / "keep" / "inner" / "store").write_text("never touched\n")
    (root / "keep" / "junk").write_text("removed\n")
    (root / "junk").mkdir()
    (root / "a").write_text("not from any layer\n")

    def keep(rel: str) -> bool:
        return rel == "keep"

    skip = {"keep/inner"}
    both = [top, bottom]
    view = LowerStack(both).view()
    origins = origins_of(both, view)
    sync_root(str(root), view, origins, skip, keep, None)
    tree = _tree(root)
    assert tree.pop("keep/inner/store")[1] == "never touched\n"
    assert stat.S_ISDIR(tree.pop("keep")[0]) and stat.S_ISDIR(tree.pop("keep/inner")[0])
    assert tree == _view_tree(both)  # junk and the stray /a are gone, b is whited out
    assert os.stat(root / "h1").st_ino == os.stat(root / "h2").st_ino  # a link group stays one
    assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o750

    # witnesses: extra hard links keep the inodes alive, so a new entry cannot reuse a number
    witness = tmp_path / "witness"
    witness.mkdir()
    for rel in ("s", "h1"):
        os.link(root / rel, witness / rel, follow_symlinks=False)
    # what the root holds now, as in-place mode remembers it after a step that changed nothing
    record = TreeRecord.of(root)
    held = Held([identity(top), identity(bottom)], None, origins, {})
    held.after_step(record, [], tmp_path / "no-upper")
    (root / "d" / "x").write_text("x\n")  # rewritten behind its back: same bytes, but not trusted

    view = LowerStack([bottom]).view()
    sync_root(str(root), view, origins_of([bottom], view), skip, keep, held)
    held.close()
    tree = _tree(root)
    assert tree.pop("keep/inner/store")[1] == "never touched\n"
    del tree["keep"], tree["keep/inner"]
    assert tree == _view_tree([bottom])
    assert os.path.samestat(os.lstat(root / "s"), os.lstat(witness / "s"))  # same origin, untouched: kept
    # its ctime moved: copied again, with the layer's mtime back
    assert os.lstat(root / "d" / "x").st_mtime_ns == os.lstat(bottom / "d" / "x").st_mtime_ns
    assert not os.path.samestat(os.lstat(root / "h1"), os.lstat(witness / "h1"))  # link groups: copied again
    assert os.stat(root / "h1").st_ino == os.stat(root / "h2").st_ino
    assert not (root / "c").exists() and (root / "a").read_text() == "a0\n" and (root / "b").is_file()
