"""The reference target's guests bundled through meta-virtualization's 2026 forms.

Two guests, built from the same Debian packages as the others (:func:`xenreftarget.build.guest_root`)
and bundled by the same engine call as the others (``xenbundle.bundle_guests``), the way a
wrynose or master user writes them:

* **recipe form**: ``BUNDLED_XEN_GUESTS = "xen-guest-image-recipe"`` in the host image; the
  rootfs is the image recipe's output ``xen-guest-image-recipe-qemuarm64.rootfs.ext4`` in the
  deploy folder, the kernel ``KERNEL_IMAGETYPE``; the config is generated
  (``/etc/xen/xen-guest-image-recipe.cfg``).
* **bundle package** with an **imported root-filesystem tarball**: a bundle recipe
  ``xen-ref-guest-bundle-debian`` with ``XEN_GUEST_BUNDLES = "debian-rootfs-guest:autostart"``,
  ``XEN_GUEST_SOURCE_TYPE[debian-rootfs-guest] = "rootfs_dir"`` and the tarball as
  ``XEN_GUEST_SOURCE_FILE`` (its UNPACKDIR is a work folder); ``import_entries`` makes the disk,
  ``build_bundle_tree`` the package tree, which is installed into dom0's
  ``/usr/share/xen-guest-bundles/<bundle>/`` (the package's ``IMAGE_INSTALL``) and merged, and
  its staging folder removed, by ``bundle_guests(bundles_dir=...)``. It starts at boot through
  the entry's ``:autostart``.

The settings come from :class:`xenbundle.settings.MappingVariables`, as a local.conf would set
them: ``XEN_GUEST_MEMORY_DEFAULT`` and ``XEN_GUEST_EXTRA_DEFAULT`` (the same memory and command
line as the other guests) and ``XEN_GUEST_RAMDISK`` (meta-xen-ref's own: Debian's kernel needs the
initrd), as the entry's varflag in the host and as the plain value in the bundle recipe.

Stand-in notice: BitBake does not run here (see :mod:`xenreftarget.build`); the variables it
would read are passed as mappings to the same functions the bbclasses call.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Any, Callable

from xenbundle.bundletree import build_bundle_tree
from xenbundle.errors import BundleError
from xenbundle.imports import ImportTools, import_entries
from xenbundle.recipeguests import RecipeGuests, imported_image_name
from xenbundle.settings import MappingVariables

from . import assemble
from .build import (
    GUEST_DISK_BYTES,
    GUEST_EXTRA,
    GUEST_MEMORY_MB,
    INITRD,
    KERNEL,
    MACHINE,
    BuildError,
    guest_root,
)
from .machines import GuestSpec

#: The ``BUNDLED_XEN_GUESTS`` entry: an image recipe's name, also the domain name.
RECIPE_ENTRY = "xen-guest-image-recipe"
#: The bundle recipe (package) and its one guest, imported from a root-filesystem tarball.
BUNDLE_PACKAGE = "xen-ref-guest-bundle-debian"
BUNDLE_ENTRY = "debian-rootfs-guest"
BUNDLE_TARBALL = f"{BUNDLE_ENTRY}-rootfs.tar.gz"
#: ``XEN_REF_BUNDLES_DIR``: where bundle packages install their guests in dom0.
BUNDLES_DIR = "/usr/share/xen-guest-bundles"

#: The guests; ``disk`` is the file installed in dom0's /var/lib/xen/images (the recipe image's
#: deploy name; for the imported guest, the image the import made, ``<entry>.img``).
COMPAT_GUESTS: tuple[GuestSpec, ...] = (
    GuestSpec("BUNDLED_XEN_GUESTS", RECIPE_ENTRY, f"{RECIPE_ENTRY}-{MACHINE}.rootfs.ext4"),
    GuestSpec("XEN_GUEST_BUNDLES", BUNDLE_ENTRY, imported_image_name(BUNDLE_ENTRY),
              autostart=True),
)

Log = Callable[[str], None]


def local_conf() -> dict[str, str]:
    """What a local.conf sets for every guest: the reference guests' memory and command line."""
    return {"XEN_GUEST_MEMORY_DEFAULT": str(GUEST_MEMORY_MB), "XEN_GUEST_EXTRA_DEFAULT": GUEST_EXTRA}


