"""The warm-start snapshot store: published snapshots, their manifests, the build lock, checksums.

A *snapshot* is a qcow2 overlay over the target's root filesystem (``qemu-img create -f qcow2
-b ROOTFS -F raw``) holding an internal snapshot made with ``savevm``; the base images are only
ever read.  :class:`SnapshotCache` publishes one per key atomically (built in ``.tmp-*``, renamed
into place) under a per-key ``flock``, and checks a published one before it is used (manifest,
key, overlay size and time).  What a snapshot is keyed by and how a session uses it is
:mod:`xenqemu.warm`.

Cache layout (default ``$XENQEMU_SNAPSHOT_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/meta-xen-ref/
xenqemu-snapshots``)::

    <cache>/<key[:24]>/rootfs-overlay.qcow2   the overlay with the internal snapshot
    <cache>/<key[:24]>/snapshot.json          the manifest: key, inputs, identity, sizes, timings
    <cache>/<key[:24]>.lock                   flock held while building that snapshot
    <cache>/checksums.json                    memoised image checksums
    <cache>/.tmp-*                            a build in progress (renamed into place when done)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import XenqemuError

__all__ = [
    "MANIFEST_NAME",
    "OVERLAY_NAME",
    "SNAPSHOT_NAME",
    "ChecksumMemo",
    "Snapshot",
    "SnapshotCache",
    "SnapshotError",
    "SnapshotKey",
    "WarmStartWarning",
    "create_overlay",
    "default_snapshot_cache",
    "describe_key_change",
    "qemu_version",
    "snapshot_names",
]

#: Name of the internal snapshot inside the overlay (``savevm``/``-loadvm``).
SNAPSHOT_NAME = "xenqemu-warm"
OVERLAY_NAME = "rootfs-overlay.qcow2"
MANIFEST_NAME = "snapshot.json"


class WarmStartWarning(UserWarning):
    """A snapshot could not be used (mismatch, corruption, failed restore): booting cold."""



class SnapshotError(XenqemuError, RuntimeError):
    """A snapshot could not be built or used; the message says why."""



def default_snapshot_cache() -> Path:
    """``$XENQEMU_SNAPSHOT_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/meta-xen-ref/xenqemu-snapshots``."""
    explicit = os.environ.get("XENQEMU_SNAPSHOT_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meta-xen-ref" / "xenqemu-snapshots"



class ChecksumMemo:
    """SHA-256 of files, memoised in a JSON file by (resolved path, size, mtime_ns, inode).

    A file rewritten in place changes its mtime (and usually its size), which invalidates the
    entry; the memo only saves re-reading unchanged images on every warm start.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    self._entries = {k: v for k, v in data.items() if isinstance(v, dict)}
            except (OSError, ValueError):
                self._entries = {}  # a damaged memo is only a lost optimisation

    def sha256(self, file: Path) -> str:
        """The file's SHA-256 (hex), from the memo when the file is unchanged."""
        return self._memoised(file, "", "sha256", _hash_file)

    def version(self, binary: Path) -> str:
        """``BINARY --version`` (first line), memoised like the checksums."""
        return self._memoised(binary, "version:", "version", lambda path: qemu_version(str(path)))

    def _memoised(self, file: Path, prefix: str, field: str, compute: Callable[[Path], str]) -> str:
        """``compute(file)``, from the memo entry ``prefix + path`` while the file is unchanged."""
        resolved = Path(file).resolve()
        st = resolved.stat()
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
        key = prefix + str(resolved)
        entry = self._entries.get(key)
        if entry is not None and all(entry.get(k) == v for k, v in stamp.items()) and field in entry:
            return str(entry[field])
        value = compute(resolved)
        self._entries[key] = dict(stamp, **{field: value})
        self._dirty = True
        return value

    def save(self) -> None:
        """Write the memo back (atomically) if it changed."""
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".checksums-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self._entries, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)
        self._dirty = False



def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()



def qemu_version(binary: str) -> str:
    """The first line of ``BINARY --version`` (raises :class:`SnapshotError` if it cannot run)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        raise SnapshotError(f"cannot run {binary} --version: {err}") from err
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


@dataclass(frozen=True)
class SnapshotKey:
    """What a snapshot depends on (``inputs``) and its digest."""

    digest: str
    inputs: dict[str, Any] = field(hash=False, compare=False)

    @property
    def short(self) -> str:
        """The cache folder name."""
        return self.digest[:24]



def describe_key_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A short human-readable reason why two key input sets differ ("rootfs checksum", ...)."""
    reasons = []
    for role in sorted(set(old.get("images", {})) | set(new.get("images", {}))):
        if old.get("images", {}).get(role) != new.get("images", {}).get(role):
            reasons.append(f"image {role} changed")
    for name in ("qemu", "argv", "user", "console_protocol", "format", "snapshot_name"):
        if old.get(name) != new.get(name):
            reasons.append(f"{name} changed")
    return ", ".join(reasons) or "no difference"


