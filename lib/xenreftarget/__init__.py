"""xenreftarget: the reference Xen target, assembled from Debian arm64 (or amd64) packages.

A stand-in for the bitbake-built ``xen-image-minimal`` / ``xen-guest-image-minimal`` images
(a full build takes hours and needs the internet), so that the bundling engine and the QEMU
test harness run end to end in CI: real Xen (bookworm's 4.17 by default, trixie's 4.20 with
``build_target(distro=Distro("trixie"))``), a real dom0 with ``xl``, real guests.

Public API::

    from xenreftarget import build_target, current_reference_target, default_cache_dir
    target = build_target()          # cached; rebuilds only when inputs change
    target.qemuboot_conf             # <cache>/target/xen-image-minimal-qemuarm64.qemuboot.conf
    target.guests                    # [{"name", "config" (path in dom0), "files", "origin"}]
    all_guests()                     # every GuestSpec: GUESTS and meta-virtualization's forms
    current_reference_target()       # the current build, without building
    build_target(distro=Distro(arch="amd64"))   # the amd64 target (qemux86-64), cached on its own
    current_reference_target(distro=Distro(arch="amd64"))

Its qemuboot.conf is written by :mod:`xenboot` (``REFERENCE_BOOT`` in :mod:`xenreftarget.build`).
Every error is a :class:`ReferenceTargetError`.  Command line: ``xen-ref-target build [--debian
SUITE] [--arch ARCH] [--cache DIR] [--force]``.
"""

from .build import (
    GUESTS,
    REFERENCE_BOOT,
    BuildError,
    ReferenceTarget,
    all_guests,
    build_target,
    current_reference_target,
    default_cache_dir,
)
from .errors import ReferenceTargetError
from .machines import MACHINES, GuestSpec, ReferenceMachine, machine_for
from .packages import Distro

__all__ = ["GUESTS", "MACHINES", "REFERENCE_BOOT", "BuildError", "Distro", "GuestSpec", "ReferenceMachine",
           "ReferenceTarget", "ReferenceTargetError", "all_guests", "build_target", "current_reference_target",
           "default_cache_dir", "machine_for"]
