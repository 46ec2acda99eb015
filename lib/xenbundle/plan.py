"""Planning a guest bundle: what is copied where, and the rewritten configs.

:func:`plan_bundle` reads the deploy directory (never writes it) and the host rootfs
(never writes it either), validates everything and returns a :class:`BundlePlan`.
All problems are collected and raised together as one :class:`BundleError`.

Guests come from these places, all handled the same way once they are configs
(:class:`~xenbundle.sources.GuestSource`):

1. ``XEN_BUNDLED_GUESTS`` entries: a config is generated in memory and named
   ``xen-guest-bundle-<domain>.cfg``;
2. recipe entries of ``BUNDLED_XEN_GUESTS`` (:mod:`xenbundle.recipeguests`),
   installed as ``<entry>.cfg``;
3. ``xen-guest-bundle*.cfg`` files in the deploy directory (third-party configs);
4. configs deployed by guest images built with ``XEN_GUEST_AUTO_BUNDLE`` (these are
   also ``xen-guest-bundle*.cfg`` files in the deploy directory);
5. bundle packages installed in the rootfs (:mod:`xenbundle.bundles`).

For each config the kernel, ramdisk, device tree and every file-backed disk target
are resolved (relative to the deploy directory, or to the bundle's ``images/``),
copied to ``<images_dir>/<file name as referenced>`` and the config is rewritten to
those paths with :meth:`XlConfig.set`, keeping everything else as written.

Across all forms, two guests may not share a domain name, a config name, a
destination file with other content, or a disk file that one of them writes: the
same guest named by two forms is reported with both origins.
"""

from __future__ import annotations

import functools
import glob
import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Callable

from .bundles import load_installed_bundles
from .deploydir import inspect, is_within, read_regular_file
from .disk import DiskSpecError, parse_disk
from .errors import BundleError, ProblemList, printable, snippet
from .guests import (
    GuestSettings,
    _parse_bundled_guests,
    bundle_config_name,
    domain_name_error,
    domain_name_from_rootfs,
    generate_config,
)
from .recipeguests import RecipeGuests, load_recipe_guests
from .rootfs import length_problem, name_limits, resolve_in_root
from .sources import GuestSource
from .xenversion import DEFAULT_XEN_VERSION, XenVersion, XenVersionLike, as_xen_version
from .xlcfg import Value, XlConfigError, decode, parse

__all__ = [
    "BundlePlan",
    "FileCopy",
    "PlannedGuest",
    "SettingsFactory",
    "plan_bundle",
    "resolve_in_root",
]

#: ``settings(domain_name) -> GuestSettings`` for ``XEN_BUNDLED_GUESTS`` entries.
SettingsFactory = Callable[[str], GuestSettings]

#: Config keys naming a single file in the deploy directory.
FILE_KEYS = ("kernel", "ramdisk", "device_tree")


@dataclass(frozen=True)
class FileCopy:
    """One file to copy from the deploy directory into the rootfs.

    ``reference`` is the name as the config wrote it, ``source`` the real file it
    resolves to, ``destination`` the absolute path inside the guest host (e.g.
    ``/var/lib/xen/images/Image``) and ``where`` the config key (and disk index).
    ``writable`` is True for a disk the guest may write.
    """

    reference: str
    source: str
    destination: str
    where: str
    apparent_bytes: int
    allocated_bytes: int
    writable: bool = False


@dataclass
class PlannedGuest:
    """A guest of the plan: its config (rewritten) and the files it needs.

    ``entry`` is the entry name of recipe forms; ``rootfs_file`` and ``kernel_file``
    the installed names (in ``images_dir``) of the files the entry resolved to.
    """

    name: str
    config_name: str
    origin: str
    text: str
    copies: list[FileCopy]
    autostart: bool = False
    source_config: str | None = None
    config_dir: str = "/etc/xen"
    entry: str | None = None
    rootfs_file: str | None = None
    kernel_file: str | None = None

    @property
    def config_path(self) -> str:
        """Absolute path of the installed config inside the host (e.g. ``/etc/xen/x.cfg``)."""
        return posixpath.join(self.config_dir, self.config_name)

    @property
    def autostart_link(self) -> str | None:
        """Absolute path of the ``auto/`` link inside the host, when autostarted."""
        if not self.autostart:
            return None
        return posixpath.join(self.config_dir, "auto", self.config_name)


