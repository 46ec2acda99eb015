"""The root of every error the harness raises.

Callers that only want to know "the harness failed" catch :class:`XenqemuError`; each subclass
still names the file, key, phase or command and the fix in its message.
"""

from __future__ import annotations

__all__ = ["XenqemuError"]


class XenqemuError(Exception):
    """Base class of the harness's errors (target, boot, machine, console, xl, lifecycle)."""
