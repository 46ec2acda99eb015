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

import glob
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Callable

from .disk import DiskSpecError, parse_disk
from .errors import BundleError
from .guests import (
    GuestSettings,
    _parse_bundled_guests,
    bundle_config_name,
    domain_name_error,
    domain_name_from_rootfs,
    generate_config,
)
from .xlcfg import XlConfig, XlConfigError, parse, read_text

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


# --------------------------------------------------------------- chroot resolution

class _OutsideRoot(Exception):
    pass


def resolve_in_root(root: str, path: str, max_links: int = 40) -> str:
    """Resolve absolute ``path`` inside ``root`` the way a chroot would.

    Symlinks found in ``root`` are followed with absolute targets taken relative to
    ``root``; a relative target that climbs above the root, or a symlink loop,
    raises ``ValueError``.  Components that do not exist are kept as they are.
    Returns the resolved absolute path (inside the root).
    """
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not an absolute path")
    resolved: list[str] = []
    pending = [c for c in path.split("/")]
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise ValueError(f"{path!r} climbs above the root")
            resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        if os.path.islink(host):
            links += 1
            if links > max_links:
                raise ValueError(f"too many symlinks resolving {path!r} (a loop?)")
            target = os.readlink(host)
            if target.startswith("/"):
                resolved = []
            elif _climbs_above(resolved, target):
                raise ValueError(f"symlink /{'/'.join(resolved + [part])} -> {target} "
                                 "points outside the rootfs")
            pending = [c for c in target.split("/")] + pending
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


def _climbs_above(base: list[str], relative: str) -> bool:
    depth = len(base)
    for part in relative.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _is_within(path: str, directory: str) -> bool:
    path = path.rstrip("/") or "/"
    directory = directory.rstrip("/") or "/"
    return path == directory or path.startswith(directory.rstrip("/") + "/")


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
    def __init__(self, rootfs: str, deploy_dir: str, images_dir: str, config_dir: str):
        self.rootfs = rootfs
        self.deploy_dir = deploy_dir
        self.deploy_real = os.path.realpath(deploy_dir)
        self.images_dir = images_dir
        self.config_dir = config_dir
        self.problems: list[str] = []

    def where(self, src: _Source, key: str | None = None, index: int | None = None) -> str:
        if src.generated or key is None or key not in src.config:
            return src.origin
        return f"{src.origin}:{src.config.line_of(key, index)}"

    def guest_label(self, name: str | None, src: _Source, key: str | None = None,
                    index: int | None = None) -> str:
        who = f"guest '{name}'" if name else "guest"
        return f"{who} ({self.where(src, key, index)})"

    # --- files in the deploy directory
    def resolve_source(self, ref: str, label: str, what: str) -> str | None:
        path = ref if os.path.isabs(ref) else os.path.join(self.deploy_dir, ref)
        if os.path.isabs(ref) and not _is_within(os.path.normpath(ref), self.deploy_dir.rstrip("/")) \
                and not _is_within(os.path.realpath(ref), self.deploy_real):
            self.problems.append(
                f"{label}: {what} '{ref}' is outside the deploy directory {self.deploy_dir}: "
                "only files in the deploy directory are bundled; refer to it by its name "
                "there (or use a /dev/ device path for a disk)")
            return None
        if not os.path.lexists(path):
            self.problems.append(
                f"{label}: {what} '{ref}' not found in the deploy directory {self.deploy_dir}: "
                "build it first (the host image must depend on it) or correct the name")
            return None
        if not os.path.exists(path):
            self.problems.append(
                f"{label}: {what} '{ref}' is a dangling symlink in {self.deploy_dir} "
                f"(-> {os.readlink(path)}): rebuild the image it belongs to or correct the name")
            return None
        real = os.path.realpath(path)
        if not _is_within(real, self.deploy_real):
            self.problems.append(
                f"{label}: {what} '{ref}' resolves to {real}, outside the deploy directory "
                f"{self.deploy_dir}: copy the file into the deploy directory or fix the symlink")
            return None
        if not os.path.isfile(real):
            self.problems.append(
                f"{label}: {what} '{ref}' is not a regular file ({real}): name the image file")
            return None
        return real

    def destination(self, ref: str, label: str, what: str) -> str | None:
        base = posixpath.basename(ref.rstrip("/"))
        if base in ("", ".", ".."):
            self.problems.append(f"{label}: {what} '{ref}' has no usable file name: name a file")
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


