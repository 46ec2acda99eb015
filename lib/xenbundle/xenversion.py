"""Which Xen an xl configuration is checked for, and the xl syntax each Xen release added.

xl's configuration language grows with Xen: a disk spec with ``grant_usage=1`` is
refused by the xl of Xen 4.17 ("bad disk syntax"), a ``trap_unmapped_accesses``
setting is silently ignored by it.  :mod:`xenbundle.xlcfg` and
:mod:`xenbundle.disk` therefore take the Xen version they check for, and refuse
syntax that Xen does not have yet (or no longer has), naming the keyword, the
release that introduced (or removed) it and the version being built.

Versions are ``MAJOR.MINOR`` (:class:`XenVersion`): xl's grammar does not change
in stable releases (checked for 4.17.0 .. 4.17.7 and 4.18.0 .. 4.18.6).  A
recipe version reads as its first two numbers (:func:`parse_xen_version`):
``4.21.0+stable``, ``4.19%`` (a ``PREFERRED_VERSION``), ``4.21-dev+git``.

* :data:`DEFAULT_XEN_VERSION` (4.17) is what standalone use checks for: the
  oldest Xen generation this project supports and tests (Debian bookworm's xl on
  the reference target; meta-virtualization scarthgap has a 4.17 recipe).  It is
  also the strictest choice: a configuration accepted for 4.17 is accepted by
  every newer xl (:data:`SYNTAX` removed nothing that a 4.17 configuration may
  use except ``device_model_version = "qemu-xen-traditional"``).
* Versions older than :data:`OLDEST_XEN_VERSION` are refused
  (:class:`XenVersionError`): the grammar has not been compared with them.
* Versions newer than :data:`NEWEST_KNOWN_XEN_VERSION` are checked as that
  release: everything it accepts, and nothing more (a disk keyword a later Xen
  adds is an unknown parameter until :data:`SYNTAX` learns it).

:data:`SYNTAX` is the one table of version-dependent syntax, each entry with its
source in Xen's repository (``docs/man/*.pod*`` of the release tag, and the code
that reads it).  Everything else the grammar knows is in every release from 4.17
to 4.22 and master (4.23-unstable, commit c447b7308b of 2026-08-20): the xl.cfg
file syntax (``tools/libs/util/libxlu_cfg_l.l``, ``libxlu_cfg_y.y``,
``libxlu_cfg.c`` are unchanged from RELEASE-4.17.0 to master) and the other disk
keywords and values (``libxlu_disk_l.l``; ``specification=`` and
``backendtype=standalone`` arrived in 4.17, ``backendtype=tap`` is older although
xl-disk-configuration(5) lists it from 4.19 on).

:func:`build_xen_version` picks the version a BitBake build is for (see
docs/bundling.md "Which Xen the configs are checked for").
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Union

from .errors import BundleError, printable, snippet

__all__ = [
    "CONFIG_KEY",
    "CONFIG_VALUE",
    "DEFAULT_XEN_VERSION",
    "DISK_KEYWORD",
    "NEWEST_KNOWN_XEN_VERSION",
    "OLDEST_XEN_VERSION",
    "P9_KEYWORD",
    "SPEC_KEYS",
    "SYNTAX",
    "VALUE_KEYS",
    "VIF_KEYWORD",
    "XL_PACKAGE",
    "VersionedSyntax",
    "XenVersion",
    "XenVersionError",
    "XenVersionLike",
    "as_xen_version",
    "build_xen_version",
    "lookup",
    "parse_xen_version",
    "pkgdata_version",
    "spec_keywords",
    "syntax_problem",
]


class XenVersion(NamedTuple):
    """A Xen release generation, ``MAJOR.MINOR``; compares like a tuple."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


#: What standalone use checks for: the oldest supported (and strictest) Xen.
DEFAULT_XEN_VERSION = XenVersion(4, 17)
#: The oldest release whose xl grammar was compared with xenbundle's.
OLDEST_XEN_VERSION = XenVersion(4, 17)
#: The newest release in :data:`SYNTAX`; newer versions are checked as this one.
NEWEST_KNOWN_XEN_VERSION = XenVersion(4, 22)

