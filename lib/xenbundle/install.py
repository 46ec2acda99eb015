"""Installing a bundle plan into a rootfs, all or nothing.

:func:`bundle_guests` plans (see :mod:`xenbundle.plan`), then installs: every
file is copied (sparse) into the rootfs, the rewritten configs are written (mode
0644) and the autostart links made (``<config_dir>/auto/<cfg>`` -> ``../<cfg>``),
all through :class:`xenbundle.rootfs.RootfsWriter`, which never follows or
replaces a link and records only what it created.  When the plan merged bundle
packages, their staging folder is removed last (:meth:`RootfsWriter.remove_tree`,
which never follows a link).

On any failure exactly what this call created is removed again, so no
half-installed guest is left.  An ``OSError`` (a full or read-only file system,
a permission, an I/O error...) then becomes a :class:`BundleError` naming the
guest, the file, the error (``ENOSPC``) in words and what to do about it.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Callable

from .errors import BundleError, printable
from .plan import BundlePlan, FileCopy, PlannedGuest, SettingsFactory, plan_bundle
from .recipeguests import RecipeGuests
from .rootfs import RootfsWriter
from .sparse import SourceError, copy_sparse_to_fd
from .xenversion import DEFAULT_XEN_VERSION, XenVersionLike

__all__ = ["BundleResult", "InstalledGuest", "bundle_guests", "install_plan"]

CONFIG_MODE = 0o644


@dataclass(frozen=True)
class InstalledGuest:
    """A guest installed in the rootfs.

    ``config`` and ``files`` are rootfs-relative paths (no leading ``/``; join them
    to the rootfs, or prefix ``/`` for the path on the running host).
    """

    name: str
    config: str
    files: list[str]
    apparent_bytes: int
    allocated_bytes: int
    origin: str
    autostart_link: str | None = None


@dataclass
class BundleResult:
    """What :func:`bundle_guests` installed.

    ``file_sizes`` maps each installed file (rootfs-relative) to its
    ``(apparent, allocated)`` bytes; the totals count a file shared by two guests once.
    """

    guests: list[InstalledGuest] = field(default_factory=list)
    file_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def apparent_bytes(self) -> int:
        """Apparent size of the installed guest files (holes counted)."""
        return sum(a for a, _ in self.file_sizes.values())

    @property
    def allocated_bytes(self) -> int:
        """Disk space the installed guest files occupy (holes not counted)."""
        return sum(b for _, b in self.file_sizes.values())


@dataclass
class _Step:
    """What is being installed right now, for the message when it fails."""

    label: str = ""
    path: str = ""
    source: str = ""


_NEED = "{need}"
# What to do about the errors a disk or the build folder gives while installing.
_FIXES = {
    errno.ENOSPC: ("the file system holding the rootfs folder is full: free space in the build "
                   f"folder (TMPDIR) or give it a bigger disk; the bundle needs {_NEED} there "
                   "(IMAGE_ROOTFS_EXTRA_SPACE / XEN_HOST_ROOTFS_HEADROOM only add room to the "
                   "image made afterwards, not to this folder)"),
    errno.EDQUOT: ("the build user's disk quota is used up: raise the quota or free space in "
                   f"the build folder; the bundle needs {_NEED}"),
    errno.EROFS: ("the rootfs folder is on a read-only file system: build in a writable folder "
                  "(TMPDIR) or remount it read-write"),
    errno.EACCES: ("the build user may not write there: check the owner and mode of that folder "
                   "in the rootfs (a package may have made it read-only) and that the build "
                   "runs as the owner of the build folder"),
    errno.EIO: ("the disk reported an input/output error: check the disk and its file system "
                "(dmesg, fsck) before building again"),
    errno.ENAMETOOLONG: "a name is too long: shorten the file name or the build folder's path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
}
_FIXES[errno.EPERM] = _FIXES[errno.EACCES]
_FIXES[errno.ENFILE] = _FIXES[errno.EMFILE]
_SOURCE_FIX = "check the file and the disk holding the deploy directory"


def _describe_os_error(err: OSError, step: _Step, plan: BundlePlan, leftovers: list[str]) -> str:
    code = err.errno if err.errno is not None else 0
    words = f"{errno.errorcode.get(code, f'errno {code}')}, {err.strerror or os.strerror(code)}"
    if isinstance(err, SourceError):
        what = f"cannot read {printable(step.source)} for {step.path}"
        fix = _SOURCE_FIX
    else:
        what = f"cannot install {step.path} into the rootfs {printable(plan.rootfs)}"
        if step.source:
            what += f" (copying {printable(step.source)})"
        fix = _FIXES.get(code, "check the build folder and the rootfs")
    need = f"{plan.allocated_bytes / 2**20:.1f} MiB"
    message = f"{step.label}: {what}: {words}: {fix.replace(_NEED, need)}"
    if leftovers:
        message += "; the rollback could not remove: " + ", ".join(leftovers)
    return message


def _copies_with_guests(plan: BundlePlan) -> Iterator[tuple[PlannedGuest, FileCopy]]:
    seen: set[str] = set()
    for guest in plan.guests:
        for copy in guest.copies:
            if copy.destination not in seen:
                seen.add(copy.destination)
                yield guest, copy


def _label(guest: PlannedGuest) -> str:
    return f"guest '{guest.name}' ({guest.origin})"


def _write_bytes(data: bytes) -> Callable[[int], None]:
    def fill(fd: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return fill


def _install(plan: BundlePlan, writer: RootfsWriter, step: _Step,
             log: Callable[[str], None]) -> BundleResult:
    sizes: dict[str, tuple[int, int]] = {}
    for guest, copy in _copies_with_guests(plan):
        step.label, step.path, step.source = _label(guest), copy.destination, copy.source
        st = writer.write_file(copy.destination, functools.partial(copy_sparse_to_fd, copy.source))
        sizes[copy.destination] = (st.st_size, st.st_blocks * 512)
    result = BundleResult(file_sizes={_rel(k): v for k, v in sizes.items()})
    for guest in plan.guests:
        step.label, step.path, step.source = _label(guest), guest.config_path, ""
        writer.write_file(guest.config_path,
                          _write_bytes(guest.text.encode("utf-8", "surrogateescape")), CONFIG_MODE)
        link = guest.autostart_link
        if link:
            step.path = link
            writer.symlink(posixpath.join("..", guest.config_name), link)
        result.guests.append(_installed(guest, sizes, link))
        log(_summary(result.guests[-1], guest))
    if plan.staging_dir is not None:
        step.label, step.path, step.source = "bundle packages", plan.staging_dir, ""
        writer.remove_tree(plan.staging_dir)
        log(f"xenbundle: removed the bundle staging folder {plan.staging_dir} from the rootfs")
    return result


def _installed(guest: PlannedGuest, sizes: dict[str, tuple[int, int]],
               link: str | None) -> InstalledGuest:
    files = [c.destination for c in guest.copies]
    return InstalledGuest(
        name=guest.name, config=_rel(guest.config_path), files=[_rel(f) for f in files],
        apparent_bytes=sum(sizes[f][0] for f in files),
        allocated_bytes=sum(sizes[f][1] for f in files), origin=guest.origin,
        autostart_link=_rel(link) if link else None)


def _summary(installed: InstalledGuest, guest: PlannedGuest) -> str:
    return (f"xenbundle: guest '{guest.name}' ({guest.origin}) -> {guest.config_path}: "
            f"{len(installed.files)} file(s), {installed.apparent_bytes / 2**20:.1f} MiB apparent, "
            f"{installed.allocated_bytes / 2**20:.1f} MiB allocated"
            + (", autostart" if installed.autostart_link else ""))


def _rel(target_path: str) -> str:
    return target_path.lstrip("/")


def install_plan(plan: BundlePlan, log: Callable[[str], None] = print) -> BundleResult:
    """Install a validated plan into ``plan.rootfs``; on failure remove what was created.

    Raises :class:`BundleError` for an OS error or a link met while installing
    (after the rollback); other exceptions propagate after the rollback too.
    """
    step = _Step()
    try:
        writer = RootfsWriter(plan.rootfs)
    except OSError as err:
        step.label, step.path = "bundling", "/"
        raise BundleError([_describe_os_error(err, step, plan, [])]) from err
    try:
        return _install(plan, writer, step, log)
    except OSError as err:
        leftovers = writer.rollback()
        raise BundleError([_describe_os_error(err, step, plan, leftovers)]) from err
    except BundleError as err:
        leftovers = writer.rollback()
        problems = [f"{step.label}: {p}" for p in err.problems]
        if leftovers:
            problems.append("the rollback could not remove: " + ", ".join(leftovers))
        raise BundleError(problems, err.more) from err
    except BaseException:
        writer.rollback()
        raise
    finally:
        writer.close()


def bundle_guests(rootfs: str, deploy_dir: str, bundled_guests: str = "", *,
                  config_glob: str = "xen-guest-bundle*.cfg",
                  settings: SettingsFactory | None = None,
                  autostart: Iterable[str] = (),
                  log: Callable[[str], None] = print,
                  images_dir: str = "/var/lib/xen/images",
                  config_dir: str = "/etc/xen",
                  xen_version: XenVersionLike = DEFAULT_XEN_VERSION,
                  recipe_guests: RecipeGuests | None = None,
                  bundles_dir: str | None = None) -> BundleResult:
    """Bundle guests from ``deploy_dir`` into ``rootfs``: :func:`plan_bundle`, then install.

    ``xen_version`` is the Xen of the host's xl; ``recipe_guests`` and ``bundles_dir`` add
    the recipe entries and the installed bundle packages (see
    :func:`~xenbundle.plan.plan_bundle`).  Raises :class:`BundleError` (nothing written)
    for invalid input; any failure while
    installing removes everything this call created before the error propagates.
    """
    plan = plan_bundle(rootfs, deploy_dir, bundled_guests, config_glob=config_glob,
                       settings=settings, autostart=autostart, images_dir=images_dir,
                       config_dir=config_dir, xen_version=xen_version,
                       recipe_guests=recipe_guests, bundles_dir=bundles_dir)
    if not plan.guests:
        log("xenbundle: no guests to bundle")
    return install_plan(plan, log)
