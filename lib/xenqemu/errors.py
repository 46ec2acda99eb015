"""The root of every error the harness raises, and the machine's own errors.

Callers that only want to know "the harness failed" catch :class:`XenqemuError`; each subclass
still names the file, key, phase or command and the fix in its message.  The subclasses keep
the built-in base they had (``ValueError`` for a bad target, ``RuntimeError`` for the rest), so
older ``except RuntimeError`` code still catches them.
"""

from __future__ import annotations

__all__ = ["MachineError", "QemuDied", "XenqemuError"]


class XenqemuError(Exception):
    """Base class of the harness's errors (target, boot, machine, console, xl, lifecycle)."""


class MachineError(XenqemuError, RuntimeError):
    """QEMU could not be started, reached or stopped; the message says why and where the logs are."""


class QemuDied(MachineError):
    """QEMU exited while the harness still needed it."""
