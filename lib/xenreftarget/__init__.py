"""xenreftarget: the reference Xen target, assembled from Debian bookworm arm64 packages.

A stand-in for the bitbake-built ``xen-image-minimal`` / ``xen-guest-image-minimal`` images
(a full build takes hours and needs the internet), so that the bundling engine and the QEMU
test harness run end to end in CI: real Xen 4.17, a real dom0 with ``xl``, real guests.

Public API::

    from xenreftarget import build_target, load_target, default_cache_dir
    target = build_target()          # cached; rebuilds only when inputs change
    target.qemuboot_conf             # <cache>/target/xen-image-minimal-qemuarm64.qemuboot.conf
    target.guests                    # [{"name", "config" (path in dom0), "files", "origin"}]

Command line: ``xen-ref-target build [--cache DIR] [--force]``.
"""

from .build import (
                    GUESTS,
                    BuildError,
                    GuestSpec,
                    ReferenceTarget,
                    build_target,
                    default_cache_dir,
                    load_target,
)

__all__ = ["GUESTS", "BuildError", "GuestSpec", "ReferenceTarget", "build_target",
           "default_cache_dir", "load_target"]