def _load_configs(planner: _Planner, bundled_guests: str, config_glob: str,
                  settings: SettingsFactory | None) -> tuple[list[_Source], list[str]]:
    sources: list[_Source] = []
    entries, problems = _parse_bundled_guests(bundled_guests)
    planner.problems.extend(problems)
    for entry in entries:
        default_name = domain_name_from_rootfs(entry.rootfs)
        try:
            guest_settings = settings(default_name) if settings else GuestSettings(name=default_name)
        except BundleError as err:   # already a complete message (e.g. from the bbclass)
            planner.problems.extend(f"{p} ({entry.origin})" for p in err.problems)
            continue
        except Exception as err:  # a user callable: report, do not crash the plan
            planner.problems.append(f"guest '{default_name}' ({entry.origin}): its settings "
                                    f"could not be read: {err}")
            continue
        bad = guest_settings.problems()
        if bad:
            planner.problems.extend(f"guest '{guest_settings.name}' ({entry.origin}): {p}"
                                    for p in bad)
            continue
        text = generate_config(guest_settings, entry.rootfs, entry.kernel)
        cfg = parse(text, entry.origin)
        sources.append(_Source(entry.origin, bundle_config_name(guest_settings.name), cfg, True,
                               None, {"disk": "rootfs", "kernel": "kernel",
                                      "ramdisk": "ramdisk"}))

    pattern = os.path.join(glob.escape(planner.deploy_dir), config_glob)
    config_files = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    for path in config_files:
        name = os.path.basename(path)
        real = os.path.realpath(path)
        if not _is_within(real, planner.deploy_real):
            planner.problems.append(
                f"{path}: config resolves to {real}, outside the deploy directory: "
                "put the config itself in the deploy directory")
            continue
        try:
            cfg = parse(read_text(path), path)
        except XlConfigError as err:
            planner.problems.extend(
                f"guest config {path}:{line}: {msg} (xl would refuse this file too: fix it "
                "or remove it from the deploy directory)" for line, msg in err.errors)
            continue
        except (OSError, UnicodeError) as err:
            planner.problems.append(f"guest config {path}: cannot be read: {err}")
            continue
        sources.append(_Source(path, name, cfg, False, path))
    return sources, config_files


