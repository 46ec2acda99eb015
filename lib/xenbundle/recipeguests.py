"""Guests named by recipe entries: ``BUNDLED_XEN_GUESTS`` and ``XEN_GUEST_BUNDLES``.

Each entry (see :mod:`xenbundle.entries`) is resolved the way meta-virtualization
resolves it, with errors where it warns or guesses:

* **rootfs**: the imported image of the guest (bundle recipes), else
  ``XEN_GUEST_ROOTFS[<entry>]`` (a deploy-dir name), else the first of
  ``<entry>-<MACHINE>.<fstype>`` and ``<entry>-<MACHINE>.rootfs.<fstype>`` in the
  deploy directory (``<fstype>``: ``XEN_GUEST_IMAGE_FSTYPE``).  Both existing is an
  error (one of them is stale), neither is an error listing what was looked for.
* **kernel**: ``XEN_GUEST_KERNEL[<entry>]``: ``none`` for a guest without kernel (an
  HVM guest, x86 only), a path, or a name looked up in UNPACKDIR and the deploy
  directory (found in both is an error); unset: ``KERNEL_IMAGETYPE`` of the deploy
  directory.
* **ramdisk** (meta-xen-ref's own, generated configs only): ``XEN_GUEST_RAMDISK[<entry>]``,
  else the plain ``XEN_GUEST_RAMDISK``, looked up like a kernel name; unset, empty or
  ``none``: no ramdisk.
* **config**: generated from the settings (:mod:`xenbundle.settings`), or
  ``XEN_GUEST_CONFIG_FILE[<entry>]``: a config file that is parsed and validated,
  whose first disk's target becomes the rootfs and whose ``kernel`` becomes the
  kernel; its other keys stay as written.  Its ``name`` must agree with
  ``XEN_GUEST_NAME[<entry>]``, and per-guest setting varflags, which it replaces,
  must not be set for it.

The config is installed as ``<entry>.cfg`` (meta-virtualization's name).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .deploydir import inspect, read_regular_file
from .disk import DiskSpecError, parse_disk
from .errors import ProblemList, printable, snippet
from .guests import disk_format_for, generate_config
from .settings import GuestRequest, Variables, flags_for_guest, guest_requests
from .sources import GuestSource
from .xenversion import DEFAULT_XEN_VERSION, XenVersion
from .xlcfg import Value, XlConfig, XlConfigError, decode, parse

__all__ = ["RecipeGuests", "imported_image_name", "load_recipe_guests"]


@dataclass(frozen=True)
class RecipeGuests:
    """Where the guests of one entry variable come from, and how to resolve their files.

    ``variables`` are read for ``variable`` (``BUNDLED_XEN_GUESTS`` in a host image,
    ``XEN_GUEST_BUNDLES`` in a bundle recipe) and the per-guest varflags.
    ``unpack_dir`` holds fetched files (``XEN_GUEST_CONFIG_FILE``, kernels);
    ``import_dir`` the images imported by :mod:`xenbundle.imports`
    (:func:`imported_image_name`), only for ``imports_allowed``.  ``hvm`` says whether
    the machine runs HVM guests (x86), which a guest without kernel needs.
    """

    variables: Variables
    variable: str = "BUNDLED_XEN_GUESTS"
    machine: str = ""
    kernel_imagetype: str = ""
    unpack_dir: str | None = None
    import_dir: str | None = None
    imports_allowed: bool = False
    hvm: bool = True


def imported_image_name(entry: str) -> str:
    """The file name of an entry's imported image (meta-virtualization's name)."""
    return f"{entry}.img"


@dataclass
class _Resolver:
    guests: RecipeGuests
    deploy_dir: str
    problems: ProblemList
    xen_version: XenVersion = DEFAULT_XEN_VERSION

    def allowed_dirs(self) -> tuple[str, ...]:
        return tuple(d for d in (self.deploy_dir, self.guests.unpack_dir,
                                 self.guests.import_dir) if d)

    def absolute_ok(self, path: str, label: str, what: str) -> bool:
        norm = os.path.normpath(path)
        if any(norm == d or norm.startswith(d.rstrip("/") + "/") for d in self.allowed_dirs()):
            return True
        self.problems.append(
            f"{label}: {what} '{snippet(path)}' is outside the deploy directory and UNPACKDIR: "
            "bundled files come from an image build (DEPLOY_DIR_IMAGE) or from SRC_URI; "
            "fetch it in the recipe or copy it into the deploy directory")
        return False

    def rootfs(self, req: GuestRequest) -> str | None:
        guests, label, entry = self.guests, req.label, req.entry.name
        if req.source is not None:
            if guests.import_dir is None:
                self.problems.append(f"{label}: the guest is imported, but no import folder "
                                     "was given (the bundle class passes it)")
                return None
            return os.path.join(guests.import_dir, imported_image_name(entry))
        if req.rootfs is not None:
            if os.path.isabs(req.rootfs):
                return req.rootfs if self.absolute_ok(req.rootfs, label,
                                                      f"XEN_GUEST_ROOTFS[{entry}]") else None
            return req.rootfs
        names = [f"{entry}-{guests.machine}.{req.image_fstype}",
                 f"{entry}-{guests.machine}.rootfs.{req.image_fstype}"]
        found = [n for n in names if os.path.lexists(os.path.join(self.deploy_dir, n))]
        if len(found) == 1:
            return found[0]
        shown = (" and " if found else " nor ").join(f"'{n}'" for n in names)
        if found:
            self.problems.append(
                f"{label}: both {shown} are in the deploy directory {printable(self.deploy_dir)}, "
                f"so the guest's rootfs is ambiguous (one is left from an older build): delete "
                f"the stale one or set XEN_GUEST_ROOTFS[{entry}]")
        else:
            hint = ("build the guest image first" if req.entry.external else
                    f"does recipe {entry} build IMAGE_FSTYPES \"{req.image_fstype}\"?")
            self.problems.append(
                f"{label}: no rootfs: neither {shown} is in the deploy directory "
                f"{printable(self.deploy_dir)} ({hint}); set XEN_GUEST_IMAGE_FSTYPE or "
                f"XEN_GUEST_ROOTFS[{entry}] to the image to bundle")
        return None

    def kernel(self, req: GuestRequest) -> tuple[bool, str | None]:
        """``(ok, reference)``; the reference is ``None`` for a guest without kernel."""
        label, entry, name = req.label, req.entry.name, req.kernel
        if name == "none":
            if not self.guests.hvm:
                self.problems.append(
                    f"{label}: XEN_GUEST_KERNEL[{entry}] = \"none\" means an HVM guest that "
                    "boots from its disk, which Xen runs on x86 only: name the guest's kernel")
                return False, None
            return True, None
        if name is None:
            return True, self.guests.kernel_imagetype
        return self.named_file(label, f"XEN_GUEST_KERNEL[{entry}]", name)

    def ramdisk(self, req: GuestRequest, kernel: str | None) -> tuple[bool, str | None]:
        """``(ok, reference)`` of the generated config's ramdisk (``XEN_GUEST_RAMDISK``)."""
        if req.ramdisk is None:
            return True, None
        if kernel is None:
            self.problems.append(
                f"{req.label}: {req.ramdisk_where} = \"{snippet(req.ramdisk)}\", but "
                f"XEN_GUEST_KERNEL[{req.entry.name}] = \"none\": a guest without kernel boots "
                f"from its disk and has no ramdisk; set XEN_GUEST_RAMDISK[{req.entry.name}] = "
                "\"none\"")
            return False, None
        return self.named_file(req.label, req.ramdisk_where, req.ramdisk)

    def named_file(self, label: str, where: str, name: str) -> tuple[bool, str | None]:
        """A file named by a varflag: a path, or a name in UNPACKDIR or the deploy dir."""
        if os.path.isabs(name):
            return self.absolute_ok(name, label, where), name
        unpack = self.guests.unpack_dir
        places = [p for p in ((unpack and os.path.join(unpack, name)),
                              os.path.join(self.deploy_dir, name)) if p]
        found = [p for p in places if os.path.lexists(p)]
        if len(found) == 1:
            return True, (name if found[0] == places[-1] else found[0])
        what, verb = ("both", "exist") if found else ("neither", "exists")
        self.problems.append(
            f"{label}: {where} = \"{snippet(name)}\": {what} of "
            f"{' and '.join(printable(p) for p in places)} {verb}"
            + (": give the full path (${UNPACKDIR}/...) to choose one" if found else
               ": fetch it (SRC_URI), build it, or correct the name"))
        return False, None


