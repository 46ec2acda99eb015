"""xenqemu: boot a Xen host image in QEMU and drive ``xl`` over the serial console.

Public API (see docs/harness.md)::

    from xenqemu import load_target, QemuMachine, ConsoleChannel, Xl, BootTimeouts
"""

from .target import Dom0Boot, Target, TargetError, load_target
from .console import (CommandResult, ConsoleChannel, ConsoleClosed, ConsoleError, ConsoleStream,
                      ConsoleTimeout, LoginError, Transcript)
from .boot import BootError, BootTimeouts
from .machine import MachineError, QemuDied, QemuMachine
from .xl import Domain, Xl, XlError
from .warm import SnapshotCache, SnapshotError, WarmStartWarning, default_snapshot_cache

__all__ = [
    "Dom0Boot", "Target", "TargetError", "load_target",
    "CommandResult", "ConsoleChannel", "ConsoleClosed", "ConsoleError", "ConsoleStream",
    "ConsoleTimeout", "LoginError", "Transcript",
    "BootError", "BootTimeouts", "MachineError", "QemuDied", "QemuMachine",
    "Domain", "Xl", "XlError",
    "SnapshotCache", "SnapshotError", "WarmStartWarning", "default_snapshot_cache",
]
