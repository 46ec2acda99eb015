"""The error type of the bundling engine."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BundleError"]


class BundleError(ValueError):
    """Guests cannot be bundled as asked.

    ``problems`` lists every problem found, each a complete sentence naming the
    guest, the file and line (or the ``XEN_BUNDLED_GUESTS`` entry), what is wrong
    and how to fix it; ``str(err)`` joins them, one per line.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} problems with the bundled Xen guests:\n" + "\n".join(
                f"  - {p}" for p in self.problems)
        super().__init__(text)
