"""The buildah-bud corpus (../shared/corpora/buildah-bud): each build context builds, or fails, as
upstream's bud.bats expects. The bats checks (`buildah inspect`, `buildah mount`) become: build into
the store, read the image config with `pybuild inspect --json`, unpack with `pybuild unpack` and look
at the bundle's rootfs. The base is the busybox-static image, answering to alpine and busybox."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli import Pybuild, assert_fails, base_store

pytestmark = pytest.mark.usefixtures("store_checked")  # tests/builder/conftest.py


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pybuild]:
    """A store holding the busybox base under alpine, alpine:latest, busybox, busybox:latest."""
    tool = base_store(tmp_path_factory.mktemp("bud"))
    yield tool
    tool.check()  # `pybuild check` of the whole store, once every test of the module has built


@pytest.fixture(scope="module")
def bud(corpora: Path) -> Path:
    return corpora / "buildah-bud"


def ls_l(path: Path) -> dict[str, str]:
    """name -> symlink target ('' for anything else), like the `ls -al` lines bud.bats greps."""
    return {p.name: (os.readlink(p) if p.is_symlink() else "") for p in path.iterdir()}


# --- copy-globs ---------------------------------------------------------------------------------
def test_copy_globs(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "copy-globs"
    pb.build(ctx, None, "globs")
    root = pb.rootfs("globs")
    assert sorted(os.listdir(root / "testdir")) == ["test1.txt", "test2.txt"]
    assert (root / "testdir" / "test1.txt").read_bytes() == (ctx / "test1.txt").read_bytes()
    # No match for *foo, but *.txt matches: bud.bats expects success.
    pb.build(ctx, "Containerfile.missing", "globs-missing")
    assert sorted(os.listdir(pb.rootfs("globs-missing") / "testdir")) == ["test1.txt", "test2.txt"]


def test_copy_globs_bad_matches_nothing(pb: Pybuild, bud: Path) -> None:
    proc = pb.build(bud / "copy-globs", "Containerfile.bad", "globs-bad", check=False)
    assert_fails(proc, 1, "Containerfile.bad:3:", "matched nothing")


# --- dest-final-slash ---------------------------------------------------------------------------
def test_dest_final_slash(pb: Pybuild, bud: Path) -> None:
    proc = pb.build(bud / "dest-final-slash", None, "final-slash")
    assert "/test/ls" in proc.stdout  # RUN /test/ls -lR /test/ls ran, from the copied binary
    root = pb.rootfs("final-slash")
    assert (root / "test").is_dir() and (root / "test" / "ls").is_file()
    assert (root / "bin" / "sh").is_file()
    assert os.access(root / "test" / "ls", os.X_OK)


# --- dest-symlink -------------------------------------------------------------------------------
def test_dest_symlink(pb: Pybuild, bud: Path) -> None:
    proc = pb.build(bud / "dest-symlink", None, "dest-symlink")
    assert "STEP 5/6: RUN ln -s " in proc.stdout
    root = pb.rootfs("dest-symlink")
    assert os.readlink(root / "etc" / "hbase") == "/usr/local/hbase"
    assert (root / "usr" / "local" / "hbase" / "Dockerfile").is_file()
    assert (root / "etc" / "hbase").is_symlink()  # COPY went through the symlink, not over it


# --- dockerignore -------------------------------------------------------------------------------
def test_dockerignore(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "dockerignore"
    proc = pb.build(ctx, "Dockerfile", "ignored", check=False)
    line = assert_fails(proc, None, "Dockerfile:4:", "subdir")
    assert "no such file or directory" in line
    assert "filtered out using" in line
    pb.build(ctx, "Dockerfile.succeed", "ignored")
    root = pb.rootfs("ignored")
    assert (root / "test2.txt").read_bytes() == (ctx / "test2.txt").read_bytes()
    for gone in ("test1.txt", "sub1.txt", "sub2.txt", "subdir"):
        assert not (root / gone).exists(), gone


def test_ignorefile_containerignore(pb: Pybuild, bud: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "dockerignore"
    shutil.copytree(bud / "dockerignore", ctx, symlinks=True)
    (ctx / ".dockerignore").rename(tmp_path / "containerignore")
    pb.build(ctx, "Dockerfile.succeed", "ignorefile", "--ignorefile", str(tmp_path / "containerignore"))
    root = pb.rootfs("ignorefile")
    assert (root / "test2.txt").is_file()
    for gone in ("test1.txt", "sub1.txt", "sub2.txt", "subdir"):
        assert not (root / gone).exists(), gone


# --- exit42 -------------------------------------------------------------------------------------
def test_exit42(pb: Pybuild, bud: Path) -> None:
    proc = pb.build(bud / "exit42", None, "exit42", check=False)
    assert_fails(proc, 42, "Containerfile:2:", "42")
    assert "exit42" not in pb("images").stdout


# --- from-scratch -------------------------------------------------------------------------------
@pytest.mark.parametrize("file", ["Containerfile", "Dockerfile", "Containerfile2"])
def test_from_scratch(pb: Pybuild, bud: Path, file: str) -> None:
    tag = f"scratch-{file.lower()}"
    pb.build(bud / "from-scratch", file, tag, "--label", "label1=value1")
    info = pb.inspect(tag)
    root = pb.rootfs(tag)
    assert list(root.iterdir()) == []  # nothing in it
    if file == "Containerfile2":
        assert pb.config(tag)["User"] == "1001"
    # bud.bats: "no layer should be created on scratch" (0 diff_ids). OCI asks for at least one
    # layer, so an empty layer is the most an image may carry; none with files in it.
    assert len(info["diff_ids"]) <= 1
    pb.validate_oci(tag)


# --- hardlink -----------------------------------------------------------------------------------
def test_hardlink(pb: Pybuild, bud: Path, tmp_path: Path) -> None:
    """bud-copy-dockerignore-hardlinks: four names of one file keep one inode with 4 links."""
    ctx = tmp_path / "hardlinks"
    (ctx / "subdir").mkdir(parents=True)
    shutil.copy(bud / "hardlink" / "Dockerfile", ctx / "Dockerfile")
    (ctx / ".dockerignore").write_text("foo\n")
    (ctx / "subdir" / "test1.txt").write_text("test1\n")
    os.link(ctx / "subdir" / "test1.txt", ctx / "subdir" / "test2.txt")
    os.link(ctx / "subdir" / "test2.txt", ctx / "test3.txt")
    os.link(ctx / "test3.txt", ctx / "test4.txt")
    pb.build(ctx, None, "hardlinks")
    root = pb.rootfs("hardlinks")
    names = [
        root / "subdir" / "test1.txt",
        root / "subdir" / "test2.txt",
        root / "test3.txt",
        root / "test4.txt",
    ]
    stats = [n.lstat() for n in names]
    assert {(s.st_dev, s.st_ino) for s in stats} == {(stats[0].st_dev, stats[0].st_ino)}
    assert [s.st_nlink for s in stats] == [4, 4, 4, 4]
    assert names[3].read_text() == "test1\n"


# --- healthcheck --------------------------------------------------------------------------------
def test_healthcheck(pb: Pybuild, bud: Path) -> None:
    pb.build(bud / "healthcheck", None, "healthcheck", "--format", "docker")
    second = 1_000_000_000
    assert pb.config("healthcheck")["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
        "StartInterval": 30 * second,
        "StartPeriod": 10 * 60 * second,
        "Interval": 5 * 60 * second,
        "Timeout": 3 * second,
        "Retries": 4,
    }
    assert pb.inspect("healthcheck")["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"


# --- heredoc ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_heredoc(pb: Pybuild, bud: Path, tmp_path: Path) -> None:
    proc = pb.build(bud / "heredoc", "Containerfile", "heredoc")
    for text in [
        "print first line from heredoc",
        "print second line from heredoc",
        "Heredoc writing first file",
        "some text of first file",
        "file passed to program",
        "and it contains multiple",
        "(your index page goes here)",
        "(robots content)",
        "(humans content)",
        "this is the output of test6 part1",
        "this is the output of test6 part2",
        "this is the output of test7 part1",
        "this is the output of test7 part2",
        "this is the output of test7 part3",
        "this is the output of test8 part1",
        "this is the output of test8 part2",
    ]:
        assert text in proc.stdout, text
    root = pb.rootfs("heredoc")
    assert (root / "file1").read_text() == "Heredoc writing first file\nsome text of first file\n"
    assert (root / "index.html").read_text() == " (your index page goes here)\n"
    assert (root / "test" / "robots.txt").read_text() == "(robots content)\n"
    assert (root / "test" / "humans.txt").read_text() == "(humans content)\n"
    assert (root / "test6.txt").read_text() == (
        "this is the output of test6 part1\nthis is the output of test6 part2\n"
    )
    assert (root / "test8.2").read_text() == "this is the output of test8 part2\n"


@pytest.mark.slow
def test_heredoc_bash_file_and_she_bang(pb: Pybuild, bud: Path) -> None:
    proc = pb.build(bud / "heredoc", "Containerfile.bash_file", "heredoc-bash")
    assert "this is the output of test9" in proc.stdout
    assert "this is the output of test10" in proc.stdout
    root = pb.rootfs("heredoc-bash")
    assert (root / "test10.txt").read_text() == "\nthis is the output of test10\n"  # <<- strips tabs
    assert (root / "test9.txt").read_text() == "\n\tthis is the output of test9\n"
    proc = pb.build(bud / "heredoc", "Containerfile.she_bang", "heredoc-shebang")
    assert "#\nthis is the output of test11\nthis is the output of test12" in proc.stdout


def test_heredoc_verify_mount_leak(pb: Pybuild, bud: Path) -> None:
    proc = pb.build(bud / "heredoc", "Containerfile.verify_mount_leak", "heredoc-leak", check=False)
    assert_fails(proc, 1, "Containerfile.verify_mount_leak:15:")
    out = proc.stdout + proc.stderr
    assert "this is the output of test" in out
    assert "ls: /dev/pipes: No such file or directory" in out


# --- maintainer ---------------------------------------------------------------------------------
def test_maintainer(pb: Pybuild, bud: Path) -> None:
    pb.build(bud / "maintainer", None, "maintainer")
    assert pb.inspect("maintainer")["author"] == "kilroy"
    assert pb.inspect("maintainer")["history"][-1]["created_by"].endswith("MAINTAINER kilroy")
    pb.validate_oci("maintainer")  # oci-image-tool validate on an oci: copy
    pb.build(bud / "maintainer")  # bud-no-target-name: no -t is fine too


# --- multi-stage-builds, multi-stage-builds-small-as --------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("folder", ["multi-stage-builds", "multi-stage-builds-small-as"])
def test_multi_stage_builds(pb: Pybuild, bud: Path, folder: str) -> None:
    ctx = bud / folder
    pb.build(ctx, "Dockerfile.index", f"{folder}-index")
    root = pb.rootfs(f"{folder}-index")
    assert (root / "Dockerfile.index").read_bytes() == (ctx / "Dockerfile.index").read_bytes()
    assert (root / "etc" / "passwd").stat().st_size > 0
    pb.build(ctx, "Dockerfile.name", f"{folder}-name")
    root = pb.rootfs(f"{folder}-name")
    assert (root / "Dockerfile.name").read_bytes() == (ctx / "Dockerfile.name").read_bytes()
    assert not (root / "etc" / "passwd").exists()
    pb.build(ctx, "Dockerfile.mixed", f"{folder}-mixed")
    root = pb.rootfs(f"{folder}-mixed")
    for name in ("Dockerfile.name", "Dockerfile.index", "Dockerfile.mixed"):
        assert (root / name).read_bytes() == (ctx / name).read_bytes(), name


@pytest.mark.slow
def test_multi_stage_reused_and_cache(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "multi-stage-builds"
    for file in ("Dockerfile.reused", "Dockerfile.reused2"):
        pb.build(ctx, file, "reused")
    pb.build(ctx, "Dockerfile.extended", "extended")
    root = pb.rootfs("extended")
    assert (root / "tmp" / "preCommit").exists()
    assert not (root / "tmp" / "postCommit").exists()
    config = pb.config("extended")
    assert config["Labels"]["io.openshift.build.name"] == "mydockertest-1"
    assert "BUILD_LOGLEVEL=5" in config["Env"]
    pb.build(ctx, "Dockerfile.rebase", "rebase")
    assert pb.rootfs("rebase").joinpath("Dockerfile.name").is_file()


@pytest.mark.slow
def test_multi_stage_labels_not_inherited(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "multi-stage-builds"
    pb.build(ctx, "Dockerfile.name", "imageone", "--no-cache", "--label", "somefancylabel=true")
    assert pb.config("imageone")["Labels"]["somefancylabel"] == "true"
    proc = pb.build(ctx, "Dockerfile.name", "imagetwo")
    assert "Using cache" in proc.stdout
    assert "somefancylabel" not in (pb.config("imagetwo").get("Labels") or {})
    pb.build(ctx, "Dockerfile.name", "imagethree", "--label", "anotherfancylabel=true")
    labels = pb.config("imagethree").get("Labels") or {}
    assert "somefancylabel" not in labels and labels["anotherfancylabel"] == "true"


def test_multi_stage_args_scope_and_history(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "multi-stage-builds"
    pb.build(ctx, "Dockerfile.arg", "args-scope", "--build-arg", "SECRET=secretthings")
    assert (pb.rootfs("args-scope") / "test_file").read_text() == "\n"
    history = pb.inspect("args-scope")["history"]
    assert not [h for h in history if "secretthings" in h.get("created_by", "")]


@pytest.mark.parametrize("file", ["Dockerfile.arg_in_stage", "Dockerfile.arg_in_copy"])
def test_arg_before_from(pb: Pybuild, bud: Path, file: str) -> None:
    pb.build(bud / "multi-stage-builds", file, "source")
    root = pb.rootfs("source")
    if file == "Dockerfile.arg_in_copy":
        assert (root / "bin" / "true_copy").is_file()


# --- onbuild ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_onbuild(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "onbuild"
    pb.build(ctx, None, "onbuild", "--format", "docker")
    assert pb.config("onbuild")["OnBuild"] == ["RUN touch /onbuild1", "RUN touch /onbuild2"]
    pb.build(ctx, "Dockerfile1", "onbuild-image2", "--format", "docker")
    assert pb.config("onbuild-image2")["OnBuild"] == ["RUN touch /onbuild3"]
    root = pb.rootfs("onbuild-image2")
    for name in ("onbuild1", "onbuild2"):
        assert (root / name).exists(), name
    assert not (root / "onbuild3").exists()  # a trigger runs in the image built FROM this one
    pb.build(ctx, "Dockerfile2", "onbuild-layers", "--format", "docker")
    assert pb.config("onbuild-layers")["OnBuild"] == ["RUN touch /onbuild1", "RUN touch /onbuild2"]


# --- preserve-volumes, volume-perms -------------------------------------------------------------
def test_preserve_volumes(pb: Pybuild, bud: Path) -> None:
    pb.build(bud / "preserve-volumes", None, "volume-image")
    root = pb.rootfs("volume-image")
    for name in (
        "subvol/subsubvol/subsubvolfile",
        "volfile",
        "subvol/subvolfile",
        "anothervolfile",
        "Dockerfile",
        "Dockerfile2",
    ):
        assert (root / "vol" / name).stat().st_size > 0, name
    volumes = pb.config("volume-image")["Volumes"]
    assert set(volumes) == {"/vol", "/vol/subvol"}


def test_volume_perms(pb: Pybuild, bud: Path) -> None:
    pb.build(bud / "volume-perms", None, "volume-perms")
    root = pb.rootfs("volume-perms")
    assert (root / "vol" / "subvol").is_dir()
    assert stat.S_IMODE((root / "vol" / "subvol").stat().st_mode) == 0o711
    assert (root / "vol" / "subvol" / "subvolfile").stat().st_size == 512


# --- run-scenarios ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "file", ["Dockerfile.entrypoint-run", "Dockerfile.cmd-run", "Dockerfile.entrypoint-cmd-run"]
)
def test_run_ignores_entrypoint_and_cmd(pb: Pybuild, bud: Path, file: str) -> None:
    proc = pb.build(bud / "run-scenarios", file, "run-scenario")
    assert "unique.test.string" in proc.stdout


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("Dockerfile.entrypoint-empty-run", 3),
        ("Dockerfile.cmd-empty-run", 3),
        ("Dockerfile.entrypoint-cmd-empty-run", 4),
    ],
)
def test_empty_run_fails(pb: Pybuild, bud: Path, file: str, line: int) -> None:
    # buildah runs `sh -c` with no argument and exits 2; pybuild rejects the empty RUN itself.
    proc = pb.build(bud / "run-scenarios", file, "empty-run", check=False)
    assert_fails(proc, None, f"{file}:{line}:", "RUN")


@pytest.mark.slow
def test_run_scenarios_args(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "run-scenarios"
    assert "arg_value" in pb.build(ctx, "Dockerfile.args", "args").stdout
    proc = pb.build(ctx, "Dockerfile.multi-args", "args", "--build-arg", "USED_ARG=USED_VALUE")
    assert "USED_VALUE" in proc.stdout
    assert "not consumed" not in proc.stdout + proc.stderr
    assert (pb.rootfs("args") / "root" / "passwd-file").is_file()
    proc = pb.build(
        ctx,
        "Dockerfile.multi-args",
        "args",
        "--no-cache",  # an unused build arg is in no step's cache key: without this, all cached
        "--build-arg",
        "USED_ARG=USED_VALUE",
        "--build-arg",
        "UNUSED_ARG=whaaaat",
    )
    assert "USED_VALUE" in proc.stdout
    assert "one or more build args were not consumed: ['UNUSED_ARG']" in proc.stderr
    proc = pb.build(ctx, "Dockerfile.multi-args", "args", "--build-arg", "USED_ARG=plugin1,plugin2,plugin3")
    assert "plugin1,plugin2,plugin3" in proc.stdout
    assert "not consumed" not in proc.stdout + proc.stderr


def test_noop_flags(pb: Pybuild, bud: Path) -> None:
    pb.build(bud / "run-scenarios", "Dockerfile.noop-flags", "fileflag-image")


# --- shell --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_shell(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "shell"
    pb.build(ctx, None, "shell", "--format", "docker")
    assert pb.config("shell")["Shell"] == ["/bin/sh", "-c"]
    proc = pb("build", "--format", "docker", "-q", "-t", "quiet-test", str(ctx))
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) == 64 and int(lines[0], 16) >= 0
    for fmt in ("docker", "oci"):
        proc = pb.build(ctx, "Dockerfile.build-shell-default", "shell-default", "--format", fmt)
        assert "SHELL=/bin/sh" in proc.stdout


def test_from_ubuntu_fails_on_this_base(pb: Pybuild, bud: Path) -> None:
    """Files that need ubuntu (bash, a real distribution) cannot build here: one clear error."""
    for folder, file in [
        ("shell", "Dockerfile.build-shell-custom"),
        ("symlink", "Dockerfile.absolute-symlink"),
        ("symlink", "Dockerfile.absolute-dir-symlink"),
    ]:
        proc = pb.build(bud / folder, file, "ubuntu-image", "--pull", "never", check=False)
        assert_fails(proc, None, f"{file}:1:", "ubuntu")


# --- symlink ------------------------------------------------------------------------------------
def test_symlinks(pb: Pybuild, bud: Path) -> None:
    ctx = bud / "symlink"
    proc = pb.build(ctx, None, "symlinks")
    assert "FROM alpine" in proc.stdout
    root = pb.rootfs("symlinks")
    assert {"test", "blah.txt"} <= set(os.listdir(root / "data" / "log"))
    top = ls_l(root)
    assert top["test-log"] == "/data/log" and top["blah"] == "/test-log"


def test_symlinks_relative(pb: Pybuild, bud: Path) -> None:
    pb.build(bud / "symlink", "Dockerfile.relative-symlink", "symlinks-rel")
    root = pb.rootfs("symlinks-rel")
    assert "test" in os.listdir(root / "log")
    assert ls_l(root)["test-log"] == "../log"
    assert (root / "data" / "empty").is_file()
    assert os.readlink(root / "var" / "data") == "../data"


def test_symlinks_multiple(pb: Pybuild, bud: Path) -> None:
    pb.build(bud / "symlink", "Dockerfile.multiple-symlinks", "symlinks-multi")
    root = pb.rootfs("symlinks-multi")
    assert {"bin", "blah.txt"} <= set(os.listdir(root / "data" / "log"))
    assert ls_l(root / "myuser")["log"] == "/test"
    assert ls_l(root / "test")["bar"] == "/test-log"
    assert ls_l(root / "test-log")["foo"] == "/data/log"


def test_symlink_points_to_itself(pb: Pybuild, bud: Path) -> None:
    proc = pb.build(bud / "symlink", "Dockerfile.symlink-points-to-itself", "symlink-self", check=False)
    assert_fails(proc, None, "/test-log/test", "too many levels of symbolic links")


def test_copy_replace_symlink(pb: Pybuild, bud: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "top"
    ctx.mkdir()
    shutil.copy(bud / "symlink" / "Dockerfile.replace-symlink", ctx)
    (ctx / "symlink").symlink_to("Dockerfile.replace-symlink")
    (ctx / ".dockerignore").write_text("foo\n")
    pb.build(ctx, "Dockerfile.replace-symlink", "replace-symlink")
    assert os.readlink(pb.rootfs("replace-symlink") / "symlink") == "Dockerfile.replace-symlink"


@pytest.mark.parametrize("file", ["Containerfile.add-tar-with-link", "Containerfile.add-tar-gz-with-link"])
def test_add_tar_with_link(pb: Pybuild, bud: Path, file: str, tmp_path: Path) -> None:
    # Upstream, tarball_latest.tar{,.gz} are symlinks to tarball.tar{,.gz}; the corpus holds them as
    # small text files naming the target, so the context is rebuilt with the links.
    ctx = tmp_path / "symlink"
    shutil.copytree(bud / "symlink", ctx)
    for name in ("tarball_latest.tar", "tarball_latest.tar.gz"):
        target = (ctx / name).read_text().strip()
        (ctx / name).unlink()
        (ctx / name).symlink_to(target)
    pb.build(ctx, file, "testctr")
    assert (pb.rootfs("testctr") / "tmp" / "testdir" / "testfile.txt").exists()


# --- unrecognized -------------------------------------------------------------------------------
def test_unrecognized(pb: Pybuild, bud: Path) -> None:
    proc = pb.build(bud / "unrecognized", None, "unrecognized", check=False)
    assert_fails(proc, 1, "Dockerfile:2:", "BOGUS")


# --- workdir-symlink ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("file", "step"), [("Dockerfile", "3/6"), ("Dockerfile-2", "2/6"), ("Dockerfile-3", "2/9")]
)
def test_workdir_symlink(pb: Pybuild, bud: Path, file: str, step: str) -> None:
    proc = pb.build(bud / "workdir-symlink", file, "workdir-symlink")
    assert f"STEP {step}: RUN ln -sf " in proc.stdout
    root = pb.rootfs("workdir-symlink")
    assert os.readlink(root / "tempest") == "/var/lib/tempest"
    assert (root / "var" / "lib" / "tempest").is_dir()
    assert stat.S_IMODE((root / "etc" / "notareal.conf").lstat().st_mode) == 0o664
    if file != "Dockerfile":
        assert (root / "var" / "lib" / "tempest" / file).is_file()
    if file == "Dockerfile-3":
        assert (root / "var" / "lib" / "tempest" / "lowerdir" / "Dockerfile-3").is_file()
    assert pb.config("workdir-symlink")["WorkingDir"].startswith("/tempest")
