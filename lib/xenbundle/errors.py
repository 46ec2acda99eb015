"""The error type of the bundling engine, and the bounds on what an error report holds.

A build log wants the first problems and a count, in bounded memory: every report
of the engine lists at most :data:`MAX_PROBLEMS` problems and counts the others
(``... and N more``), and every piece of input quoted in a message is cut to
:data:`MAX_SNIPPET` characters with control characters escaped
(:func:`snippet`), so that a 100 MB config of bad lines gives a message of a few
kilobytes, not gigabytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["MAX_PROBLEMS", "MAX_SNIPPET", "BundleError", "ProblemList", "printable", "snippet"]

#: Problems listed per file and per run; the others are counted.
MAX_PROBLEMS = 20
#: Characters of input quoted in one message.
MAX_SNIPPET = 60

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0", "\\": "\\\\"}


def _escape(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:          # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if ch.isprintable():
        return ch
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control characters, backslashes and undecodable bytes escaped."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape(ch) for ch in text)


def snippet(text: str, limit: int = MAX_SNIPPET) -> str:
    """``text`` for quoting in a message: escaped like :func:`printable`, cut to ``limit``.

    A cut text ends with ``...`` and its full length, so the reader knows how much is missing.
    """
    head = printable(text[:limit + 1])
    if len(text) <= limit and len(head) <= limit:
        return head
    return f"{head[:limit]}... ({len(text)} characters)"


class BundleError(ValueError):
    """Guests cannot be bundled as asked.

    ``problems`` lists the first :data:`MAX_PROBLEMS` problems found, each a complete
    sentence naming the guest, the file and line (or the ``XEN_BUNDLED_GUESTS``
    entry), what is wrong and how to fix it; ``more`` counts the problems found but
    not listed.  ``str(err)`` joins them, one per line, and ends with
    ``... and N more`` when some were left out.  The grammar errors of
    :mod:`xenbundle.xlcfg` and :mod:`xenbundle.disk` are subclasses.
    """

    def __init__(self, problems: Iterable[str], more: int = 0) -> None:
        kept: list[str] = []
        for problem in problems:
            if len(kept) < MAX_PROBLEMS:
                kept.append(problem)
            else:
                more += 1
        self.problems: list[str] = kept
        self.more: int = more
        super().__init__(self._text())

    def _text(self) -> str:
        if len(self.problems) == 1 and not self.more:
            return self.problems[0]
        total = len(self.problems) + self.more
        listed = f" (the first {len(self.problems)})" if self.more else ""
        text = f"{total} problems with the bundled Xen guests{listed}:\n" + "\n".join(
            f"  - {p}" for p in self.problems)
        if self.more:
            text += f"\n  ... and {self.more} more"
        return text


class ProblemList:
    """Collects problems for one :class:`BundleError`: the first ``limit`` and a count.

    ``len()`` is the number of problems found (listed or not), so callers can tell
    whether a step found any.
    """

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        self.limit = limit
        self.kept: list[str] = []
        self.more = 0

    @property
    def full(self) -> bool:
        """True when further problems are only counted."""
        return len(self.kept) >= self.limit

    def append(self, problem: str) -> None:
        """Add one problem."""
        if self.full:
            self.more += 1
        else:
            self.kept.append(problem)

    def extend(self, problems: Iterable[str]) -> None:
        """Add several problems."""
        for problem in problems:
            self.append(problem)

    def count(self, number: int) -> None:
        """Add ``number`` problems found (and described) elsewhere but not listed here."""
        self.more += number

    def __len__(self) -> int:
        return len(self.kept) + self.more

    def __iter__(self) -> Iterator[str]:
        return iter(self.kept)

    def error(self) -> BundleError:
        """The :class:`BundleError` reporting these problems."""
        return BundleError(self.kept, self.more)