#: A Xen version as the API takes it: a :class:`XenVersion` or text such as ``"4.19"``.
XenVersionLike = Union[XenVersion, str]


class XenVersionError(BundleError):
    """A Xen version that is not one (``"banana"``) or that xenbundle does not support."""


# MAJOR.MINOR at the start, after an optional epoch ("1:"); then the end or any
# separator a recipe version uses (".0", "+stable", "-dev", "%", "~rc1", "_git").
_VERSION_RE = re.compile(r"\A\s*(?:[0-9]+:)?([0-9]{1,4})\.([0-9]{1,4})(?=\Z|[.+%~_\-\s])")


def _too_old(version: XenVersion, shown: str) -> XenVersionError:
    return XenVersionError([
        (f"{shown} is Xen {version}, older than Xen {OLDEST_XEN_VERSION}, the oldest release "
         "whose xl configuration grammar xenbundle knows: build with Xen "
         f"{OLDEST_XEN_VERSION} or later")])


def parse_xen_version(text: str, what: str = "Xen version") -> XenVersion:
    """The ``MAJOR.MINOR`` of a Xen or recipe version such as ``"4.21.0+stable"`` or ``"4.19%"``.

    ``what`` introduces the value in the error (e.g. ``"PREFERRED_VERSION_xen-tools ="``).
    Raises :class:`XenVersionError` for text without a ``MAJOR.MINOR`` start and
    for versions older than :data:`OLDEST_XEN_VERSION`.
    """
    shown = f"{what} \"{snippet(text)}\""
    m = _VERSION_RE.match(text)
    if m is None:
        raise XenVersionError([(f"{shown} is not a Xen version: write MAJOR.MINOR, e.g. "
                                f"\"{NEWEST_KNOWN_XEN_VERSION}\"")])
    version = XenVersion(int(m.group(1)), int(m.group(2)))
    if version < OLDEST_XEN_VERSION:
        raise _too_old(version, shown)
    return version


def as_xen_version(value: XenVersionLike) -> XenVersion:
    """``value`` as a supported :class:`XenVersion` (text is read by :func:`parse_xen_version`)."""
    if isinstance(value, XenVersion):
        if value < OLDEST_XEN_VERSION:
            raise _too_old(value, "the Xen version")
        return value
    if isinstance(value, str):
        return parse_xen_version(value)
    raise TypeError(f"a Xen version is a XenVersion or a string like \"4.19\", not "
                    f"{type(value).__name__}")


# ------------------------------------------------------------------ the table

#: Kinds of :class:`VersionedSyntax`: where in a configuration the name is written.
DISK_KEYWORD = "disk keyword"          # a keyword of a disk spec (xl-disk-configuration(5))
CONFIG_KEY = "xl.cfg key"              # a setting of the file (xl.cfg(5))
CONFIG_VALUE = "xl.cfg value"          # one value of a setting
VIF_KEYWORD = "vif keyword"            # KEY= in a vif spec (xl-network-configuration(5))
P9_KEYWORD = "p9 keyword"              # KEY= in a p9 (9pfs) spec (xl.cfg(5))


@dataclass(frozen=True)
class VersionedSyntax:
    """Syntax that not every supported Xen has.

    ``name`` is the keyword as written (``"grant_usage="``, ``"trusted"``) or the
    setting; ``value`` the value of a :data:`CONFIG_VALUE` entry.  ``since`` is the
    first release with it (``None``: every supported release), ``removed`` the
    first release without it; ``note`` explains a surprising ``since`` and
    ``removed_fix`` what to write instead of removed syntax.
    """

    kind: str
    name: str
    since: XenVersion | None
    value: str | None = None
    removed: XenVersion | None = None
    note: str = ""
    removed_fix: str = ""

    @property
    def label(self) -> str:
        """How messages name it, e.g. ``disk keyword `grant_usage='``."""
        if self.kind == CONFIG_VALUE:
            return f"`{self.name} = \"{self.value}\"'"
        return f"{self.kind} `{self.name}'"

    @property
    def noun(self) -> str:
        return {CONFIG_KEY: "setting", CONFIG_VALUE: "value"}.get(self.kind, "keyword")


