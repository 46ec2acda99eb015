"""The initramfs writer produces archives that GNU cpio and the kernel format agree on."""

import gzip
import shutil
import subprocess

import pytest
from xenreftarget.cpio import CpioEntry, console_node, write_initramfs


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "bin").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + b"x" * 1001)
    (root / "bin" / "busybox").chmod(0o755)
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "init").write_text("#!/bin/busybox sh\necho hi\n")
    (root / "init").chmod(0o755)
    return root


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio is the independent reader")
def test_gnu_cpio_lists_and_extracts_the_archive(tree, tmp_path):
    archive = tmp_path / "initrd.cpio.gz"
    write_initramfs(tree, archive, extra=[console_node()])
    raw = gzip.decompress(archive.read_bytes())
    listing = subprocess.run(["cpio", "-tv"], input=raw, capture_output=True, check=True).stdout.decode()
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing.splitlines()}
    assert set(lines) == {"bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init"}
    assert lines["dev/console"].startswith("crw-------")
    assert lines["init"].startswith("-rwxr-xr-x")
    assert "bin/sh -> busybox" in listing
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--no-absolute-filenames", "--quiet"], input=raw, cwd=out,
                   check=True, capture_output=True)
    assert (out / "bin" / "busybox").read_bytes() == (tree / "bin" / "busybox").read_bytes()
    assert (out / "init").read_text() == (tree / "init").read_text()


def test_archive_is_reproducible(tree, tmp_path):
    first, second = tmp_path / "a.gz", tmp_path / "b.gz"
    write_initramfs(tree, first)
    (tree / "init").touch()  # a newer mtime must not change the archive
    write_initramfs(tree, second)
    assert first.read_bytes() == second.read_bytes()


def test_members_are_four_byte_aligned(tmp_path):
    import io

    from xenreftarget.cpio import write_newc
    buffer = io.BytesIO()
    write_newc(buffer, [CpioEntry("a", 0o100644, b"12345"), CpioEntry("bb", 0o100644, b"")])
    data = buffer.getvalue()
    assert len(data) % 4 == 0
    assert data.count(b"070701") == 3  # two members and the trailer
    assert data.rstrip(b"\0").endswith(b"TRAILER!!!")
