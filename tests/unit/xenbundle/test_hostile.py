"""The bundler under hostile input and failing disks (issue 10, findings 1-8).

Each test reproduces one finding of the issue with real files, links, FIFOs and file
systems: a full tmpfs (ENOSPC), a read-only one (EROFS) and a rootfs the bundling
user may not write (EACCES) are made in a child process with a mount namespace of
its own (``unshare``), so nothing is mounted in the test's namespace and nothing
outlives the child.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from xenbundle import BundleError, bundle_guests, plan_bundle
from xenbundle.xlcfg import XlConfigError, parse

LIB = str(Path(__file__).resolve().parents[3] / "lib")
KERNEL = b"kernel!" * 1000
IMAGES = "var/lib/xen/images"


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    d = tmp_path / "deploy"
    d.mkdir()
    (d / "Image").write_bytes(KERNEL)
    (d / "guest.rootfs.ext4").write_bytes(b"rootfs" * 1000)
    return d


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    return r


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Type, content and link target of everything below ``root``."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("l", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("d",)
            else:
                out[rel] = ("f", p.read_bytes())
    return out


def quiet(msg: str) -> None:
    pass


GUEST = "guest.rootfs.ext4:Image"


# ------------------------------------------------ 1. writes through a symlink at the temporary name

def test_symlink_at_the_temporary_name_is_neither_written_through_nor_installed(deploy, rootfs, tmp_path):
    outside = tmp_path / "outside-file"
    outside.write_bytes(b"precious")
    images = rootfs / IMAGES
    images.mkdir(parents=True)
    trap = images / f".Image.xenbundle-{os.getpid()}.tmp"    # the name the bundler used to use
    trap.symlink_to(outside)

    bundle_guests(str(rootfs), str(deploy), GUEST, log=quiet)

    assert outside.read_bytes() == b"precious"
    assert not (images / "Image").is_symlink()
    assert (images / "Image").read_bytes() == KERNEL
    assert os.readlink(trap) == str(outside), "a link the bundler did not create stays as it was"


# ------------------------------------------------ 2. a file at a temporary name is never deleted

@pytest.mark.parametrize("fail", [False, True], ids=["success", "rollback"])
def test_file_at_a_temporary_name_survives_success_and_rollback(deploy, rootfs, fail):
    images = rootfs / IMAGES
    images.mkdir(parents=True)
    victim = images / f".Image.xenbundle-{os.getpid()}.tmp"
    victim.write_bytes(b"not the bundler's")
    if fail:
        (rootfs / "etc" / "xen").write_text("a file where the config folder should be")
        with pytest.raises(BundleError):
            bundle_guests(str(rootfs), str(deploy), GUEST, log=quiet)
        assert not (images / "Image").exists()
    else:
        bundle_guests(str(rootfs), str(deploy), GUEST, log=quiet)
        assert (images / "Image").read_bytes() == KERNEL
    assert victim.read_bytes() == b"not the bundler's"


# ------------------------------------------------ 3. long names

def test_a_245_character_file_name_is_installed(deploy, rootfs):
    name = "k" * 245
    (deploy / name).write_bytes(KERNEL)
    bundle_guests(str(rootfs), str(deploy), f"guest.rootfs.ext4:{name}", log=quiet)
    assert (rootfs / IMAGES / name).read_bytes() == KERNEL


def test_a_component_over_name_max_is_a_bundle_error_naming_it(deploy, rootfs):
    before = tree(rootfs)
    long_dir = "d" * 256
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), GUEST, log=quiet, images_dir=f"/var/lib/{long_dir}")
    msg = str(info.value)
    assert "guest 'guest'" in msg and "NAME_MAX" in msg and "255" in msg
    assert f"/var/lib/{long_dir[:20]}" in msg
    assert tree(rootfs) == before


def test_a_path_over_path_max_is_a_bundle_error_naming_it(deploy, tmp_path):
    deep = tmp_path
    while len(str(deep)) < 3900:
        deep = deep / ("p" * 200)
    deep.mkdir(parents=True)
    rootfs = deep / "r"
    rootfs.mkdir()
    name = "k" * 200
    (deploy / name).write_bytes(KERNEL)
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), f"guest.rootfs.ext4:{name}", log=quiet)
    msg = str(info.value)
    assert "PATH_MAX" in msg and "4096" in msg and "guest 'guest'" in msg
    assert os.listdir(rootfs) == []


# ------------------------------------------------ 4. bounded error reports

def test_a_config_of_bad_lines_gives_twenty_problems_and_a_count(deploy, rootfs):
    lines = 1 << 18
    cfg = deploy / "xen-guest-bundle-bad.cfg"
    cfg.write_bytes(b"Bad\n" * lines)
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), log=quiet)
    err = info.value
    assert len(err.problems) == 20
    assert all(f"{cfg}:" in p for p in err.problems)
    assert f"... and {lines - 20} more" in str(err)
    assert len(str(err)) < 20 * 400


def test_the_parser_keeps_twenty_errors_and_counts_the_rest():
    with pytest.raises(XlConfigError) as info:
        parse("Bad\n" * 1000, "bad.cfg")
    assert [line for line, _ in info.value.errors] == list(range(1, 21))
    assert info.value.more == 980
    assert str(info.value).endswith("bad.cfg: ... and 980 more problems")


def test_twenty_problems_per_run_over_several_files(deploy, rootfs):
    for i in range(5):
        (deploy / f"xen-guest-bundle-{i}.cfg").write_text("Bad\n" * 10)
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), log=quiet)
    assert len(info.value.problems) == 20
    assert str(info.value).endswith("... and 30 more")


def test_quoted_snippets_are_bounded(deploy, rootfs):
    huge = "a" * (1 << 20)
    (deploy / "xen-guest-bundle-x.cfg").write_text(f'name = "x\\q{huge}"\n')
    (deploy / "xen-guest-bundle-y.cfg").write_text(
        f'name = "{huge}"\nkernel = "{huge}"\nramdisk = "/{huge}"\n')
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), f"{huge}:Image", log=quiet)
    assert len(info.value.problems) == 5
    assert len(str(info.value)) < 5 * 500


def test_a_huge_disk_spec_in_a_valid_config_is_bounded(deploy, rootfs):
    (deploy / "xen-guest-bundle-x.cfg").write_text(
        f'name = "x"\nkernel = "Image"\ndisk = [ "{"vdev=xvda," * 20000}target=nothing" ]\n')
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), log=quiet)
    assert "vdev respecified" in str(info.value)
    assert len(str(info.value)) < 4000


# ------------------------------------------------ 5. disk errors

def _child_env(lib: str = LIB) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=lib + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _lib_for_anyone() -> str:
    """A copy of the bundler readable by any user: the checkout may sit in a private home
    (the fresh-machine check clones into /root), where the unprivileged child cannot read it."""
    folder = tempfile.mkdtemp(prefix="xenbundle-lib-")
    shutil.copytree(os.path.join(LIB, "xenbundle"), os.path.join(folder, "xenbundle"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, _dirs, files in os.walk(folder):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return folder


CHILD = r"""
import json, os, sys
from xenbundle import BundleError, bundle_guests