_V = XenVersion
_SILENT = " (the xl of older releases ignores it without a word)"

#: Version-dependent xl syntax.  Sources are files of xen.git (github:xen-project/xen)
#: at the release tags; "man" is docs/man/xl.cfg.5.pod.in, "disk man"
#: docs/man/xl-disk-configuration.5.pod.in, "net man"
#: docs/man/xl-network-configuration.5.pod.in, "xl_parse.c" tools/xl/xl_parse.c.
#: Every entry was checked in each of RELEASE-4.17.0, 4.18.0, 4.19.0, 4.20.0,
#: 4.21.0, 4.22.0 and master (c447b7308b): absent before ``since``, present from it on.
SYNTAX: tuple[VersionedSyntax, ...] = (
    # --- disk specs (tools/libs/util/libxlu_disk_l.l and the generated libxlu_disk_l.c)
    # Disk man at RELEASE-4.17.0 documents trusted/untrusted (commit 54d8f27d04, XSA-403)
    # and the .l has their rules, but the generated libxlu_disk_l.c shipped in the 4.17
    # and 4.18 trees was made from an older .l (regenerated by 66dd1c62b2, virtio disks)
    # and lacks them; RELEASE-4.19.0's (regenerated by 1eb013ef97) has them.  Debian's
    # libxlutil 4.17 says "target respecified" (tests/oracle).
    VersionedSyntax(DISK_KEYWORD, "trusted", _V(4, 19), note=(
        " (the disk scanner shipped with Xen 4.17 and 4.18 does not have it, although their "
        "xl-disk-configuration(5) lists it)")),
    VersionedSyntax(DISK_KEYWORD, "untrusted", _V(4, 19), note=(
        " (the disk scanner shipped with Xen 4.17 and 4.18 does not have it, although their "
        "xl-disk-configuration(5) lists it)")),
    # Disk man RELEASE-4.19.0 "grant_usage=BOOLEAN"; libxlu_disk_l.l commit 1eb013ef97.
    VersionedSyntax(DISK_KEYWORD, "grant_usage=", _V(4, 19)),
    # Disk man RELEASE-4.17.0 "specification=", "standalone"; commit 66dd1c62b2: in
    # every supported release (listed so that the table says it was checked).
    VersionedSyntax(DISK_KEYWORD, "specification=", None),
    VersionedSyntax(DISK_KEYWORD, "backendtype=standalone", None),
    # --- xl.cfg settings: man and xl_parse.c (xlu_cfg_get_* calls) of the tag.
    VersionedSyntax(CONFIG_KEY, "bootloader_restrict", _V(4, 18), note=_SILENT),  # RELEASE-4.18.0
    VersionedSyntax(CONFIG_KEY, "bootloader_user", _V(4, 18), note=_SILENT),      # RELEASE-4.18.0
    VersionedSyntax(CONFIG_KEY, "smbios", _V(4, 18), note=_SILENT),               # RELEASE-4.18.0
    VersionedSyntax(CONFIG_KEY, "sve", _V(4, 18), note=_SILENT),                  # RELEASE-4.18.0
    VersionedSyntax(CONFIG_KEY, "virtio", _V(4, 18), note=_SILENT),               # RELEASE-4.18.0
    VersionedSyntax(CONFIG_KEY, "hvm_pirq", _V(4, 19), note=_SILENT),             # RELEASE-4.19.0
    VersionedSyntax(CONFIG_KEY, "nr_spis", _V(4, 19), note=_SILENT),              # RELEASE-4.19.0
    VersionedSyntax(CONFIG_KEY, "llc_colors", _V(4, 20), note=_SILENT),           # RELEASE-4.20.0
    VersionedSyntax(CONFIG_KEY, "altp2m_count", _V(4, 21), note=_SILENT),         # RELEASE-4.21.0
    VersionedSyntax(CONFIG_KEY, "arm_sci", _V(4, 21), note=_SILENT),              # RELEASE-4.21.0
    VersionedSyntax(CONFIG_KEY, "trap_unmapped_accesses", _V(4, 21), note=_SILENT),  # 4.21.0
    VersionedSyntax(CONFIG_KEY, "xen_platform_pci_bar_uc", _V(4, 21), note=_SILENT),  # 4.21.0
    VersionedSyntax(CONFIG_KEY, "xenstore_feature_mask", _V(4, 21), note=_SILENT),  # 4.21.0
    VersionedSyntax(CONFIG_KEY, "xenstore_quota", _V(4, 22), note=_SILENT),       # RELEASE-4.22.0
    # --- values: man "tee" lists ffa from RELEASE-4.18.0 (libxl_types.idl libxl_tee_type,
    # commit 8abdd8d528); the xl of 4.17 stops with "Unknown tee".
    VersionedSyntax(CONFIG_VALUE, "tee", _V(4, 18), value="ffa"),
    # Removed by 19ab8356ab: man RELEASE-4.21.0 no longer lists it, and xl_parse.c
    # stops with "Unknown device_model_version".
    VersionedSyntax(CONFIG_VALUE, "device_model_version", None, value="qemu-xen-traditional",
                    removed=_V(4, 21), removed_fix='use device_model_version = "qemu-xen"'),
    # --- vif specs: net man RELEASE-4.19.0 "vlan"; xl_parse.c parse_nic_config (4.18
    # prints "unrecognized argument" and ignores it).
    VersionedSyntax(VIF_KEYWORD, "vlan=", _V(4, 19)),
    # --- p9 specs: man RELEASE-4.19.0 (9pfs "type", "max-files", ...); xl_parse.c of 4.18
    # stops with "Unknown 9pfs parameter".
    VersionedSyntax(P9_KEYWORD, "type=", _V(4, 19)),
    VersionedSyntax(P9_KEYWORD, "max-files=", _V(4, 19)),
    VersionedSyntax(P9_KEYWORD, "max-open-files=", _V(4, 19)),
    VersionedSyntax(P9_KEYWORD, "max-space=", _V(4, 19)),
    VersionedSyntax(P9_KEYWORD, "auto-delete=", _V(4, 19)),
)

