"""Building the file tree of a guest bundle package (``xen-ref-guest-bundle.bbclass``).

:func:`build_bundle_tree` resolves the entries of ``XEN_GUEST_BUNDLES`` like a host
resolves ``BUNDLED_XEN_GUESTS`` (:mod:`xenbundle.recipeguests`: same validation,
same generated or rewritten configs) and writes the layout
:mod:`xenbundle.bundles` reads, which is meta-virtualization's with one more file::

    <tree>/manifest          GUEST:ROOTFS:KERNEL:FLAG per guest
    <tree>/images/<file>     disks and kernels, copied sparse
    <tree>/configs/<G>.cfg   configs referring to /var/lib/xen/images/<file>
    <tree>/checksums         "<sha256>  <path>" of each file above

The package installs the tree as ``${datadir}/xen-guest-bundles/${PN}``; the host
image merges it (and meta-virtualization's bundles) with the same code.  Every
file is written through :class:`~xenbundle.rootfs.RootfsWriter` rooted at the tree.
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from .bundles import (
    CHECKSUMS,
    CONFIGS,
    IMAGES,
    MANIFEST,
    TARGET_IMAGES_DIR,
    file_sha256,
    format_manifest_line,
)
from .errors import BundleError, printable
from .install import install_plan
from .plan import PlannedGuest, _plan, _Request
from .recipeguests import RecipeGuests
from .rootfs import RootfsWriter
from .xenversion import DEFAULT_XEN_VERSION, XenVersionLike, as_xen_version

__all__ = ["BundleTree", "build_bundle_tree"]


@dataclass(frozen=True)
class BundleTree:
    """What :func:`build_bundle_tree` wrote: the tree, its guests and manifest lines."""

    path: str
    guests: list[PlannedGuest]
    manifest: list[str]


def _write_text(text: str, fd: int) -> None:
    data = memoryview(text.encode("utf-8", "surrogateescape"))
    while data:
        data = data[os.write(fd, data):]


def _checksums(tree: str) -> str:
    lines = []
    for rel in (IMAGES, CONFIGS):
        for name in sorted(os.listdir(os.path.join(tree, rel))):
            lines.append(f"{file_sha256(os.path.join(tree, rel, name))}  {rel}/{name}")
    lines.append(f"{file_sha256(os.path.join(tree, MANIFEST))}  {MANIFEST}")
    return "\n".join(lines) + "\n"


def build_bundle_tree(tree: str, deploy_dir: str, guests: RecipeGuests, *,
                      log: Callable[[str], None] = print,
                      xen_version: XenVersionLike = DEFAULT_XEN_VERSION) -> BundleTree:
    """Write the bundle of ``guests`` (usually ``XEN_GUEST_BUNDLES``) into folder ``tree``.

    The configs are checked with the grammar of ``xen_version`` (the host checks them
    again against its own xl when it merges the bundle).

    ``tree`` is created (with its parents) and must be empty.  Raises
    :class:`BundleError` listing every problem before anything is written; on a
    failure while writing, what was written is removed again.
    """
    os.makedirs(tree, exist_ok=True)
    if os.listdir(tree):
        raise BundleError([(f"bundle folder {printable(tree)} is not empty: build the bundle "
                            "into an empty folder (do_install cleans ${D})")])
    request = _Request(config_glob=None, recipe_guests=guests,
                       xen_version=as_xen_version(xen_version))
    plan = _plan(tree, deploy_dir, request, "/" + IMAGES, "/" + CONFIGS, TARGET_IMAGES_DIR)
    if not plan.guests:
        raise BundleError([(f"{guests.variable} names no guest: list the guests to bundle, "
                            "e.g. \"xen-guest-image-minimal:autostart\"")])
    manifest = [format_manifest_line(g.entry or g.name, g.rootfs_file or "", g.kernel_file,
                                     g.autostart) for g in plan.guests]
    for guest in plan.guests:
        guest.autostart = False      # the host links it; the manifest says so
    install_plan(plan, log)
    writer = RootfsWriter(tree)
    try:
        writer.write_file("/" + MANIFEST,
                          functools.partial(_write_text, "\n".join(manifest) + "\n"), 0o644)
        writer.write_file("/" + CHECKSUMS, functools.partial(_write_text, _checksums(tree)), 0o644)
    except BaseException as err:
        writer.rollback()
        for folder in (IMAGES, CONFIGS):
            writer.remove_tree("/" + folder)
        if isinstance(err, OSError):
            raise BundleError([(f"bundle folder {printable(tree)}: cannot write the "
                                f"{MANIFEST} or {CHECKSUMS}: {err.strerror or err}")]) from err
        raise
    finally:
        writer.close()
    log(f"xenbundle: bundle {posixpath.basename(tree.rstrip('/'))}: {len(plan.guests)} guest(s)")
    return BundleTree(tree, plan.guests, manifest)