@dataclass
class BundlePlan:
    """The validated plan: guests, their files, and where they go in the rootfs.

    ``staging_dir`` is the bundle staging folder (in-rootfs path) that installing
    removes, or ``None``.
    """

    rootfs: str
    deploy_dir: str
    images_dir: str
    config_dir: str
    guests: list[PlannedGuest] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)
    staging_dir: str | None = None

    def copies(self) -> list[FileCopy]:
        """Every distinct file copy (a file shared by two guests is copied once)."""
        seen: dict[str, FileCopy] = {}
        for guest in self.guests:
            for copy in guest.copies:
                seen.setdefault(copy.destination, copy)
        return list(seen.values())

    def inputs(self) -> list[str]:
        """Every deploy-dir path the plan reads (configs, names as referenced, real files).

        Meant for BitBake ``file-checksums``: a change to any of them must rerun the
        bundling.
        """
        paths = set(self.config_files)
        for guest in self.guests:
            for copy in guest.copies:
                paths.add(copy.source)
                ref = copy.reference
                paths.add(os.path.normpath(ref if os.path.isabs(ref)
                                           else os.path.join(self.deploy_dir, ref)))
        return sorted(paths)

    @property
    def apparent_bytes(self) -> int:
        """Apparent size of everything installed (file sizes, holes counted)."""
        return (sum(c.apparent_bytes for c in self.copies())
                + sum(len(g.text.encode("utf-8", "surrogateescape")) for g in self.guests))

    @property
    def allocated_bytes(self) -> int:
        """Disk space everything installed really needs (holes not counted)."""
        return (sum(c.allocated_bytes for c in self.copies())
                + sum(_round_block(len(g.text.encode("utf-8", "surrogateescape")))
                      for g in self.guests))


def _round_block(n: int, block: int = 4096) -> int:
    return (n + block - 1) // block * block



# ----------------------------------------------------------------------- planning