@dataclass
class Snapshot:
    """A published snapshot: its folder, overlay, and manifest."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def overlay(self) -> Path:
        """The qcow2 overlay holding the internal snapshot."""
        return self.directory / OVERLAY_NAME

    @property
    def identity(self) -> str:
        """The console identity token of the shell saved in the snapshot."""
        return str(self.manifest["identity"])

    @property
    def name(self) -> str:
        """The internal snapshot's name (``-loadvm``)."""
        return str(self.manifest.get("snapshot_name", SNAPSHOT_NAME))

    def copy_overlay(self, destination: Path) -> Path:
        """Copy the overlay for one session (sparse; a reflink where the file system has them)."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(self.overlay), str(destination)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SnapshotError(f"copying {self.overlay} to {destination} failed: {result.stderr.strip()}")
        return destination



class SnapshotCache:
    """The folder of warm-start snapshots (see the module docstring)."""

    def __init__(self, directory: os.PathLike[str] | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_snapshot_cache()

    def path_for(self, key: SnapshotKey) -> Path:
        """The folder a snapshot with ``key`` is published to."""
        return self.directory / key.short

    def memo(self) -> ChecksumMemo:
        """The checksum memo of this cache."""
        return ChecksumMemo(self.directory / "checksums.json")

    @contextlib.contextmanager
    def lock(self, key: SnapshotKey, timeout: float = 3600.0) -> Iterator[None]:
        """Hold the build lock of ``key`` (waits while another session builds it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key.short}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            end = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > end:
                        raise SnapshotError(f"waited {timeout:.0f}s for the lock {path} "
                                            "(another session building this snapshot)") from None
                    time.sleep(0.5)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def check(self, key: SnapshotKey) -> Snapshot | None:
        """The published snapshot for ``key``; None if there is none.

        Raises :class:`SnapshotError` when one is there but does not check out (manifest
        unreadable, key mismatch, overlay missing or changed since it was published).
        """
        folder = self.path_for(key)
        if not folder.exists():
            return None
        manifest_path = folder / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SnapshotError(f"{manifest_path}: unreadable manifest ({err})") from None
        if manifest.get("key") != key.digest:
            reason = describe_key_change(manifest.get("inputs", {}), key.inputs)
            raise SnapshotError(f"{manifest_path}: made for key {str(manifest.get('key'))[:24]}, "
                                f"not {key.short} ({reason})")
        overlay = folder / OVERLAY_NAME
        try:
            st = overlay.stat()
        except OSError:
            raise SnapshotError(f"{overlay}: missing") from None
        expected = manifest.get("overlay", {})
        if st.st_size != expected.get("size") or st.st_mtime_ns != expected.get("mtime_ns"):
            raise SnapshotError(f"{overlay}: changed since it was saved (size {st.st_size}, expected "
                                f"{expected.get('size')}; modification time differs: "
                                f"{st.st_mtime_ns != expected.get('mtime_ns')})")
        if not isinstance(manifest.get("identity"), str) or not manifest["identity"]:
            raise SnapshotError(f"{manifest_path}: no console identity recorded")
        return Snapshot(folder, manifest)

    def discard(self, key: SnapshotKey) -> None:
        """Remove the published snapshot of ``key`` (atomically out of sight, then deleted)."""
        folder = self.path_for(key)
        if not folder.exists():
            return
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.directory))
        os.rename(folder, trash / folder.name)
        shutil.rmtree(trash, ignore_errors=True)

    def build(self, key: SnapshotKey, base_rootfs: Path, base_format: str,
              save: Callable[[Path], dict[str, Any]]) -> Snapshot:
        """Build and publish the snapshot of ``key``; call with :meth:`lock` held.

        Creates the overlay in a temporary folder of the cache, calls ``save(overlay)`` (which
        boots a machine on it, saves the VM and returns manifest fields such as ``identity``),
        checks that QEMU recorded the snapshot, writes the manifest and renames the folder into
        place.  Anything failing leaves no partial snapshot behind.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.directory))
        os.chmod(tmp, 0o755)
        try:
            overlay = tmp / OVERLAY_NAME
            create_overlay(base_rootfs, base_format, overlay)
            fields = save(overlay)
            names = snapshot_names(overlay)
            if SNAPSHOT_NAME not in names:
                raise SnapshotError(f"{overlay}: QEMU did not record snapshot {SNAPSHOT_NAME!r} "
                                    f"(snapshots: {names or 'none'})")
            st = overlay.stat()
            manifest = {
                "key": key.digest,
                "inputs": key.inputs,
                "snapshot_name": SNAPSHOT_NAME,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "overlay": {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                            "allocated": st.st_blocks * 512},
            }
            manifest.update(fields)
            with open(tmp / MANIFEST_NAME, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            with open(overlay, "rb") as f:
                os.fsync(f.fileno())
            final = self.path_for(key)
            if final.exists():  # a stale or damaged one (the caller decided to rebuild)
                self.discard(key)
            os.rename(tmp, final)
            return Snapshot(final, manifest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)



def create_overlay(base: Path, base_format: str, overlay: Path) -> None:
    """``qemu-img create -f qcow2 -b BASE -F FORMAT OVERLAY`` (the base is only read)."""
    result = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(Path(base).resolve()),
                             "-F", base_format, str(overlay)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SnapshotError(f"qemu-img create of {overlay} over {base} failed: {result.stderr.strip()}")



def snapshot_names(image: Path) -> list[str]:
    """Names of the internal snapshots in a qcow2 image (``qemu-img snapshot -l``)."""
    result = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(image)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SnapshotError(f"qemu-img info {image} failed: {result.stderr.strip()}")
    info = json.loads(result.stdout)
    return [str(s.get("name")) for s in info.get("snapshots", [])]
