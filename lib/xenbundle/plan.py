"""Planning a guest bundle: what is copied where, and the rewritten configs.

:func:`plan_bundle` reads the deploy directory (never writes it) and the host rootfs
(never writes it either), validates everything and returns a :class:`BundlePlan`.
All problems are collected and raised together as one :class:`BundleError`.

Guests come from three places, all handled the same way once they are configs:

1. ``XEN_BUNDLED_GUESTS`` entries: a config is generated in memory and named
   ``xen-guest-bundle-<domain>.cfg``;
2. ``xen-guest-bundle*.cfg`` files in the deploy directory (third-party configs);
3. configs deployed by guest images built with ``XEN_GUEST_AUTO_BUNDLE`` (these are
   also ``xen-guest-bundle*.cfg`` files in the deploy directory).

For each config the kernel, ramdisk, device tree and every file-backed disk target
are resolved relative to the deploy directory, copied to ``<images_dir>/<file
name as referenced>`` and the config is rewritten to those paths with
:meth:`XlConfig.set`, keeping everything else as written.
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
from .rootfs import length_problem, name_limits, resolve_in_root
from .xenversion import DEFAULT_XEN_VERSION, XenVersion, XenVersionLike, as_xen_version
from .xlcfg import Value, XlConfig, XlConfigError, decode, parse

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
    """

    reference: str
    source: str
    destination: str
    where: str
    apparent_bytes: int
    allocated_bytes: int


@dataclass
class PlannedGuest:
    """A guest of the plan: its config (rewritten) and the files it needs."""

    name: str
    config_name: str
    origin: str
    text: str
    copies: list[FileCopy]
    autostart: bool = False
    source_config: str | None = None
    config_dir: str = "/etc/xen"

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
    """The validated plan: guests, their files, and where they go in the rootfs."""

    rootfs: str
    deploy_dir: str
    images_dir: str
    config_dir: str
    guests: list[PlannedGuest] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)

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

@dataclass
class _Source:
    """A guest config before its files are resolved."""

    origin: str                      # "XEN_BUNDLED_GUESTS entry 1 '...'" or the cfg path
    config_name: str
    config: XlConfig
    generated: bool
    source_config: str | None
    labels: dict[str, str] = field(default_factory=dict)   # key -> word used in messages


class _Planner:
    def __init__(self, rootfs: str, deploy_dir: str, images_dir: str, config_dir: str, *,
                 xen_version: XenVersion = DEFAULT_XEN_VERSION):
        self.xen_version = xen_version
        self.rootfs = rootfs
        self.deploy_dir = deploy_dir
        self.shown_deploy_dir = printable(deploy_dir)
        self.deploy_real = os.path.realpath(deploy_dir)
        self.images_dir = images_dir
        self.config_dir = config_dir
        self.problems = ProblemList()
        self.limits = name_limits(rootfs)

    def where(self, src: _Source, key: str | None = None, index: int | None = None) -> str:
        if src.generated or key is None or key not in src.config:
            return src.origin
        return f"{src.origin}:{src.config.line_of(key, index)}"

    def guest_label(self, name: str | None, src: _Source, key: str | None = None,
                    index: int | None = None) -> str:
        who = f"guest '{snippet(name)}'" if name else "guest"
        return f"{who} ({self.where(src, key, index)})"

    # --- files in the deploy directory
    def resolve_source(self, ref: str, label: str, what: str) -> str | None:
        shown, deploy = snippet(ref), self.shown_deploy_dir
        if "\0" in ref:
            self.problems.append(f"{label}: {what} '{shown}' contains a NUL character: "
                                 "correct the name")
            return None
        path = ref if os.path.isabs(ref) else os.path.join(self.deploy_dir, ref)
        if os.path.isabs(ref) and not is_within(os.path.normpath(ref), self.deploy_dir) \
                and not is_within(os.path.realpath(ref), self.deploy_real):
            self.problems.append(
                f"{label}: {what} '{shown}' is outside the deploy directory {deploy}: "
                "only files in the deploy directory are bundled; refer to it by its name "
                "there (or use a /dev/ device path for a disk)")
            return None
        found = inspect(path, self.deploy_real)
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

    def plan_copy(self, src: _Source, name: str | None, key: str, index: int | None,
                  ref: str, what: str) -> FileCopy | None:
        label = self.guest_label(name, src, key, index)
        real = self.resolve_source(ref, label, what)
        dest = self.destination(ref, label, what)
        if real is None or dest is None:
            return None
        st = os.stat(real)
        where = key if index is None else f"{key}[{index}]"
        return FileCopy(ref, real, dest, where, st.st_size, st.st_blocks * 512)


def _load_entries(planner: _Planner, bundled_guests: str,
                  settings: SettingsFactory | None) -> list[_Source]:
    """The generated configs of the ``XEN_BUNDLED_GUESTS`` entries."""
    sources: list[_Source] = []
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
        sources.append(_Source(entry.origin, bundle_config_name(guest_settings.name),
                               parse(text, entry.origin, xen_version=planner.xen_version), True,
                               None,
                               {"disk": "rootfs", "kernel": "kernel", "ramdisk": "ramdisk"}))
    return sources


_CONFIG_FIXES = {
    "dangling": "remove the link, or rebuild the guest image it belongs to",
    "outside": "put the config itself in the deploy directory",
}


