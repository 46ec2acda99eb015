"""Tests of xenbundle.rootfs: the one primitive that writes into the rootfs, and its rollback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import xenbundle.rootfs as rootfs_mod
from xenbundle.errors import BundleError
from xenbundle.rootfs import (
    TEMPORARY_NAME_LENGTH,
    RootfsWriter,
    length_problem,
    name_limits,
)


def write(data: bytes):
    def fill(fd: int) -> None:
        os.write(fd, data)
    return fill


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    return r


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_files_folders_and_links_are_created_and_rolled_back_exactly(root):
    writer = RootfsWriter(str(root))
    st = writer.write_file("/var/lib/xen/images/Image", write(b"kernel"), 0o644)
    writer.symlink("../x.cfg", "/etc/xen/auto/x.cfg")
    assert (root / "var/lib/xen/images/Image").read_bytes() == b"kernel"
    assert oct((root / "var/lib/xen/images/Image").stat().st_mode & 0o777) == "0o644"
    assert st.st_size == 6
    assert os.readlink(root / "etc/xen/auto/x.cfg") == "../x.cfg"
    assert writer.created == ["/var", "/var/lib", "/var/lib/xen", "/var/lib/xen/images",
                              "/var/lib/xen/images/Image", "/etc/xen", "/etc/xen/auto",
                              "/etc/xen/auto/x.cfg"]
    assert writer.rollback() == []
    writer.close()
    assert listing(root) == ["etc"]


def test_an_existing_name_at_the_temporary_name_is_never_opened(root, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    images = root / "images"
    images.mkdir()
    names = iter([".xenbundle-trap.tmp", ".xenbundle-file.tmp", ".xenbundle-free.tmp"])
    monkeypatch.setattr(rootfs_mod, "_temporary_name", lambda: next(names))
    (images / ".xenbundle-trap.tmp").symlink_to(outside)
    (images / ".xenbundle-file.tmp").write_bytes(b"somebody else's")
    writer = RootfsWriter(str(root))
    writer.write_file("/images/Image", write(b"kernel"))
    assert outside.read_bytes() == b"precious"
    assert (images / ".xenbundle-file.tmp").read_bytes() == b"somebody else's"
    assert (images / "Image").read_bytes() == b"kernel"
    assert not (images / ".xenbundle-free.tmp").exists()
    writer.rollback()
    writer.close()
    assert sorted(os.listdir(images)) == [".xenbundle-file.tmp", ".xenbundle-trap.tmp"]


@pytest.mark.parametrize("existing", ["file", "link", "dangling link"])
def test_an_existing_final_name_is_neither_replaced_nor_followed(root, tmp_path, existing):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    final = root / "etc" / "x.cfg"
    if existing == "file":
        final.write_bytes(b"mine")
    elif existing == "link":
        final.symlink_to(outside)
    else:
        final.symlink_to(tmp_path / "nothing")
    before = final.read_bytes() if existing == "file" else os.readlink(final)
    writer = RootfsWriter(str(root))
    with pytest.raises(BundleError, match="refusing to write through or replace it"):
        writer.write_file("/etc/x.cfg", write(b"new"))
    assert writer.rollback() == []
    writer.close()
    assert (final.read_bytes() if existing == "file" else os.readlink(final)) == before
    assert outside.read_bytes() == b"precious"
    assert os.listdir(root / "etc") == ["x.cfg"], "the temporary file is gone again"


def test_a_symlinked_folder_on_the_way_is_refused(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "var").symlink_to(elsewhere)
    writer = RootfsWriter(str(root))
    with pytest.raises(BundleError) as info:
        writer.write_file("/var/lib/xen/images/Image", write(b"kernel"))
    writer.close()
    assert f"/var is a symlink (-> {elsewhere}), not a folder" in str(info.value)
    assert os.listdir(elsewhere) == []


def test_a_file_where_a_folder_should_be_is_refused(root):
    (root / "etc" / "xen").write_text("a file")
    writer = RootfsWriter(str(root))
    with pytest.raises(BundleError, match="/etc/xen is not a folder"):
        writer.symlink("../x.cfg", "/etc/xen/auto/x.cfg")
    writer.close()


def test_rollback_leaves_a_replaced_object_alone_and_says_so(root):
    writer = RootfsWriter(str(root))
    writer.write_file("/etc/a.cfg", write(b"ours"))
    (root / "etc" / "a.cfg").rename(root / "etc" / "moved")   # keeps its inode in use
    (root / "etc" / "a.cfg").write_bytes(b"somebody else's, same name")
    assert writer.rollback() == ["/etc/a.cfg (replaced by something else, left alone)"]
    writer.close()
    assert (root / "etc" / "a.cfg").read_bytes() == b"somebody else's, same name"


def test_rollback_keeps_a_folder_somebody_else_put_files_in(root):
    writer = RootfsWriter(str(root))
    writer.write_file("/etc/xen/a.cfg", write(b"ours"))
    (root / "etc" / "xen" / "theirs").write_bytes(b"x")
    leftovers = writer.rollback()
    writer.close()
    assert len(leftovers) == 1 and leftovers[0].startswith("/etc/xen (")
    assert listing(root) == ["etc", "etc/xen", "etc/xen/theirs"]


def test_without_hard_links_the_file_is_renamed_after_a_check(root, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(rootfs_mod.os, "link", no_link)
    writer = RootfsWriter(str(root))
    writer.write_file("/etc/a.cfg", write(b"ours"))
    assert (root / "etc" / "a.cfg").read_bytes() == b"ours"
    (root / "etc" / "b.cfg").write_bytes(b"theirs")
    with pytest.raises(BundleError):
        writer.write_file("/etc/b.cfg", write(b"ours"))
    assert (root / "etc" / "b.cfg").read_bytes() == b"theirs"
    writer.rollback()
    writer.close()
    assert listing(root) == ["etc", "etc/b.cfg"]


def test_name_limits_and_length_problems(root):
    name_max, path_max = name_limits(str(root))
    assert (name_max, path_max) == (255, 4096)
    assert TEMPORARY_NAME_LENGTH < 40
    assert length_problem(str(root), "/var/" + "a" * 255, (name_max, path_max)) is None
    assert "NAME_MAX (255 bytes)" in length_problem(str(root), "/var/" + "a" * 256,
                                                    (name_max, path_max))
    assert "is 256 bytes" in length_problem(str(root), "/var/" + "é" * 128, (name_max, path_max))
    deep = "/" + "/".join(["d" * 200] * 21)
    assert "PATH_MAX (4096 bytes)" in length_problem(str(root), deep, (name_max, path_max))


# ------------------------------------------------------------------ hard links, removal


def test_hard_links_are_made_and_rolled_back(root):
    writer = RootfsWriter(str(root))
    writer.write_file("/bin/sh", write(b"shell"), 0o755)
    writer.hardlink("/bin/sh", "/bin/ash")
    assert os.stat(root / "bin/sh").st_ino == os.stat(root / "bin/ash").st_ino
    with pytest.raises(BundleError, match="already exists"):
        writer.hardlink("/bin/sh", "/bin/ash")
    writer.symlink("sh", "/bin/link")
    with pytest.raises(BundleError, match="is not a regular file to link to"):
        writer.hardlink("/bin/link", "/bin/other")
    assert writer.rollback() == []
    writer.close()
    assert listing(root) == ["etc"]


def test_remove_tree_never_follows_links(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    staging = root / "usr/share/xen-guest-bundles/b"
    (staging / "images").mkdir(parents=True)
    (staging / "images/disk").write_text("disk")
    os.symlink(outside, staging / "link-to-dir")
    os.symlink(outside / "keep", staging / "images/link-to-file")
    os.mkfifo(staging / "fifo")
    writer = RootfsWriter(str(root))
    writer.remove_tree("/usr/share/xen-guest-bundles")
    writer.remove_tree("/usr/share/nothing-here")
    writer.close()
    assert listing(root) == ["etc", "usr", "usr/share"]
    assert (outside / "keep").read_text() == "keep"


def test_remove_tree_refuses_a_link_on_the_way(root, tmp_path):
    (tmp_path / "elsewhere/share/x").mkdir(parents=True)
    (root / "usr").symlink_to(tmp_path / "elsewhere")
    writer = RootfsWriter(str(root))
    with pytest.raises(BundleError, match="is a symlink"):
        writer.remove_tree("/usr/share/x")
    writer.close()
    assert (tmp_path / "elsewhere/share/x").is_dir()


def test_remove_tree_refuses_the_root(root):
    writer = RootfsWriter(str(root))
    with pytest.raises(ValueError, match="refusing to remove the rootfs itself"):
        writer.remove_tree("/")
    writer.close()


def test_remove_tree_stops_at_absurd_depth(root):
    deep = root / "d"
    path = deep
    for _ in range(70):
        path = path / "x"
    path.mkdir(parents=True)
    writer = RootfsWriter(str(root))
    with pytest.raises(BundleError, match="nested more than 64 folders deep"):
        writer.remove_tree("/d")
    writer.close()