class _Planner:
    def __init__(self, rootfs: str, deploy_dir: str, images_dir: str, config_dir: str,
                 reference_dir: str | None = None, *,
                 xen_version: XenVersion = DEFAULT_XEN_VERSION):
        self.xen_version = xen_version
        self.rootfs = rootfs
        self.deploy_dir = deploy_dir
        self.shown_deploy_dir = printable(deploy_dir)
        self.deploy_real = os.path.realpath(deploy_dir)
        self.images_dir = images_dir
        self.config_dir = config_dir
        # What rewritten configs refer to: images_dir, unless the files are staged
        # elsewhere first (a bundle package's images/).
        self.reference_dir = reference_dir or images_dir
        self.problems = ProblemList()
        self.limits = name_limits(rootfs)

    def reference(self, destination: str) -> str:
        return posixpath.join(self.reference_dir, posixpath.basename(destination))

    def where(self, src: GuestSource, key: str | None = None, index: int | None = None) -> str:
        if src.generated or key is None or key not in src.config:
            return src.origin
        line = src.config.line_of(key, index)
        if src.source_config and src.source_config != src.origin:
            return f"{printable(src.source_config)}:{line}, {src.origin}"
        return f"{src.origin}:{line}"

    def guest_label(self, name: str | None, src: GuestSource, key: str | None = None,
                    index: int | None = None) -> str:
        who = f"guest '{snippet(name)}'" if name else "guest"
        return f"{who} ({self.where(src, key, index)})"

    # --- files in the deploy directory (or the source's own folders)
    def _home(self, ref: str, src: GuestSource) -> str | None:
        """The allowed folder ``ref`` lies in (its real path), or None."""
        base = src.base_dir or self.deploy_dir
        if not os.path.isabs(ref):
            return os.path.realpath(base)
        for folder in (base, *src.search_dirs):
            real = os.path.realpath(folder)
            if is_within(os.path.normpath(ref), folder) or is_within(os.path.realpath(ref), real):
                return real
        return None

    def resolve_source(self, ref: str, label: str, what: str,
                       src: GuestSource) -> str | None:
        shown = snippet(ref)
        base = src.base_dir or self.deploy_dir
        deploy = (self.shown_deploy_dir if base == self.deploy_dir else printable(base))
        if "\0" in ref:
            self.problems.append(f"{label}: {what} '{shown}' contains a NUL character: "
                                 "correct the name")
            return None
        path = ref if os.path.isabs(ref) else os.path.join(base, ref)
        home = self._home(ref, src)
        if home is None:
            self.problems.append(
                f"{label}: {what} '{shown}' is outside the deploy directory {deploy}: "
                "only files in the deploy directory are bundled; refer to it by its name "
                "there (or use a /dev/ device path for a disk)")
            return None
        found = inspect(path, home)
        problem = found.problem(deploy)
        if found.state == "missing":
            self.problems.append(
                f"{label}: {what} '{shown}' not found in the deploy directory {deploy}: "
                "build it first (the host image must depend on it) or correct the name")
        elif found.state == "dangling":
            self.problems.append(f"{label}: {what} '{shown}' {problem}: rebuild the image it "
                                 "belongs to or correct the name")
        elif found.state == "outside":
            self.problems.append(f"{label}: {what} '{shown}' {problem}: copy the file into the "
                                 "deploy directory or fix the symlink")
        elif not found.usable:
            self.problems.append(f"{label}: {what} '{shown}' {problem}: name the image file")
        return found.real if found.usable else None

    def destination(self, ref: str, label: str, what: str) -> str | None:
        base = posixpath.basename(ref.rstrip("/"))
        if base in ("", ".", ".."):
            self.problems.append(f"{label}: {what} '{snippet(ref)}' has no usable file name: "
                                 "name a file")
            return None
        return posixpath.join(self.images_dir, base)

    def plan_copy(self, src: GuestSource, name: str | None, key: str, index: int | None,
                  ref: str, what: str, writable: bool = False) -> FileCopy | None:
        label = self.guest_label(name, src, key, index)
        real = self.resolve_source(ref, label, what, src)
        dest = self.destination(ref, label, what)
        if real is None or dest is None:
            return None
        st = os.stat(real)
        where = key if index is None else f"{key}[{index}]"
        return FileCopy(ref, real, dest, where, st.st_size, st.st_blocks * 512, writable)


def _load_entries(planner: _Planner, bundled_guests: str,
                  settings: SettingsFactory | None) -> list[GuestSource]:
    """The generated configs of the ``XEN_BUNDLED_GUESTS`` entries."""
    sources: list[GuestSource] = []
    entries, problems = _parse_bundled_guests(bundled_guests)
    planner.problems.extend(problems)
    for entry in entries:
        default_name = domain_name_from_rootfs(entry.rootfs)
        try:
            guest_settings = settings(default_name) if settings else GuestSettings(name=default_name)
        except BundleError as err:   # already a complete message (e.g. from the bbclass)
            planner.problems.extend(f"{p} ({entry.origin})" for p in err.problems)
            planner.problems.count(err.more)
            continue
        except Exception as err:  # noqa: BLE001 - a user callable: report, do not crash the plan
            planner.problems.append(f"guest '{default_name}' ({entry.origin}): its settings "
                                    f"could not be read: {snippet(str(err), 200)}")
            continue
        bad = guest_settings.problems()
        if bad:
            planner.problems.extend(f"guest '{snippet(guest_settings.name)}' ({entry.origin}): {p}"
                                    for p in bad)
            continue
        try:
            text = generate_config(guest_settings, entry.rootfs, entry.kernel,
                                   xen_version=planner.xen_version)
        except XlConfigError as err:   # a setting the Xen being built lacks
            planner.problems.extend(f"guest '{guest_settings.name}' ({entry.origin}): {msg}"
                                    for _, msg in err.errors)
            continue
        except ValueError as err:
            planner.problems.append(f"guest '{guest_settings.name}' ({entry.origin}): {err}")
            continue
        sources.append(GuestSource(entry.origin, bundle_config_name(guest_settings.name),
                                   parse(text, entry.origin, xen_version=planner.xen_version),
                                   True, None,
                               {"disk": "rootfs", "kernel": "kernel", "ramdisk": "ramdisk"}))
    return sources


