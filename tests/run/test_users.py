"""The one passwd/group lookup (run/users.py) and its three callers: RUN (and `pybuild run`) with
runc's rules, COPY --chown with BuildKit's, and the config.json of `pybuild unpack` with runc's.

Every corner for every caller: a numeric uid passwd does not list; a user whose primary gid has no
group entry; supplementary groups from /etc/group member lists (not for COPY, which sets one owner);
a symlinked /etc/passwd, resolved inside the root; a name that does not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pybuild.bundle.runtimeconfig import resolve_user
from pybuild.bundle.unpack import unpack_image
from pybuild.errors import BundleError, RunError
from pybuild.layout import Layout, check_layout, load_image
from pybuild.run.users import chown_ids, lookup_user
from tests.fixtures.cli import PYBUILD, Pybuild, assert_fails, base_store
from tests.fixtures.rootless import TEST_USER, as_test_user
from tests.fixtures.tools import validate_layout

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000::/home/app:/bin/sh\n"
    "lonely:x:1001:4242::/:/bin/sh\n"  # gid 4242 has no line in /etc/group
    "# a comment line\n"
    "nobody:x:65534:65534::/:/bin/false\n"
    "app:x:2000:2000::/:/bin/sh\n"  # a second line for app: the first wins
)
GROUP = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\nstaff:x:50:lonely,linked\n"
LINKED = "linked:x:3000:3001::/:/bin/sh\n"  # /srv/passwd, which /etc/passwd points at in the "linked" cases

# spec -> (uid, gid, supplementary gids), runc's rules
RUNC = {
    "": (0, 0, []),
    "root": (0, 0, []),
    "app": (1000, 1000, [10, 29]),
    "1000": (1000, 1000, [10, 29]),  # a number passwd lists: its user's groups
    "4321": (4321, 0, []),  # a number passwd does not list: gid 0, no groups
    "4321:77": (4321, 77, []),
    "lonely": (1001, 4242, [50]),  # the primary gid has no group entry: kept
    "app:wheel": (1000, 10, []),  # an explicit group: no supplementary groups
    "app:7": (1000, 7, []),
}
# spec -> (uid, gid), BuildKit's rules for COPY --chown
BUILDKIT = {
    "app": (1000, 1000),
    "lonely": (1001, 4242),  # a name: its primary gid from passwd (runc agrees)
    "1001": (1001, 1001),  # a number: itself as the gid, even where passwd says otherwise (runc: 4242)
    "4321": (4321, 4321),  # a number passwd does not list (runc: gid 0)
    "4321:77": (4321, 77),
    "app:wheel": (1000, 10),
    "lonely:app": (1001, 1000),
}
LINKED_RUNC = (3000, 3001, [50])
LINKED_BUILDKIT = (3000, 3001)


def make_root(root: Path, link: str | None = None) -> Path:
    """/etc/passwd and /etc/group as above; with ``link``, /etc/passwd is that symlink instead and
    /srv/passwd holds the "linked" user."""
    (root / "etc").mkdir(parents=True)
    (root / "srv").mkdir()
    (root / "etc" / "group").write_text(GROUP)
    (root / "srv" / "passwd").write_text(LINKED)
    if link is None:
        (root / "etc" / "passwd").write_text(PASSWD)
    else:
        os.symlink(link, root / "etc" / "passwd")
    return root


LINKS = ["/srv/passwd", "../srv/passwd", "../../../../../../../../srv/passwd"]


# --- the lookup itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", sorted(RUNC))
def test_lookup_user(tmp_path: Path, spec: str) -> None:
    assert lookup_user(make_root(tmp_path / "r"), spec) == RUNC[spec]


@pytest.mark.parametrize("spec", sorted(BUILDKIT))
def test_chown_ids(tmp_path: Path, spec: str) -> None:
    assert chown_ids(make_root(tmp_path / "r"), spec) == BUILDKIT[spec]


@pytest.mark.parametrize("link", LINKS)
def test_a_symlinked_passwd_resolves_inside_the_root(tmp_path: Path, link: str) -> None:
    root = make_root(tmp_path / "r", link)
    assert lookup_user(root, "linked") == LINKED_RUNC
    assert chown_ids(root, "linked") == LINKED_BUILDKIT
    with pytest.raises(RunError, match="user 'app' is not in the image's /etc/passwd"):
        lookup_user(root, "app")


def test_a_passwd_link_to_a_host_file_is_not_followed_out(tmp_path: Path) -> None:
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:0:0::/:/bin/sh\n")
    root = make_root(tmp_path / "r", "../" * (len(tmp_path.parts) + 3) + str(host).lstrip("/"))
    with pytest.raises(RunError, match="user 'evil' is not in the image's /etc/passwd"):
        lookup_user(root, "evil")
    os.unlink(root / "etc" / "passwd")
    os.symlink(str(host), root / "etc" / "passwd")  # absolute: inside the root, where there is none
    with pytest.raises(RunError, match="user 'evil'"):
        chown_ids(root, "evil")


def test_names_that_do_not_exist(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    for call in (lookup_user, chown_ids):
        with pytest.raises(RunError, match=r"^user 'ghost' is not in the image's /etc/passwd$"):
            call(root, "ghost")
        with pytest.raises(RunError, match=r"^group 'ghosts' is not in the image's /etc/group$"):
            call(root, "app:ghosts")
    with pytest.raises(RunError, match="out of range"):
        lookup_user(root, "4294967296")
    os.symlink("loop", root / "etc" / "loop")
    os.unlink(root / "etc" / "passwd")
    os.symlink("loop", root / "etc" / "passwd")
    with pytest.raises(RunError, match="too many levels of symbolic links"):
        lookup_user(root, "app")


def test_no_passwd_at_all(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert lookup_user(tmp_path / "empty", "4321") == (4321, 0, [])
    assert chown_ids(tmp_path / "empty", "4321:5") == (4321, 5)
    with pytest.raises(RunError, match="user 'app'"):
        lookup_user(tmp_path / "empty", "app")


# --- caller: unpack's config.json -------------------------------------------------------------------


@pytest.mark.parametrize("spec", sorted(RUNC))
def test_unpack_config_user(tmp_path: Path, spec: str) -> None:
    user = resolve_user(make_root(tmp_path / "r"), spec)
    assert (user.uid, user.gid, user.additional_gids) == RUNC[spec]


@pytest.mark.parametrize("link", LINKS)
def test_unpack_config_user_through_a_symlinked_passwd(tmp_path: Path, link: str) -> None:
    user = resolve_user(make_root(tmp_path / "r", link), "linked")
    assert (user.uid, user.gid, user.additional_gids) == LINKED_RUNC


def test_unpack_config_user_that_does_not_exist(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    with pytest.raises(BundleError, match="user 'ghost' is not in the image's /etc/passwd"):
        resolve_user(root, "ghost")
    with pytest.raises(BundleError, match="group 'ghosts' is not in the image's /etc/group"):
        resolve_user(root, "app:ghosts")


# --- callers: RUN and COPY --chown in a build, root and rootless, and `pybuild unpack` of the result ---

BUILT_USERS = [spec for spec in sorted(RUNC) if spec]  # "" is the default: root, as "root"
STATUS = "grep -E '^(Uid|Gid|Groups):' /proc/self/status"


def _containerfile() -> str:
    lines = ["FROM busybox", "COPY etc/ /etc/", "COPY srv/ /srv/"]
    for i, spec in enumerate(sorted(BUILDKIT)):
        lines.append(f"COPY --chown={spec} a.txt /copied/{i}")
    for i, spec in enumerate(BUILT_USERS):
        lines += [f"USER {spec}", f"RUN {STATUS} > /tmp/run-{i}"]
    lines += ["USER root", "RUN ln -sf ../../srv/passwd /etc/passwd"]
    lines += ["COPY --chown=linked a.txt /copied/linked", "USER linked", f"RUN {STATUS} > /tmp/run-linked"]
    return "\n".join(lines) + "\n"


def _context(where: Path) -> Path:
    ctx = where / "ctx"
    make_root(ctx)
    (ctx / "Containerfile").write_text(_containerfile())
    (ctx / "a.txt").write_text("a\n")
    return ctx


def _status(path: Path) -> tuple[int, int, list[int]]:
    fields = dict(line.split(":", 1) for line in path.read_text().splitlines())
    uid, gid = int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])
    return uid, gid, sorted(int(g) for g in fields["Groups"].split())


def _check_built_image(store: Path, tag: str, out: Path) -> None:
    # the store: pybuild's check; the image, copied out of it: oci-image-tool too (it would walk
    # the store's private area, whose layer directories hold the image's dangling symlinks)
    assert check_layout(Layout.open(store)) == []
    subprocess.run([PYBUILD, "--store", str(store), "copy", tag, f"oci:{out / 'oci'}:latest"], check=True)
    validate_layout(out / "oci", "latest")
    layout = Layout.open(store)
    image = load_image(layout, layout.resolve(tag))
    bundle = unpack_image(image, out / "bundle").bundle  # as root: the tar's own ids
    rootfs = bundle / "rootfs"
    for i, spec in enumerate(sorted(BUILDKIT)):
        st = os.lstat(rootfs / "copied" / str(i))
        assert (st.st_uid, st.st_gid) == BUILDKIT[spec], f"COPY --chown={spec}"
    st = os.lstat(rootfs / "copied" / "linked")
    assert (st.st_uid, st.st_gid) == LINKED_BUILDKIT
    for i, spec in enumerate(BUILT_USERS):
        assert _status(rootfs / "tmp" / f"run-{i}") == RUNC[spec], f"USER {spec}"
    assert _status(rootfs / "tmp" / "run-linked") == LINKED_RUNC
    # and the image's User ("linked") in config.json, through the symlinked passwd
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["user"] == {"uid": 3000, "gid": 3001, "additionalGids": [50]}


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Pybuild:
    return base_store(tmp_path_factory.mktemp("users"), ("busybox",))


@pytest.mark.slow
def test_build_as_root(pb: Pybuild, tmp_path: Path) -> None:
    pb.build(_context(tmp_path), None, "localhost/users")
    _check_built_image(pb.store, "localhost/users:latest", tmp_path)
    pb.check()


@pytest.mark.slow
@pytest.mark.rootless
def test_build_rootless(pb: Pybuild, tmp_path: Path, user_home: Path) -> None:
    ctx = _context(user_home)
    oci = user_home / "oci"
    pb("copy", "busybox", f"oci:{oci}:latest")
    subprocess.run(["chown", "-R", TEST_USER, str(ctx), str(oci)], check=True)
    env = {"PYBUILD_STORE": str(user_home / "store")}
    for args in (["copy", f"oci:{oci}:latest", "busybox"], ["build", "-t", "localhost/users", str(ctx)]):
        proc = as_test_user([PYBUILD, *args], user_home, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_built_image(user_home / "store", "localhost/users:latest", tmp_path)


@pytest.mark.parametrize(
    "line, message",
    [
        ("COPY --chown=ghost a.txt /x", "COPY: --chown: user 'ghost' is not in the image's /etc/passwd"),
        (
            "COPY --chown=app:ghosts a.txt /x",
            "COPY: --chown: group 'ghosts' is not in the image's /etc/group",
        ),
        ("USER ghost\nRUN true", "user 'ghost' is not in the image's /etc/passwd"),
        ("USER app:ghosts\nRUN true", "group 'ghosts' is not in the image's /etc/group"),
    ],
)
def test_build_names_that_do_not_exist(pb: Pybuild, tmp_path: Path, line: str, message: str) -> None:
    ctx = _context(tmp_path)
    (ctx / "Containerfile").write_text(f"FROM busybox\nCOPY etc/ /etc/\n{line}\n")
    assert_fails(pb.build(ctx, None, "localhost/ghost", check=False), 1, message)
    assert "localhost/ghost:latest" not in pb("images").stdout


def test_pybuild_run_user(pb: Pybuild, tmp_path: Path) -> None:
    """`pybuild run --user` goes through the same lookup (the image built above is not needed: a
    small one with the passwd files is)."""
    ctx = tmp_path / "ctx"
    make_root(ctx)
    (ctx / "Containerfile").write_text("FROM busybox\nCOPY etc/ /etc/\n")
    pb.build(ctx, None, "localhost/passwd")
    for spec in ("lonely", "4321", "app:wheel"):
        out = pb("run", "--user", spec, "localhost/passwd", "--", "sh", "-c", STATUS).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines())
        uid, gid = int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])
        assert (uid, gid, sorted(map(int, fields["Groups"].split()))) == RUNC[spec], spec
    proc = pb("run", "--user", "ghost", "localhost/passwd", "--", "true", check=False)
    assert proc.returncode != 0 and "user 'ghost' is not in the image's /etc/passwd" in proc.stderr