_BY_NAME: dict[tuple[str, str, str | None], VersionedSyntax] = {
    (entry.kind, entry.name, entry.value): entry for entry in SYNTAX}
#: The settings some :data:`CONFIG_VALUE` entry is about.
VALUE_KEYS = frozenset(entry.name for entry in SYNTAX if entry.kind == CONFIG_VALUE)


def lookup(kind: str, name: str, value: str | None = None) -> VersionedSyntax | None:
    """The :data:`SYNTAX` entry of ``name`` (and ``value``), or None when it is in every release."""
    return _BY_NAME.get((kind, name, value))


def syntax_problem(kind: str, name: str, version: XenVersion,
                   value: str | None = None) -> tuple[str, str] | None:
    """``(what is wrong, the fix)`` when Xen ``version`` lacks this syntax, else None."""
    entry = _BY_NAME.get((kind, name, value))
    if entry is None:
        return None
    if entry.since is not None and version < entry.since:
        what = (f"{entry.label} was added in Xen {entry.since}{entry.note}, but the Xen "
                f"version being built is {version}")
        return what, f"raise the Xen version or drop the {entry.noun}"
    if entry.removed is not None and version >= entry.removed:
        what = (f"{entry.label} was removed in Xen {entry.removed}, but the Xen version being "
                f"built is {version}")
        return what, f"{entry.removed_fix} or build for Xen {_previous(entry.removed)}"
    return None


def _previous(version: XenVersion) -> str:
    return f"{version.major}.{version.minor - 1} or older" if version.minor else "an older Xen"