def _read_custom_config(resolver: _Resolver, req: GuestRequest) -> tuple[str, XlConfig] | None:
    path, label = req.config_file or "", req.label
    unpack = resolver.guests.unpack_dir
    what = f"XEN_GUEST_CONFIG_FILE[{req.entry.name}] = \"{snippet(path)}\""
    if not os.path.isabs(path):
        if not unpack:
            resolver.problems.append(f"{label}: {what} is relative and there is no UNPACKDIR: "
                                     "give an absolute path")
            return None
        path = os.path.join(unpack, path)
    found = inspect(path, "/")
    if not found.usable:
        problem = ("does not exist" if found.state == "missing" else found.problem("/"))
        resolver.problems.append(f"{label}: {what}: {printable(path)} {problem}: add the file "
                                 "to SRC_URI or correct the path")
        return None
    try:
        return path, parse(decode(read_regular_file(found.real)), path,
                           xen_version=resolver.xen_version)
    except XlConfigError as err:
        resolver.problems.extend(f"{label}: {what}: {printable(path)}:{line}: {msg}"
                                 for line, msg in err.errors)
        resolver.problems.count(err.more)
    except OSError as err:
        resolver.problems.append(f"{label}: {what}: cannot read {printable(path)}: "
                                 f"{err.strerror or err}")
    return None


