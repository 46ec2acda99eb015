"""Installed guest bundle packages: the staging tree in the rootfs, read and validated.

A bundle package installs its guests under ``/usr/share/xen-guest-bundles/<bundle>/``
(``${datadir}/xen-guest-bundles``), the layout of meta-virtualization's
``xen-guest-bundle.bbclass``, which meta-xen-ref's ``xen-ref-guest-bundle.bbclass``
writes too (:mod:`xenbundle.bundletree`)::

    manifest            one line per guest: GUEST:ROOTFS:KERNEL:FLAG
    images/<file>       the guests' disks and kernels
    configs/<GUEST>.cfg the xl configs, referring to /var/lib/xen/images/<file>
    checksums           (meta-xen-ref only) "<sha256>  <path>" of every other file

``FLAG`` is ``autostart`` or empty, ``KERNEL`` is empty for a guest without kernel.
The host's bundling reads every bundle (:func:`load_installed_bundles`), checks it
(a malformed manifest line, a missing or unused file, a config that does not parse,
a reference leaving the bundle, a symlink or special file anywhere in the tree, a
checksum that does not match: each an error naming the bundle, the file and the
line) and hands the guests to the plan like any other form; the install then
removes the staging tree from the image.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass, field

from .deploydir import read_regular_file
from .disk import DiskSpecError, parse_disk
from .errors import ProblemList, printable, snippet
from .rootfs import resolve_in_root
from .sources import GuestSource
from .xenversion import DEFAULT_XEN_VERSION, XenVersion
from .xlcfg import Value, XlConfig, XlConfigError, decode, parse

__all__ = [
    "BUNDLES_DIR",
    "CHECKSUMS",
    "CONFIGS",
    "IMAGES",
    "MANIFEST",
    "TARGET_IMAGES_DIR",
    "ManifestLine",
    "StagedBundles",
    "file_sha256",
    "format_manifest_line",
    "load_installed_bundles",
]

#: Where bundle packages put their guests (``${datadir}/xen-guest-bundles``).
BUNDLES_DIR = "/usr/share/xen-guest-bundles"
MANIFEST = "manifest"
CHECKSUMS = "checksums"
IMAGES = "images"
CONFIGS = "configs"
#: Where configs in a bundle refer to the bundle's images (their final place).
TARGET_IMAGES_DIR = "/var/lib/xen/images"
_FLAGS = ("", "autostart")
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9+._-]*\Z")
_FILE_RE = re.compile(r"\A[^/\0]+\Z")
_SUM_RE = re.compile(r"\A([0-9a-f]{64})  (\S.*)\Z")
_FILE_KEYS = ("kernel", "ramdisk", "device_tree")


def file_sha256(path: str) -> str:
    """The SHA-256 of a regular file, read without following a link."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ManifestLine:
    """One line of a bundle manifest; ``kernel`` is empty for a guest without kernel."""

    line: int
    guest: str
    rootfs: str
    kernel: str
    flag: str


def format_manifest_line(guest: str, rootfs: str, kernel: str | None, autostart: bool) -> str:
    """The manifest line of a guest (without the newline)."""
    return f"{guest}:{rootfs}:{kernel or ''}:{'autostart' if autostart else ''}"


@dataclass
class _Bundle:
    name: str
    path: str                      # in the build host's file system
    shown: str                     # in the rootfs (for messages)
    xen_version: XenVersion = DEFAULT_XEN_VERSION
    files: dict[str, int] = field(default_factory=dict)   # "images/x" -> size
    used: set[str] = field(default_factory=set)

    def label(self, rel: str | None = None, line: int | None = None) -> str:
        where = posixpath.join(self.shown, rel) if rel else self.shown
        return f"bundle '{snippet(self.name)}' ({where}{f':{line}' if line else ''})"


@dataclass(frozen=True)
class StagedBundles:
    """What :func:`load_installed_bundles` found: the guests and the staging folder.

    ``staging_dir`` is the folder to remove after installing (in-rootfs path), or
    ``None`` when the rootfs has none.
    """

    sources: list[GuestSource]
    staging_dir: str | None
    bundles: list[str]


