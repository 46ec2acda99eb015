"""The root of every error the reference-target builder raises."""

from __future__ import annotations

__all__ = ["ReferenceTargetError"]


class ReferenceTargetError(RuntimeError):
    """Base class of the builder's errors (packages, assembly, build); the message says which step
    failed and what to do."""
