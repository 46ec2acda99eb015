"""The Debian side of the host-program check: setup-host's package list, a minimal Debian's
package set, and the package that ships a program.

*A minimal Debian 12* is what ``mmdebstrap --variant=required`` (the same set as ``minbase``)
installs, and what ``scripts/check-fresh-machine`` starts from: every package that is
``Essential: yes`` or ``Priority: required``, plus ``apt`` (mmdebstrap(1), VARIANTS), with their
dependencies. Debian's policy keeps those dependencies inside the set, so on any Debian 12 machine
the set is read from dpkg's database (``dpkg-query -W -f '${Package} ${Essential} ${Priority}'``)
without building a tree; ``scripts/check-fresh-machine`` then proves it on a real minimal tree.
A program's package is found with ``dpkg-query -S`` on its path, on the path with symlinks
resolved (``/usr/bin/awk`` -> ``/usr/bin/mawk``), and on the other side of the /usr merge
(``/usr/sbin/mkfs.ext4`` is shipped as ``/sbin/mkfs.ext4``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hostprograms import ScanResult, Unresolved, Use

#: Where a fresh root shell looks for programs (Debian's default PATH for root).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGE_LIST = "scripts/setup-host.packages"


def setup_host_packages(repo: Path) -> list[str]:
    """The packages scripts/setup-host installs, read the way it reads them."""
    names = []
    for line in (repo / PACKAGE_LIST).read_text(encoding="utf-8").splitlines():
        name = re.sub(r"\s", "", line.split("#", 1)[0])
        if name:
            names.append(name)
    return names


@dataclass(frozen=True)
class Installed:
    """One installed package as dpkg records it."""

    name: str
    essential: bool
    priority: str
    depends: tuple[str, ...]  # every alternative of Depends and Pre-Depends, versions dropped
    provides: tuple[str, ...]


def _stdout(cmd: Sequence[str]) -> str:
    # dpkg-query -S exits 1 when one of several paths belongs to no package: that is an answer.
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False).stdout


def installed_packages(run: Callable[[Sequence[str]], str] = _stdout) -> dict[str, Installed]:
    """Installed packages from ``dpkg-query`` (``run`` returns a command's stdout; for tests)."""
    fields = "${Package}\t${Essential}\t${Priority}\t${Depends}\t${Pre-Depends}\t${Provides}\t${db:Status-Abbrev}\n"
    output = run(["dpkg-query", "-W", "-f", fields])
    packages: dict[str, Installed] = {}
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) != 7 or not parts[6].startswith("ii"):
            continue
        name, essential, priority, depends, pre_depends, provides, _ = parts
        packages[name] = Installed(name, essential == "yes", priority,
                                   tuple(_relation_names(depends + "," + pre_depends)),
                                   tuple(_relation_names(provides)))
    return packages


def _relation_names(field: str) -> Iterable[str]:
    for alternative in re.split(r"[,|]", field):
        name = alternative.strip().split(" ", 1)[0].split(":", 1)[0].split("(", 1)[0]
        if name:
            yield name


def closure(names: Iterable[str], packages: Mapping[str, Installed]) -> set[str]:
    """``names`` and every installed package they depend on (any alternative, via Provides)."""
    providers: dict[str, list[str]] = {}
    for package in packages.values():
        for virtual in package.provides:
            providers.setdefault(virtual, []).append(package.name)
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        for real in ([name] if name in packages else []) + providers.get(name, []):
            if real not in found:
                found.add(real)
                todo.extend(packages[real].depends)
    return found


def minimal_debian(packages: Mapping[str, Installed]) -> set[str]:
    """The packages of ``mmdebstrap --variant=required`` among ``packages`` (see the docstring)."""
    base = [p.name for p in packages.values() if p.essential or p.priority == "required"] + ["apt"]
    return closure(base, packages)


def locate(program: str, path: str = SYSTEM_PATH) -> str | None:
    """Where a fresh root shell finds ``program`` (``command -v`` on Debian's PATH for root)."""
    return shutil.which(program, path=path)


def candidate_paths(found: str) -> list[str]:
    """The paths dpkg may record for a program found at ``found``."""
    paths = []
    for path in (found, os.path.realpath(found)):
        for variant in (path, path[4:] if path.startswith("/usr/") else "/usr" + path):
            if variant not in paths:
                paths.append(variant)
    return paths


