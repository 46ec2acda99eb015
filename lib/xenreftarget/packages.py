"""Debian arm64 packages of the reference target: which ones, and how to fetch them with apt.

The package list follows the measured facts in ``research/xen-on-qemu.md``: the hypervisor, the
Xen toolstack and its libraries, glibc, libgcc_s (``xl`` aborts on console detach without it),
bash (the hotplug scripts are bash), util-linux (for ``flock``), busybox-static, and the kernel
package that the ``linux-image-arm64`` meta-package depends on.

Everything goes through the machine's own apt configuration: no mirror address is written or
chosen here. The parsing helpers are pure functions so that they can be tested without apt.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ReferenceTargetError

ARCH = "arm64"
XEN_VERSION = "4.17"
KERNEL_META_PACKAGE = "linux-image-arm64"

#: Packages unpacked into the images (the kernel package is resolved separately).
BASE_PACKAGES: tuple = (
    f"xen-hypervisor-{XEN_VERSION}-arm64",
    f"xen-utils-{XEN_VERSION}",
    "xen-utils-common",
    "xenstore-utils",
    f"libxenmisc{XEN_VERSION}",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenstore4",
    "libxentoollog1",
    "libxendevicemodel1",
    "libxenhypfs1",
    "libxentoolcore1",
    "libyajl2",
    "libfdt1",
    "libuuid1",
    "zlib1g",
    "libc6",
    "libgcc-s1",
    "libtinfo6",
    "bash",
    "util-linux",
    "busybox-static",
)


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


def kernel_package_from_depends(depends_field: str) -> str:
    """Name the versioned kernel package that ``linux-image-arm64`` depends on.

    >>> kernel_package_from_depends("linux-image-6.1.0-56-arm64 (= 6.1.192-2)")
    'linux-image-6.1.0-56-arm64'
    """
    for group in parse_depends(depends_field):
        for name in group:
            if re.fullmatch(r"linux-image-\d[\w.+-]*-arm64(-unsigned)?", name):
                return name
    raise PackageError(
        f"{KERNEL_META_PACKAGE} depends on no versioned kernel image (Depends: {depends_field!r}); "
        "check the machine's apt sources for bookworm arm64")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


Runner = Callable[..., subprocess.CompletedProcess]


def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=False, text=True, capture_output=True, **kwargs)


class Apt:
    """The few apt and dpkg operations the builder needs, on the machine's own configuration."""

    def __init__(self, run: Runner = _run, lists_dir: Path = Path("/var/lib/apt/lists"),
                 log: Callable[[str], None] = print) -> None:
        self._run = run
        self.lists_dir = lists_dir
        self.log = log

    def _check(self, cmd: Sequence[str], what: str, **kwargs) -> str:
        result = self._run(cmd, **kwargs)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
            raise PackageError(f"{what} failed ({' '.join(cmd)}): " + " | ".join(detail))
        return result.stdout

    def ensure_architecture(self) -> None:
        """Add arm64 to dpkg's foreign architectures when it is not there yet."""
        foreign = self._check(["dpkg", "--print-foreign-architectures"], "listing dpkg architectures")
        if ARCH not in foreign.split():
            self.log(f"adding the {ARCH} architecture to dpkg")
            self._check(["dpkg", "--add-architecture", ARCH], f"dpkg --add-architecture {ARCH}")

    def lists_present(self) -> bool:
        """Whether apt already has package lists for arm64 (any source)."""
        if not self.lists_dir.is_dir():
            return False
        return any(f"binary-{ARCH}_Packages" in entry.name for entry in self.lists_dir.iterdir())

    def ensure_lists(self) -> None:
        """Run ``apt-get update`` only when no arm64 package list is present."""
        if not self.lists_present():
            self.log("apt has no arm64 package lists: running apt-get update")
            self._check(["apt-get", "update"], "apt-get update")

    def show(self, names: Iterable[str]) -> dict[str, PackageRecord]:
        """Candidate records of ``names`` (arm64), failing with the names apt does not know."""
        names = list(names)
        result = self._run(["apt-cache", "show", "--no-all-versions"] + [f"{n}:{ARCH}" for n in names])
        records = parse_package_records(result.stdout or "")
        unknown = [n for n in names if n not in records]
        if unknown:
            raise PackageError(
                f"apt knows no {ARCH} candidate for: {', '.join(unknown)}. The machine's apt sources "
                "must serve Debian bookworm for arm64 (then run 'apt-get update').")
        return {n: records[n] for n in names}

    def resolve(self) -> list[PackageRecord]:
        """Records of all packages the target needs, the kernel package resolved via the meta-package."""
        meta = self.show([KERNEL_META_PACKAGE])[KERNEL_META_PACKAGE]
        kernel = kernel_package_from_depends(meta.depends)
        records = self.show(list(BASE_PACKAGES) + [kernel])
        return [records[n] for n in list(BASE_PACKAGES) + [kernel]]

    def download(self, records: Sequence[PackageRecord], debs_dir: Path) -> dict[str, Path]:
        """Make sure each record's .deb is in ``debs_dir`` with the index's checksum.

        Files already there with the right checksum are kept; the others are fetched with
        ``apt-get download`` into a temporary folder and moved in only once verified.
        """
        debs_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        wanted = []
        for record in records:
            path = debs_dir / record.deb_name
            if path.is_file() and sha256_file(path) == record.sha256:
                paths[record.name] = path
            else:
                wanted.append(record)
        if not wanted:
            return paths
        self.log(f"downloading {len(wanted)} arm64 packages with apt-get download")
        with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".download-") as tmp:
            self._check(["apt-get", "download"] + [f"{r.name}:{ARCH}={r.version}" for r in wanted],
                        "apt-get download", cwd=tmp)
            fetched = {p.name.split("_", 1)[0]: p for p in Path(tmp).glob("*.deb")}
            for record in wanted:
                got = fetched.get(record.name)
                if got is None:
                    raise PackageError(f"apt-get download did not deliver {record.name} {record.version}")
                digest = sha256_file(got)
                if digest != record.sha256:
                    raise PackageError(
                        f"{record.name} {record.version}: checksum {digest} differs from apt's index "
                        f"({record.sha256}); run 'apt-get update' and retry")
                target = debs_dir / record.deb_name
                os.replace(got, target)
                paths[record.name] = target
        return paths


