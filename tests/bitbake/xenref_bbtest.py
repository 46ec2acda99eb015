"""Shared recipe texts and file helpers of the tests in tests/bitbake."""

from __future__ import annotations

# A host image recipe. Its do_rootfs is a STAND-IN for oe-core's (image.bbclass
# is not available here): like oe.utils.execute_pre_post_process it runs every
# function named in ROOTFS_POSTPROCESS_COMMAND with bb.build.exec_func, so the
# class's registration of its step is exercised too.
HOST = """\
inherit xen-ref-bundle
addtask rootfs
python do_rootfs() {
    for cmd in (d.getVar("ROOTFS_POSTPROCESS_COMMAND") or "").replace(";", " ").split():
        bb.build.exec_func(cmd, d)
}
"""

# A guest image recipe with STAND-IN do_image/do_image_complete tasks (empty),
# so that the class's task can be ordered between them.
GUEST = """\
inherit xen-ref-guest
addtask image
addtask image_complete after image
do_image() {
    :
}
do_image_complete() {
    :
}
"""

GUEST_LINK = "xen-guest-image-minimal-qemuarm64.rootfs"
MiB = 1024 * 1024


def make_sparse(path, size, data=b"guest root filesystem"):
    """A file of ``size`` bytes that is a hole except for ``data`` at its start."""
    with open(path, "wb") as out:
        out.write(data)
        out.truncate(size)

# A bundle recipe. The tasks are declared here because base.bbclass (which
# declares compile and install in oe-core) is not available; the class's own
# task functions are the ones run.
BUNDLE = """\
inherit xen-ref-guest-bundle
addtask compile
addtask install after compile
"""

MACHINE = "qemuarm64"


def make_guest_image(deploy, recipe="xen-guest-image-minimal", size=64 * MiB,
                     data=b"guest root filesystem", suffix=".rootfs", fstype="ext4"):
    """A guest image as oe-core deploys it: a timestamped file and its stable link."""
    link = f"{recipe}-{MACHINE}{suffix}.{fstype}"
    real = f"{recipe}-{MACHINE}{suffix}-20261126120000.{fstype}"
    make_sparse(deploy / real, size, data)
    (deploy / link).symlink_to(real)
    return link


def make_kernel(deploy, name="Image", data=b"\x00ARM64 kernel" * 1000):
    """The kernel as oe-core deploys it: a versioned file and its KERNEL_IMAGETYPE link."""
    real = f"{name}--6.6-r0-{MACHINE}-20261126.bin"
    (deploy / real).write_bytes(data)
    (deploy / name).symlink_to(real)
    return name

import pathlib

#: The layer's recipe folders (for tests that parse the layer's own recipes).
LAYER_RECIPES = pathlib.Path(__file__).resolve().parents[2] / "recipes-extended"
