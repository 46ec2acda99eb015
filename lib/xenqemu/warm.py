"""Warm start: save a booted Xen host once, start later sessions from it in seconds.

A *snapshot* is a qcow2 overlay over the target's root filesystem (``qemu-img create -f qcow2
-b ROOTFS -F raw``) holding an internal snapshot made with ``savevm`` while dom0 waited at its
shell with the toolstack up: the whole VM state (Xen, dom0, xenstored, xenconsoled, the bridge
and its DHCP lease, QEMU's devices and user-mode network) plus the disk as it was at that moment.
The base images are only ever read: QEMU opens the backing file read-only, and ``savevm`` writes
into the overlay alone.

A session starts from it with ``-loadvm``.  ``loadvm`` needs the snapshot in the top image of
the drive (a throwaway overlay on top of it, or ``-snapshot``, hides it: QEMU then says "Snapshot
... does not exist in one or more devices"), so each session runs on its own copy of the saved
overlay in its run directory (``cp --sparse=always --reflink=auto``: ~120 MB, a tenth of a second
from the page cache, instant on a reflink file system) and deletes it when it stops.  Sessions
never write into the cache and any number of them can run at once.

The snapshot is keyed (:func:`snapshot_key`) by everything that shapes it: the SHA-256 of every
image file (Xen, dom0 kernel, initrd, root filesystem, DTB/BIOS when used), the QEMU binary
(``--version`` and its SHA-256), the full QEMU command line with the per-run paths (run dir,
sockets, logs, overlay) replaced by placeholders, the login user and the console protocol's
helper script.  Checksums are memoised per file by (path, size, mtime, inode) so a warm start
does not re-read 400 MB of images.  A changed key builds a new snapshot; a snapshot whose
manifest or overlay does not check out, or that QEMU cannot load, is reported with a warning and
the session boots cold (:class:`WarmStartWarning`).

This module is the *warm-start strategy* of a :class:`~xenqemu.machine.QemuMachine` (the
machine owns QEMU, QMP and the console; :mod:`xenqemu.boot` is the cold-boot strategy): it
computes the key (:func:`snapshot_key`), finds or builds the snapshot in the store
(:mod:`xenqemu.snapshots`, re-exported here), points the machine's drive at a copy of it, and
after the launch resumes the VM, re-attaches the console and sets dom0's clock; when anything
fails it warns, keeps the attempt's logs and hands the machine back for a cold boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xenboot.multiboot import multiboot_modules
from xenboot.qemuopts import files_named

from .boot import BootError, PhaseResult
from .cmdline import RunPaths, build_argv
from .console import ConsoleChannel, ConsoleError, helper_script
from .errors import MachineError
from .options import LaunchOptions, WarmOptions
from .snapshots import (
    MANIFEST_NAME,
    OVERLAY_NAME,
    SNAPSHOT_NAME,
    ChecksumMemo,
    Snapshot,
    SnapshotCache,
    SnapshotError,
    SnapshotKey,
    WarmStartWarning,
    create_overlay,
    default_snapshot_cache,
    describe_key_change,
    qemu_version,
    snapshot_names,
)
from .target import Target

if TYPE_CHECKING:
    from .machine import QemuMachine

__all__ = [
    "MANIFEST_NAME",
    "OVERLAY_NAME",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_NAME",
    "ChecksumMemo",
    "Snapshot",
    "SnapshotCache",
    "SnapshotError",
    "SnapshotKey",
    "WarmStart",
    "WarmStartWarning",
    "create_overlay",
    "default_snapshot_cache",
    "describe_key_change",
    "digest_inputs",
    "image_files",
    "key_argv",
    "qemu_version",
    "snapshot_key",
    "snapshot_names",
]

#: Bumped when the layout or the meaning of a snapshot changes; part of the key.
SNAPSHOT_FORMAT = 1
#: Placeholders for the per-run paths in the keyed command line.
RUN_DIR_PLACEHOLDER = Path("/@RUN_DIR@")
OVERLAY_PLACEHOLDER = Path("/@OVERLAY@")
#: Logs of a failed restore, kept in ``warm-attempt/`` of the run directory.
ATTEMPT_LOGS = ("serial.log", "console.log", "qemu-stderr.log", "qemu-cmdline.txt", "transcript.log",
                "transcript.jsonl", "qmp-events.jsonl", "watchdog.log")


# ---------------------------------------------------------------------------------------------
# the key


def key_argv(target: Target, *, hostfwd: Sequence[str] = (), extra_args: Sequence[str] = (),
             xen_cmdline_extra: str = "", qemu_binary: str | None = None) -> list[str]:
    """The QEMU command line of a warm session with its per-run paths replaced by placeholders."""
    paths = RunPaths.in_dir(RUN_DIR_PLACEHOLDER)
    return build_argv(target, paths, snapshot=False, hostfwd=hostfwd, extra_args=extra_args,
                      xen_cmdline_extra=xen_cmdline_extra, qemu_binary=qemu_binary,
                      rootfs_overlay=OVERLAY_PLACEHOLDER)


def digest_inputs(inputs: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of the key inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def snapshot_key(target: Target, argv: Sequence[str], *, user: str, qemu: dict[str, str],
                 memo: ChecksumMemo, quiet_kernel: bool = True) -> SnapshotKey:
    """The key of the snapshot for ``target`` started with ``argv`` (see :func:`key_argv`).

    ``qemu`` holds the binary's ``version`` and ``sha256``.  Image files are checksummed through
    ``memo``.
    """
    images = {}
    for role, path in image_files(target).items():
        images[role] = {"path": str(Path(path).resolve()), "sha256": memo.sha256(Path(path))}
    protocol = hashlib.sha256(helper_script("@IDENTITY@", quiet_kernel).encode()).hexdigest()
    inputs: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "snapshot_name": SNAPSHOT_NAME,
        "images": images,
        "qemu": dict(qemu),
        "argv": list(argv),
        "user": user,
        "console_protocol": protocol,
    }
    return SnapshotKey(digest_inputs(inputs), inputs)


def image_files(target: Target) -> dict[str, Path]:
    """Every image file the target boots from, by role (``xen``, ``rootfs``, ``kernel:Image``...)."""
    roles: dict[str, Path] = {}
    for role, path in (("xen", target.kernel), ("dtb", target.dtb), ("bios", target.bios),
                       ("rootfs", target.rootfs)):
        if path is not None:
            roles[role] = path
    if target.dom0 is not None:
        roles["dom0_kernel"] = target.dom0.kernel
        if target.dom0.initrd is not None:
            roles["dom0_initrd"] = target.dom0.initrd
    # files named by device/drive options (qemuboot.conf's guest-loader kernel= and initrd=)
    for prop, value in files_named(list(target.extra_args) + list(target.rng_args)):
        if "@" not in value and os.path.isfile(value):
            roles.setdefault(f"{prop}:{Path(value).name}", Path(value))
    # x86: dom0's kernel and initrd as multiboot modules of -initrd
    for module, _ in multiboot_modules(list(target.extra_args)):
        if os.path.isfile(module):
            roles.setdefault(f"multiboot:{Path(module).name}", Path(module))
    return roles


# ---------------------------------------------------------------------------------------------
# the strategy


def first_line(text: str, after: str = "") -> str:
    """The first non-empty line of ``text`` (after the line ``after``, when given and present)."""
    lines = text.splitlines()
    if after and after in lines:
        lines = lines[lines.index(after) + 1:]
    return next((line.strip() for line in lines if line.strip()), text.strip()[:200])


class WarmStart:
    """Start one machine from a snapshot of its booted host (see the module docstring).

    ``result`` says what happened: ``"built"`` while a snapshot built by this session waits to be
    restored, then ``"restored"``, ``"built+restored"``, or ``"cold"`` after a fallback.
    """

    def __init__(self, machine: QemuMachine, options: WarmOptions) -> None:
        self.machine = machine
        self.options = options
        self.snapshot: Snapshot | None = None
        self.session_overlay: Path | None = None
        self.result: str | None = None

    # -------------------------------------------------------------- reporting

    def report(self, message: str) -> None:
        """One line in the run directory's ``warm-start.log``."""
        with open(self.machine.run_dir / "warm-start.log", "a", encoding="utf-8") as f:
            f.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")

    def warning(self, message: str) -> None:
        """Log and report why the snapshot is not used (``warn`` or a :class:`WarmStartWarning`)."""
        self.report("WARNING: " + message)
        if self.options.warn is not None:
            self.options.warn(message)
        else:
            warnings.warn(message, WarmStartWarning, stacklevel=4)

    # -------------------------------------------------------------- before the launch

    def prepare(self) -> None:
        """Find or build the snapshot, copy its overlay, point the machine's drive at the copy."""
        machine = self.machine
        if machine.target.rootfs is None:
            self.warning(f"warm start impossible: {machine.target.source} has no root filesystem; booting cold")
            return
        key = self._key()
        if key is None:
            return
        snapshot = self._find_or_build(key)
        if snapshot is None:
            return
        try:
            self.session_overlay = snapshot.copy_overlay(machine.run_dir / "rootfs-session.qcow2")
        except SnapshotError as err:
            self.warning(f"warm start: {err}; booting cold")
            return
        self.snapshot = snapshot
        machine.use_drive(rootfs_overlay=self.session_overlay, loadvm=snapshot.name)
        self.report(f"restoring {snapshot.directory} ({snapshot.name}) on {self.session_overlay}")

    def _key(self) -> SnapshotKey | None:
        machine, cache = self.machine, self.options.cache
        try:
            memo = cache.memo()
            resolved = Path(shutil.which(machine.argv[0]) or machine.argv[0])
            qemu = {"binary": str(resolved.resolve()), "version": memo.version(resolved),
                    "sha256": memo.sha256(resolved)}
            key = snapshot_key(machine.target, key_argv(machine.target, **_launch_kwargs(machine.options.launch)),
                               user=machine.options.user, qemu=qemu, memo=memo)
            memo.save()
        except (SnapshotError, OSError) as err:
            self.warning(f"warm start impossible ({err}); booting cold")
            return None
        self.report(f"snapshot key {key.digest} in {cache.directory}")
        return key

    def _find_or_build(self, key: SnapshotKey) -> Snapshot | None:
        cache = self.options.cache
        if not self.options.rebuild:
            try:
                snapshot = cache.check(key)
                if snapshot is not None:
                    return snapshot
            except SnapshotError as err:
                self.warning(f"warm start: unusable snapshot ({err}); booting cold to rebuild it")
        try:
            with cache.lock(key):
                if not self.options.rebuild:
                    try:
                        snapshot = cache.check(key)  # built meanwhile by another session?
                        if snapshot is not None:
                            return snapshot
                    except SnapshotError:
                        pass
                built = cache.build(key, self.machine.target.rootfs or Path(), self.machine.target.rootfs_format,
                                    self._save_snapshot)
                self.result = "built"
                return built
        except (SnapshotError, BootError, MachineError, ConsoleError, OSError) as err:
            self.warning(f"warm start: building the snapshot failed ({first_line(str(err))}); "
                         f"booting cold. Build logs: {self.machine.run_dir / 'snapshot-build'}")
            return None

    def _save_snapshot(self, overlay: Path) -> dict[str, Any]:
        """Boot a machine cold on ``overlay``, wait for dom0's shell, ``savevm``, quit."""
        machine = self.machine
        builder = machine.builder(machine.run_dir / "snapshot-build", overlay)
        self.report(f"building the snapshot: cold boot in {builder.run_dir}")
        with builder:
            console = builder.boot()
            console.run("true", timeout=machine.options.timeouts.shell)
            assert builder.stream is not None
            builder.stream.drain(quiet=0.3, limit=3.0)
            started = time.monotonic()
            builder.qmp("stop")
            answer = builder.qmp("human-monitor-command", {"command-line": f"savevm {SNAPSHOT_NAME}"},
                                 timeout=max(600.0, machine.options.timeouts.shell))
            if str(answer).strip():
                raise SnapshotError(f"savevm failed: {str(answer).strip()} (every writable drive must be "
                                    "qcow2; see docs/harness.md)")
            saved = time.monotonic() - started
            console.ready = False  # no poweroff: the VM is stopped and must not change the overlay
            builder.qmp("quit")
            builder.wait_exit(30.0)
        self.report(f"snapshot saved in {saved:.1f}s after a {builder.phases[-1].elapsed:.1f}s boot")
        return {"identity": console.identity, "user": machine.options.user, "save_seconds": round(saved, 2),
                "boot_phases": {p.name: round(p.elapsed, 2) for p in builder.phases},
                "built_in": str(builder.run_dir)}

    # -------------------------------------------------------------- after the launch

    def restore(self) -> ConsoleChannel:
        """Resume the restored VM, re-attach dom0's shell, set its clock; return the console."""
        machine = self.machine
        assert machine.console is not None and self.snapshot is not None and machine.started_at is not None
        machine.activity = "restoring the snapshot"
        restored = time.monotonic() - machine.started_at
        machine.record_phase(PhaseResult("restore", "snapshot restored", restored, self.snapshot.name), first=True)
        machine.qmp("cont")
        # dom0's clock stopped when the snapshot was saved: set it to now (Linux passes a set
        # clock on to Xen's wallclock, which guests created later read at boot).  Done in the
        # same round trip as the sync: the shell only answers if date succeeded.
        machine.console.adopt(self.snapshot.identity, timeout=machine.options.timeouts.restore,
                              first=f"date -u -s @{int(time.time() + 0.5)} >/dev/null")
        elapsed = time.monotonic() - machine.started_at
        machine.record_phase(PhaseResult("shell", "shell ready", elapsed, "clock set"))
        self.result = "built+restored" if self.result == "built" else "restored"
        machine.activity = "running commands"
        self.report(f"restored; shell ready {elapsed:.1f}s after QEMU started")
        return machine.console

    def fall_back(self, reason: str) -> None:
        """Stop the warm attempt, keep its logs in ``warm-attempt/``, discard the snapshot, go cold."""
        snapshot = self.snapshot
        self.warning(f"warm start failed: {reason}; the snapshot {snapshot.directory if snapshot else ''} "
                     "is discarded and this session boots cold")
        self.machine.discard_run(self.machine.run_dir / "warm-attempt", ATTEMPT_LOGS)
        self.discard_overlay()
        if snapshot is not None and snapshot.directory.exists():
            try:
                trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=snapshot.directory.parent))
                os.rename(snapshot.directory, trash / snapshot.directory.name)
                shutil.rmtree(trash, ignore_errors=True)
            except OSError:
                pass  # another session may have discarded it already
        self.snapshot = None
        self.result = "cold"
        self.machine.use_drive()

    def discard_overlay(self) -> None:
        """Delete this session's copy of the overlay (at stop, or after a failed attempt)."""
        if self.session_overlay is not None:
            try:
                self.session_overlay.unlink()
            except FileNotFoundError:
                pass
            self.session_overlay = None


def _launch_kwargs(launch: LaunchOptions) -> dict[str, Any]:
    return {"hostfwd": launch.hostfwd, "extra_args": launch.extra_args,
            "xen_cmdline_extra": launch.xen_cmdline_extra, "qemu_binary": launch.qemu_binary}


def warm_options(warm: bool, snapshot_cache: SnapshotCache | os.PathLike[str] | str | None, rebuild: bool,
                 warn: Any) -> WarmOptions | None:
    """The :class:`WarmOptions` of QemuMachine's keywords (None when not warm)."""
    if not warm:
        return None
    cache = snapshot_cache if isinstance(snapshot_cache, SnapshotCache) else SnapshotCache(snapshot_cache)
    return WarmOptions(cache, rebuild, warn)