def extract_deb(deb: Path, dest: Path, run: Runner = _run) -> None:
    """Unpack a .deb's data into ``dest`` with ``dpkg-deb -x`` (no maintainer scripts run)."""
    dest.mkdir(parents=True, exist_ok=True)
    result = run(["dpkg-deb", "-x", str(deb), str(dest)])
    if result.returncode != 0:
        raise PackageError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()}")


def host_tool_packages() -> Mapping[str, str]:
    """Host programs the builder runs, each with the Debian package that provides it."""
    return {
        "apt-get": "apt",
        "apt-cache": "apt",
        "dpkg": "dpkg",
        "dpkg-deb": "dpkg",
        "mkfs.ext4": "e2fsprogs",
        "depmod": "kmod",
        "modprobe": "kmod",
        "qemu-system-aarch64": "qemu-system-arm",
    }


def missing_host_tools(which: Callable[[str], str | None] = shutil.which,
                       extra_dirs: Sequence[str] = ("/usr/sbin", "/sbin")) -> list[str]:
    """Messages for each host program that is missing, naming the apt package to install.

    ``extra_dirs`` are searched too: a non-root PATH often lacks /usr/sbin (mkfs.ext4, depmod).
    """
    missing = []
    for tool, package in host_tool_packages().items():
        found = which(tool) or any(os.access(os.path.join(d, tool), os.X_OK) for d in extra_dirs)
        if not found:
            missing.append(f"{tool} is missing: install it with 'apt-get install {package}'")
    return missing
