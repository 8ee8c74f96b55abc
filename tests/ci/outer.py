"""Outer containers, as CI job containers are: runc bundles made per configuration, with pybuild inside.

Each ``Outer`` is one configuration of the container a CI job runs in: the capability set (runc's
default, Docker's default), a seccomp profile (none, Docker's default from Debian's
golang-github-docker-docker-dev, podman's from containers-common), the user (0 or 1000), how
newuidmap/newgidmap are installed (plain, setuid, file capabilities), the runtime (root runc; runc
with a user namespace, as Docker's userns-remap; rootless runc run by the test user), /dev/fuse,
the store on a volume or on the container's own overlay root, Docker's masked /proc paths or none.

The container's root filesystem holds almost nothing (/etc files, /tmp, the uid-map helpers): pybuild
comes from a self-contained tree made by contrib/bundle.py, bound read-only at /pybuild, as the
pybuild image has it. The build context, an OCI layout with the busybox base and a volume for the
result are bound in. Nothing of the machine's own ``/`` is reachable from inside, so in-place
mode writes only into the configuration's own root.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.fixtures.rootless import TEST_USER, user_uid

PROJECT = Path(__file__).resolve().parents[2]
DOCKER_PROFILE = Path("/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json")
PODMAN_PROFILE = Path("/usr/share/containers/seccomp.json")
RUNC_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DOCKER_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
USERNS_HOST = 1_000_000  # where the "userns" runtime maps container ids 0..USERNS_SIZE-1
USERNS_SIZE = 200_000
PATH = "/opt/uidmap:/pybuild/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Outer:
    """One outer-container configuration, with what pybuild must do in it (``expect``: "builds" with
    ``mode``, or "fails" with the doctor's ``fix`` in its output)."""

    name: str
    expect: str
    mode: str = ""
    fix: str = ""
    caps: str = "docker"  # runc | docker
    seccomp: str = "none"  # none | docker | podman
    uid: int = 0
    uidmap: str = "plain"  # plain | setuid | filecaps
    runtime: str = "root"  # root | userns | rootless
    fuse: bool = False
    volume: bool = True  # the store on a volume (else on the container's overlay root)
    masked: bool = True  # Docker's (and runc's) masked and read-only /proc paths
    nnp: bool = False  # no_new_privs (Docker's --security-opt no-new-privileges)
    notes: tuple[str, ...] = field(default=())  # warnings pybuild must print (fallbacks named)
    buildah: bool = False  # buildah 1.28 builds here (as tests/ci/buildah_matrix.py recorded it)

    @property
    def cap_list(self) -> list[str]:
        return DOCKER_CAPS if self.caps == "docker" else RUNC_CAPS

    def host_id(self, inside: int) -> int:
        """The id on this machine of id ``inside`` in the container."""
        if self.runtime == "userns":
            return USERNS_HOST + inside
        if self.runtime == "rootless":
            return user_uid()
        return inside


def seccomp_section(profile: Path, caps: list[str]) -> dict[str, object]:
    """Docker's seccomp profile format turned into a runtime-spec ``linux.seccomp``: a rule applies
    where every capability it includes is granted and none it excludes is (as Docker decides),
    and where its architecture list, if any, names this machine's."""
    doc = json.loads(profile.read_text())
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    archs: list[str] = []
    for entry in doc.get("archMap") or []:
        if entry["architecture"] == {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}.get(arch):
            archs = [entry["architecture"], *entry.get("subArchitectures", [])]
    rules = []
    for rule in doc["syscalls"]:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if not set(inc.get("caps") or []) <= set(caps) or set(exc.get("caps") or []) & set(caps):
            continue
        if (inc.get("arches") and arch not in inc["arches"]) or arch in (exc.get("arches") or []):
            continue
        out: dict[str, object] = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            out["args"] = [
                {k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a} for a in rule["args"]
            ]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        rules.append(out)
    section: dict[str, object] = {
        "defaultAction": doc["defaultAction"],
        "architectures": archs,
        "syscalls": rules,
    }
    if doc.get("defaultErrnoRet") is not None:
        section["defaultErrnoRet"] = doc["defaultErrnoRet"]
    return section


@cache
def runc_spec(rootless: bool) -> dict[str, object]:
    folder = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
    try:
        subprocess.run(["runc", "spec", *(["--rootless"] if rootless else [])], cwd=folder, check=True)
        doc: dict[str, object] = json.loads((folder / "config.json").read_text())
        return doc
    finally:
        shutil.rmtree(folder)


def make_bundle(dest: Path, tools: tuple[str, ...] = ()) -> Path:
    """pybuild as a self-contained tree at ``dest`` (contrib/bundle.py), seen at /pybuild, with the
    helper tools (and ``tools``, e.g. buildah to compare with)."""
    subprocess.run(
        [
            sys.executable,
            str(PROJECT / "contrib" / "bundle.py"),
            str(dest),
            "--prefix",
            "/pybuild",
            "--tools",
            ",".join(("newuidmap", "newgidmap", "fuse-overlayfs", *tools)),
        ],
        check=True,
        capture_output=True,
    )
    return dest


def prepare(prefix: str, tools: tuple[str, ...] = ()) -> Path:
    """A folder under /var/tmp with what outer containers share: ``pybuild`` (make_bundle, with
    ``tools``), ``base`` (the busybox image as an OCI layout, readable by all) and an empty ``ctx``.
    The caller removes it."""
    from pybuild.layout import Layout
    from tests.fixtures.images import make_image, tar_tree
    from tests.fixtures.rootfs import make_busybox_rootfs

    top = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(top, 0o755)
    make_bundle(top / "pybuild", tools)
    make_image(Layout.create(top / "base"), [tar_tree(make_busybox_rootfs(top / "busybox"))], "latest")
    subprocess.run(["chmod", "-R", "a+rX", str(top / "base")], check=True)
    (top / "ctx").mkdir()
    return top


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        os.lchown(dirpath, uid, gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


class Container:
    """One configuration's outer container: its bundle under ``work``, run with ``run(args)``."""

    def __init__(
        self,
        outer: Outer,
        work: Path,
        pybuild: Path | None,
        context: Path,
        base: Path,
        tree: Path | None = None,
    ) -> None:
        """``pybuild``: the tree bound at /pybuild (None: the root has its own, ``tree`` is then the
        root filesystem to start from, e.g. the pybuild image unpacked)."""
        self.outer = outer
        self.tree = tree
        self.work = work
        self.pybuild = pybuild
        self.context = context
        self.base = base
        self.bundle = work / "bundle"
        self.rootfs = self.bundle / "rootfs"
        self.store = work / "store"
        self.out = work / "out"
        self.runs = 0
        self._setup()

    def _skeleton(self, root: Path) -> None:
        o = self.outer
        for d in (
            "etc",
            "tmp",
            "root",
            "home/build",
            "opt/uidmap",
            "var/lib",
            "pybuild",
            "ctx",
            "base",
            "out",
            "store",
            "proc",
            "sys",
            "dev",
        ):
            (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "tmp", 0o1777)
        (root / "etc/passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nbuild:x:1000:1000::/home/build:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        )
        (root / "etc/group").write_text("root:x:0:\nbuild:x:1000:\nnogroup:x:65534:\n")
        for kind in ("uid", "gid"):
            (root / f"etc/sub{kind}").write_text("build:100000:65536\nroot:100000:65536\n")
        (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n")
        (root / "etc/resolv.conf").write_text("")
        inside_root = o.host_id(0)
        if inside_root != 0:
            _chown_tree(root, inside_root, inside_root)
        if o.uidmap != "plain":  # owned by the container's root, as a package would install them
            for tool, cap in (("newuidmap", "cap_setuid+ep"), ("newgidmap", "cap_setgid+ep")):
                target = root / "opt/uidmap" / tool
                shutil.copy2(self.pybuild / "bin" / tool, target)
                os.chown(target, inside_root, inside_root)
                if o.uidmap == "setuid":
                    os.chmod(target, 0o4755)
                else:  # -n: the root id the capabilities belong to (a namespaced root's, in a userns)
                    rootid = ["-n", str(inside_root)] if inside_root else []
                    subprocess.run(["setcap", *rootid, cap, str(target)], check=True)
        home = root / "home/build"
        os.chown(home, o.host_id(1000), o.host_id(1000))

    def _setup(self) -> None:
        o = self.outer
        self.bundle.mkdir(parents=True)
        for d in (self.store, self.out):
            d.mkdir()
            os.chown(d, o.host_id(o.uid), o.host_id(o.uid))
        if o.runtime == "rootless":
            self.rootfs.mkdir()
            self._skeleton(self.rootfs)
            os.chown(self.work, user_uid(), user_uid())
            os.chown(self.bundle, user_uid(), user_uid())
        else:  # the container's root is an overlay, as Docker's and podman's are
            lower, upper, workdir = self.work / "lower", self.work / "upper", self.work / "ovl-work"
            for d in (lower, upper, workdir, self.rootfs):
                d.mkdir()
            if self.tree is not None:
                lower = self.tree
            else:
                self._skeleton(lower)
            os.chown(upper, o.host_id(0), o.host_id(0))
            subprocess.run(
                [
                    "mount",
                    "-t",
                    "overlay",
                    "overlay",
                    "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={workdir}",
                    str(self.rootfs),
                ],
                check=True,
            )
        spec = copy.deepcopy(runc_spec(o.runtime == "rootless"))
        spec["root"] = {"path": "rootfs", "readonly": False}  # a writable root, as Docker gives
        process: dict[str, object] = spec["process"]  # type: ignore[assignment]
        process["terminal"] = False
        process["user"] = {"uid": o.uid, "gid": o.uid}
        process["cwd"] = "/root" if o.uid == 0 else "/home/build"
        process["noNewPrivileges"] = o.nnp
        caps = o.cap_list
        process["capabilities"] = {
            "bounding": caps,
            "effective": caps if o.uid == 0 else [],
            "permitted": caps if o.uid == 0 else [],
            "inheritable": [],
            "ambient": [],
        }
        process["env"] = [f"PATH={PATH}", f"HOME={process['cwd']}"]
        if o.volume:  # else the default store, in the home directory on the container's own root
            process["env"].append("PYBUILD_STORE=/store")
        mounts: list[dict[str, object]] = spec["mounts"]  # type: ignore[assignment]
        binds = [
            *([(self.pybuild, "/pybuild", "ro")] if self.pybuild is not None else []),
            (self.context, "/ctx", "ro"),
            (self.base, "/base", "ro"),
            (self.out, "/out", "rw"),
        ]
        if o.volume:
            binds.append((self.store, "/store", "rw"))
        for source, target, mode in binds:
            mounts.append(
                {"destination": target, "type": "bind", "source": str(source), "options": ["rbind", mode]}
            )
        linux: dict[str, object] = spec["linux"]  # type: ignore[assignment]
        if not o.masked:
            linux["maskedPaths"] = []
            linux["readonlyPaths"] = []
        if o.fuse:
            linux["devices"] = [
                {
                    "path": "/dev/fuse",
                    "type": "c",
                    "major": 10,
                    "minor": 229,
                    "fileMode": 0o666,
                    "uid": 0,
                    "gid": 0,
                }
            ]
            if o.runtime != "rootless":
                resources: dict[str, list[object]] = linux.setdefault("resources", {})  # type: ignore[assignment]
                resources.setdefault("devices", []).append(
                    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
                )
        if o.seccomp != "none":
            linux["seccomp"] = seccomp_section(
                DOCKER_PROFILE if o.seccomp == "docker" else PODMAN_PROFILE, caps
            )
        namespaces: list[dict[str, str]] = linux["namespaces"]  # type: ignore[assignment]
        if o.runtime == "userns":
            namespaces.append({"type": "user"})
        if o.runtime in ("userns", "rootless"):
            size = USERNS_SIZE if o.runtime == "userns" else 1
            linux["uidMappings"] = [{"containerID": 0, "hostID": o.host_id(0), "size": size}]
            linux["gidMappings"] = [{"containerID": 0, "hostID": o.host_id(0), "size": size}]
        self.env = list(process["env"])  # type: ignore[call-overload]
        (self.bundle / "config.json").write_text(json.dumps(spec, indent=1))
        if o.runtime == "rootless":
            os.chown(self.bundle / "config.json", user_uid(), user_uid())

    def run(
        self, *args: str, timeout: float = 300, env: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` in the container (a new runc container over the same root each time), with
        ``env`` (NAME=VALUE) added to its environment."""
        config = json.loads((self.bundle / "config.json").read_text())
        config["process"]["args"] = list(args)
        config["process"]["env"] = [*self.env, *env]
        (self.bundle / "config.json").write_text(json.dumps(config, indent=1))
        self.runs += 1
        name = f"pybuild-ci-{self.outer.name}-{os.getpid()}-{self.runs}"
        state = self.work / "runc-state"
        cmd = ["runc", "--root", str(state), "run", "--bundle", str(self.bundle), name]
        if self.outer.runtime == "rootless":
            state.mkdir(exist_ok=True)
            os.chown(state, user_uid(), user_uid())
            cmd = ["runuser", "-u", TEST_USER, "--", "env", f"XDG_RUNTIME_DIR={state}", *cmd]
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.work
            )
        finally:
            subprocess.run(["runc", "--root", str(state), "delete", "--force", name], capture_output=True)

    def result(self, name: str, tag: str = "r") -> Path:
        """The image built into ``oci:/out/NAME:TAG``, validated and unpacked on this machine: its rootfs."""
        from tests.fixtures.rootless import PYBUILD
        from tests.fixtures.tools import validate_layout

        validate_layout(self.out / name, tag)
        bundle = self.work / f"{name}-{tag}-bundle"
        subprocess.run(
            [
                PYBUILD,
                "--store",
                str(self.work / "host-store"),
                "unpack",
                f"oci:{self.out / name}:{tag}",
                str(bundle),
            ],
            check=True,
            capture_output=True,
        )
        return bundle / "rootfs"

    def close(self) -> None:
        if self.outer.runtime != "rootless":
            subprocess.run(["umount", "-l", str(self.rootfs)], capture_output=True)
