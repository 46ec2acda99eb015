"""dom0less guests: bundled guests that Xen starts itself at boot from the device tree (Arm only).

A guest is marked dom0less in the form that names it:

* ``BUNDLED_XEN_GUESTS = "recipe:dom0less"`` (the recipe-keyed, meta-virtualization compatible
  form; the tag is in :data:`xenbundle.entries.KNOWN_TAGS`): kernel ``XEN_GUEST_KERNEL[recipe]``
  (default ``KERNEL_IMAGETYPE``), ramdisk ``XEN_GUEST_RAMDISK[recipe]`` (required);
* ``XEN_GUEST_DOM0LESS = "domain ..."`` naming ``XEN_BUNDLED_GUESTS`` entries (like
  ``XEN_GUEST_AUTOSTART``): the entry's ``ROOTFS`` is then the ramdisk (a ``cpio`` image), its
  ``KERNEL`` the kernel.

Settings, keyed like every per-guest setting (docs/bundling.md "Settings: what wins"):
``XEN_GUEST_MEMORY``, ``XEN_GUEST_VCPUS``, ``XEN_GUEST_DOM0LESS_BOOTARGS`` (the kernel's
command line; default :data:`DEFAULT_BOOTARGS`) and ``XEN_GUEST_DOM0LESS_ENHANCED`` (default
``1``: Xen's PV interfaces and xenstore, so dom0's ``xl`` lists and destroys the guest).

A dom0less guest has no toolstack: no disk, no vif, no xl config, no autostart.  Problems are
collected and raised together (:class:`~xenbundle.errors.BundleError`), each naming the
variable, the value and the fix: a machine that is not Arm, a missing ramdisk, a disk given,
memory that cannot fit next to dom0.  The guests are not bundled into dom0's root file system;
their files are boot modules (:mod:`xenboot.dom0less`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .entries import split_guest_entries
from .errors import BundleError, snippet
from .guests import BundledGuestEntry, _parse_bundled_guests, domain_name_from_rootfs
from .settings import Variables, settings_and_problems

__all__ = [
    "ARM_ARCHS",
    "DEFAULT_BOOTARGS",
    "DOM0LESS_TAG",
    "RAMDISK_TYPES",
    "Dom0lessGuest",
    "dom0less_guests",
    "qemu_memory_mib",
    "xen_size_mib",
    "xl_bundled_guests",
]

DOM0LESS_TAG = "dom0less"
#: ``TARGET_ARCH`` values Xen's dom0less boot exists for.
ARM_ARCHS: tuple[str, ...] = ("aarch64", "arm")
#: Ramdisk image types (oe-core's cpio and its compressed forms).
RAMDISK_TYPES: tuple[str, ...] = ("cpio", "cpio.gz", "cpio.xz", "cpio.zst", "cpio.lz4", "cpio.lzma",
                                  "cpio.bz2")
#: The kernel command line of a dom0less guest: its virtual PL011 console, its ramdisk as root.
DEFAULT_BOOTARGS = "console=ttyAMA0 rdinit=/sbin/init"
#: Xen's own memory per domain beyond the guest's (P2M pool, grant table), for the fit check.
DOMAIN_OVERHEAD_MIB = 8
#: Xen itself and its heap's bookkeeping, for the fit check.
XEN_OVERHEAD_MIB = 32
_TRUE = ("1", "yes", "true", "y", "on", "enabled")
_FALSE = ("0", "no", "false", "n", "off", "disabled")


@dataclass(frozen=True)
class Dom0lessGuest:
    """A guest Xen starts at boot; ``kernel``/``ramdisk`` are deploy-dir file names."""

    name: str
    origin: str
    kernel: str
    ramdisk: str
    memory_mib: int
    vcpus: int
    bootargs: str
    enhanced: bool


def _is_ramdisk(name: str) -> bool:
    return any(name.endswith("." + t) for t in RAMDISK_TYPES)


def _flag_or_plain(variables: Variables, var: str, keys: Sequence[str], default: str) -> tuple[str, str]:
    for key in keys:
        value = variables.flag(var, key)
        if value is not None:
            return value.strip(), f"{var}[{key}]"
    plain = variables.value(var)
    return (default, var) if plain is None else (plain.strip(), var)


def _guest(variables: Variables, name: str, entry: str | None, origin: str, kernel: str,
           ramdisk: str | None, problems: list[str]) -> Dom0lessGuest | None:
    label = f"dom0less guest '{snippet(name)}' ({origin})"
    keys = [k for k in dict.fromkeys((entry, name)) if k]
    settings, setting_problems = settings_and_problems(variables, name, entry, label)
    problems += setting_problems
    if ramdisk is None:
        problems.append(f"{label}: no ramdisk: a dom0less guest has no disk at boot, its root file "
                        f"system is a ramdisk; set XEN_GUEST_RAMDISK[{keys[0]}] to a cpio image in the "
                        "deploy directory, e.g. \"<recipe>-<MACHINE>.rootfs.cpio.gz\" (IMAGE_FSTYPES "
                        "+= \"cpio.gz\" in the guest image)")
    elif not _is_ramdisk(ramdisk):
        problems.append(f"{label}: the ramdisk \"{snippet(ramdisk)}\" is not a cpio image "
                        f"({', '.join(RAMDISK_TYPES)}): a disk image cannot be a dom0less guest's root; "
                        "build the guest image as cpio.gz and name that")
    bootargs, where = _flag_or_plain(variables, "XEN_GUEST_DOM0LESS_BOOTARGS", keys, DEFAULT_BOOTARGS)
    if any(c in bootargs for c in '"\\\n'):
        problems.append(f"{label}: {where} = \"{snippet(bootargs)}\" holds a quote, backslash or "
                        "newline, which a device-tree string cannot carry: remove it")
    enhanced_text, where = _flag_or_plain(variables, "XEN_GUEST_DOM0LESS_ENHANCED", keys, "1")
    if enhanced_text.lower() not in _TRUE + _FALSE:
        problems.append(f"{label}: {where} = \"{snippet(enhanced_text)}\" is neither on (1, yes) nor "
                        "off (0, no): set \"1\" so that dom0's xl can list and destroy the guest")
    if settings is None or ramdisk is None:
        return None
    return Dom0lessGuest(name, origin, kernel, ramdisk, settings.memory, settings.vcpus, bootargs,
                         enhanced_text.lower() in _TRUE)


def _recipe_guests(variables: Variables, kernel_imagetype: str, problems: list[str]) -> list[Dom0lessGuest]:
    entries, _ = split_guest_entries(variables.value("BUNDLED_XEN_GUESTS"), "BUNDLED_XEN_GUESTS")
    found = []
    for entry in (e for e in entries if DOM0LESS_TAG in e.tags):
        recipe = entry.name
        name = (variables.flag("XEN_GUEST_NAME", recipe) or "").strip() or recipe
        label = f"dom0less guest '{snippet(name)}' ({entry.origin})"
        if entry.autostart:
            problems.append(f"{label}: the tags dom0less and autostart: Xen starts a dom0less guest at "
                            "boot, xendomains would start it a second time; remove ':autostart'")
        for var in ("XEN_GUEST_ROOTFS", "XEN_GUEST_SOURCE_TYPE", "XEN_GUEST_CONFIG_FILE"):
            if (variables.flag(var, recipe) or "").strip():
                problems.append(f"{label}: {var}[{recipe}] is set, but a dom0less guest has no disk and "
                                "no xl config at boot (no toolstack runs yet): remove it, and give the "
                                f"root file system as XEN_GUEST_RAMDISK[{recipe}]")
        kernel = (variables.flag("XEN_GUEST_KERNEL", recipe) or "").strip() or kernel_imagetype
        ramdisk = (variables.flag("XEN_GUEST_RAMDISK", recipe) or "").strip() or None
        guest = _guest(variables, name, recipe, entry.origin, kernel, ramdisk, problems)
        if guest is not None:
            found.append(guest)
    return found


def _entry_domain(entry: BundledGuestEntry) -> str:
    rootfs = entry.rootfs
    for kind in sorted(RAMDISK_TYPES, key=len, reverse=True):
        if rootfs.endswith("." + kind):
            rootfs = rootfs[: -len(kind) - 1] + ".ext4"
            break
    return domain_name_from_rootfs(rootfs)


def _named_guests(variables: Variables, problems: list[str]) -> list[Dom0lessGuest]:
    names = (variables.value("XEN_GUEST_DOM0LESS") or "").split()
    entries, _ = _parse_bundled_guests(variables.value("XEN_BUNDLED_GUESTS") or "")
    by_domain = {_entry_domain(e): e for e in entries}
    found = []
    for name in dict.fromkeys(names):
        entry = by_domain.get(name)
        if entry is None:
            problems.append(f"XEN_GUEST_DOM0LESS names \"{snippet(name)}\", which no XEN_BUNDLED_GUESTS "
                            f"entry is (their domains: {', '.join(sorted(by_domain)) or 'none'}): add "
                            "its RAMDISK:KERNEL entry or remove the name")
            continue
        if name in (variables.value("XEN_GUEST_AUTOSTART") or "").split():
            problems.append(f"dom0less guest '{snippet(name)}' ({entry.origin}) is also in "
                            "XEN_GUEST_AUTOSTART: Xen starts it at boot; remove it there")
        guest = _guest(variables, name, None, entry.origin, entry.kernel, entry.rootfs, problems)
        if guest is not None:
            found.append(guest)
    return found


def _fit_problem(guests: Sequence[Dom0lessGuest], ram_mib: int, dom0_mib: int) -> str | None:
    wanted = XEN_OVERHEAD_MIB + dom0_mib + sum(g.memory_mib + DOMAIN_OVERHEAD_MIB for g in guests)
    if wanted <= ram_mib:
        return None
    listing = ", ".join(f"'{g.name}' {g.memory_mib} MiB" for g in guests)
    return (f"the dom0less guests ({listing}) do not fit: with dom0's {dom0_mib} MiB and Xen's "
            f"overhead ({XEN_OVERHEAD_MIB} MiB, {DOMAIN_OVERHEAD_MIB} MiB per guest) they need "
            f"{wanted} MiB, the machine has {ram_mib} MiB (QB_MEM); lower XEN_GUEST_MEMORY[<guest>] "
            "or dom0's memory (QB_XEN_DOM0_MEM), or give the machine more RAM")


def dom0less_guests(variables: Variables, *, target_arch: str, kernel_imagetype: str = "Image",
                    ram_mib: int | None = None, dom0_mib: int | None = None) -> list[Dom0lessGuest]:
    """The dom0less guests configured in ``variables``, checked; raises :class:`BundleError`.

    ``ram_mib``/``dom0_mib`` (the machine's RAM, dom0's memory) enable the fit check.
    """
    problems: list[str] = []
    guests = _recipe_guests(variables, kernel_imagetype, problems) + _named_guests(variables, problems)
    if guests and target_arch not in ARM_ARCHS:
        problems.insert(0, f"dom0less guests ({', '.join(g.name for g in guests)}) need Xen on Arm, "
                           f"this machine's TARGET_ARCH is \"{snippet(target_arch)}\": build for an Arm "
                           "MACHINE (qemuarm64) or bundle them as xl guests (remove ':dom0less' / "
                           "XEN_GUEST_DOM0LESS)")
    names = [g.name for g in guests]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"two dom0less guests are named '{snippet(name)}': rename one (XEN_GUEST_NAME)")
    fit = _fit_problem(guests, ram_mib, dom0_mib) if ram_mib and dom0_mib is not None else None
    if fit:
        problems.append(fit)
    if problems:
        raise BundleError(problems)
    return guests


def xl_bundled_guests(value: str, dom0less: Sequence[Dom0lessGuest]) -> str:
    """``XEN_BUNDLED_GUESTS`` without the dom0less entries (what is bundled as xl guests)."""
    ramdisks = {(g.ramdisk, g.kernel) for g in dom0less}
    return " ".join(text for text in value.split()
                    if tuple(text.split(":", 1)) not in ramdisks)


def qemu_memory_mib(qb_mem: str) -> int | None:
    """The MiB of a ``QB_MEM`` value (``-m 2048``, ``-m 2G``); None when unset or not understood."""
    match = re.fullmatch(r"\s*-m\s+(\d+)\s*([MG]?)\s*", qb_mem or "", re.IGNORECASE)
    if not match:
        return None
    return int(match.group(1)) * (1024 if match.group(2).upper() == "G" else 1)


def xen_size_mib(size: str) -> int | None:
    """The MiB of a Xen size (``384M``, ``1G``, ``524288K``); None when unset or not understood."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", size or "", re.IGNORECASE)
    if not match:
        return None
    factor = {"K": 1 / 1024, "": 1 / 1024, "M": 1, "G": 1024}[match.group(2).upper()]
    return int(int(match.group(1)) * factor)