def _custom_name(resolver: _Resolver, req: GuestRequest, path: str, cfg: XlConfig,
                 updates: dict[str, Value]) -> str | None:
    name = cfg.get("name")
    entry = req.entry.name
    if name is None:
        updates["name"] = req.domain
        return req.domain
    if not isinstance(name, str):
        resolver.problems.append(f"{req.label}: {printable(path)}:{cfg.line_of('name')}: name "
                                 "must be a string")
        return None
    if req.name_set and name != req.domain:
        resolver.problems.append(
            f"{req.label}: XEN_GUEST_NAME[{entry}] = \"{snippet(req.domain)}\" and name = "
            f"\"{snippet(name)}\" in {printable(path)}:{cfg.line_of('name')} are two names for one "
            "guest: remove one of them")
        return None
    return name


def _custom_disk(resolver: _Resolver, req: GuestRequest, path: str, cfg: XlConfig,
                 rootfs: str) -> Value | None:
    disks = cfg.get("disk")
    where = f"{printable(path)}:{cfg.line_of('disk')}" if "disk" in cfg else printable(path)
    if not isinstance(disks, list) or not disks or not isinstance(disks[0], str):
        resolver.problems.append(
            f"{req.label}: {where}: the config has no disk list, so the guest's rootfs "
            f"'{snippet(rootfs)}' would be bundled unused: add disk = [ '...,xvda,rw' ] (the "
            "bundler puts the rootfs into the first disk)")
        return None
    try:
        spec = parse_disk(disks[0], xen_version=resolver.xen_version)
        wanted = disk_format_for(rootfs)
        if spec.format != wanted:
            resolver.problems.append(
                f"{req.label}: {where}: the first disk has format {spec.format}, but the rootfs "
                f"'{snippet(os.path.basename(rootfs))}' is {wanted}: correct the disk's format")
            return None
        return [spec.with_target(rootfs).render(), *disks[1:]]
    except DiskSpecError as err:
        resolver.problems.append(f"{req.label}: {where}: disk entry 1: {err}")
        return None


