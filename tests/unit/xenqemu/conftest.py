"""Fixtures for the xenqemu unit tests: deploy folders with fake image files."""

from __future__ import annotations

from pathlib import Path

import pytest
from xq_unit_helpers import OE_QEMUBOOT, write


@pytest.fixture
def oe_deploy(tmp_path: Path) -> Path:
    """A deploy folder as oe-core leaves it for xen-image-minimal on qemuarm64 (fake contents)."""
    deploy = tmp_path / "deploy" / "images" / "qemuarm64"
    write(deploy / "xen-qemuarm64-4.18+git-r0")
    write(deploy / "Image-6.6.21.bin", b"k" * 4096)
    (deploy / "Image").symlink_to("Image-6.6.21.bin")
    write(deploy / "initrd.cpio.gz")
    write(deploy / "xen-image-minimal-qemuarm64.rootfs-20261126120000.ext4")
    (deploy / "xen-image-minimal-qemuarm64.rootfs.ext4").symlink_to(
        "xen-image-minimal-qemuarm64.rootfs-20261126120000.ext4")
    conf = deploy / "xen-image-minimal-qemuarm64.rootfs-20261126120000.qemuboot.conf"
    conf.write_text(OE_QEMUBOOT)
    (deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf").symlink_to(conf.name)
    return deploy
