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