_CONFIG_FIXES = {
    "dangling": "remove the link, or rebuild the guest image it belongs to",
    "outside": "put the config itself in the deploy directory",
}


def _load_config_files(planner: _Planner, config_glob: str) -> tuple[list[GuestSource], list[str]]:
    """The deploy-dir configs matching ``config_glob``, read without following links out."""
    sources: list[GuestSource] = []
    config_files: list[str] = []
    pattern = os.path.join(glob.escape(planner.deploy_dir), config_glob)
    for path in sorted(glob.glob(pattern)):
        shown = printable(path)
        found = inspect(path, planner.deploy_real)
        if not found.usable:
            fix = _CONFIG_FIXES.get(found.state, "remove it or give it another name")
            planner.problems.append(
                f"guest config {shown} {found.problem(planner.shown_deploy_dir)}: every "
                f"{config_glob} in the deploy directory is bundled and must be a regular file "
                f"(or a link to one in the deploy directory); {fix}")
            continue
        config_files.append(path)
        try:
            cfg = parse(decode(read_regular_file(found.real)), path,
                        xen_version=planner.xen_version)
        except XlConfigError as err:
            planner.problems.extend(
                f"guest config {shown}:{line}: {msg} ("
                + ("" if line in err.newer_syntax_lines else "xl would refuse this file too: ")
                + "fix it or remove it from the deploy directory)" for line, msg in err.errors)
            planner.problems.count(err.more)
            continue
        except OSError as err:
            planner.problems.append(f"guest config {shown}: cannot be read: "
                                    f"{err.strerror or err}: check the file")
            continue
        sources.append(GuestSource(path, os.path.basename(path), cfg, False, path))
    return sources, config_files


def _guest_name(planner: _Planner, src: GuestSource) -> str | None:
    name_value = src.config.get("name")
    if name_value is None:
        planner.problems.append(f"{planner.guest_label(None, src)}: the config has no name: "
                                "add name = \"<domain name>\" (xl requires it)")
    elif not isinstance(name_value, str):
        planner.problems.append(f"{planner.guest_label(None, src, 'name')}: name must be a "
                                "string, not a list: write name = \"<domain name>\"")
    else:
        err = domain_name_error(name_value)
        if not err:
            return name_value
        planner.problems.append(f"{planner.guest_label(name_value, src, 'name')}: {err}")
    return None


def _plan_files(planner: _Planner, src: GuestSource, name: str | None,
                copies: list[FileCopy], updates: dict[str, Value]) -> None:
    """The single-file keys (kernel, ramdisk, device_tree)."""
    for key in FILE_KEYS:
        value = src.config.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            planner.problems.append(f"{planner.guest_label(name, src, key)}: {key} must be a "
                                    "single quoted path, not a list")
            continue
        copy = planner.plan_copy(src, name, key, None, value, f"{src.labels.get(key, key)} file")
        if copy:
            copies.append(copy)
            updates[key] = planner.reference(copy.destination)


def _plan_disk(planner: _Planner, src: GuestSource, name: str | None, index: int, item: Value,
               copies: list[FileCopy]) -> Value | None:
    """The rewritten disk entry ``index``, or None when it stays as written."""
    label = planner.guest_label(name, src, "disk", index)
    if not isinstance(item, str):
        planner.problems.append(f"{label}: disk entry {index + 1} is a list, not a disk spec string")
        return None
    try:
        spec = parse_disk(item, xen_version=planner.xen_version)
    except DiskSpecError as err:
        planner.problems.append(f"{label}: disk entry {index + 1}: {err} (see "
                                "xl-disk-configuration(5))")
        return None
    target = spec.target
    if not target or spec.script is not None or target.startswith("/dev/"):
        return None   # empty cdrom, script-handled or a device
    what = f"{src.labels.get('disk', 'disk')} file" if src.generated else f"disk {index + 1} target"
    writable = "w" in spec.access and not spec.is_cdrom
    copy = planner.plan_copy(src, name, "disk", index, target, what, writable)
    if copy is None:
        return None
    copies.append(copy)
    try:
        return spec.with_target(planner.reference(copy.destination)).render()
    except DiskSpecError as err:
        planner.problems.append(f"{label}: cannot rewrite disk entry {index + 1}: {err}")
        return None