def _plan_guest(planner: _Planner, src: _Source) -> PlannedGuest | None:
    cfg = src.config
    problems_before = len(planner.problems)
    name_value = cfg.get("name")
    name: str | None = None
    if name_value is None:
        planner.problems.append(f"{planner.guest_label(None, src)}: the config has no name: "
                                "add name = \"<domain name>\" (xl requires it)")
    elif not isinstance(name_value, str):
        planner.problems.append(f"{planner.guest_label(None, src, 'name')}: name must be a "
                                "string, not a list: write name = \"<domain name>\"")
    else:
        err = domain_name_error(name_value)
        if err:
            planner.problems.append(f"{planner.guest_label(name_value, src, 'name')}: {err}")
        else:
            name = name_value

    copies: list[FileCopy] = []
    updates: dict[str, str | list[object]] = {}
    for key in FILE_KEYS:
        value = cfg.get(key)
        if value is None:
            continue
        what = f"{src.labels.get(key, key)} file"
        if not isinstance(value, str):
            planner.problems.append(f"{planner.guest_label(name, src, key)}: {key} must be a "
                                    "single quoted path, not a list")
            continue
        if value == "":
            continue
        copy = planner.plan_copy(src, name, key, None, value, what)
        if copy:
            copies.append(copy)
            updates[key] = copy.destination

    disks = cfg.get("disk")
    if disks is not None:
        if not isinstance(disks, list):
            planner.problems.append(f"{planner.guest_label(name, src, 'disk')}: disk must be a "
                                    "list of disk specs, e.g. disk = [ 'file:x.img,xvda,rw' ]")
        else:
            new_disks: list[object] = []
            changed = False
            for index, item in enumerate(disks):
                label = planner.guest_label(name, src, "disk", index)
                if not isinstance(item, str):
                    planner.problems.append(f"{label}: disk entry {index + 1} is a list, "
                                            "not a disk spec string")
                    new_disks.append(item)
                    continue
                try:
                    spec = parse_disk(item)
                except DiskSpecError as err:
                    planner.problems.append(f"{label}: disk entry {index + 1}: {err} (see "
                                            "xl-disk-configuration(5))")
                    new_disks.append(item)
                    continue
                target = spec.target
                if not target or spec.script is not None or target.startswith("/dev/"):
                    new_disks.append(item)   # empty cdrom, script-handled or a device
                    continue
                what = f"{src.labels.get('disk', 'disk')} file" if src.generated else \
                    f"disk {index + 1} target"
                copy = planner.plan_copy(src, name, "disk", index, target, what)
                if copy is None:
                    new_disks.append(item)
                    continue
                copies.append(copy)
                try:
                    new_disks.append(spec.with_target(copy.destination).render())
                    changed = True
                except DiskSpecError as err:
                    planner.problems.append(f"{label}: cannot rewrite disk entry {index + 1}: {err}")
                    new_disks.append(item)
            if changed:
                updates["disk"] = new_disks

    # Two references in one guest to different files with the same name.
    by_dest: dict[str, FileCopy] = {}
    for copy in copies:
        other = by_dest.setdefault(copy.destination, copy)
        if other.source != copy.source:
            planner.problems.append(
                f"{planner.guest_label(name, src)}: {other.where} '{other.reference}' and "
                f"{copy.where} '{copy.reference}' are different files with the same name, "
                f"both would become {copy.destination}: rename one of them")

    if len(planner.problems) != problems_before or name is None:
        return None
    for key, value in updates.items():
        cfg.set(key, value)  # type: ignore[arg-type]
    unique = list({c.destination: c for c in copies}.values())
    return PlannedGuest(name=name, config_name=src.config_name, origin=src.origin,
                        text=cfg.render(), copies=unique, source_config=src.source_config,
                        config_dir=planner.config_dir)


def _check_rootfs_path(planner: _Planner, path: str, allowed_dir: str, what: str,
                       label: str) -> None:
    """Check that ``path`` (inside the host) resolves inside ``allowed_dir`` and is free."""
    try:
        resolved = resolve_in_root(planner.rootfs, path)
    except ValueError as err:
        planner.problems.append(f"{label}: {what} {path} cannot be written safely in the rootfs: "
                                f"{err}; fix the symlink in the rootfs")
        return
    # Strict on purpose: a symlink that redirects the directory (even to another
    # place inside the rootfs) would put guests where nobody looks for them.
    if not _is_within(resolved, allowed_dir):
        planner.problems.append(
            f"{label}: {what} {path} would land at {resolved} in the rootfs, outside "
            f"{allowed_dir} (a symlink in the rootfs redirects it): make {allowed_dir} a real "
            "directory in the rootfs, or bundle into the directory it points to")
        return
    if os.path.lexists(os.path.join(planner.rootfs, resolved.lstrip("/"))):
        planner.problems.append(
            f"{label}: {what} {path} already exists in the rootfs: another package or guest "
            "installs it; rename the guest file or remove the other one")


def _check_dir_argument(planner: _Planner, value: str, argument: str) -> bool:
    parts = value.split("/")
    if not value.startswith("/") or ".." in parts:
        planner.problems.append(
            f"{argument} '{value}' must be an absolute path without '..' inside the rootfs "
            "(e.g. /var/lib/xen/images)")
        return False
    return True


