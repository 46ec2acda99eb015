"""The one exception type of :mod:`xenboot`."""

from __future__ import annotations

import os

__all__ = ["BootConfigError"]


class BootConfigError(ValueError):
    """A boot configuration is wrong; ``str(err)`` names the file, line and key, and the fix.

    ``path``, ``key`` and ``line`` are optional (a value checked before it is written has no
    file yet); ``problem`` and ``fix`` are always there, so callers can re-raise the same facts
    in their own error type.
    """

    def __init__(self, problem: str, fix: str, *, path: os.PathLike[str] | str | None = None,
                 key: str | None = None, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.key = key
        self.line = line
        self.problem = problem
        self.fix = fix
        where = "" if self.path is None else self.path + (f":{line}" if line else "") + ": "
        what = f"key '{key}': " if key else ""
        super().__init__(f"{where}{what}{problem}. Fix: {fix}")
