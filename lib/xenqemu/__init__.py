"""xenqemu: boot a Xen host image in QEMU and drive ``xl`` over the serial console.

Public API (see docs/harness.md)::

    from xenqemu import load_target, QemuMachine, ConsoleChannel, Xl, BootTimeouts
"""

from .boot import BootError, BootTimeouts
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
from .machine import MachineError, QemuDied, QemuMachine
from .target import Dom0Boot, Target, TargetError, load_target
from .warm import SnapshotCache, SnapshotError, WarmStartWarning, default_snapshot_cache
from .xl import Domain, Xl, XlError

__all__ = [
                      "BootError",
                      "BootTimeouts",
                      "CommandResult",
                      "ConsoleChannel",
                      "ConsoleClosed",
                      "ConsoleError",
                      "ConsoleStream",
                      "ConsoleTimeout",
                      "Dom0Boot",
                      "Domain",
                      "LoginError",
                      "MachineError",
                      "QemuDied",
                      "QemuMachine",
                      "SnapshotCache",
                      "SnapshotError",
                      "Target",
                      "TargetError",
                      "Transcript",
                      "WarmStartWarning",
                      "Xl",
                      "XlError",
                      "default_snapshot_cache",
                      "load_target",
]
