"""Per-guest settings from BitBake variables and varflags, in both key forms.

Every guest setting is a variable whose varflags, keyed by a guest, override it for
that guest (``XEN_GUEST_MEMORY[web] = "1024"``).  Two key forms meet here:

* **domain name** (meta-xen-ref's own form): ``XEN_GUEST_MEMORY[<domain>]``, the
  only key of guests named by ``XEN_BUNDLED_GUESTS``, deploy-dir configs and
  auto-bundled guest images;
* **entry name** (meta-virtualization's form): ``XEN_GUEST_MEMORY[<recipe>]`` for a
  guest named by an entry of ``BUNDLED_XEN_GUESTS`` or ``XEN_GUEST_BUNDLES``, whose
  domain name is ``XEN_GUEST_NAME[<recipe>]`` (by default the recipe name itself).

What wins (:func:`guest_settings`):

1. A varflag keyed by the entry name or by the domain name.  When an entry renames
   its domain and both flags are set to different values, that is an error naming
   both (the same value twice is fine).
2. Otherwise the plain variable (``XEN_GUEST_MEMORY``), the default of every guest,
   which itself defaults to meta-virtualization's ``XEN_GUEST_MEMORY_DEFAULT``.
   Setting both to different values is an error naming both.
3. Otherwise the built-in default (:data:`WEAK_DEFAULTS`, the classes' ``??=``).

The classes read the datastore through :class:`DatastoreVariables`; tests and
callers without BitBake use :class:`MappingVariables`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .entries import GuestEntry, split_guest_entries
from .errors import BundleError, snippet
from .guests import GuestSettings, domain_name_error

__all__ = [
    "ENTRY_VARIABLES",
    "IMPORT_TYPES",
    "PLAIN_VARIABLES",
    "SETTINGS",
    "WEAK_DEFAULTS",
    "DatastoreVariables",
    "GuestRequest",
    "GuestRequests",
    "ImportSource",
    "MappingVariables",
    "Setting",
    "Variables",
    "flags_for_guest",
    "guest_requests",
    "guest_settings",
    "settings_and_problems",
    "vardeps",
]


class Variables(Protocol):
    """Read access to variables and varflags, the way a bbclass sees them."""

    def value(self, name: str) -> str | None:
        """The expanded value, weak defaults (``??=``) applied; ``None`` when unset."""

    def explicit(self, name: str) -> str | None:
        """The expanded value when something other than a weak default set it."""

    def flag(self, name: str, key: str) -> str | None:
        """The expanded varflag ``name[key]``, ``None`` when unset."""

    def flag_names(self, name: str) -> list[str]:
        """The names of the varflags of ``name`` (BitBake's own ones included)."""


class DatastoreVariables:
    """:class:`Variables` over a BitBake datastore (``d`` of a bbclass)."""

    def __init__(self, datastore: Any) -> None:
        self._d = datastore

    def value(self, name: str) -> str | None:
        return _text(self._d.getVar(name))

    def explicit(self, name: str) -> str | None:
        # Unexpanded, then expanded apart: BitBake 2.8 (scarthgap) caches the expansion of
        # getVar(name, True, noweakdefault=True), None for a ??= variable, and every later
        # getVar(name) returns that None instead of the weak default.
        raw = self._d.getVar(name, False, True)
        return None if raw is None else _text(self._d.expand(raw))

    def flag(self, name: str, key: str) -> str | None:
        return _text(self._d.getVarFlag(name, key))

    def flag_names(self, name: str) -> list[str]:
        return list(self._d.getVarFlags(name) or {})


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Setting:
    """A per-guest setting: the variable, what its value is and an example value."""

    variable: str
    kind: str          # "count" (positive integer), "words", "text" or "device"
    example: str

    @property
    def default_variable(self) -> str:
        """meta-virtualization's name for the default of every guest."""
        return self.variable + "_DEFAULT"


#: The per-guest settings of generated configs, in :class:`GuestSettings` order.
SETTINGS: tuple[Setting, ...] = (
    Setting("XEN_GUEST_MEMORY", "count", "512"),
    Setting("XEN_GUEST_VCPUS", "count", "1"),
    Setting("XEN_GUEST_VIF", "words", "bridge=xenbr0"),
    Setting("XEN_GUEST_EXTRA", "text", "root=/dev/xvda ro console=hvc0 ip=dhcp"),
    Setting("XEN_GUEST_DISK_DEVICE", "device", "xvda"),
)

#: Variables whose varflags are keyed by entry name only.  ``XEN_GUEST_RAMDISK`` is
#: meta-xen-ref's own (meta-virtualization's generated configs have no ramdisk).
ENTRY_VARIABLES: tuple[str, ...] = (
    "XEN_GUEST_NAME", "XEN_GUEST_CONFIG_FILE", "XEN_GUEST_ROOTFS", "XEN_GUEST_KERNEL",
    "XEN_GUEST_IMAGE_FSTYPE", "XEN_GUEST_SOURCE_TYPE", "XEN_GUEST_SOURCE_FILE",
    "XEN_GUEST_IMAGE_SIZE", "XEN_GUEST_RAMDISK")

#: Plain variables of the entry forms (each the value of every entry without its varflag).
PLAIN_VARIABLES: tuple[str, ...] = ("XEN_GUEST_IMAGE_FSTYPE", "XEN_GUEST_IMAGE_SIZE_DEFAULT",
                                    "XEN_GUEST_RAMDISK", "XEN_GUEST_DOM0LESS", "XEN_GUEST_DOM0LESS_BOOTARGS",
                                    "XEN_GUEST_DOM0LESS_ENHANCED")

#: The weak defaults (``??=``) of xen-ref-common.bbclass; each plain setting variable
#: defaults to its ``*_DEFAULT`` variable.  tests/bitbake checks the class agrees.
WEAK_DEFAULTS: dict[str, str] = {
    "XEN_GUEST_MEMORY_DEFAULT": "512",
    "XEN_GUEST_VCPUS_DEFAULT": "1",
    "XEN_GUEST_VIF_DEFAULT": "bridge=xenbr0",
    "XEN_GUEST_EXTRA_DEFAULT": "root=/dev/xvda ro console=hvc0 ip=dhcp",
    "XEN_GUEST_DISK_DEVICE_DEFAULT": "xvda",
    "XEN_GUEST_IMAGE_FSTYPE": "ext4",
    "XEN_GUEST_IMAGE_SIZE_DEFAULT": "",
}

#: Import types of ``XEN_GUEST_SOURCE_TYPE`` (see :mod:`xenbundle.imports`).
IMPORT_TYPES: tuple[str, ...] = ("rootfs_dir", "qcow2", "ext4", "raw")

_BY_VARIABLE = {s.variable: s for s in SETTINGS}
_DEVICE_RE = re.compile(r"\A[a-z][a-z0-9]*\Z")
_FSTYPE_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]*\Z")


