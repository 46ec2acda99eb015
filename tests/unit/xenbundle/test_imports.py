"""Tests of xenbundle.imports with the real tools: mkfs.ext4 -d, debugfs and qemu-img.

Images are inspected with debugfs (read-only) and e2fsck; nothing is mounted and
nothing needs root: owners that the build user could not set (0, 33) and device
nodes come from the archive's headers through debugfs.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from xenbundle import BundleError
from xenbundle.imports import (
    ImportTools,
    auto_size_mib,
    import_entries,
    import_guest_image,
)
from xenbundle.settings import ImportSource, MappingVariables

MiB = 1 << 20


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    assert path, f"{name} is needed (e2fsprogs / qemu-utils; scripts/setup-host installs them)"
    return path


TOOLS = ImportTools(mkfs_ext4=tool("mkfs.ext4"), debugfs=tool("debugfs"), qemu_img=tool("qemu-img"))


def inode(image: Path, path: str) -> dict[str, str]:
    """Type, mode, owner and mtime of ``path`` in an ext4 image, as debugfs reports them."""
    out = subprocess.run([TOOLS.debugfs, "-R", f'stat "{path}"', str(image)],
                         capture_output=True, text=True, check=True).stdout
    found = re.search(r"Type: (.+?)\s+Mode:\s+(\d+)", out)
    owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    mtime = re.search(r"mtime: (0x[0-9a-f]+)", out)
    assert found and owner, f"{path} not in {image}: {out}"
    return {"type": found.group(1), "mode": found.group(2), "uid": owner.group(1),
            "gid": owner.group(2), "mtime": str(int(mtime.group(1), 16)) if mtime else ""}


def listing(image: Path, path: str) -> list[str]:
    out = subprocess.run([TOOLS.debugfs, "-R", f'ls "{path}"', str(image)],
                         capture_output=True, text=True, check=True).stdout
    return sorted(n for n in out.split() if not n.startswith("(") and n.isprintable()
                  and not n.isdigit() and n not in (".", ".."))


def fsck_clean(image: Path) -> None:
    result = subprocess.run([tool("e2fsck"), "-fn", str(image)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def member(archive: tarfile.TarFile, name: str, kind=tarfile.REGTYPE, data=b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    info.mode = attrs.pop("mode", 0o644 if kind == tarfile.REGTYPE else 0o755)
    info.mtime = attrs.pop("mtime", 1700000000)
    for key, value in attrs.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(data) if data else None)


@pytest.fixture
def minirootfs(tmp_path: Path) -> Path:
    """A small root filesystem archive like a distribution's minirootfs."""
    path = tmp_path / "sources" / "minirootfs.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as archive:
        member(archive, "./", tarfile.DIRTYPE)
        member(archive, "./bin", tarfile.DIRTYPE)
        member(archive, "./bin/busybox", data=b"\x7fELF busybox", mode=0o4755)
        member(archive, "./bin/sh", tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        member(archive, "./bin/ash", tarfile.LNKTYPE, linkname="./bin/busybox")
        member(archive, "./etc", tarfile.DIRTYPE)
        member(archive, "./etc/shadow", data=b"root:*:0::::::\n", mode=0o640, gid=42)
        member(archive, "./var/www/index.html", data=b"hello", uid=33, gid=33)
        member(archive, "./dev", tarfile.DIRTYPE)
        member(archive, "./dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)
        member(archive, "./run/initctl", tarfile.FIFOTYPE, mode=0o600)
    return path


def rootfs_dir(name: str, size: int | None = None) -> ImportSource:
    return ImportSource("rootfs_dir", name, size,
                        "XEN_GUEST_IMAGE_SIZE[t]" if size else "XEN_GUEST_IMAGE_SIZE_DEFAULT")


def test_archive_keeps_owners_modes_links_and_devices(minirootfs, tmp_path):
    out = tmp_path / "t.img"
    result = import_guest_image(rootfs_dir("minirootfs.tar.gz"), str(minirootfs.parent), str(out),
                                label="guest 't'", tools=TOOLS, epoch=1700000000)
    assert result.size_bytes == out.stat().st_size == 17 * MiB
    fsck_clean(out)
    assert inode(out, "/bin/busybox") == {"type": "regular", "mode": "04755", "uid": "0",
                                          "gid": "0", "mtime": "1700000000"}
    assert inode(out, "/bin/sh")["type"] == "symlink"
    assert inode(out, "/etc/shadow")["mode"] == "0640" and inode(out, "/etc/shadow")["gid"] == "42"
    assert inode(out, "/var/www/index.html")["uid"] == "33"
    assert inode(out, "/var")["uid"] == "0", "folders the archive does not list belong to root"
    assert inode(out, "/dev/null")["type"] == "character special" and inode(out, "/dev/null")["mode"] == "0666"
    assert inode(out, "/run/initctl")["type"] == "FIFO"
    busybox = subprocess.run([TOOLS.debugfs, "-R", "stat /bin/ash", str(out)],
                             capture_output=True, text=True, check=True).stdout
    assert "Links: 2" in busybox
    assert out.stat().st_blocks * 512 < 8 * MiB, "the image file is sparse"


def test_the_same_archive_gives_the_same_image(minirootfs, tmp_path):
    digests = []
    for name in ("a.img", "b.img"):
        out = tmp_path / name
        import_guest_image(rootfs_dir("minirootfs.tar.gz"), str(minirootfs.parent), str(out),
                           label="guest 't'", tools=TOOLS, epoch=1700000000)
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_folder_source_belongs_to_root_with_its_modes(tmp_path):
    tree = tmp_path / "sources" / "rootfs"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/tool").write_bytes(b"tool")
    os.chmod(tree / "bin/tool", 0o750)
    os.symlink("tool", tree / "bin/link")
    out = tmp_path / "f.img"
    import_guest_image(rootfs_dir("rootfs"), str(tree.parent), str(out), label="g", tools=TOOLS)
    fsck_clean(out)
    assert inode(out, "/bin/tool")["mode"] == "0750"
    assert {inode(out, p)["uid"] for p in ("/", "/bin", "/bin/tool", "/bin/link")} == {"0"}
    assert listing(out, "/bin") == ["link", "tool"]


def test_computed_size_grows_with_the_content(tmp_path):
    # 16 MiB of headroom, or room for the inodes; the data and a quarter more.
    assert auto_size_mib(0, 10) == 17
    assert auto_size_mib(400 * MiB, 20000) == 521
    tree = tmp_path / "sources" / "big"
    tree.mkdir(parents=True)
    with open(tree / "blob", "wb") as f:
        f.write(os.urandom(40 * MiB))
    out = tmp_path / "big.img"
    result = import_guest_image(rootfs_dir("big"), str(tree.parent), str(out), label="g",
                                tools=TOOLS)
    assert result.size_bytes == auto_size_mib(40 * MiB + 4096, 3) * MiB
    fsck_clean(out)


@pytest.mark.parametrize("size", [2, 20])
def test_a_size_too_small_is_a_clear_error(tmp_path, size):
    tree = tmp_path / "sources" / "big"
    tree.mkdir(parents=True)
    with open(tree / "blob", "wb") as f:
        f.write(os.urandom(19 * MiB))
    out = tmp_path / "small.img"
    with pytest.raises(BundleError) as info:
        import_guest_image(rootfs_dir("big", size), str(tree.parent), str(out), label="guest 'g'",
                           tools=TOOLS)
    (problem,) = info.value.problems
    assert problem.startswith(f"guest 'g': XEN_GUEST_IMAGE_SIZE[t] = \"{size}\" (MiB) is too small "
                              "for the root filesystem (")
    assert "set at least" in problem and "leave it unset" in problem
    assert not out.exists()


@pytest.mark.parametrize("members, message", [
    ([("/etc/passwd", tarfile.REGTYPE, {})], "has an absolute name, '..' or a newline"),
    ([("./../escape", tarfile.REGTYPE, {})], "has an absolute name, '..' or a newline"),
    ([("./etc", tarfile.SYMTYPE, {"linkname": "/tmp"}), ("./etc/passwd", tarfile.REGTYPE, {})],
     "is a symlink"),
    ([("./a", tarfile.REGTYPE, {}), ("./a", tarfile.REGTYPE, {})], "the archive has './a' twice"),
    ([("./h", tarfile.LNKTYPE, {"linkname": "../../outside"})], "has an absolute name, '..'"),
])
def test_hostile_archives_are_refused(tmp_path, members, message):
    archive_path = tmp_path / "sources" / "evil.tar"
    archive_path.parent.mkdir()
    with tarfile.open(archive_path, "w") as archive:
        for name, kind, attrs in members:
            member(archive, name, kind, data=b"x" if kind == tarfile.REGTYPE else b"", **attrs)
    with pytest.raises(BundleError) as info:
        import_guest_image(rootfs_dir("evil.tar"), str(archive_path.parent), str(tmp_path / "e.img"),
                           label="guest 'e'", tools=TOOLS)
    assert message in str(info.value)
    assert not (tmp_path / "e.img").exists() and not (tmp_path / "e.img.tree").exists()
    assert not Path("/tmp/passwd").exists()


def test_a_file_that_is_no_archive(tmp_path):
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources/notes.txt").write_text("hello")
    with pytest.raises(BundleError, match="is neither a folder nor a tar archive"):
        import_guest_image(rootfs_dir("notes.txt"), str(tmp_path / "sources"),
                           str(tmp_path / "x.img"), label="g", tools=TOOLS)


@pytest.mark.parametrize("name, message", [
    ("missing.tar", "is not in UNPACKDIR"),
    ("../outside.tar", "outside UNPACKDIR"),
])
def test_sources_must_be_fetched_files(tmp_path, name, message):
    (tmp_path / "sources").mkdir()
    (tmp_path / "outside.tar").write_bytes(b"")
    with pytest.raises(BundleError, match=message):
        import_guest_image(rootfs_dir(name), str(tmp_path / "sources"), str(tmp_path / "x.img"),
                           label="g", tools=TOOLS)


# ------------------------------------------------------------------ disk images


@pytest.fixture
def raw_disk(tmp_path: Path) -> Path:
    (tmp_path / "sources").mkdir()
    disk = tmp_path / "sources" / "disk.raw"
    with open(disk, "wb") as f:
        f.write(b"boot sector")
        f.seek(5 * MiB)
        f.write(b"data")
        f.truncate(16 * MiB)
    return disk


def qemu_img(*args: str) -> None:
    subprocess.run([TOOLS.qemu_img, *args], check=True, capture_output=True)


def test_qcow2_becomes_a_sparse_raw_image(raw_disk, tmp_path):
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw_disk), str(raw_disk.with_suffix(".qcow2")))
    out = tmp_path / "q.img"
    result = import_guest_image(ImportSource("qcow2", "disk.qcow2", None, ""), str(raw_disk.parent),
                                str(out), label="g", tools=TOOLS)
    assert result.size_bytes == 16 * MiB
    assert out.read_bytes() == raw_disk.read_bytes()
    assert out.stat().st_blocks * 512 < MiB


