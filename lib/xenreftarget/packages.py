"""Debian packages of the reference target: which ones, for which suite and architecture.

:class:`Distro` names a Debian suite and architecture (bookworm/arm64 with Xen 4.17 and
trixie/arm64 with Xen 4.20; others are added by extending :data:`XEN_BY_SUITE`,
:data:`TRIPLET_BY_ARCH` and :data:`SUPPORTED`) and derives the package names
from them: the root packages whose dependency closure makes dom0 (the hypervisor, Xen's
toolstack, systemd, udev, bash, util-linux, busybox-static), the stand-ins (packages only
maintainer scripts or unused tools need, declared installed instead of unpacked) and the
kernel meta-package. :mod:`xenreftarget.apt` resolves and fetches them in a private apt state.

The parsing helpers are pure functions so that they can be tested without apt.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ReferenceTargetError

#: The Xen generation each supported Debian suite ships.
XEN_BY_SUITE: Mapping[str, str] = {"bookworm": "4.17", "trixie": "4.20"}
#: The GNU triplet of each supported Debian architecture (its multiarch library folder).
TRIPLET_BY_ARCH: Mapping[str, str] = {"arm64": "aarch64-linux-gnu", "amd64": "x86_64-linux-gnu"}
#: Combinations that have been built and booted; others fail with a clear message.
SUPPORTED: tuple[tuple[str, str], ...] = (("bookworm", "arm64"), ("trixie", "arm64"), ("bookworm", "amd64"))

#: The Debian release built when none is chosen (``xen-ref-target build --debian``).
DEFAULT_SUITE = "bookworm"
#: The default distribution's Xen version (kept for callers that predate :class:`Distro`).
XEN_VERSION = XEN_BY_SUITE[DEFAULT_SUITE]


class PackageError(ReferenceTargetError):
    """apt could not provide a package; the message says which one and what to do."""


@dataclass(frozen=True)
class PackageRecord:
    """The candidate version of one package, as the apt index describes it."""

    name: str
    version: str
    architecture: str
    filename: str
    sha256: str
    size: int
    depends: str = ""

    @property
    def deb_name(self) -> str:
        """File name of the .deb in the package cache (the pool file's base name)."""
        return os.path.basename(self.filename)


@dataclass(frozen=True)
class Distro:
    """A Debian suite and architecture, and the package names that follow from them."""

    suite: str = DEFAULT_SUITE
    arch: str = "arm64"

    def check(self) -> None:
        """Fail with the supported combinations when this one has not been made to work yet."""
        if (self.suite, self.arch) not in SUPPORTED:
            known = ", ".join(f"{s}/{a}" for s, a in SUPPORTED)
            raise PackageError(f"Debian {self.suite}/{self.arch} is not supported by the reference "
                               f"target builder yet (supported: {known})")

    @property
    def label(self) -> str:
        """How images name their origin, e.g. ``Debian trixie arm64``."""
        return f"Debian {self.suite} {self.arch}"

    @property
    def xen_version(self) -> str:
        """The Xen generation of the suite, e.g. ``4.17``."""
        return XEN_BY_SUITE[self.suite]

    @property
    def triplet(self) -> str:
        """The multiarch triplet, e.g. ``aarch64-linux-gnu``."""
        return TRIPLET_BY_ARCH[self.arch]

    @property
    def hypervisor_package(self) -> str:
        """The package holding the Xen binary."""
        return f"xen-hypervisor-{self.xen_version}-{self.arch}"

    @property
    def hypervisor_path(self) -> str:
        """The Xen binary inside :attr:`hypervisor_package` (gzip'd on x86, as GRUB loads it)."""
        suffix = ".gz" if self.arch == "amd64" else ""
        return f"boot/xen-{self.xen_version}-{self.arch}{suffix}"

    @property
    def xen_bin_dir(self) -> str:
        """Debian's private folder of the Xen tools (``xl``, ``xenstored``, ...)."""
        return f"/usr/lib/xen-{self.xen_version}/bin"

    @property
    def kernel_meta_package(self) -> str:
        """The meta-package whose Depends names the current kernel package."""
        return f"linux-image-{self.arch}"

    def root_packages(self) -> tuple[str, ...]:
        """The packages whose dependency closure (without Recommends) is unpacked.

        libgcc-s1 is named although libc6 pulls it in: glibc loads it with dlopen (``xl`` aborts
        on console detach and on destroy without it), which no dependency expresses.
        """
        return (self.hypervisor_package, f"xen-utils-{self.xen_version}", "xen-utils-common",
                "xenstore-utils", "libgcc-s1", "bash", "util-linux", "busybox-static",
                "systemd", "systemd-sysv", "udev", "kmod")

    def stand_ins(self) -> Mapping[str, str]:
        """Packages declared installed instead of unpacked, each with the reason."""
        return {
            "python3": "only pygrub and Xen's Python tools need it; the target runs neither",
            "ucf": "manages xen-utils-common's conffiles from maintainer scripts, which never run here",
            "debconf": "answers maintainer scripts' questions; no maintainer script runs here",
            "adduser": "udev's maintainer script creates groups; the builder writes the accounts",
        }


def parse_control_stanzas(text: str) -> list[dict[str, str]]:
    """Split deb822 control text (``apt-cache show`` output) into field dictionaries.

    Continuation lines (starting with a space or tab) are joined to the field they continue.
    """
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last_key = {}, None
            continue
        if line[0] in " \t":
            if last_key is not None:
                current[last_key] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        last_key = key.strip()
        current[last_key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def parse_package_records(text: str) -> dict[str, PackageRecord]:
    """Turn ``apt-cache show --no-all-versions`` output into records keyed by package name.

    The first stanza of a name wins (apt prints the candidate first).
    """
    records: dict[str, PackageRecord] = {}
    for stanza in parse_control_stanzas(text):
        name = stanza.get("Package")
        if not name or name in records:
            continue
        missing = [k for k in ("Version", "Architecture", "Filename", "SHA256") if k not in stanza]
        if missing:
            raise PackageError(
                f"apt's record of {name} lacks {', '.join(missing)}; run 'apt-get update' and retry")
        records[name] = PackageRecord(
            name=name,
            version=stanza["Version"],
            architecture=stanza["Architecture"],
            filename=stanza["Filename"],
            sha256=stanza["SHA256"].lower(),
            size=int(stanza.get("Size", "0") or 0),
            depends=stanza.get("Depends", ""),
        )
    return records


def parse_depends(field: str) -> list[list[str]]:
    """Parse a Depends field into groups of alternatives, without versions or arch qualifiers.

    ``"a (>= 1), b:any | c"`` gives ``[["a"], ["b", "c"]]``.
    """
    groups: list[list[str]] = []
    for clause in field.split(","):
        clause = clause.strip()
        if not clause:
            continue
        alternatives = []
        for alt in clause.split("|"):
            name = re.sub(r"\(.*?\)|\[.*?\]|<.*?>", "", alt).strip()
            name = name.split(":", 1)[0].strip()
            if name:
                alternatives.append(name)
        if alternatives:
            groups.append(alternatives)
    return groups


def kernel_package_from_depends(depends_field: str, arch: str = "arm64") -> str:
    """Name the versioned kernel package that ``linux-image-<arch>`` depends on.

    >>> kernel_package_from_depends("linux-image-6.1.0-56-arm64 (= 6.1.192-2)")
    'linux-image-6.1.0-56-arm64'
    """
    for group in parse_depends(depends_field):
        for name in group:
            if re.fullmatch(rf"linux-image-\d[\w.+-]*-{re.escape(arch)}(-unsigned)?", name):
                return name
    raise PackageError(
        f"linux-image-{arch} depends on no versioned kernel image (Depends: {depends_field[:200]!r}); "
        f"check that the machine's Debian apt source serves {arch}")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=False, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def extract_deb(deb: Path, dest: Path, run: Runner = _run) -> None:
    """Unpack a .deb's data into ``dest`` with ``dpkg-deb -x`` (no maintainer scripts run)."""
    dest.mkdir(parents=True, exist_ok=True)
    result = run(["dpkg-deb", "-x", str(deb), str(dest)])
    if result.returncode != 0:
        raise PackageError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()}")


#: The QEMU that boots each architecture's target, and its Debian package.
QEMU_BY_ARCH: Mapping[str, tuple[str, str]] = {"arm64": ("qemu-system-aarch64", "qemu-system-arm"),
                                               "amd64": ("qemu-system-x86_64", "qemu-system-x86")}


def host_tool_packages(arch: str = "arm64") -> Mapping[str, str]:
    """Host programs the builder runs (and the QEMU for ``arch``), each with its Debian package."""
    qemu, qemu_package = QEMU_BY_ARCH.get(arch, QEMU_BY_ARCH["arm64"])
    return {
        "apt-get": "apt",
        "apt-cache": "apt",
        "dpkg": "dpkg",
        "dpkg-deb": "dpkg",
        "mkfs.ext4": "e2fsprogs",
        "depmod": "kmod",
        "modprobe": "kmod",
        qemu: qemu_package,
    }


def missing_host_tools(which: Callable[[str], str | None] = shutil.which,
                       extra_dirs: Sequence[str] = ("/usr/sbin", "/sbin"), arch: str = "arm64") -> list[str]:
    """Messages for each host program that is missing, naming the apt package to install.

    ``extra_dirs`` are searched too: a non-root PATH often lacks /usr/sbin (mkfs.ext4, depmod).
    """
    missing = []
    for tool, package in host_tool_packages(arch).items():
        found = which(tool) or any(os.access(os.path.join(d, tool), os.X_OK) for d in extra_dirs)
        if not found:
            missing.append(f"{tool} is missing: install it with 'apt-get install {package}'")
    return missing