def spec_keywords(kind: str, item: str) -> Iterable[str]:
    """The ``KEY=`` words of one vif or p9 spec, as xl's parser tells them apart.

    vif (``parse_nic_config``): comma-separated, leading blanks skipped, the key is
    what comes before ``=``.  p9: comma-separated ``KEY=VALUE`` pairs with blanks
    around the key trimmed.
    """
    for token in item.split(","):
        key, equals, _ = token.partition("=")
        if not equals:
            continue
        yield (key.lstrip(" ") if kind == VIF_KEYWORD else key.strip()) + "="


#: The list settings whose items are specs with versioned keywords.
SPEC_KEYS = {"vif": VIF_KEYWORD, "p9": P9_KEYWORD}


# ------------------------------------------------------------ the build's version

#: The package whose pkgdata names the xl a host image runs (meta-virtualization's split).
XL_PACKAGE = "xen-tools-xl"
_PKGDATA_LINE_RE = re.compile(r"(.+?):\s+(.*)")
_MAX_PKGDATA_BYTES = 1 << 22


def pkgdata_version(pkgdata_dir: str, package: str = XL_PACKAGE) -> str | None:
    """The ``PV`` recorded for ``package`` in BitBake's pkgdata, or None when there is none.

    Reads ``<pkgdata_dir>/runtime/<package>`` (``KEY: value`` lines as oe-core's
    ``emit_pkgdata`` writes them; a per-package ``PV:<package>:`` wins).  Raises
    :class:`XenVersionError` when the file exists but cannot be read.
    """
    path = os.path.join(pkgdata_dir, "runtime", package)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(_MAX_PKGDATA_BYTES)
    except FileNotFoundError:
        return None
    except OSError as err:
        message = (f"pkgdata {printable(path)} cannot be read: {err.strerror or err}: "
                   "check the build folder")
        raise XenVersionError([message]) from err
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = _PKGDATA_LINE_RE.match(line)
        if m and m.group(1) in ("PV", f"PV:{package}"):
            found[m.group(1)] = m.group(2).strip()
    return found.get(f"PV:{package}", found.get("PV"))


def build_xen_version(*, explicit: str = "", pkgdata_dir: str = "",
                      preferred: str = "") -> tuple[XenVersion, str]:
    """The Xen version a build checks configs for, and where it came from (for the log).

    In order: ``explicit`` (``XEN_REF_XEN_VERSION``); the ``PV`` of
    :data:`XL_PACKAGE` in ``pkgdata_dir`` (``PKGDATA_DIR``; the xl the image
    installs); ``preferred`` (``PREFERRED_VERSION_xen-tools``); else
    :data:`DEFAULT_XEN_VERSION`.  Raises :class:`XenVersionError` naming the
    variable for a value that is not a supported Xen version.
    """
    if explicit.strip():
        return (parse_xen_version(explicit, "XEN_REF_XEN_VERSION ="),
                f"XEN_REF_XEN_VERSION = \"{snippet(explicit)}\"")
    if pkgdata_dir:
        pv = pkgdata_version(pkgdata_dir)
        if pv is not None:
            what = f"the PV of {XL_PACKAGE} in {printable(pkgdata_dir)}"
            if _VERSION_RE.match(pv) is None:
                message = (f"{what} is \"{snippet(pv)}\", which does not start with a Xen "
                           "MAJOR.MINOR: set XEN_REF_XEN_VERSION to the Xen version of the "
                           f"image's xl, e.g. \"{NEWEST_KNOWN_XEN_VERSION}\"")
                raise XenVersionError([message])
            return parse_xen_version(pv, f"{what}:"), f"{what}: \"{snippet(pv)}\""
    if preferred.strip():
        return (parse_xen_version(preferred, "PREFERRED_VERSION_xen-tools ="),
                f"PREFERRED_VERSION_xen-tools = \"{snippet(preferred)}\"")
    return DEFAULT_XEN_VERSION, (f"no XEN_REF_XEN_VERSION, {XL_PACKAGE} pkgdata or "
                                 "PREFERRED_VERSION_xen-tools: the oldest supported Xen")