def _plan_disks(planner: _Planner, src: GuestSource, name: str | None,
                copies: list[FileCopy], updates: dict[str, Value]) -> None:
    disks = src.config.get("disk")
    if disks is None:
        return
    if not isinstance(disks, list):
        planner.problems.append(f"{planner.guest_label(name, src, 'disk')}: disk must be a "
                                "list of disk specs, e.g. disk = [ 'file:x.img,xvda,rw' ]")
        return
    new_disks: list[Value] = []
    changed = False
    for index, item in enumerate(disks):
        new = _plan_disk(planner, src, name, index, item, copies)
        changed = changed or new is not None
        new_disks.append(item if new is None else new)
    if changed:
        updates["disk"] = new_disks


#: What xl boots a PV or PVH guest from; one of them must be set (xl_parse.c).
BOOT_SOURCE_KEYS = ("kernel", "firmware", "bootloader")


def _check_boot_source(planner: _Planner, src: GuestSource, name: str | None) -> None:
    """An HVM guest boots its firmware; any other guest needs a kernel, firmware or bootloader."""
    kind = src.config.get("type")
    if kind is None and src.config.get("builder") == "hvm":   # the pre-4.10 spelling
        kind = "hvm"
    if kind == "hvm" or any(src.config.get(key) not in (None, "") for key in BOOT_SOURCE_KEYS):
        return
    what = f"type = \"{kind}\"" if isinstance(kind, str) else "no type (PV on x86, PVH on Arm)"
    planner.problems.append(
        f"{planner.guest_label(name, src, 'type' if kind is not None else None)}: a guest with {what} "
        "boots the kernel xl gives it, and the config names no kernel, firmware nor bootloader (xl "
        "would stop with 'Neither kernel nor bootloader specified'): add kernel = \"<file in the "
        "deploy directory>\", or type = \"hvm\" for an x86 guest that boots from its disk")


def _plan_guest(planner: _Planner, src: GuestSource) -> PlannedGuest | None:
    problems_before = len(planner.problems)
    name = _guest_name(planner, src)
    copies: list[FileCopy] = []
    updates: dict[str, Value] = {}
    _plan_files(planner, src, name, copies, updates)
    _plan_disks(planner, src, name, copies, updates)
    _check_boot_source(planner, src, name)
    # Two references in one guest to different files with the same name.
    by_dest: dict[str, FileCopy] = {}
    for copy in copies:
        other = by_dest.setdefault(copy.destination, copy)
        if other.source != copy.source:
            planner.problems.append(
                f"{planner.guest_label(name, src)}: {other.where} '{snippet(other.reference)}' "
                f"and {copy.where} '{snippet(copy.reference)}' are different files with the same "
                f"name, both would become {snippet(copy.destination)}: rename one of them")
    if len(planner.problems) != problems_before or name is None:
        return None
    src.config.update(updates)
    unique = list({c.destination: c for c in copies}.values())
    return PlannedGuest(name=name, config_name=src.config_name, origin=src.origin,
                        text=src.config.render(), copies=unique, autostart=src.autostart,
                        source_config=src.source_config, config_dir=planner.config_dir,
                        entry=src.entry, rootfs_file=_installed_name(copies, src.rootfs_ref),
                        kernel_file=_installed_name(copies, src.kernel_ref))


def _installed_name(copies: list[FileCopy], reference: str | None) -> str | None:
    """The installed file name of the copy of ``reference`` (an entry's rootfs or kernel)."""
    for copy in copies:
        if reference is not None and copy.reference == reference:
            return posixpath.basename(copy.destination)
    return None


# --------------------------------------------------------------- the rootfs side

