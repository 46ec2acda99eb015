"""QEMU's option syntax: ``driver,prop=value,prop=value`` with ``,,`` for a comma inside a value.

QEMU splits a ``-device``/``-drive`` value at single commas; a value that holds a comma (a kernel
command line such as ``console=ttyAMA0,115200``) must write it as ``,,``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["FILE_PROPERTIES", "escape", "files_named", "format_option", "properties", "split_option"]

#: Properties of ``-device``/``-drive`` values that name a file QEMU reads.
FILE_PROPERTIES = ("kernel", "initrd", "file", "dtb", "romfile")


def escape(value: str) -> str:
    """``value`` as one property value: every comma doubled."""
    return value.replace(",", ",,")


def format_option(head: str, properties: Iterable[tuple[str, str]]) -> str:
    """``head,name=value,...`` with each value escaped (``head`` is the driver or first part)."""
    return ",".join([head] + [f"{name}={escape(value)}" for name, value in properties])


def split_option(text: str) -> list[str]:
    """The parts of an option value, split at single commas; ``,,`` becomes one comma."""
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "," and text[index + 1:index + 2] == ",":
            current.append(",")
            index += 2
            continue
        if char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def properties(text: str) -> dict[str, str]:
    """The ``name=value`` parts of an option value (parts without ``=`` are left out)."""
    found: dict[str, str] = {}
    for part in split_option(text):
        name, sep, value = part.partition("=")
        if sep:
            found[name] = value
    return found


def files_named(args: Sequence[str]) -> list[tuple[str, str]]:
    """``(property, path)`` for every file property in the values of an argv fragment.

    Only option values are looked at (words that do not start with ``-``); placeholders such as
    ``@ROOTFS@`` are kept, the caller decides what to do with them.
    """
    found: list[tuple[str, str]] = []
    for arg in args:
        if arg.startswith("-"):
            continue
        for name, value in properties(arg).items():
            if name in FILE_PROPERTIES and value:
                found.append((name, value))
    return found
