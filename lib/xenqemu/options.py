"""How one machine runs, as small frozen values (the keywords of :class:`~xenqemu.machine.QemuMachine`).

:class:`LaunchOptions` is what shapes QEMU's command line besides the target (so it is part of
a warm-start snapshot's key); :class:`MachineOptions` adds the session: timeouts, login, drive
mode; :class:`WarmOptions` says where snapshots live and how to report an unusable one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .boot import BootTimeouts, ProgressCallback

if TYPE_CHECKING:
    from .snapshots import SnapshotCache

__all__ = ["LaunchOptions", "MachineOptions", "WarmOptions"]


@dataclass(frozen=True)
class LaunchOptions:
    """What the caller adds to the target's QEMU command line."""

    hostfwd: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    xen_cmdline_extra: str = ""
    qemu_binary: str | None = None

    @classmethod
    def of(cls, hostfwd: Sequence[str] = (), extra_args: Sequence[str] = (), xen_cmdline_extra: str = "",
           qemu_binary: str | None = None) -> LaunchOptions:
        """From any sequences (stored as tuples, so the value stays frozen)."""
        return cls(tuple(hostfwd), tuple(extra_args), xen_cmdline_extra, qemu_binary)


@dataclass(frozen=True)
class MachineOptions:
    """One session: launch options, boot timeouts, login, and how the root filesystem is opened.

    ``snapshot`` opens the root filesystem with ``snapshot=on`` (the image is never written);
    ``rootfs_overlay`` puts it on a writable qcow2 overlay instead and ``loadvm`` restores an
    internal snapshot from that overlay (what warm start uses).
    """

    launch: LaunchOptions = field(default_factory=LaunchOptions)
    timeouts: BootTimeouts = field(default_factory=BootTimeouts)
    snapshot: bool = True
    user: str = "root"
    password: str | None = None
    progress: ProgressCallback | None = None
    command_timeout: float = 300.0
    rootfs_overlay: Path | None = None
    loadvm: str | None = None


@dataclass(frozen=True)
class WarmOptions:
    """Warm start: the snapshot cache, whether to rebuild its snapshot, how to warn."""

    cache: SnapshotCache
    rebuild: bool = False
    warn: Callable[[str], None] | None = None