def owners(paths: Sequence[str], run: Callable[[Sequence[str]], str] = _stdout) -> dict[str, list[str]]:
    """The packages dpkg records for each of ``paths`` (paths no package ships are left out)."""
    output = run(["dpkg-query", "-S", *paths])
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line.startswith("diversion by") or ": " not in line:
            continue
        names, _, path = line.partition(": ")
        found.setdefault(path.strip(), []).extend(n.strip().split(":", 1)[0] for n in names.split(","))
    return found


@dataclass(frozen=True)
class Verdict:
    """Where a program comes from on this machine."""

    program: str
    path: str | None  # None: not installed
    packages: tuple[str, ...]  # Debian packages shipping it (empty: none)
    source: str  # "setup-host", "minimal Debian", "venv", or "" (a problem)


def classify(program: str, allowed_setup: set[str], allowed_minimal: set[str], venv_bin: Path,
             find: Callable[[str], str | None] = locate,
             dpkg_owners: Callable[[Sequence[str]], dict[str, list[str]]] = owners) -> Verdict:
    """Whether ``program`` comes from setup-host's packages, a minimal Debian or the venv."""
    found = find(program)
    if found is None:
        if (venv_bin / program).is_file():
            return Verdict(program, str(venv_bin / program), (), "venv")
        return Verdict(program, None, (), "")
    candidates = candidate_paths(found)
    recorded = dpkg_owners(candidates)
    names: list[str] = []
    for candidate in candidates:
        names += [n for n in recorded.get(candidate, []) if n not in names]
    if any(n in allowed_minimal for n in names):
        return Verdict(program, found, tuple(names), "minimal Debian")
    if any(n in allowed_setup for n in names):
        return Verdict(program, found, tuple(names), "setup-host")
    return Verdict(program, found, tuple(names), "")


def problem(verdict: Verdict, uses: Sequence[Use], limit: int = 3) -> str:
    """One line saying what is wrong with a program that comes from neither source, and the fix."""
    where = "; ".join(u.where() for u in uses[:limit])
    if len(uses) > limit:
        where += f"; and {len(uses) - limit} more"
    if verdict.path is None:
        return (f"{verdict.program} (run at {where}) is not installed on this machine: run scripts/setup-host; "
                f"if it is still missing, find its Debian package (apt-file search --regexp "
                f"'bin/{verdict.program}$') and add it to {PACKAGE_LIST}")
    if not verdict.packages:
        return (f"{verdict.program} (run at {where}) is {verdict.path}, which no Debian package ships: "
                f"install it from a Debian package named in {PACKAGE_LIST}, or run it from the venv")
    return (f"{verdict.program} (run at {where}) comes from the Debian package {verdict.packages[0]}, which "
            f"scripts/setup-host does not install and a minimal Debian 12 lacks: add {verdict.packages[0]} "
            f"to {PACKAGE_LIST}")


def host_program_problems(scan: ScanResult,
                          dynamic: Mapping[tuple[str, str], tuple[str | tuple[str, ...] | None, str]],
                          not_from_debian: Mapping[str, str],
                          verdict_of: Callable[[str], Verdict]) -> list[str]:
    """Every problem with the programs a scan found, one line each (empty: all provided).

    ``dynamic`` declares what each computed launch runs (a program, several, or None: it only
    looks programs up), keyed by (path, function); a computed launch it does not declare, and a declaration whose launch is
    gone, are problems too.
    ``not_from_debian`` names programs that deliberately come from elsewhere, with the reason.
    """
    problems = []
    computed: dict[tuple[str, str], Unresolved] = {}
    for launch in scan.unresolved:
        computed.setdefault((launch.path, launch.function), launch)
        if (launch.path, launch.function) not in dynamic:
            problems.append(f"{launch.where()}: the scan cannot tell which program this runs "
                            f"({launch.expression}): name it with a literal, or declare what it runs "
                            "in DYNAMIC_LAUNCHES (tests/fresh/test_host_programs.py)")
    programs = scan.programs()
    for key, (program, _why) in dynamic.items():
        launch = computed.get(key)
        if launch is None:
            problems.append(f"DYNAMIC_LAUNCHES declares a computed launch in {key[0]} ({key[1]}) that the "
                            "scan no longer finds: remove or update the entry")
            continue
        if program is None:
            continue
        where = f"{launch.path}:{launch.line}"
        for name in (program,) if isinstance(program, str) else program:
            programs.setdefault(name, []).append(Use(name, where, where))
    for program, uses in sorted(programs.items()):
        if program in not_from_debian:
            continue
        verdict = verdict_of(program)
        if not verdict.source:
            problems.append(problem(verdict, uses))
    return problems