def _open_regular(path: str) -> int | None:
    """A read descriptor of ``path`` if it is a regular file (never a link, never waiting)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _same_content(path: str, expected: Callable[[int], bytes], size: int) -> bool:
    """True when regular file ``path`` holds ``size`` bytes equal to ``expected(chunk)``."""
    fd = _open_regular(path)
    if fd is None:
        return False
    try:
        if os.fstat(fd).st_size != size:
            return False
        offset = 0
        while offset < size:
            chunk = os.pread(fd, 1 << 20, offset)
            if not chunk or chunk != expected(offset):
                return False
            offset += len(chunk)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _same_file(path: str, source: str) -> bool:
    """True when ``path`` holds the same bytes as regular file ``source``."""
    fd = _open_regular(source)
    if fd is None:
        return False
    try:
        size = os.fstat(fd).st_size
        return _same_content(path, lambda offset: os.pread(fd, 1 << 20, offset), size)
    finally:
        os.close(fd)


def _same_text(path: str, text: str) -> bool:
    data = text.encode("utf-8", "surrogateescape")
    return _same_content(path, lambda offset: data[offset:offset + (1 << 20)], len(data))


def _same_link(path: str, target: str) -> bool:
    return os.path.islink(path) and os.readlink(path) == target


def _check_rootfs_path(planner: _Planner, path: str, allowed_dir: str, what: str,
                       label: str, installed_by_us: Callable[[str], bool]) -> None:
    """Check that ``path`` (inside the host) can be created as it is, in ``allowed_dir``.

    ``installed_by_us(host_path)`` tells whether an existing file is what this
    bundle would install (then an earlier bundling run put it there).
    """
    shown = snippet(path)
    host = os.path.join(planner.rootfs, path.lstrip("/"))
    too_long = length_problem(planner.rootfs, path, planner.limits)
    if too_long:
        planner.problems.append(f"{label}: {what} {shown} cannot be created in the rootfs: "
                                f"{too_long}")
        return
    try:
        resolved = resolve_in_root(planner.rootfs, path)
    except ValueError as err:
        planner.problems.append(f"{label}: {what} {shown} cannot be written safely in the "
                                f"rootfs: {err}; fix the symlink in the rootfs")
        return
    # Strict on purpose: a symlink that redirects the directory (even to another
    # place inside the rootfs) would put guests where nobody looks for them.
    if not is_within(resolved, allowed_dir):
        planner.problems.append(
            f"{label}: {what} {shown} would land at {snippet(resolved)} in the rootfs, outside "
            f"{allowed_dir} (a symlink in the rootfs redirects it): make {allowed_dir} a real "
            "directory in the rootfs, or bundle into the directory it points to")
    elif resolved != path:
        planner.problems.append(
            f"{label}: {what} {shown} is reached through a symlink in the rootfs (it leads to "
            f"{snippet(resolved)}): the bundler writes through no link it did not make; make "
            f"{allowed_dir} a real directory and remove the link")
    elif os.path.lexists(host):
        if installed_by_us(host):
            planner.problems.append(
                f"{label}: {what} {shown} is already in the rootfs with the content this run "
                "would install: an earlier bundling run installed it (did the bundling run "
                "twice on this rootfs?); start from a fresh IMAGE_ROOTFS (do_rootfs does) and "
                "bundle once")
        else:
            planner.problems.append(
                f"{label}: {what} {shown} already exists in the rootfs: a package, another "
                "guest or an earlier bundling run with other inputs put it there; rename the "
                "guest file or remove the other one (bundling needs a fresh IMAGE_ROOTFS)")


def _check_rootfs(planner: _Planner, guests: list[PlannedGuest],
                  destinations: dict[str, tuple[FileCopy, PlannedGuest]]) -> None:
    for dest, (copy, guest) in destinations.items():
        _check_rootfs_path(planner, dest, planner.images_dir, "destination", _label(guest),
                           functools.partial(_same_file, source=copy.source))
    for guest in guests:
        _check_rootfs_path(planner, guest.config_path, planner.config_dir, "config",
                           _label(guest), functools.partial(_same_text, text=guest.text))
        link = guest.autostart_link
        if link:
            _check_rootfs_path(planner, link, planner.config_dir, "autostart link", _label(guest),
                               functools.partial(_same_link,
                                                 target=posixpath.join("..", guest.config_name)))


def _label(guest: PlannedGuest) -> str:
    return f"guest '{guest.name}' ({guest.origin})"


def _check_dir_argument(planner: _Planner, value: str, argument: str) -> bool:
    parts = value.split("/")
    if not value.startswith("/") or ".." in parts:
        planner.problems.append(
            f"{argument} '{snippet(value)}' must be an absolute path without '..' inside the "
            "rootfs (e.g. /var/lib/xen/images)")
        return False
    return True


@dataclass
class _Claims:
    """What the guests planned so far use: names, configs, destinations, written disks."""

    names: dict[str, str] = field(default_factory=dict)
    config_names: dict[str, str] = field(default_factory=dict)
    destinations: dict[str, tuple[FileCopy, PlannedGuest]] = field(default_factory=dict)
    written_disks: dict[str, tuple[FileCopy, PlannedGuest]] = field(default_factory=dict)


def _claim_files(planner: _Planner, claims: _Claims, guest: PlannedGuest, label: str) -> None:
    for copy in guest.copies:
        prev = claims.destinations.setdefault(copy.destination, (copy, guest))
        # Two bundle packages may both carry the shared kernel: same bytes, one copy.
        if prev[0].source != copy.source and not _same_file(prev[0].source, copy.source):
            planner.problems.append(
                f"{label}: {copy.where} '{snippet(copy.reference)}' ({copy.source}) and guest "
                f"'{prev[1].name}' ({prev[1].origin}) {prev[0].where} "
                f"'{snippet(prev[0].reference)}' ({prev[0].source}) would both be installed "
                f"as {snippet(copy.destination)}: rename one of the files")
        if not copy.writable:
            continue
        other = claims.written_disks.setdefault(copy.source, (copy, guest))
        if other[1] is not guest:
            planner.problems.append(
                f"{label}: its disk '{snippet(copy.reference)}' ({copy.source}) is also a "
                f"writable disk of guest '{other[1].name}' ({other[1].origin}): the same guest "
                "image is bundled twice (two guests writing one disk corrupt it); bundle it "
                "through one of these only, or make the disks read-only")


def _plan_guests(planner: _Planner, sources: list[GuestSource]) -> tuple[
        list[PlannedGuest], dict[str, tuple[FileCopy, PlannedGuest]]]:
    """Plan every guest; two guests may share neither a name, a config nor a destination."""
    guests: list[PlannedGuest] = []
    claims = _Claims()
    for src in sources:
        guest = _plan_guest(planner, src)
        if guest is None:
            continue
        label = _label(guest)
        if guest.name in claims.names:
            planner.problems.append(
                f"{label}: domain name '{guest.name}' is also used by "
                f"{claims.names[guest.name]}: xl cannot run two domains with one name; bundle "
                "the guest once, or give one of them another name")
        claims.names.setdefault(guest.name, label)
        if guest.config_name in claims.config_names:
            planner.problems.append(
                f"{label}: config {guest.config_path} would also be written by "
                f"{claims.config_names[guest.config_name]}: remove one of them")
        claims.config_names.setdefault(guest.config_name, label)
        _claim_files(planner, claims, guest, label)
        guests.append(guest)
    return guests, claims.destinations


def _mark_autostart(planner: _Planner, guests: list[PlannedGuest], sources: list[GuestSource],
                    autostart: Iterable[str]) -> None:
    wanted = list(dict.fromkeys(autostart))
    known = {g.name for g in guests}
    named = {n for n in (src.config.get("name") for src in sources) if isinstance(n, str)}
    for name in wanted:
        if name not in known and name not in named:
            planner.problems.append(
                f"autostart names guest '{snippet(name)}', which is not bundled (bundled: "
                f"{', '.join(sorted(known)) or 'none'}): fix the autostart list")
    for guest in guests:
        guest.autostart = guest.autostart or guest.name in wanted


@dataclass(frozen=True)
class _Request:
    """Everything one planning run reads (the arguments of :func:`plan_bundle`)."""

    bundled_guests: str = ""
    config_glob: str | None = "xen-guest-bundle*.cfg"     # None: no deploy-dir configs
    settings: SettingsFactory | None = None
    autostart: tuple[str, ...] = ()
    recipe_guests: RecipeGuests | None = None
    bundles_dir: str | None = None
    xen_version: XenVersion = DEFAULT_XEN_VERSION


def _plan(rootfs: str, deploy_dir: str, request: _Request, images_dir: str, config_dir: str,
          reference_dir: str | None = None) -> BundlePlan:
    if not os.path.isdir(deploy_dir):
        raise BundleError([(f"deploy directory {printable(deploy_dir)} does not exist: build "
                            "the guest images first or fix DEPLOY_DIR_IMAGE")])
    if not os.path.isdir(rootfs):
        raise BundleError([f"rootfs {printable(rootfs)} does not exist or is not a directory"])
    planner = _Planner(os.path.abspath(rootfs), os.path.abspath(deploy_dir),
                       posixpath.normpath(images_dir), posixpath.normpath(config_dir),
                       reference_dir, xen_version=request.xen_version)
    dirs_ok = _check_dir_argument(planner, images_dir, "images_dir")
    dirs_ok = _check_dir_argument(planner, config_dir, "config_dir") and dirs_ok

    sources = _load_entries(planner, request.bundled_guests, request.settings)
    if request.recipe_guests is not None:
        sources += load_recipe_guests(request.recipe_guests, planner.deploy_dir, planner.problems,
                                      xen_version=planner.xen_version)
    config_files: list[str] = []
    if request.config_glob is not None:
        file_sources, config_files = _load_config_files(planner, request.config_glob)
        sources += file_sources
    staged = None
    if request.bundles_dir is not None:
        staged = load_installed_bundles(planner.rootfs, request.bundles_dir, planner.problems,
                                        xen_version=planner.xen_version)
        sources += staged.sources
    guests, destinations = _plan_guests(planner, sources)
    _mark_autostart(planner, guests, sources, request.autostart)
    if dirs_ok:
        _check_rootfs(planner, guests, destinations)
    if planner.problems:
        raise planner.problems.error()
    return BundlePlan(rootfs=planner.rootfs, deploy_dir=planner.deploy_dir,
                      images_dir=planner.images_dir, config_dir=planner.config_dir,
                      guests=guests, config_files=config_files,
                      staging_dir=staged.staging_dir if staged else None)


def plan_bundle(rootfs: str, deploy_dir: str, bundled_guests: str = "", *,
                config_glob: str = "xen-guest-bundle*.cfg",
                settings: SettingsFactory | None = None,
                autostart: Iterable[str] = (),
                images_dir: str = "/var/lib/xen/images",
                config_dir: str = "/etc/xen",
                xen_version: XenVersionLike = DEFAULT_XEN_VERSION,
                recipe_guests: RecipeGuests | None = None,
                bundles_dir: str | None = None) -> BundlePlan:
    """Validate and plan bundling guests from ``deploy_dir`` into ``rootfs``.

    ``bundled_guests`` is the value of ``XEN_BUNDLED_GUESTS``; ``settings(domain)``
    gives the :class:`GuestSettings` of its entries (defaults otherwise); every file
    in ``deploy_dir`` matching ``config_glob`` is bundled as well (sorted by name);
    ``autostart`` lists domain names to link into ``<config_dir>/auto/``;
    ``xen_version`` is the Xen of the host's xl, whose grammar every config is
    checked with (:mod:`xenbundle.xenversion`).
    ``recipe_guests`` adds the guests of ``BUNDLED_XEN_GUESTS`` entries
    (:class:`~xenbundle.recipeguests.RecipeGuests`); ``bundles_dir`` (e.g.
    ``/usr/share/xen-guest-bundles``) merges the bundle packages installed there in
    the rootfs (:mod:`xenbundle.bundles`), whose staging folder the install removes.
    Nothing is written anywhere.  Raises :class:`BundleError` listing the first
    problems (:data:`~xenbundle.errors.MAX_PROBLEMS`) and counting the others.
    """
    request = _Request(bundled_guests, config_glob, settings, tuple(autostart), recipe_guests,
                       bundles_dir, as_xen_version(xen_version))
    return _plan(rootfs, deploy_dir, request, images_dir, config_dir)


def describe(plan: BundlePlan) -> list[str]:
    """Human-readable lines describing a plan (for logs)."""
    out: list[str] = []
    for g in plan.guests:
        out.append(f"guest '{g.name}' from {g.origin} -> {g.config_path}"
                   + (" (autostart)" if g.autostart else ""))
        for c in g.copies:
            out.append(f"  {c.where}: {c.reference} -> {c.destination} "
                       f"({c.apparent_bytes} bytes, {c.allocated_bytes} allocated)")
    return out
