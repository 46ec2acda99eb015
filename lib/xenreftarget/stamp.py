"""When to rebuild: the input key of a build and the manifest stored next to its output.

A build's key covers everything that changes its output: the exact .deb files (name, version,
SHA-256 from apt's index, known before anything is downloaded), the builder's own source, the
bundling engine's source (the guests are bundled with it) and a format number for changes of
layout. The manifest (``xen-ref-target.json`` in the output folder) records the key, the inputs
and the files produced with their sizes; a target is current only when the key matches and every
recorded file is still there with its size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .packages import PackageRecord

#: Bump when the output layout changes in a way the sources do not show.
FORMAT_VERSION = 1
MANIFEST_NAME = "xen-ref-target.json"


def source_digest(folders: Iterable[Path]) -> dict[str, str]:
    """SHA-256 of every ``*.py`` file below ``folders``, keyed ``<folder name>/<relative path>``."""
    digests: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def build_inputs(records: Sequence[PackageRecord], sources: Mapping[str, str],
                 settings: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs of a build, in a JSON-serialisable form."""
    return {
        "format": FORMAT_VERSION,
        "packages": {r.name: {"version": r.version, "sha256": r.sha256, "file": r.deb_name}
                     for r in sorted(records, key=lambda r: r.name)},
        "sources": dict(sorted(sources.items())),
        "settings": dict(sorted(settings.items())),
    }


def input_key(inputs: Mapping[str, Any]) -> str:
    """The hex SHA-256 of the canonical JSON form of ``inputs``."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two input sets (for the "rebuilding because" line)."""
    changes: list[str] = []
    if old.get("format") != new.get("format"):
        changes.append(f"layout format {old.get('format')} -> {new.get('format')}")
    for section in ("packages", "sources", "settings"):
        before, after = old.get(section, {}), new.get(section, {})
        for name in sorted(set(before) | set(after)):
            if name not in before:
                changes.append(f"{section}: {name} added")
            elif name not in after:
                changes.append(f"{section}: {name} removed")
            elif before[name] != after[name]:
                if section == "packages":
                    changes.append(f"package {name}: {before[name].get('version')} -> "
                                   f"{after[name].get('version')}")
                else:
                    changes.append(f"{section}: {name} changed")
    return changes


def file_records(folder: Path) -> dict[str, int]:
    """Sizes of the regular files directly in ``folder`` (symlinks and the manifest left out)."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())
            if p.is_file() and not p.is_symlink() and p.name != MANIFEST_NAME}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest in ``folder``, or None when it is missing or unreadable."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Write the manifest (the last file of a build, so its presence marks completion)."""
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def check_current(folder: Path, key: str) -> tuple[bool, str]:
    """Whether the target in ``folder`` was built from ``key`` and is intact; with the reason."""
    manifest = read_manifest(folder)
    if manifest is None:
        return False, "no previous build"
    if manifest.get("key") != key:
        return False, "inputs changed"
    for name, size in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return False, f"{name} is missing"
        if path.stat().st_size != size:
            return False, f"{name} changed size"
    return True, "up to date"