def _custom_source(resolver: _Resolver, req: GuestRequest, rootfs: str,
                   kernel: str | None) -> GuestSource | None:
    read = _read_custom_config(resolver, req)
    if read is None:
        return None
    path, cfg = read
    before = len(resolver.problems)
    updates: dict[str, Value] = {}
    name = _custom_name(resolver, req, path, cfg, updates)
    flags = flags_for_guest(resolver.guests.variables, name or req.domain, req.entry.name)
    if flags:
        resolver.problems.append(
            f"{req.label}: {', '.join(flags)} would be ignored: XEN_GUEST_CONFIG_FILE"
            f"[{req.entry.name}] replaces the generated config; put these settings into "
            f"{printable(path)} and remove the varflags")
    disk = _custom_disk(resolver, req, path, cfg, rootfs)
    if kernel is not None:
        updates["kernel"] = kernel
    elif "kernel" in cfg:
        resolver.problems.append(
            f"{req.label}: {printable(path)}:{cfg.line_of('kernel')} sets a kernel, but "
            f"XEN_GUEST_KERNEL[{req.entry.name}] = \"none\": remove one of them")
    if len(resolver.problems) != before or disk is None:
        return None
    updates["disk"] = disk
    cfg.update(updates)
    return GuestSource(req.entry.origin, f"{req.entry.name}.cfg", cfg, False, path,
                       {"disk": "rootfs", "kernel": "kernel"})


def _generated_source(resolver: _Resolver, req: GuestRequest, rootfs: str,
                      kernel: str | None) -> GuestSource | None:
    ramdisk_ok, ramdisk = resolver.ramdisk(req, kernel)
    if req.settings is None or not ramdisk_ok:
        return None
    settings = (dataclasses.replace(req.settings, ramdisk=ramdisk) if kernel is not None
                else dataclasses.replace(req.settings, type="hvm"))
    try:
        text = generate_config(settings, rootfs, kernel, xen_version=resolver.xen_version)
    except ValueError as err:
        resolver.problems.append(f"{req.label}: {err}")
        return None
    return GuestSource(req.entry.origin, f"{req.entry.name}.cfg",
                       parse(text, req.entry.origin, xen_version=resolver.xen_version),
                       True, None, {"disk": "rootfs", "kernel": "kernel", "ramdisk": "ramdisk"})


def _load_one(resolver: _Resolver, req: GuestRequest) -> GuestSource | None:
    resolver.problems.extend(req.problems)
    rootfs = resolver.rootfs(req)
    kernel_ok, kernel = resolver.kernel(req)
    if req.problems or rootfs is None or not kernel_ok:
        return None
    if req.config_file is not None:
        source = _custom_source(resolver, req, rootfs, kernel)
    else:
        source = _generated_source(resolver, req, rootfs, kernel)
    if source is None:
        return None
    source.search_dirs = resolver.allowed_dirs()
    source.autostart = req.entry.autostart
    source.rootfs_ref, source.kernel_ref, source.entry = rootfs, kernel, req.entry.name
    return source


def load_recipe_guests(guests: RecipeGuests, deploy_dir: str, problems: ProblemList, *,
                       xen_version: XenVersion = DEFAULT_XEN_VERSION) -> list[GuestSource]:
    """The guests of ``guests.variable`` as sources; problems go to ``problems``.

    Their configs are checked with the grammar of ``xen_version``."""
    requests = guest_requests(guests.variables, guests.variable,
                              imports_allowed=guests.imports_allowed)
    problems.extend(requests.problems)
    resolver = _Resolver(guests, deploy_dir, problems, xen_version)
    sources = []
    for req in requests.requests:
        source = _load_one(resolver, req)
        if source is not None:
            sources.append(source)
    return sources
