"""Reading a guest's file from its disk inside dom0's image (raw or qcow2), without root."""

import shutil
import subprocess
from pathlib import Path

import pytest
from xenqemu import imageread
from xenqemu.imageread import ImageReadError
from xenreftarget import assemble

MARKER = "event=shutdown\nname=g1\nboot_id=1234\ntime=1\n"


@pytest.fixture(scope="module")
def host_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dom0's image with a guest's disk in /var/lib/xen/images, the guest's disk with a marker."""
    base = tmp_path_factory.mktemp("images")
    guest = base / "guest"
    (guest / "var/log").mkdir(parents=True)
    (guest / "var/log/xen-ref-shutdown").write_text(MARKER)
    host = base / "host"
    (host / "var/lib/xen/images").mkdir(parents=True)
    assemble.make_ext4(guest, host / "var/lib/xen/images/g1.ext4", label="g1", size_bytes=8 << 20)
    image = base / "host.ext4"
    assemble.make_ext4(host, image, label="host", size_bytes=32 << 20)
    return image


def test_a_file_is_read_from_a_disk_inside_a_raw_image(host_image, tmp_path):
    data = imageread.read_nested_file(host_image, "/var/lib/xen/images/g1.ext4",
                                      "/var/log/xen-ref-shutdown", tmp_path)
    assert data.decode() == MARKER


def test_a_file_is_read_through_a_qcow2_overlay_with_its_changes(host_image, tmp_path):
    # An overlay on the image that holds only the differences to a changed copy of it (what a
    # boot with a writable overlay leaves): the changed marker is read, the base keeps its own.
    changed = tmp_path / "changed"
    (changed / "var/lib/xen/images").mkdir(parents=True)
    (tmp_path / "guest/var/log").mkdir(parents=True)
    (tmp_path / "guest/var/log/xen-ref-shutdown").write_text(MARKER.replace("1234", "5678"))
    assemble.make_ext4(tmp_path / "guest", changed / "var/lib/xen/images/g1.ext4", label="g1",
                       size_bytes=8 << 20)
    assemble.make_ext4(changed, tmp_path / "changed.ext4", label="host", size_bytes=32 << 20)
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run([imageread.tool("qemu-img", "qemu-utils"), "convert", "-q", "-O", "qcow2",
                    "-B", str(host_image), "-F", "raw", str(tmp_path / "changed.ext4"), str(overlay)],
                   check=True)
    assert overlay.read_bytes()[:4] == imageread.QCOW2_MAGIC
    assert overlay.stat().st_size < (32 << 20)                     # only the differences
    data = imageread.read_nested_file(overlay, "/var/lib/xen/images/g1.ext4", "/var/log/xen-ref-shutdown")
    assert "boot_id=5678" in data.decode()
    assert "boot_id=1234" in imageread.read_nested_file(
        host_image, "/var/lib/xen/images/g1.ext4", "/var/log/xen-ref-shutdown").decode()
    work = tmp_path / "work"
    work.mkdir()
    raw = imageread.to_raw(overlay, work)
    assert raw.parent == work and imageread.to_raw(host_image, work) == host_image


def test_missing_files_and_disks_are_named(host_image, tmp_path):
    with pytest.raises(ImageReadError, match="/var/log/nothing cannot be read from /var/lib/xen/images/g1.ext4 in .*host.ext4: .*File not found"):
        imageread.read_nested_file(host_image, "/var/lib/xen/images/g1.ext4", "/var/log/nothing", tmp_path)
    with pytest.raises(ImageReadError, match="/var/lib/xen/images/g2.ext4 cannot be read from .*host.ext4: "):
        imageread.read_nested_file(host_image, "/var/lib/xen/images/g2.ext4", "/x", tmp_path)
    with pytest.raises(ImageReadError, match="cannot read .*nope.img"):
        imageread.read_nested_file(tmp_path / "nope.img", "/a", "/b", tmp_path)


@pytest.mark.parametrize("path", ["relative/path", '/with"quote', "/new\nline"])
def test_paths_that_debugfs_cannot_take_are_refused(host_image, tmp_path, path):
    with pytest.raises(ImageReadError, match="absolute path without quotes"):
        imageread.dump_file(host_image, path, tmp_path / "out")


def test_a_freshly_made_file_system_is_clean(host_image, tmp_path):
    assert imageread.ext4_state(host_image).clean
    assert imageread.nested_ext4_state(host_image, "/var/lib/xen/images/g1.ext4", tmp_path).clean


def test_dumpe2fs_state_parsing():
    state = imageread.parse_dumpe2fs("Filesystem volume name:   g1\nFilesystem state:         not clean\n"
                                     "Filesystem features:      has_journal ext_attr needs_recovery\n")
    assert (state.state, state.needs_recovery, state.clean) == ("not clean", True, False)
    assert imageread.parse_dumpe2fs("Filesystem state: clean\nFilesystem features: has_journal\n").clean
    with pytest.raises(ImageReadError, match="no file system state"):
        imageread.parse_dumpe2fs("garbage")


def test_debugfs_banner_is_not_an_error_and_formats_are_told_apart():
    assert imageread.debugfs_errors("debugfs 1.47.0 (5-Feb-2023)\n") == []
    assert imageread.debugfs_errors("debugfs 1.47.0 (5-Feb-2023)\n/x: File not found by ext2_lookup\n") == [
        "/x: File not found by ext2_lookup"]
    assert imageread.image_format(b"QFI\xfb\x00\x00\x00\x03") == "qcow2"
    assert imageread.image_format(b"\x00" * 8) == "raw"


def test_missing_tools_name_their_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(imageread.Path, "is_file", lambda self: False)
    with pytest.raises(ImageReadError, match="debugfs is missing: install it with 'apt-get install e2fsprogs'"):
        imageread.tool("debugfs", "e2fsprogs")