def _kind(mode: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a folder"
    if not stat.S_ISREG(mode):
        return "a special file (FIFO, socket or device)"
    return None


def _scan_files(bundle: _Bundle, rel: str, problems: ProblemList) -> None:
    """Record the regular files of folder ``rel`` of the bundle (images/, configs/)."""
    folder = os.path.join(bundle.path, rel)
    for name in sorted(os.listdir(folder)):
        st = os.lstat(os.path.join(folder, name))
        kind = _kind(st.st_mode)
        if kind:
            problems.append(f"{bundle.label(posixpath.join(rel, name))} is {kind}: a bundle's "
                            f"{rel}/ holds only regular files (symlinks are never followed); "
                            "rebuild the bundle package")
            continue
        bundle.files[posixpath.join(rel, name)] = st.st_size


def _scan_bundle(bundle: _Bundle, problems: ProblemList) -> bool:
    """Record the bundle's files; False when its layout is unusable."""
    before = len(problems)
    for name in sorted(os.listdir(bundle.path)):
        st = os.lstat(os.path.join(bundle.path, name))
        kind = _kind(st.st_mode)
        if name in (IMAGES, CONFIGS) and kind == "a folder":
            _scan_files(bundle, name, problems)
        elif name in (MANIFEST, CHECKSUMS) and kind is None:
            bundle.files[name] = st.st_size
        else:
            known = name in (IMAGES, CONFIGS, MANIFEST, CHECKSUMS)
            what = (f"is {kind or 'a file'}" if known or kind not in (None, "a folder")
                    else "is not part of the bundle layout")
            problems.append(f"{bundle.label(name)} {what}: a bundle holds {MANIFEST}, {IMAGES}/, "
                            f"{CONFIGS}/ and {CHECKSUMS} only (symlinks are never followed); "
                            "rebuild the bundle package")
    if MANIFEST not in bundle.files:
        problems.append(f"{bundle.label()} has no {MANIFEST}: it is not a guest bundle, or its "
                        "package is broken; rebuild it or remove it from IMAGE_INSTALL")
    return len(problems) == before


def _read_text(bundle: _Bundle, rel: str, problems: ProblemList) -> str | None:
    try:
        return decode(read_regular_file(os.path.join(bundle.path, rel)))
    except OSError as err:
        problems.append(f"{bundle.label(rel)}: cannot be read: {err.strerror or err}")
        return None


def _manifest_line(bundle: _Bundle, number: int, text: str, problems: ProblemList) -> \
        ManifestLine | None:
    fields = text.split(":")
    label = bundle.label(MANIFEST, number)
    fix = "each line is GUEST:ROOTFS:KERNEL:FLAG (FLAG autostart or empty); rebuild the bundle"
    if len(fields) != 4:
        problems.append(f"{label}: '{snippet(text)}' has {len(fields)} fields, not 4: {fix}")
        return None
    guest, rootfs, kernel, flag = fields
    bad = []
    if not _NAME_RE.match(guest):
        bad.append(f"guest name '{snippet(guest)}' is not a plain name")
    for what, name, required in (("rootfs", rootfs, True), ("kernel", kernel, False)):
        if not name and not required:
            continue
        if not _FILE_RE.match(name) or name in (".", ".."):
            bad.append(f"{what} '{snippet(name)}' is not a file name in {IMAGES}/ (it would "
                       "leave the bundle folder)" if name else f"{what} is empty")
        elif f"{IMAGES}/{name}" not in bundle.files:
            bad.append(f"{what} '{snippet(name)}' is not in {IMAGES}/")
    if flag not in _FLAGS:
        bad.append(f"flag '{snippet(flag)}' is neither 'autostart' nor empty")
    if bad:
        problems.append(f"{label}: {'; '.join(bad)}: {fix}")
        return None
    return ManifestLine(number, guest, rootfs, kernel, flag)


def _read_manifest(bundle: _Bundle, problems: ProblemList) -> list[ManifestLine]:
    before = len(problems)
    text = _read_text(bundle, MANIFEST, problems)
    if text is None:
        return []
    lines: list[ManifestLine] = []
    guests: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw:
            continue
        line = _manifest_line(bundle, number, raw, problems)
        if line is None:
            continue
        if line.guest in guests:
            problems.append(f"{bundle.label(MANIFEST, number)}: guest '{line.guest}' is already "
                            f"listed on line {guests[line.guest]}: rebuild the bundle")
            continue
        guests[line.guest] = number
        lines.append(line)
    if not lines and len(problems) == before:
        problems.append(f"{bundle.label(MANIFEST)} lists no guest: the package is empty; "
                        "rebuild it or remove it from IMAGE_INSTALL")
    return lines


def _bundle_name(bundle: _Bundle, rel: str, ref: str, where: str,
                 problems: ProblemList) -> str | None:
    """The file of ``images/`` that config reference ``ref`` names, or None (reported)."""
    parent, name = posixpath.split(ref)
    fix = (f"configs of a bundle refer to its own files as {TARGET_IMAGES_DIR}/<name of a file "
           f"in {IMAGES}/>; rebuild the bundle with a corrected config")
    if parent not in ("", TARGET_IMAGES_DIR) or name in ("", ".", "..") or "\0" in ref:
        problems.append(f"{where}: '{snippet(ref)}' is not a file of the bundle (it leaves "
                        f"{TARGET_IMAGES_DIR}): {fix}")
        return None
    if f"{IMAGES}/{name}" not in bundle.files:
        problems.append(f"{where}: '{snippet(ref)}' is not carried by the bundle (no "
                        f"{IMAGES}/{snippet(name)}): {fix}")
        return None
    bundle.used.add(f"{IMAGES}/{name}")
    return name


def _map_disks(bundle: _Bundle, rel: str, cfg: XlConfig, problems: ProblemList) -> \
        tuple[list[str], Value | None]:
    """The bundle files the disks use, and the disk list with plain names."""
    disks = cfg.get("disk")
    if not isinstance(disks, list):
        return [], None
    names: list[str] = []
    mapped: list[Value] = []
    for index, item in enumerate(disks):
        where = bundle.label(rel, cfg.line_of("disk", index))
        spec = None
        if isinstance(item, str):
            try:
                spec = parse_disk(item, xen_version=bundle.xen_version)
            except DiskSpecError as err:
                problems.append(f"{where}: disk entry {index + 1}: {err}")
        target = spec.target if spec else None
        if spec is None or not target or spec.script is not None or target.startswith("/dev/"):
            mapped.append(item)
            continue
        name = _bundle_name(bundle, rel, target, f"{where}: disk entry {index + 1}", problems)
        if name is not None:
            names.append(name)
            mapped.append(spec.with_target(name).render())
    return names, mapped


def _load_config(bundle: _Bundle, line: ManifestLine, problems: ProblemList) -> XlConfig | None:
    rel = f"{CONFIGS}/{line.guest}.cfg"
    if rel not in bundle.files:
        problems.append(f"{bundle.label(MANIFEST, line.line)}: guest '{line.guest}' has no "
                        f"{rel}: rebuild the bundle")
        return None
    bundle.used.add(rel)
    text = _read_text(bundle, rel, problems)
    if text is None:
        return None
    try:
        cfg = parse(text, rel, xen_version=bundle.xen_version)
    except XlConfigError as err:
        problems.extend(f"{bundle.label(rel, number)}: {msg} (xl would refuse this config)"
                        for number, msg in err.errors)
        problems.count(err.more)
        return None
    before = len(problems)
    updates: dict[str, Value] = {}
    for key in _FILE_KEYS:
        ref = cfg.get(key)
        if isinstance(ref, str) and ref:
            name = _bundle_name(bundle, rel, ref, bundle.label(rel, cfg.line_of(key)), problems)
            if name is not None:
                updates[key] = name
    disk_names, disks = _map_disks(bundle, rel, cfg, problems)
    if disks is not None:
        updates["disk"] = disks
    _check_manifest_agrees(bundle, line, rel, disk_names, updates.get("kernel"), problems)
    if len(problems) != before:
        return None
    cfg.update(updates)
    return cfg


def _check_manifest_agrees(bundle: _Bundle, line: ManifestLine, rel: str, disks: list[str],
                           kernel: Value | None, problems: ProblemList) -> None:
    label = bundle.label(MANIFEST, line.line)
    if line.rootfs not in disks:
        problems.append(f"{label}: the rootfs '{snippet(line.rootfs)}' is not a disk of {rel}: "
                        "the manifest and the config disagree; rebuild the bundle")
    if (kernel or "") != line.kernel:
        problems.append(f"{label}: the kernel '{snippet(line.kernel)}' is not the kernel of "
                        f"{rel} ('{snippet(str(kernel or ''))}'): the manifest and the config "
                        "disagree; rebuild the bundle")


def _check_sums(bundle: _Bundle, problems: ProblemList) -> None:
    """Verify ``checksums`` (bundles made by meta-xen-ref) against every other file."""
    text = _read_text(bundle, CHECKSUMS, problems)
    if text is None:
        return
    listed: dict[str, int] = {}
    fix = "the package is damaged or was changed after it was built: rebuild the bundle"
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw:
            continue
        match = _SUM_RE.match(raw)
        rel = match.group(2) if match else ""
        if not match or rel not in bundle.files or rel == CHECKSUMS or rel in listed:
            problems.append(f"{bundle.label(CHECKSUMS, number)}: '{snippet(raw)}' is not "
                            f"'<sha256>  <file of the bundle>' (each file once): {fix}")
            continue
        listed[rel] = number
        if file_sha256(os.path.join(bundle.path, rel)) != match.group(1):
            problems.append(f"{bundle.label(rel)} does not match its checksum "
                            f"({CHECKSUMS}:{number}): {fix}")
    for rel in sorted(set(bundle.files) - set(listed) - {CHECKSUMS}):
        problems.append(f"{bundle.label(rel)} has no checksum in {CHECKSUMS}: {fix}")


def _load_bundle(bundle: _Bundle, problems: ProblemList) -> list[GuestSource]:
    before = len(problems)
    if not _scan_bundle(bundle, problems):
        return []
    if CHECKSUMS in bundle.files:
        _check_sums(bundle, problems)
    sources = []
    for line in _read_manifest(bundle, problems):
        cfg = _load_config(bundle, line, problems)
        if cfg is None:
            continue
        for name in (line.rootfs, line.kernel):
            if name:
                bundle.used.add(f"{IMAGES}/{name}")
        sources.append(GuestSource(
            bundle.label(MANIFEST, line.line), f"{line.guest}.cfg", cfg, False,
            posixpath.join(bundle.shown, CONFIGS, f"{line.guest}.cfg"), {},
            base_dir=os.path.join(bundle.path, IMAGES), autostart=line.flag == "autostart",
            rootfs_ref=line.rootfs, kernel_ref=line.kernel or None, entry=line.guest))
    if len(problems) == before:
        for rel in sorted(set(bundle.files) - bundle.used - {MANIFEST, CHECKSUMS}):
            problems.append(f"{bundle.label(rel)} is used by no guest of the manifest: rebuild "
                            "the bundle without it")
    return sources if len(problems) == before else []


def _staging_folder(rootfs: str, bundles_dir: str, problems: ProblemList) -> str | None:
    """The staging folder's path on the build host, or None when there is none."""
    try:
        resolved = resolve_in_root(rootfs, bundles_dir)
    except ValueError as err:
        problems.append(f"bundle staging folder {printable(bundles_dir)}: {err}")
        return None
    if resolved != posixpath.normpath(bundles_dir):
        problems.append(f"bundle staging folder {printable(bundles_dir)} is reached through a "
                        f"symlink in the rootfs (it leads to {printable(resolved)}): the bundler "
                        "follows no link; make it a real folder")
        return None
    host = os.path.join(rootfs, bundles_dir.lstrip("/"))
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        problems.append(f"bundle staging folder {printable(bundles_dir)} is not a folder: "
                        "remove whatever package puts a file there")
        return None
    return host


def load_installed_bundles(rootfs: str, bundles_dir: str, problems: ProblemList, *,
                           xen_version: XenVersion = DEFAULT_XEN_VERSION) -> StagedBundles:
    """Every bundle below ``bundles_dir`` (in-rootfs path) of ``rootfs``, as guest sources.

    Their configs are checked with the grammar of ``xen_version``.
    Problems go to ``problems``; a bundle with any problem contributes no guest.
    """
    host = _staging_folder(rootfs, bundles_dir, problems)
    if host is None:
        return StagedBundles([], None, [])
    sources: list[GuestSource] = []
    names: list[str] = []
    for name in sorted(os.listdir(host)):
        shown = posixpath.join(posixpath.normpath(bundles_dir), name)
        kind = _kind(os.lstat(os.path.join(host, name)).st_mode)
        if kind != "a folder" or not _NAME_RE.match(name):
            what = kind or "a file" if kind != "a folder" else "a folder without a plain name"
            problems.append(f"{printable(shown)} is {what}: {printable(bundles_dir)} holds one "
                            "folder per bundle package (symlinks are never followed); remove it")
            continue
        names.append(name)
        sources += _load_bundle(_Bundle(name, os.path.join(host, name), shown, xen_version),
                                problems)
    return StagedBundles(sources, posixpath.normpath(bundles_dir), names)