class MappingVariables:
    """:class:`Variables` from plain mappings, with the classes' weak defaults.

    ``values`` are the variables set explicitly, ``flags`` maps a variable to its
    varflags.  For callers without BitBake (tests, the reference target).
    """

    def __init__(self, values: Mapping[str, str] | None = None,
                 flags: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._values = dict(values or {})
        self._flags = {name: dict(f) for name, f in (flags or {}).items()}

    def value(self, name: str) -> str | None:
        explicit = self.explicit(name)
        if explicit is not None:
            return explicit
        setting = _BY_VARIABLE.get(name)
        if setting is not None:
            return self.value(setting.default_variable)
        return WEAK_DEFAULTS.get(name)

    def explicit(self, name: str) -> str | None:
        return self._values.get(name)

    def flag(self, name: str, key: str) -> str | None:
        return self._flags.get(name, {}).get(key)

    def flag_names(self, name: str) -> list[str]:
        return list(self._flags.get(name, {}))


# --------------------------------------------------------------------- settings

def _default_value(variables: Variables, setting: Setting, label: str,
                   problems: list[str]) -> tuple[str, str]:
    """``(value, where)`` of the default of every guest (the plain variable)."""
    plain = variables.explicit(setting.variable)
    compat = variables.explicit(setting.default_variable)
    if plain is not None and compat is not None and plain.strip() != compat.strip():
        problems.append(
            f"{label}: {setting.variable} = \"{snippet(plain)}\" and {setting.default_variable} = "
            f"\"{snippet(compat)}\" (meta-virtualization's name) both set the default of every "
            "guest, to different values: remove one of them")
    if plain is None and compat is not None:
        return compat, setting.default_variable
    return variables.value(setting.variable) or "", setting.variable


def _setting_value(variables: Variables, setting: Setting, domain: str, entry: str | None,
                   label: str, problems: list[str]) -> tuple[str, str]:
    """``(value, where)`` of one setting of one guest; conflicts go to ``problems``."""
    var = setting.variable
    by_domain = variables.flag(var, domain)
    by_entry = variables.flag(var, entry) if entry and entry != domain else None
    if by_entry is not None and by_domain is not None and by_entry.strip() != by_domain.strip():
        problems.append(
            f"{label}: {var}[{entry}] = \"{snippet(by_entry)}\" (keyed by the entry) and "
            f"{var}[{domain}] = \"{snippet(by_domain)}\" (keyed by the domain name) are two "
            "values for one guest: remove one of them")
    if by_entry is not None:
        return by_entry, f"{var}[{entry}]"
    if by_domain is not None:
        return by_domain, f"{var}[{domain}]"
    return _default_value(variables, setting, label, problems)


def _convert(setting: Setting, text: str, where: str, label: str,
             problems: list[str]) -> object:
    text = text.strip()
    if setting.kind == "count":
        if not text.isdigit() or int(text, 10) <= 0:
            problems.append(f"{label}: {where} = \"{snippet(text)}\" is not a positive whole "
                            f"number; set it to e.g. \"{setting.example}\"")
            return None
        return int(text, 10)
    if setting.kind == "words":
        return tuple(text.split())
    if setting.kind == "device" and not _DEVICE_RE.match(text):
        problems.append(f"{label}: {where} = \"{snippet(text)}\" is not a virtual disk name; "
                        f"set it to e.g. \"{setting.example}\" (see xl-disk-configuration(5))")
        return None
    return text


def settings_and_problems(variables: Variables, domain: str, entry: str | None = None,
                          label: str | None = None) -> tuple[GuestSettings | None, list[str]]:
    """The settings of a guest and the problems found (``None`` when there are some)."""
    label = label or f"guest '{snippet(domain)}'"
    problems: list[str] = []
    values = []
    for setting in SETTINGS:
        text, where = _setting_value(variables, setting, domain, entry, label, problems)
        values.append(_convert(setting, text, where, label, problems))
    if problems:
        return None, problems
    memory, vcpus, vif, extra, device = values
    assert isinstance(memory, int) and isinstance(vcpus, int) and isinstance(vif, tuple)
    return GuestSettings(name=domain, memory=memory, vcpus=vcpus, vif=vif, extra=str(extra),
                         vdev=str(device)), []


def guest_settings(variables: Variables, domain: str, entry: str | None = None) -> GuestSettings:
    """The :class:`GuestSettings` of ``domain`` (named by ``entry``, if any).

    Raises :class:`BundleError` listing every problem: a value that is not usable,
    or two key forms (or the two default variables) giving different values.
    """
    settings, problems = settings_and_problems(variables, domain, entry)
    if settings is None:
        raise BundleError(problems)
    return settings


def flags_for_guest(variables: Variables, domain: str, entry: str | None) -> list[str]:
    """The varflags of generated configs set for this guest (``XEN_GUEST_MEMORY[web]``...).

    The per-guest settings in both key forms, and ``XEN_GUEST_RAMDISK[<entry>]``.
    """
    keys = [k for k in dict.fromkeys((entry, domain)) if k]
    flags = [f"{s.variable}[{key}]" for s in SETTINGS for key in keys
             if variables.flag(s.variable, key) is not None]
    if entry and variables.flag("XEN_GUEST_RAMDISK", entry) is not None:
        flags.append(f"XEN_GUEST_RAMDISK[{entry}]")
    return flags


def vardeps(variables: Variables, names: Iterable[str], reserved: Iterable[str]) -> list[str]:
    """Signature dependencies: each variable of ``names`` and each of its guest varflags.

    BitBake hashes a variable's value but no arbitrary varflag, so every
    ``VAR[guest]`` is listed: changing one guest's setting then changes the task
    signature.  Varflags in ``reserved`` (BitBake's own) and internal ones (leading
    ``_``) name no guest and are left out.  Order: each variable, then its varflags
    sorted.
    """
    reserved_names = set(reserved)
    deps: list[str] = []
    for name in dict.fromkeys(names):
        deps.append(name)
        deps.extend(f"{name}[{flag}]" for flag in sorted(variables.flag_names(name))
                    if not flag.startswith("_") and flag not in reserved_names)
    return deps


# --------------------------------------------------------------------- entries

@dataclass(frozen=True)
class ImportSource:
    """A third-party guest image to import (``XEN_GUEST_SOURCE_TYPE`` and friends).

    ``size_mib`` is ``None`` when the size is computed from the content.
    """

    source_type: str
    source_file: str
    size_mib: int | None
    size_where: str


@dataclass(frozen=True)
class GuestRequest:
    """A guest named by an entry, with everything its varflags say about it.

    Built from the datastore without looking at any file (:func:`guest_requests`);
    the files are resolved when bundling (:mod:`xenbundle.recipeguests`).
    ``problems`` lists what is wrong with the values (``settings`` is ``None`` when
    the settings of a generated config are among them); ``name_set`` says whether
    ``XEN_GUEST_NAME[<entry>]`` gave the domain name.  ``ramdisk`` is the initial
    ramdisk of a generated config (``XEN_GUEST_RAMDISK``, meta-xen-ref's own), ``None``
    for none; ``ramdisk_where`` names the variable that gave it.
    """

    entry: GuestEntry
    domain: str
    settings: GuestSettings | None
    rootfs: str | None = None
    kernel: str | None = None
    config_file: str | None = None
    image_fstype: str = "ext4"
    source: ImportSource | None = None
    name_set: bool = False
    problems: tuple[str, ...] = ()
    ramdisk: str | None = None
    ramdisk_where: str = "XEN_GUEST_RAMDISK"

    @property
    def label(self) -> str:
        """How messages name this guest."""
        return f"guest '{snippet(self.domain)}' ({self.entry.origin})"


@dataclass(frozen=True)
class GuestRequests:
    """The guests of one entry variable and the problems of its malformed entries."""

    variable: str
    requests: tuple[GuestRequest, ...] = ()
    problems: tuple[str, ...] = ()


def _flag_text(variables: Variables, name: str, entry: str) -> str | None:
    value = variables.flag(name, entry)
    return value.strip() if value is not None and value.strip() else None


def _import_source(variables: Variables, entry: GuestEntry, label: str, allowed: bool,
                   problems: list[str]) -> ImportSource | None:
    name = entry.name
    source_type = _flag_text(variables, "XEN_GUEST_SOURCE_TYPE", name)
    source_file = _flag_text(variables, "XEN_GUEST_SOURCE_FILE", name)
    size_flag = _flag_text(variables, "XEN_GUEST_IMAGE_SIZE", name)
    if source_type is None:
        for var, value in (("XEN_GUEST_SOURCE_FILE", source_file),
                           ("XEN_GUEST_IMAGE_SIZE", size_flag)):
            if value is not None:
                problems.append(f"{label}: {var}[{name}] is set but XEN_GUEST_SOURCE_TYPE[{name}] "
                                f"is not: set the import type ({', '.join(IMPORT_TYPES)}) or "
                                f"remove {var}[{name}]")
        return None
    before = len(problems)
    if not allowed:
        problems.append(
            f"{label}: XEN_GUEST_SOURCE_TYPE[{name}] asks to import a third-party image, which "
            "needs the fetched source of a recipe: move the guest into a bundle recipe (inherit "
            f"xen-ref-guest-bundle, XEN_GUEST_BUNDLES = \"{entry.text}\") and install that package")
    if source_type not in IMPORT_TYPES:
        problems.append(f"{label}: XEN_GUEST_SOURCE_TYPE[{name}] = \"{snippet(source_type)}\" is "
                        f"not an import type; use one of {', '.join(IMPORT_TYPES)}")
    if source_file is None:
        problems.append(f"{label}: XEN_GUEST_SOURCE_FILE[{name}] is not set: name the fetched "
                        "file or folder (in UNPACKDIR) to import")
    size, size_where = _import_size(variables, name, size_flag, source_type, label, problems)
    if len(problems) != before or source_file is None:
        return None
    return ImportSource(source_type, source_file, size, size_where)


def _import_size(variables: Variables, name: str, size_flag: str | None, source_type: str,
                 label: str, problems: list[str]) -> tuple[int | None, str]:
    if size_flag is not None and source_type != "rootfs_dir":
        problems.append(f"{label}: XEN_GUEST_IMAGE_SIZE[{name}] only applies to the import type "
                        f"rootfs_dir (a {snippet(source_type)} image keeps its size): remove it")
        return None, ""
    where = f"XEN_GUEST_IMAGE_SIZE[{name}]"
    text = size_flag
    if text is None:
        where, text = "XEN_GUEST_IMAGE_SIZE_DEFAULT", (
            variables.value("XEN_GUEST_IMAGE_SIZE_DEFAULT") or "").strip()
    if source_type != "rootfs_dir" or not text:
        return None, where
    if not text.isdigit() or int(text, 10) <= 0:
        problems.append(f"{label}: {where} = \"{snippet(text)}\" is not a positive whole number "
                        "of MiB; set it to e.g. \"256\", or leave it empty to size the image "
                        "from its content")
        return None, where
    return int(text, 10), where


def _ramdisk(variables: Variables, entry: str) -> tuple[str | None, str]:
    """``(ramdisk, where)``: the entry's varflag, else the plain variable; ``none``: no ramdisk."""
    where = f"XEN_GUEST_RAMDISK[{entry}]"
    value = _flag_text(variables, "XEN_GUEST_RAMDISK", entry)
    if value is None:
        where, value = "XEN_GUEST_RAMDISK", (variables.value("XEN_GUEST_RAMDISK") or "").strip()
    return (None if value in ("", "none") else value), where


def _request(variables: Variables, entry: GuestEntry, imports_allowed: bool) -> GuestRequest:
    name = entry.name
    problems: list[str] = []
    explicit_name = _flag_text(variables, "XEN_GUEST_NAME", name)
    domain = explicit_name or name
    label = f"guest '{snippet(domain)}' ({entry.origin})"
    name_error = domain_name_error(domain)
    if name_error:
        where = f"XEN_GUEST_NAME[{name}]" if explicit_name else "the entry name"
        problems.append(f"{label}: {where}: {name_error}")
    settings, setting_problems = settings_and_problems(variables, domain, name, label)
    problems += setting_problems
    fstype = _flag_text(variables, "XEN_GUEST_IMAGE_FSTYPE", name) or (
        variables.value("XEN_GUEST_IMAGE_FSTYPE") or "ext4").strip()
    if not _FSTYPE_RE.match(fstype):
        problems.append(f"{label}: XEN_GUEST_IMAGE_FSTYPE = \"{snippet(fstype)}\" is not an image "
                        "type; use e.g. \"ext4\" or \"ext4.qcow2\"")
    source = _import_source(variables, entry, label, imports_allowed, problems)
    rootfs = _flag_text(variables, "XEN_GUEST_ROOTFS", name)
    ramdisk, ramdisk_where = _ramdisk(variables, name)
    if source is not None and rootfs is not None:
        problems.append(f"{label}: XEN_GUEST_ROOTFS[{name}] and XEN_GUEST_SOURCE_TYPE[{name}] both "
                        "give the guest's disk: keep one of them")
    return GuestRequest(
        entry=entry, domain=domain, settings=settings, rootfs=rootfs,
        kernel=_flag_text(variables, "XEN_GUEST_KERNEL", name),
        config_file=_flag_text(variables, "XEN_GUEST_CONFIG_FILE", name), image_fstype=fstype,
        source=source, name_set=explicit_name is not None, problems=tuple(problems),
        ramdisk=ramdisk, ramdisk_where=ramdisk_where)


def guest_requests(variables: Variables, variable: str, *,
                   imports_allowed: bool = False) -> GuestRequests:
    """The guests named by the entries of ``variable`` (``BUNDLED_XEN_GUESTS``, ...).

    Only bundle recipes may import third-party images (``imports_allowed``).
    Looks at no file; problems are collected, not raised.
    """
    entries, problems = split_guest_entries(variables.value(variable), variable)
    # dom0less entries are boot modules, not xl guests (xenbundle.dom0less reads them)
    requests = tuple(_request(variables, entry, imports_allowed) for entry in entries
                     if "dom0less" not in entry.tags)
    return GuestRequests(variable, requests, tuple(problems))
