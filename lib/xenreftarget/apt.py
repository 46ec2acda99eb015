"""A private apt state: resolve and fetch Debian packages for any suite and architecture.

The machine's apt configuration is only read, never changed: the private state folder has its
own package lists, cache, an (almost) empty dpkg status and a sources file derived from the
machine's configured Debian sources with only the suite changed (``bookworm`` ->
``<suite>``, ``bookworm-updates`` -> ``<suite>-updates``, ...). No mirror address is chosen or
written here: the URIs, keyrings and options are the machine's own.

With that state ``apt-get install --print-uris`` resolves the dependency closure of the root
packages exactly as apt would install it into an empty system, and ``apt-cache show`` gives each
package's SHA-256 from the index before anything is downloaded. Packages that are needed only by
maintainer scripts or by tools the target never runs are declared installed in the private dpkg
status ("stand-ins"), so apt leaves them and everything only they pull in out of the closure.

The parsing and composing helpers are pure functions, tested without apt.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .packages import (
    Distro,
    PackageError,
    PackageRecord,
    kernel_package_from_depends,
    parse_control_stanzas,
    parse_package_records,
    sha256_file,
)

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
Log = Callable[[str], None]

DEFAULT_DISTRO = Distro()
#: Package lists older than this are refreshed with ``apt-get update`` before resolving.
LISTS_MAX_AGE_S = 24 * 3600
_MAX_DETAIL = 600


def _run(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=False, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class SourceEntry:
    """One apt source (a deb822 stanza, or one line of a sources.list)."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    #: Other fields in their written form, e.g. ``("Signed-By", "/usr/share/keyrings/x.gpg")``;
    #: a multi-line value keeps its lines.
    options: tuple[tuple[str, str], ...] = ()
    origin: str = ""

    def option(self, name: str) -> str:
        """The value of option ``name`` (case-insensitive), or ''."""
        return next((v for k, v in self.options if k.lower() == name.lower()), "")


def _deb822_fields(lines: list[tuple[int, str]], origin: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    last = ""
    for number, line in lines:
        if line[0] in " \t":
            if not last:
                raise PackageError(f"{origin}:{number}: continuation line without a field; "
                                   "fix the file's deb822 syntax")
            value = line.strip()
            fields[last] += "\n" + ("" if value == "." else value)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PackageError(f"{origin}:{number}: {line.strip()[:80]!r} is not 'Field: value'; "
                               "fix the file's deb822 syntax")
        last = key.strip()
        fields[last] = value.strip()
    return fields


def _deb822_stanzas(text: str, origin: str) -> list[tuple[int, dict[str, str]]]:
    stanzas: list[tuple[int, dict[str, str]]] = []
    block: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines() + [""], start=1):
        if line.startswith("#"):
            continue
        if line.strip():
            block.append((number, line))
        elif block:
            stanzas.append((block[0][0], _deb822_fields(block, origin)))
            block = []
    return stanzas


_LIST_FIELDS = ("types", "uris", "suites", "components")


def parse_deb822_sources(text: str, origin: str) -> list[SourceEntry]:
    """Entries of a deb822 ``.sources`` file; stanzas with ``Enabled: no`` are left out."""
    entries = []
    for line, fields in _deb822_stanzas(text, origin):
        lowered = {k.lower(): v for k, v in fields.items()}
        if lowered.get("enabled", "yes").strip().lower() == "no":
            continue
        missing = [f for f in ("types", "uris", "suites") if not lowered.get(f, "").split()]
        if missing:
            raise PackageError(f"{origin}:{line}: the source lacks {', '.join(missing)}; "
                               "fix the file or disable the stanza with 'Enabled: no'")
        options = tuple((k, v) for k, v in fields.items() if k.lower() not in _LIST_FIELDS)
        types, uris, suites, components = (tuple(lowered.get(f, "").split()) for f in _LIST_FIELDS)
        entries.append(SourceEntry(types, uris, suites, components, options, f"{origin}:{line}"))
    return entries


_OPTION_NAMES = {"signed-by": "Signed-By", "arch": "Architectures", "trusted": "Trusted",
                 "check-valid-until": "Check-Valid-Until", "lang": "Languages"}


