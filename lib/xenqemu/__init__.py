"""xenqemu: boot a Xen host image in QEMU and drive ``xl`` over the serial console.

Public API (see docs/harness.md)::

    from xenqemu import load_target, QemuMachine, ConsoleChannel, Xl, BootTimeouts

Modules: :mod:`~xenqemu.target` (the target model and :func:`load_target`, with the readers in
:mod:`~xenqemu.targetconf` and :mod:`~xenqemu.targetyaml` on top of :mod:`xenboot`),
:mod:`~xenqemu.cmdline` (QEMU's argv), :mod:`~xenqemu.machine` (the driver: QEMU, QMP, console),
:mod:`~xenqemu.boot` (the cold-boot strategy), :mod:`~xenqemu.warm` (the warm-start strategy)
and :mod:`~xenqemu.snapshots` (its store), :mod:`~xenqemu.console` (the command channel),
:mod:`~xenqemu.xl`.  Every error derives from :class:`XenqemuError`.
"""

from .boot import BootError, BootTimeouts, ColdBoot
from .console import (
    CommandResult,
    ConsoleChannel,
    ConsoleClosed,
    ConsoleError,
    ConsoleStream,
    ConsoleTimeout,
    LoginError,
    Transcript,
)
from .errors import MachineError, QemuDied, XenqemuError
from .machine import QemuMachine
from .options import LaunchOptions, MachineOptions, WarmOptions
from .snapshots import (
    SnapshotCache,
    SnapshotError,
    WarmStartWarning,
    default_snapshot_cache,
)
from .target import Dom0Boot, Target, TargetError, load_target
from .warm import WarmStart
from .xl import Domain, Xl, XlError

__all__ = [
    "BootError",
    "BootTimeouts",
    "ColdBoot",
    "CommandResult",
    "ConsoleChannel",
    "ConsoleClosed",
    "ConsoleError",
    "ConsoleStream",
    "ConsoleTimeout",
    "Dom0Boot",
    "Domain",
    "LaunchOptions",
    "LoginError",
    "MachineError",
    "MachineOptions",
    "QemuDied",
    "QemuMachine",
    "SnapshotCache",
    "SnapshotError",
    "Target",
    "TargetError",
    "Transcript",
    "WarmOptions",
    "WarmStart",
    "WarmStartWarning",
    "XenqemuError",
    "Xl",
    "XlError",
    "default_snapshot_cache",
    "load_target",
]