def test_qcow2_with_a_backing_file_is_refused(raw_disk, tmp_path):
    overlay = raw_disk.parent / "overlay.qcow2"
    qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", str(raw_disk), str(overlay))
    with pytest.raises(BundleError, match="refers to another file"):
        import_guest_image(ImportSource("qcow2", "overlay.qcow2", None, ""), str(raw_disk.parent),
                           str(tmp_path / "o.img"), label="g", tools=TOOLS)


def test_a_raw_file_declared_qcow2_is_refused(raw_disk, tmp_path):
    with pytest.raises(BundleError, match=r"is not a qcow2 image \(raw\)"):
        import_guest_image(ImportSource("qcow2", "disk.raw", None, ""), str(raw_disk.parent),
                           str(tmp_path / "o.img"), label="g", tools=TOOLS)


def test_raw_and_ext4_are_copied_sparse(raw_disk, tmp_path):
    out = tmp_path / "r.img"
    import_guest_image(ImportSource("raw", "disk.raw", None, ""), str(raw_disk.parent), str(out),
                       label="g", tools=TOOLS)
    assert out.read_bytes() == raw_disk.read_bytes() and out.stat().st_blocks * 512 < MiB
    with pytest.raises(BundleError, match="has no ext2/3/4 superblock"):
        import_guest_image(ImportSource("ext4", "disk.raw", None, ""), str(raw_disk.parent),
                           str(tmp_path / "e.img"), label="g", tools=TOOLS)
    ext4 = raw_disk.parent / "fs.ext4"
    subprocess.run([TOOLS.mkfs_ext4, "-q", "-F", str(ext4), "8M"], check=True, capture_output=True)
    import_guest_image(ImportSource("ext4", "fs.ext4", None, ""), str(raw_disk.parent),
                       str(tmp_path / "e.img"), label="g", tools=TOOLS)
    fsck_clean(tmp_path / "e.img")