def parse_one_line_sources(text: str, origin: str) -> list[SourceEntry]:
    """Entries of a one-line-style ``sources.list`` (``deb [opt=value ...] URI SUITE COMPONENT...``)."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        options: list[tuple[str, str]] = []
        match = re.match(r"(\S+)\s+\[([^\]]*)\]\s*(.*)", line)
        if match:
            kind, option_text, rest = match.groups()
            for word in option_text.split():
                key, _, value = word.partition("=")
                options.append((_OPTION_NAMES.get(key.lower(), key), value.replace(",", " ")))
        else:
            kind, _, rest = line.partition(" ")
        words = rest.split()
        if len(words) < 2:
            raise PackageError(f"{origin}:{number}: {line[:80]!r} needs a URI and a suite; fix the line")
        entries.append(SourceEntry((kind,), (words[0],), (words[1],), tuple(words[2:]),
                                   tuple(options), f"{origin}:{number}"))
    return entries


def read_machine_sources(etc_apt: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """Every enabled source of the machine: ``sources.list`` and ``sources.list.d/*.{list,sources}``."""
    entries: list[SourceEntry] = []
    files = [etc_apt / "sources.list"]
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        except OSError as err:
            raise PackageError(f"cannot read apt source file {path}: {err.strerror}") from None
        parse = parse_deb822_sources if path.suffix == ".sources" else parse_one_line_sources
        entries += parse(text, str(path))
    return entries


def os_release_codename(text: str) -> str:
    """``VERSION_CODENAME`` from an os-release file's text ('' when absent)."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "VERSION_CODENAME":
            return value.strip().strip("\"'")
    return ""


def is_debian_source(entry: SourceEntry) -> bool:
    """Whether an entry serves Debian's own archive (its keyring, or a ``debian*`` path on its URI)."""
    if "debian-archive-keyring" in entry.option("Signed-By"):
        return True
    for uri in entry.uris:
        segments = urllib.parse.urlsplit(uri).path.split("/")
        if any(s == "debian" or s.startswith("debian-") for s in segments):
            return True
    return False


def retarget_suite(suite: str, codename: str, target: str) -> str | None:
    """``bookworm-updates`` -> ``trixie-updates`` when moving from ``bookworm`` to ``trixie``.

    Returns None for suites that are not the machine's release (``stable``, ``sid``, ...).
    """
    if suite == codename:
        return target
    for separator in ("-", "/"):
        if suite.startswith(codename + separator):
            return target + suite[len(codename):]
    return None


def _render_field(key: str, value: str) -> str:
    first, *rest = value.split("\n")
    lines = [f"{key}: {first}".rstrip()]
    lines += [" " + (line if line else ".") for line in rest]
    return "\n".join(lines)


def derive_sources(entries: Iterable[SourceEntry], codename: str, suite: str, arch: str) -> str:
    """A deb822 sources text for ``suite``/``arch`` from the machine's Debian entries.

    Only ``deb`` entries of Debian's archive with the machine's release (``codename``) and the
    ``main`` component are used; URIs and options (keyring, validity checks) are kept as they
    are, ``Architectures`` becomes ``arch``.
    """
    stanzas = []
    for entry in entries:
        if "deb" not in entry.types or "main" not in entry.components or not is_debian_source(entry):
            continue
        suites = [s for s in (retarget_suite(x, codename, suite) for x in entry.suites) if s]
        if not suites:
            continue
        fields = [("Types", "deb"), ("URIs", " ".join(entry.uris)), ("Suites", " ".join(suites)),
                  ("Components", "main"), ("Architectures", arch)]
        fields += [(k, v) for k, v in entry.options
                   if k.lower() not in ("architectures", "enabled", "types", "components")]
        origin = f"# derived from {entry.origin}" if entry.origin else ""
        stanzas.append("\n".join(filter(None, [origin] + [_render_field(k, v) for k, v in fields])))
    if not stanzas:
        raise PackageError(
            f"the machine's apt sources name no Debian '{codename}' suite with the main component "
            "(read /etc/apt/sources.list and /etc/apt/sources.list.d/); configure a Debian source")
    return "\n\n".join(stanzas) + "\n"


def apt_options(state: Path, arch: str) -> list[str]:
    """apt options that confine apt to the private ``state`` folder and to ``arch``.

    The machine's apt.conf.d (proxies, timeouts) and trusted keyrings still apply.
    """
    settings = {
        "Dir::State": state / "state",
        "Dir::State::Lists": state / "state/lists",
        "Dir::State::status": state / "status",
        "Dir::Cache": state / "cache",
        "Dir::Cache::Archives": state / "cache/archives",
        "Dir::Etc::sourcelist": state / "sources.list",
        "Dir::Etc::sourceparts": state / "sources.list.d",
        "Dir::Etc::preferences": state / "preferences",
        "Dir::Etc::preferencesparts": state / "preferences.d",
        "Dir::Log": state / "log",
        "APT::Architecture": arch,
        "APT::Architectures": arch,
        "APT::Install-Recommends": "false",
        "APT::Install-Suggests": "false",
    }
    options: list[str] = []
    for key, value in settings.items():
        options += ["-o", f"{key}={value}"]
    return options


def stub_status(records: Iterable[PackageRecord], fields: Mapping[str, Mapping[str, str]]) -> str:
    """A dpkg status text that declares ``records`` installed (stand-ins, nothing unpacked).

    ``fields`` holds each package's ``Multi-Arch`` and ``Provides`` from the index, which the
    stand-in needs to satisfy ``pkg:any`` and virtual-package dependencies.
    """
    stanzas = []
    for record in records:
        lines = [f"Package: {record.name}", "Status: install ok installed",
                 f"Architecture: {record.architecture}", f"Version: {record.version}"]
        for key in ("Multi-Arch", "Provides"):
            value = fields.get(record.name, {}).get(key)
            if value:
                lines.append(f"{key}: {value}")
        lines.append("Description: stand-in declared by xenreftarget (not unpacked)")
        stanzas.append("\n".join(lines))
    return "\n\n".join(stanzas) + ("\n" if stanzas else "")


def parse_print_uris(text: str) -> list[tuple[str, str]]:
    """``(name, version)`` of each package in ``apt-get --print-uris`` output, in apt's order.

    Each line is ``'URI' name_version_arch.deb size hash``; apt writes an epoch's ':' as ``%3a``.
    """
    packages = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or not words[0].startswith("'") or not words[1].endswith(".deb"):
            continue
        parts = urllib.parse.unquote(words[1][:-len(".deb")]).split("_")
        if len(parts) != 3:
            raise PackageError(f"apt printed an unexpected package file name {words[1]!r}")
        packages.append((parts[0], parts[1]))
    return packages


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
    return " | ".join(lines)[-_MAX_DETAIL:]


class PrivateApt:
    """apt confined to ``<state_root>/<suite>-<arch>``: update, resolve, download.

    ``etc_apt`` and ``os_release`` are the machine's files that are read (never written):
    the configured sources, and the release codename that their suites are named after.
    """

    def __init__(self, state_root: Path, distro: Distro = DEFAULT_DISTRO, *, run: Runner = _run,
                 log: Log = print, etc_apt: Path = Path("/etc/apt"),
                 os_release: Path = Path("/etc/os-release"), clock: Callable[[], float] = time.time,
                 max_age_s: float = LISTS_MAX_AGE_S) -> None:
        distro.check()
        self.distro = distro
        self.state = Path(state_root) / f"{distro.suite}-{distro.arch}"
        self._run = run
        self.log = log
        self.etc_apt = etc_apt
        self.os_release = os_release
        self.clock = clock
        self.max_age_s = max_age_s

    # ------------------------------------------------------------------ state folder

    def options(self) -> list[str]:
        """The apt options of this state (see :func:`apt_options`)."""
        return apt_options(self.state, self.distro.arch)

    def _check(self, cmd: Sequence[str], what: str, **kwargs: object) -> str:
        result = self._run(list(cmd), **kwargs)
        if result.returncode != 0:
            raise PackageError(f"{what} failed (exit status {result.returncode}): {_tail(result)}")
        return result.stdout or ""

    def _apt(self, tool: str, *args: str) -> list[str]:
        return [tool, *self.options(), *args]

    def sources_text(self) -> str:
        """The derived sources (see :func:`derive_sources`) for this state's suite."""
        try:
            codename = os_release_codename(self.os_release.read_text(encoding="utf-8", errors="replace"))
        except OSError as err:
            raise PackageError(f"cannot read {self.os_release}: {err.strerror}") from None
        if not codename:
            raise PackageError(f"{self.os_release} has no VERSION_CODENAME, so the suite of the "
                               "machine's apt sources is unknown; the builder needs a Debian machine")
        return derive_sources(read_machine_sources(self.etc_apt), codename,
                              self.distro.suite, self.distro.arch)

    def prepare(self) -> bool:
        """Create the state folder; returns whether the derived sources changed since last time."""
        for folder in ("state/lists/partial", "cache/archives/partial", "sources.list.d",
                       "preferences.d", "log"):
            (self.state / folder).mkdir(parents=True, exist_ok=True)
        for name in ("sources.list", "preferences", "status"):
            (self.state / name).touch()
        sources = self.state / "sources.list.d" / "debian.sources"
        text = self.sources_text()
        if sources.is_file() and sources.read_text() == text:
            return False
        sources.write_text(text)
        return True

    def lists_age(self) -> float | None:
        """Seconds since the last successful ``apt-get update`` (None: never)."""
        stamp = self.state / "state" / "updated"
        if not stamp.is_file():
            return None
        return self.clock() - stamp.stat().st_mtime

    def update(self) -> None:
        """``apt-get update`` in the private state."""
        self.log(f"apt-get update for Debian {self.distro.suite}/{self.distro.arch} (private state "
                 f"{self.state})")
        self._check(self._apt("apt-get", "-q", "update"), "apt-get update")
        (self.state / "state" / "updated").touch()

    def ensure_lists(self) -> None:
        """Update the package lists when missing, older than ``max_age_s`` or of other sources."""
        changed = self.prepare()
        age = self.lists_age()
        if changed or age is None or age > self.max_age_s:
            self.update()

    # ------------------------------------------------------------------ resolving

    def show(self, specs: Sequence[str]) -> dict[str, PackageRecord]:
        """Records of ``specs`` (``name`` for the candidate, or ``name=version``)."""
        result = self._run(self._apt("apt-cache", "show", "--no-all-versions", *specs))
        records = parse_package_records(result.stdout or "")
        names = [spec.split("=", 1)[0] for spec in specs]
        unknown = [n for n in names if n not in records]
        if unknown:
            raise PackageError(
                f"apt knows no {self.distro.suite}/{self.distro.arch} package {', '.join(unknown)} "
                f"({_tail(result) or 'no record'}); check the machine's Debian apt source")
        return {n: records[n] for n in names}

    def _declare_stand_ins(self) -> None:
        names = list(self.distro.stand_ins())
        result = self._run(self._apt("apt-cache", "show", "--no-all-versions", *names))
        fields = {s.get("Package", ""): s for s in parse_control_stanzas(result.stdout or "")}
        records = self.show(names)
        (self.state / "status").write_text(stub_status(records.values(), fields))

    def closure(self, roots: Sequence[str]) -> list[tuple[str, str]]:
        """``(name, version)`` of every package apt would install for ``roots`` into this state."""
        output = self._check(self._apt("apt-get", "install", "--print-uris", "-qq", *roots),
                             f"resolving the dependencies of {' '.join(roots)}")
        return parse_print_uris(output)

    def resolve(self) -> list[PackageRecord]:
        """Records of the dependency closure of the root packages, then the kernel package."""
        self._declare_stand_ins()
        closure = self.closure(self.distro.root_packages())
        records = self.show([f"{name}={version}" for name, version in closure])
        meta = self.show([self.distro.kernel_meta_package])[self.distro.kernel_meta_package]
        kernel = kernel_package_from_depends(meta.depends, self.distro.arch)
        return [records[name] for name, _ in closure] + [self.show([kernel])[kernel]]

    # ------------------------------------------------------------------ downloading

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
        self.log(f"downloading {len(wanted)} {self.distro.arch} packages with apt-get download")
        with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".download-") as tmp:
            self._check(self._apt("apt-get", "-q", "download", *(f"{r.name}={r.version}" for r in wanted)),
                        "apt-get download", cwd=tmp)
            fetched = {p.name.split("_", 1)[0]: p for p in Path(tmp).glob("*.deb")}
            for record in wanted:
                paths[record.name] = _verified_move(fetched.get(record.name), record, debs_dir)
        return paths


def _verified_move(got: Path | None, record: PackageRecord, debs_dir: Path) -> Path:
    if got is None:
        raise PackageError(f"apt-get download did not deliver {record.name} {record.version}")
    digest = sha256_file(got)
    if digest != record.sha256:
        raise PackageError(
            f"{record.name} {record.version}: checksum {digest} differs from apt's index "
            f"({record.sha256}); the package lists may be out of date: build again")
    target = debs_dir / record.deb_name
    os.replace(got, target)
    return target
