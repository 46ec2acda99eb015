"""Installing a bundle plan into a rootfs, all or nothing.

:func:`bundle_guests` plans (see :mod:`xenbundle.plan`), then installs: it creates
the directories it needs inside the rootfs, copies every file to a temporary name
next to its destination and renames it into place, writes the rewritten configs
(mode 0644) and the autostart links (``<config_dir>/auto/<cfg>`` -> ``../<cfg>``).
On any failure everything this call created is removed again, so no
half-installed guest is left, and the error is re-raised.

Writes never go through a symlink: destinations were resolved chroot-style when
planning, and every existing directory on the way is checked to be a real
directory inside the rootfs just before it is used.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Callable

from .errors import BundleError
from .plan import BundlePlan, SettingsFactory, plan_bundle, resolve_in_root
from .sparse import allocated_bytes, copy_sparse

__all__ = ["BundleResult", "InstalledGuest", "bundle_guests", "install_plan"]

CONFIG_MODE = 0o644
DIR_MODE = 0o755


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


class _Installer:
    """Creates files and directories in a rootfs and can remove them all again."""

    def __init__(self, rootfs: str) -> None:
        self.rootfs = os.path.realpath(rootfs)
        self.created: list[str] = []   # host paths, in creation order

    def host_path(self, target_path: str) -> str:
        resolved = resolve_in_root(self.rootfs, target_path)
        return os.path.join(self.rootfs, resolved.lstrip("/"))

    def _check_real_dir(self, host: str) -> None:
        st = os.lstat(host)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise BundleError([f"{host} is not a plain directory inside the rootfs (a symlink "
                               "or a file): refusing to write through it"])
        real = os.path.realpath(host)
        if real != self.rootfs and not real.startswith(self.rootfs + os.sep):
            raise BundleError([f"{host} resolves to {real}, outside the rootfs: refusing to "
                               "write through it"])

    def make_dirs(self, host_dir: str) -> None:
        rel = os.path.relpath(host_dir, self.rootfs)
        current = self.rootfs
        if rel == ".":
            return
        for part in rel.split(os.sep):
            current = os.path.join(current, part)
            if os.path.lexists(current):
                self._check_real_dir(current)
                continue
            os.mkdir(current, DIR_MODE)
            self.created.append(current)

    def _tmp_name(self, final: str) -> str:
        directory, base = os.path.split(final)
        return os.path.join(directory, f".{base}.xenbundle-{os.getpid()}.tmp")

    def _place(self, tmp: str, final: str) -> None:
        if os.path.lexists(final):
            raise BundleError([f"{final} appeared in the rootfs while bundling: refusing to "
                               "overwrite it"])
        os.rename(tmp, final)
        self.created[self.created.index(tmp)] = final

    def copy_file(self, source: str, final: str) -> None:
        self.make_dirs(os.path.dirname(final))
        tmp = self._tmp_name(final)
        self.created.append(tmp)
        copy_sparse(source, tmp)
        self._place(tmp, final)

    def write_text(self, text: str, final: str, mode: int = CONFIG_MODE) -> None:
        self.make_dirs(os.path.dirname(final))
        tmp = self._tmp_name(final)
        self.created.append(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            data = text.encode("utf-8", "surrogateescape")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self._place(tmp, final)

    def symlink(self, link_target: str, final: str) -> None:
        self.make_dirs(os.path.dirname(final))
        if os.path.lexists(final):
            raise BundleError([f"{final} already exists in the rootfs: refusing to overwrite it"])
        os.symlink(link_target, final)
        self.created.append(final)

    def rollback(self) -> None:
        for path in reversed(self.created):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                pass
        self.created.clear()


def _rel(target_path: str) -> str:
    return target_path.lstrip("/")


def install_plan(plan: BundlePlan, log: Callable[[str], None] = print) -> BundleResult:
    """Install a validated plan into ``plan.rootfs``; on failure remove what was created."""
    installer = _Installer(plan.rootfs)
    try:
        installed_sizes: dict[str, tuple[int, int]] = {}
        for copy in plan.copies():
            host = installer.host_path(copy.destination)
            installer.copy_file(copy.source, host)
            installed_sizes[copy.destination] = (os.stat(host).st_size, allocated_bytes(host))
        guests: list[InstalledGuest] = []
        for guest in plan.guests:
            installer.write_text(guest.text, installer.host_path(guest.config_path))
            link = guest.autostart_link
            if link:
                installer.symlink(posixpath.join("..", guest.config_name),
                                  installer.host_path(link))
            files = [c.destination for c in guest.copies]
            apparent = sum(installed_sizes[f][0] for f in files)
            allocated = sum(installed_sizes[f][1] for f in files)
            guests.append(InstalledGuest(
                name=guest.name, config=_rel(guest.config_path), files=[_rel(f) for f in files],
                apparent_bytes=apparent, allocated_bytes=allocated, origin=guest.origin,
                autostart_link=_rel(link) if link else None))
            log(f"xenbundle: guest '{guest.name}' ({guest.origin}) -> {guest.config_path}: "
                f"{len(files)} file(s), {apparent / 2**20:.1f} MiB apparent, "
                f"{allocated / 2**20:.1f} MiB allocated"
                + (", autostart" if link else ""))
    except BaseException:
        installer.rollback()
        raise
    return BundleResult(guests, {_rel(k): v for k, v in installed_sizes.items()})


def bundle_guests(rootfs: str, deploy_dir: str, bundled_guests: str = "", *,
                  config_glob: str = "xen-guest-bundle*.cfg",
                  settings: SettingsFactory | None = None,
                  autostart: Iterable[str] = (),
                  log: Callable[[str], None] = print,
                  images_dir: str = "/var/lib/xen/images",
                  config_dir: str = "/etc/xen") -> BundleResult:
    """Bundle guests from ``deploy_dir`` into ``rootfs``: :func:`plan_bundle`, then install.

    Raises :class:`BundleError` (nothing written) for invalid input; any failure while
    installing removes everything this call created before the error propagates.
    """
    plan = plan_bundle(rootfs, deploy_dir, bundled_guests, config_glob=config_glob,
                       settings=settings, autostart=autostart, images_dir=images_dir,
                       config_dir=config_dir)
    if not plan.guests:
        log("xenbundle: no guests to bundle")
    return install_plan(plan, log)