def host_variables() -> MappingVariables:
    """The host image's datastore: the recipe entry and its ramdisk varflag."""
    return MappingVariables({**local_conf(), "BUNDLED_XEN_GUESTS": RECIPE_ENTRY},
                            {"XEN_GUEST_RAMDISK": {RECIPE_ENTRY: INITRD}})


def bundle_variables() -> MappingVariables:
    """The bundle recipe's datastore: its entry, the import of the tarball, the ramdisk."""
    return MappingVariables(
        {**local_conf(), "XEN_GUEST_BUNDLES": f"{BUNDLE_ENTRY}:autostart",
         "XEN_GUEST_RAMDISK": INITRD},
        {"XEN_GUEST_SOURCE_TYPE": {BUNDLE_ENTRY: "rootfs_dir"},
         "XEN_GUEST_SOURCE_FILE": {BUNDLE_ENTRY: BUNDLE_TARBALL}})


def _spec(form: str) -> GuestSpec:
    return next(g for g in COMPAT_GUESTS if g.form == form)


def write_rootfs_tarball(tree: Path, archive: Path) -> None:
    """A gzip'd tar of ``tree`` as a minirootfs tarball is: ``./``-relative, owned by root."""
    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.add(tree, arcname=".", filter=as_root)


def _work_dirs(work: Path) -> dict[str, Path]:
    return {"sources": work / "bundle-sources", "imports": work / "bundle-imports",
            "package": work / "bundle-package" / BUNDLE_PACKAGE}


def guest_images(work: Path, deploy: Path, packages: dict[str, Path], xen_version: str,
                 log: Log, origin: str = "Debian bookworm arm64") -> None:
    """The recipe guest's image in the deploy folder, and the bundle package's tree in ``work``.

    The bundle recipe's steps: the tarball (its fetched source), ``import_entries``
    (``do_compile``) and ``build_bundle_tree`` (``do_install``), for dom0's Xen.
    """
    recipe = _spec("BUNDLED_XEN_GUESTS")
    guest_root(packages, work / "trees" / recipe.name, recipe, origin)
    assemble.make_ext4(work / "trees" / recipe.name, deploy / recipe.disk,
                       label=recipe.name[:16], size_bytes=GUEST_DISK_BYTES)
    bundled = _spec("XEN_GUEST_BUNDLES")
    dirs = _work_dirs(work)
    dirs["sources"].mkdir(parents=True)
    guest_root(packages, work / "trees" / bundled.name, bundled, origin)
    write_rootfs_tarball(work / "trees" / bundled.name, dirs["sources"] / BUNDLE_TARBALL)
    guests = RecipeGuests(bundle_variables(), "XEN_GUEST_BUNDLES", machine=MACHINE,
                          kernel_imagetype=KERNEL, unpack_dir=str(dirs["sources"]),
                          import_dir=str(dirs["imports"]), imports_allowed=True, hvm=False)
    tools = ImportTools(*(shutil.which(n, path="/usr/sbin:/sbin:/usr/bin:/bin") or n
                          for n in ("mkfs.ext4", "debugfs", "qemu-img")))
    try:
        import_entries(guests.variables, guests.variable, str(dirs["sources"]),
                       str(dirs["imports"]), tools=tools, log=log)
        build_bundle_tree(str(dirs["package"]), str(deploy), guests, log=log,
                          xen_version=xen_version)
    except BundleError as err:
        raise BuildError(f"building the bundle package {BUNDLE_PACKAGE} failed:\n{err}") from None


def install_bundle_package(work: Path, dom0_root: Path) -> None:
    """Install the bundle package's tree into dom0 (what ``IMAGE_INSTALL`` of it does)."""
    target = dom0_root / BUNDLES_DIR.lstrip("/") / BUNDLE_PACKAGE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(_work_dirs(work)["package"], target, symlinks=True)
    os.chmod(target, 0o755)


def bundle_arguments() -> dict[str, Any]:
    """The arguments ``bundle_guests`` gets for these forms: the recipe entries, the bundles."""
    return {"recipe_guests": RecipeGuests(host_variables(), "BUNDLED_XEN_GUESTS",
                                          machine=MACHINE, kernel_imagetype=KERNEL, hvm=False),
            "bundles_dir": BUNDLES_DIR}