def _load_config_files(planner: _Planner, config_glob: str) -> tuple[list[_Source], list[str]]:
    """The deploy-dir configs matching ``config_glob``, read without following links out."""
    sources: list[_Source] = []
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
        sources.append(_Source(path, os.path.basename(path), cfg, False, path))
    return sources, config_files


def _guest_name(planner: _Planner, src: _Source) -> str | None:
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


def _plan_files(planner: _Planner, src: _Source, name: str | None,
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
            updates[key] = copy.destination


def _plan_disk(planner: _Planner, src: _Source, name: str | None, index: int, item: Value,
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
    copy = planner.plan_copy(src, name, "disk", index, target, what)
    if copy is None:
        return None
    copies.append(copy)
    try:
        return spec.with_target(copy.destination).render()
    except DiskSpecError as err:
        planner.problems.append(f"{label}: cannot rewrite disk entry {index + 1}: {err}")
        return None


def _plan_disks(planner: _Planner, src: _Source, name: str | None,
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


def _check_boot_source(planner: _Planner, src: _Source, name: str | None) -> None:
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


def _plan_guest(planner: _Planner, src: _Source) -> PlannedGuest | None:
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
                        text=src.config.render(), copies=unique, source_config=src.source_config,
                        config_dir=planner.config_dir)


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


def _plan_guests(planner: _Planner, sources: list[_Source]) -> tuple[
        list[PlannedGuest], dict[str, tuple[FileCopy, PlannedGuest]]]:
    """Plan every guest; two guests may share neither a name, a config nor a destination."""
    guests: list[PlannedGuest] = []
    names: dict[str, str] = {}
    config_names: dict[str, str] = {}
    destinations: dict[str, tuple[FileCopy, PlannedGuest]] = {}
    for src in sources:
        guest = _plan_guest(planner, src)
        if guest is None:
            continue
        label = _label(guest)
        if guest.name in names:
            planner.problems.append(
                f"{label}: domain name '{guest.name}' is also used by {names[guest.name]}: "
                "xl cannot run two domains with one name; give one of them another name")
        names.setdefault(guest.name, label)
        if guest.config_name in config_names:
            planner.problems.append(
                f"{label}: config {guest.config_path} would also be written by "
                f"{config_names[guest.config_name]}: remove one of them")
        config_names.setdefault(guest.config_name, label)
        for copy in guest.copies:
            prev = destinations.setdefault(copy.destination, (copy, guest))
            if prev[0].source != copy.source:
                planner.problems.append(
                    f"{label}: {copy.where} '{snippet(copy.reference)}' ({copy.source}) and guest "
                    f"'{prev[1].name}' ({prev[1].origin}) {prev[0].where} "
                    f"'{snippet(prev[0].reference)}' ({prev[0].source}) would both be installed "
                    f"as {snippet(copy.destination)}: rename one of the files")
        guests.append(guest)
    return guests, destinations


def _mark_autostart(planner: _Planner, guests: list[PlannedGuest], sources: list[_Source],
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
        guest.autostart = guest.name in wanted


def plan_bundle(rootfs: str, deploy_dir: str, bundled_guests: str = "", *,
                config_glob: str = "xen-guest-bundle*.cfg",
                settings: SettingsFactory | None = None,
                autostart: Iterable[str] = (),
                images_dir: str = "/var/lib/xen/images",
                config_dir: str = "/etc/xen",
                xen_version: XenVersionLike = DEFAULT_XEN_VERSION) -> BundlePlan:
    """Validate and plan bundling guests from ``deploy_dir`` into ``rootfs``.

    ``bundled_guests`` is the value of ``XEN_BUNDLED_GUESTS``; ``settings(domain)``
    gives the :class:`GuestSettings` of its entries (defaults otherwise); every file
    in ``deploy_dir`` matching ``config_glob`` is bundled as well (sorted by name);
    ``autostart`` lists domain names to link into ``<config_dir>/auto/``;
    ``xen_version`` is the Xen of the host's xl, whose grammar the configs are
    checked with (:mod:`xenbundle.xenversion`).  Nothing is written anywhere.
    Raises :class:`BundleError` listing the first problems
    (:data:`~xenbundle.errors.MAX_PROBLEMS`) and counting the others.
    """
    if not os.path.isdir(deploy_dir):
        raise BundleError([(f"deploy directory {printable(deploy_dir)} does not exist: build "
                            "the guest images first or fix DEPLOY_DIR_IMAGE")])
    if not os.path.isdir(rootfs):
        raise BundleError([f"rootfs {printable(rootfs)} does not exist or is not a directory"])
    planner = _Planner(os.path.abspath(rootfs), os.path.abspath(deploy_dir),
                       posixpath.normpath(images_dir), posixpath.normpath(config_dir),
                       xen_version=as_xen_version(xen_version))
    dirs_ok = _check_dir_argument(planner, images_dir, "images_dir")
    dirs_ok = _check_dir_argument(planner, config_dir, "config_dir") and dirs_ok

    sources = _load_entries(planner, bundled_guests, settings)
    file_sources, config_files = _load_config_files(planner, config_glob)
    sources += file_sources
    guests, destinations = _plan_guests(planner, sources)
    _mark_autostart(planner, guests, sources, autostart)
    if dirs_ok:
        _check_rootfs(planner, guests, destinations)
    if planner.problems:
        raise planner.problems.error()
    return BundlePlan(rootfs=planner.rootfs, deploy_dir=planner.deploy_dir,
                      images_dir=planner.images_dir, config_dir=planner.config_dir,
                      guests=guests, config_files=config_files)


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