def test_missing_tools_are_named(raw_disk, tmp_path):
    broken = ImportTools(qemu_img=str(tmp_path / "no-qemu-img"))
    with pytest.raises(BundleError, match="cannot run .*no-qemu-img .*is the native tool built"):
        import_guest_image(ImportSource("qcow2", "disk.raw", None, ""), str(raw_disk.parent),
                           str(tmp_path / "o.img"), label="g", tools=broken)


# ------------------------------------------------------------------ entries


def test_import_entries_makes_entry_images(minirootfs, tmp_path):
    variables = MappingVariables({"XEN_GUEST_BUNDLES": "alpine:external plain"}, {
        "XEN_GUEST_SOURCE_TYPE": {"alpine": "rootfs_dir"},
        "XEN_GUEST_SOURCE_FILE": {"alpine": "minirootfs.tar.gz"}})
    logs: list[str] = []
    done = import_entries(variables, "XEN_GUEST_BUNDLES", str(minirootfs.parent),
                          str(tmp_path / "imports"), tools=TOOLS, log=logs.append)
    assert [os.path.basename(d.path) for d in done] == ["alpine.img"]
    assert "imported guest 'alpine'" in logs[0]


def test_import_entries_report_every_bad_value_first(tmp_path):
    variables = MappingVariables({"XEN_GUEST_BUNDLES": "a b:bad"}, {
        "XEN_GUEST_SOURCE_TYPE": {"a": "zip"}})
    with pytest.raises(BundleError) as info:
        import_entries(variables, "XEN_GUEST_BUNDLES", str(tmp_path), str(tmp_path / "i"),
                       tools=TOOLS)
    assert len(info.value.problems) == 3