def plan_bundle(rootfs: str, deploy_dir: str, bundled_guests: str = "", *,
                config_glob: str = "xen-guest-bundle*.cfg",
                settings: SettingsFactory | None = None,
                autostart: Iterable[str] = (),
                images_dir: str = "/var/lib/xen/images",
                config_dir: str = "/etc/xen") -> BundlePlan:
    """Validate and plan bundling guests from ``deploy_dir`` into ``rootfs``.

    ``bundled_guests`` is the value of ``XEN_BUNDLED_GUESTS``; ``settings(domain)``
    gives the :class:`GuestSettings` of its entries (defaults otherwise); every file
    in ``deploy_dir`` matching ``config_glob`` is bundled as well (sorted by name);
    ``autostart`` lists domain names to link into ``<config_dir>/auto/``.  Nothing
    is written anywhere.  Raises :class:`BundleError` listing every problem.
    """
    planner = _Planner(os.path.abspath(rootfs), os.path.abspath(deploy_dir),
                       posixpath.normpath(images_dir), posixpath.normpath(config_dir))
    if not os.path.isdir(deploy_dir):
        raise BundleError([f"deploy directory {deploy_dir} does not exist: build the guest "
                           "images first or fix DEPLOY_DIR_IMAGE"])
    if not os.path.isdir(rootfs):
        raise BundleError([f"rootfs {rootfs} does not exist or is not a directory"])
    dirs_ok = _check_dir_argument(planner, images_dir, "images_dir")
    dirs_ok = _check_dir_argument(planner, config_dir, "config_dir") and dirs_ok

    sources, config_files = _load_configs(planner, bundled_guests, config_glob, settings)
    guests: list[PlannedGuest] = []
    named_in_sources = {n for n in (src.config.get("name") for src in sources) if isinstance(n, str)}
    names: dict[str, str] = {}
    config_names: dict[str, str] = {}
    destinations: dict[str, tuple[FileCopy, PlannedGuest]] = {}
    for src in sources:
        guest = _plan_guest(planner, src)
        if guest is None:
            continue
        label = f"guest '{guest.name}' ({src.origin})"
        if guest.name in names:
            planner.problems.append(
                f"{label}: domain name '{guest.name}' is also used by {names[guest.name]}: "
                "xl cannot run two domains with one name; give one of them another name")
        else:
            names[guest.name] = label
        if guest.config_name in config_names:
            planner.problems.append(
                f"{label}: config {guest.config_path} would also be written by "
                f"{config_names[guest.config_name]}: remove one of them")
        else:
            config_names[guest.config_name] = label
        for copy in guest.copies:
            prev = destinations.get(copy.destination)
            if prev is None:
                destinations[copy.destination] = (copy, guest)
            elif prev[0].source != copy.source:
                planner.problems.append(
                    f"{label}: {copy.where} '{copy.reference}' ({copy.source}) and guest "
                    f"'{prev[1].name}' ({prev[1].origin}) {prev[0].where} '{prev[0].reference}' "
                    f"({prev[0].source}) would both be installed as {copy.destination}: "
                    "rename one of the files")
        guests.append(guest)

    wanted = list(dict.fromkeys(autostart))
    known = {g.name for g in guests}
    for name in wanted:
        if name not in known and name not in named_in_sources:
            planner.problems.append(
                f"autostart names guest '{name}', which is not bundled (bundled: "
                f"{', '.join(sorted(known)) or 'none'}): fix the autostart list")
    for guest in guests:
        guest.autostart = guest.name in wanted

    if dirs_ok:
        for dest, (copy, guest) in destinations.items():
            _check_rootfs_path(planner, dest, planner.images_dir, "destination",
                               f"guest '{guest.name}' ({guest.origin})")
        for guest in guests:
            label = f"guest '{guest.name}' ({guest.origin})"
            _check_rootfs_path(planner, guest.config_path, planner.config_dir, "config", label)
            if guest.autostart_link:
                _check_rootfs_path(planner, guest.autostart_link, planner.config_dir,
                                   "autostart link", label)

    if planner.problems:
        raise BundleError(planner.problems)
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
