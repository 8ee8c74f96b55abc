"""The one passwd/group lookup: a user spec (``user``, ``uid``, ``user:group``, ``uid:gid``, any mix)
to ids, through the image's /etc/passwd and /etc/group, read inside the root with the one resolver
(a symlinked /etc/passwd resolves inside the root, never on the host).

``lookup_user`` follows runc (libcontainer/user ``GetExecUser``), for RUN, ``pybuild run`` and the
config.json of ``pybuild unpack``:

- a name must be in passwd; a number need not be: one missing from passwd runs with gid 0 and no
  supplementary groups (unless a group is given);
- without a group, the primary gid is passwd's, kept even where /etc/group has no entry for it, and
  the supplementary groups are every group whose member list names the user;
- with a group (name or number), that is the gid, and there are no supplementary groups;
- the first matching line wins.

``chown_ids`` follows BuildKit for COPY/ADD ``--chown`` (see ``chown_ids``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..errors import RunError
from .paths import read_in_root

MAX_ID = (1 << 31) - 1  # as runc: ids are positive int32s


class ExecUser(NamedTuple):
    uid: int
    gid: int
    additional_gids: list[int]


def _table(root: Path | str, path: str, fields: int) -> list[list[str]]:
    data = read_in_root(Path(root), path)
    if not data:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        row = line.split(":")
        if len(row) >= fields and row[2].isdigit():
            rows.append(row)
    return rows


def _number(text: str, what: str) -> int:
    value = int(text)
    if value > MAX_ID:
        raise RunError(f"{what} {text!r} is out of range (at most {MAX_ID})")
    return value


def _group_id(root: Path | str, group: str) -> int:
    """A group name or number as a gid: a number need not be in /etc/group, a name must."""
    if group.isdigit():
        return _number(group, "group")
    for row in _table(root, "/etc/group", 3):
        if row[0] == group:
            return int(row[2])
    raise RunError(f"group {group!r} is not in the image's /etc/group")


def _passwd_entry(root: Path | str, user: str) -> list[str] | None:
    """The first passwd line for a user name or uid (None for a uid passwd does not list)."""
    numeric = user.isdigit()
    for row in _table(root, "/etc/passwd", 4):
        if (row[2] == str(int(user)) if numeric else row[0] == user) and row[3].isdigit():
            return row
    if not numeric:
        raise RunError(f"user {user!r} is not in the image's /etc/passwd")
    return None


def lookup_user(root: Path | str, spec: str) -> ExecUser:
    """uid, gid and supplementary gids for ``spec`` (runc's rules: see the module). An empty spec is
    root, 0:0 with no supplementary groups (what BuildKit and pybuild run with when USER is unset)."""
    spec = spec.strip()
    if not spec:
        return ExecUser(0, 0, [])
    user, _, group = spec.partition(":")
    user = user or "0"
    entry = _passwd_entry(root, user)
    uid = int(entry[2]) if entry is not None else _number(user, "user")
    if group:
        return ExecUser(uid, _group_id(root, group), [])
    if entry is None:
        return ExecUser(uid, 0, [])
    name = entry[0]
    additional = sorted({int(row[2]) for row in _table(root, "/etc/group", 4) if name in row[3].split(",")})
    return ExecUser(uid, int(entry[3]), additional)


def chown_ids(root: Path | str, spec: str) -> tuple[int, int]:
    """uid and gid for ``COPY --chown=spec``, as BuildKit's file op reads them (solver/llbsolver/file,
    ``readUser``), which differs from runc where the group is left out: a user *name* takes its
    primary gid from passwd (as runc), but a *number* takes itself as the gid (runc would look the
    uid up in passwd, or use 0). Unlike BuildKit, a name that is not in passwd is an error here
    (BuildKit silently uses 0), as it is for RUN."""
    user, _, group = spec.partition(":")
    if not user:
        raise RunError("missing user")
    if user.isdigit():
        uid = gid = _number(user, "user")
    else:
        entry = _passwd_entry(root, user)
        assert entry is not None  # a name is found or raises
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        gid = _group_id(root, group)
    return uid, gid


def become(user: ExecUser) -> None:
    """Take ``user``'s ids in this process (a container's process, before exec), changing only what
    differs (root without CAP_SETUID/CAP_SETGID, in place, stays root). Where this user namespace
    denies setgroups (a single-id map), the supplementary groups stay as they are: only root
    exists there anyway."""
    if sorted(os.getgroups()) != sorted(set(user.additional_gids)):
        try:
            os.setgroups(user.additional_gids)
        except PermissionError:
            try:
                denied = Path("/proc/self/setgroups").read_text().strip() == "deny"
            except OSError:
                denied = False
            if not denied:
                raise
    if os.getresgid() != (user.gid,) * 3:
        os.setresgid(user.gid, user.gid, user.gid)
    if os.getresuid() != (user.uid,) * 3:
        os.setresuid(user.uid, user.uid, user.uid)