def tree(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = os.readlink(p) if os.path.islink(p) else (
                "dir" if os.path.isdir(p) else open(p, "rb").read().hex())
    return out

rootfs, deploy, guests = sys.argv[1:4]
before = tree(rootfs)
try:
    bundle_guests(rootfs, deploy, guests, log=lambda m: None)
    result = {"ok": True}
except BundleError as err:
    result = {"bundle_error": str(err)}
except OSError as err:
    result = {"os_error": repr(err)}
result["unchanged"] = tree(rootfs) == before
print(json.dumps(result))
"""


def run_child(rootfs: Path, deploy: Path, setup: str, *, user: str | None = None) -> dict[str, object]:
    """Bundle in a child with its own mount namespace after the shell commands ``setup``."""
    python = [sys.executable, "-c", CHILD, str(rootfs), str(deploy), GUEST]
    lib = LIB
    if user:
        python = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *python]
        lib = _lib_for_anyone()
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    argv = ["unshare", *userns, "--mount", "--propagation", "private", "sh", "-euc",
            setup + '\nexec "$@"', "child", *python]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=_child_env(lib), timeout=120,
                              check=False)
    finally:
        if lib != LIB:
            shutil.rmtree(lib, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_enospc_is_a_bundle_error_with_the_fix_after_a_complete_rollback(deploy, tmp_path):
    (deploy / "guest.rootfs.ext4").write_bytes(os.urandom(3 << 20))   # does not fit in 1 MiB
    rootfs = tmp_path / "small-rootfs"
    rootfs.mkdir()
    result = run_child(rootfs, deploy, f"mount -t tmpfs -o size=1m tmpfs {rootfs}; mkdir {rootfs}/etc")
    assert result["unchanged"] is True
    msg = result.get("bundle_error")
    assert msg, result
    assert "guest 'guest'" in msg and "/var/lib/xen/images/guest.rootfs.ext4" in msg
    assert "ENOSPC" in msg and "No space left on device" in msg
    assert "free space" in msg and "XEN_HOST_ROOTFS_HEADROOM" in msg


def test_erofs_is_a_bundle_error_after_a_complete_rollback(deploy, tmp_path):
    rootfs = tmp_path / "ro-rootfs"
    rootfs.mkdir()
    result = run_child(rootfs, deploy, f"mount -t tmpfs -o size=8m tmpfs {rootfs}; "
                                       f"mkdir -p {rootfs}/etc; mount -o remount,ro {rootfs}")
    assert result["unchanged"] is True
    msg = result.get("bundle_error")
    assert msg, result
    assert "guest 'guest'" in msg and "EROFS" in msg and "read-only" in msg


def test_eacces_is_a_bundle_error_after_a_complete_rollback():
    # Folders every user can read: the bundling user is not root here.
    base = Path(tempfile.mkdtemp(prefix="xenbundle-eacces-"))
    try:
        base.chmod(0o755)
        deploy = base / "deploy"
        deploy.mkdir()
        (deploy / "Image").write_bytes(KERNEL)
        (deploy / "guest.rootfs.ext4").write_bytes(b"rootfs")
        rootfs = base / "rootfs"
        (rootfs / IMAGES).mkdir(parents=True)
        (rootfs / "etc").mkdir()
        user = None
        if os.geteuid() == 0:
            user = "65534"          # nobody: the rootfs folders stay root's
        else:
            (rootfs / IMAGES).chmod(0o555)
        result = run_child(rootfs, deploy, "true", user=user)
        assert result["unchanged"] is True
        msg = result.get("bundle_error")
        assert msg, result
        assert "guest 'guest'" in msg and "EACCES" in msg and "Permission denied" in msg
        assert "/var/lib/xen/images" in msg
    finally:
        for dirpath, _, _ in os.walk(base):
            os.chmod(dirpath, 0o755)
        shutil.rmtree(base)


# ------------------------------------------------ 6. deploy-dir configs that are not regular files

def _make(kind: str, path: Path, tmp_path: Path) -> None:
    if kind == "dangling link":
        path.symlink_to("no-such-file.cfg")
    elif kind == "link leaving the deploy dir":
        (tmp_path / "elsewhere").mkdir()
        path.symlink_to(tmp_path / "elsewhere")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["dangling link", "link leaving the deploy dir", "directory",
                                  "fifo", "socket", "device"])
def test_a_config_that_is_not_a_regular_file_is_an_error_naming_it(deploy, rootfs, tmp_path, kind):
    if kind == "device" and os.geteuid() != 0:
        pytest.fail("making a device node needs root (run the suite as root, as CI does)")
    cfg = deploy / "xen-guest-bundle-odd.cfg"
    _make(kind, cfg, tmp_path)
    with pytest.raises(BundleError) as info:
        plan_bundle(str(rootfs), str(deploy))
    assert str(cfg) in str(info.value)
    assert "regular file" in str(info.value) or "outside the deploy directory" in str(info.value)


# ------------------------------------------------ 7. NUL in a quoted string

def test_nul_in_a_quoted_string_is_an_error_with_its_line():
    with pytest.raises(XlConfigError) as info:
        parse('memory = 1\nname = "x\0y"\n', "guest.cfg")
    assert info.value.errors[0][0] == 2
    assert "NUL" in info.value.errors[0][1]
    assert "\0" not in str(info.value)


def test_nul_in_a_deploy_dir_config_names_file_and_line(deploy, rootfs):
    cfg = deploy / "xen-guest-bundle-nul.cfg"
    cfg.write_bytes(b'kernel = "Image"\nname = \'x\0y\'\n')
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), log=quiet)
    assert f"{cfg}:2:" in str(info.value) and "NUL" in str(info.value)


# ------------------------------------------------ 8. a rootfs filled by an earlier bundling run

def test_a_second_run_says_an_earlier_bundling_run_installed_it(deploy, rootfs):
    bundle_guests(str(rootfs), str(deploy), GUEST, log=quiet)
    before = tree(rootfs)
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), GUEST, log=quiet)
    msg = str(info.value)
    assert "an earlier bundling run installed it" in msg
    assert "fresh IMAGE_ROOTFS" in msg
    assert "another package or guest installs it" not in msg
    assert tree(rootfs) == before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["/var/lib/xen/images/Image", "/etc/xen/xen-guest-bundle-guest.cfg"])
def test_a_fifo_at_a_destination_in_the_rootfs_is_reported_not_waited_on(deploy, rootfs, where):
    target = rootfs / where.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(target)
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), GUEST, log=quiet)
    assert f"{where} already exists in the rootfs" in str(info.value)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
