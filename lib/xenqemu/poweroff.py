"""The lifecycle's poweroff check on a machine the harness runs: QEMU's exit and the disks left behind.

:class:`MachinePoweroff` is the :class:`~xenqemu.lifecycle.PoweroffProbe` of ``xenqemu lifecycle
--poweroff`` (and so of the main job): the machine boots with dom0's root file system on a
writable qcow2 overlay (:func:`writable_overlay`), so that what the guests' own shutdown wrote is
still there after QEMU exited.  After dom0's ``poweroff`` it checks, offline and without root
(:mod:`xenqemu.imageread`): QEMU exited by itself with status 0 within the bound; dom0's file
system and the disk of every guest that was running were left clean (a guest that was killed
instead of shut down leaves its journal dirty); and, when the target's guests write a shutdown
marker, each running guest's marker names it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .imageread import (
    ImageReadError,
    ext4_state,
    nested_ext4_state,
    read_nested_file,
    to_raw,
    tool,
)
from .lifecycle import GuestConfig, LifecycleFailure
from .machine import QemuMachine


def writable_overlay(machine: QemuMachine) -> Path:
    """Put the machine's root file system on a new qcow2 overlay in its run directory; its path."""
    rootfs = machine.target.rootfs
    if rootfs is None:
        raise ImageReadError(f"{machine.target.source}: the target has no root file system image to power off with")
    overlay = Path(machine.run_dir) / "rootfs-overlay.qcow2"
    result = subprocess.run([tool("qemu-img", "qemu-utils"), "create", "-q", "-f", "qcow2", "-b", str(rootfs),
                             "-F", machine.target.rootfs_format, str(overlay)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageReadError(f"qemu-img create of an overlay on {rootfs} failed: {result.stderr.strip()[:400]}")
    machine.use_drive(rootfs_overlay=overlay)
    return overlay


class MachinePoweroff:
    """After ``poweroff``: QEMU exits 0 in time; dom0's and each running guest's file system are clean.

    ``marker``: a file each guest writes on its disk during its own shutdown (the reference
    target's guests do); it must exist and name the guest (a ``name=<guest>`` line).
    """

    def __init__(self, machine: QemuMachine, overlay: Path, marker: str | None = None) -> None:
        self.machine = machine
        self.overlay = overlay
        self.marker = marker

    def __call__(self, running: Sequence[GuestConfig], timeout: float) -> str:
        self._wait_for_exit(timeout)
        work = Path(tempfile.mkdtemp(prefix="xenqemu-poweroff-", dir=self.machine.run_dir))
        try:
            problems = self._disk_problems(running, work)
        except ImageReadError as err:
            raise LifecycleFailure("poweroff", str(err)) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if problems:
            raise LifecycleFailure("poweroff", "; ".join(problems))
        names = ", ".join(guest.name for guest in running) or "no guest was running"
        marker = f", each left {self.marker}" if self.marker and running else ""
        return f"QEMU exited 0; dom0's and the guests' file systems clean ({names}){marker}"

    def _wait_for_exit(self, timeout: float) -> None:
        process = self.machine.process
        if process is None:
            raise LifecycleFailure("poweroff", "QEMU is not running")
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LifecycleFailure("poweroff", f"QEMU still runs {timeout:.0f}s after poweroff; see "
                                               f"{self.machine.run_dir}/serial.log") from None
        self.machine.stop()
        if status != 0:
            raise LifecycleFailure("poweroff", f"QEMU exited with {status} after poweroff")

    def _disk_problems(self, running: Sequence[GuestConfig], work: Path) -> list[str]:
        raw = to_raw(self.overlay, work)
        problems = [] if ext4_state(raw).clean else ["dom0's root file system was not left clean"]
        for guest in running:
            if not guest.disk_target:
                continue
            if not nested_ext4_state(raw, guest.disk_target, work).clean:
                problems.append(f"{guest.name}: its disk {guest.disk_target} was not left clean (killed, "
                                "not shut down?)")
            if self.marker:
                text = read_nested_file(raw, guest.disk_target, self.marker, work).decode(errors="replace")
                if f"name={guest.name}" not in text.split():
                    problems.append(f"{guest.name}: {self.marker} on its disk does not name it: {text[:120]!r}")
        return problems
