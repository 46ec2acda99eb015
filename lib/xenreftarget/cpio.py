"""A minimal writer of gzip-compressed ``newc`` cpio archives (the Linux initramfs format).

Written in Python rather than calling ``cpio`` so that the archive is reproducible (fixed owner,
times and order) and can hold a ``/dev/console`` device node without ``mknod`` or root rights.
"""

from __future__ import annotations

import gzip
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_MAGIC = b"070701"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member; ``data`` is the content of a file or the target of a symlink."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _header(entry: CpioEntry, inode: int) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = [inode, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0,
              entry.rdev_major, entry.rdev_minor, len(name), 0]
    return _MAGIC + b"".join(b"%08X" % value for value in fields) + name


def _pad(length: int) -> bytes:
    return b"\0" * ((4 - length % 4) % 4)


class ByteSink(Protocol):
    """Anything with ``write(bytes)``: a file opened ``"wb"``, a :class:`gzip.GzipFile`."""

    def write(self, data: bytes, /) -> int: ...


def write_newc(stream: ByteSink, entries: Iterable[CpioEntry]) -> None:
    """Write ``entries`` then the trailer; owners are root, times are zero."""
    members = list(entries)
    for inode, entry in enumerate(members + [CpioEntry("TRAILER!!!", 0)], start=1):
        # Every member starts on a 4-byte boundary: headers are 110 bytes plus the name.
        head = _header(entry, 0 if entry.name == "TRAILER!!!" else inode)
        stream.write(head + _pad(len(head)) + entry.data + _pad(len(entry.data)))


def entries_from_tree(root: Path) -> list[CpioEntry]:
    """Archive entries for every file, folder and symlink below ``root``, sorted by path."""
    entries: list[CpioEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries.append(CpioEntry(rel, stat.S_IFLNK | 0o777, os.readlink(path).encode()))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(CpioEntry(rel, stat.S_IFDIR | stat.S_IMODE(info.st_mode)))
            elif stat.S_ISREG(info.st_mode):
                entries.append(CpioEntry(rel, stat.S_IFREG | stat.S_IMODE(info.st_mode), path.read_bytes()))
    entries.sort(key=lambda e: e.name)
    return entries


def write_initramfs(root: Path, output: Path, extra: Iterable[CpioEntry] | None = None) -> None:
    """Write ``root`` (plus ``extra`` entries such as device nodes) as a gzip'd newc archive."""
    entries = entries_from_tree(root) + list(extra or [])
    entries.sort(key=lambda e: e.name)
    with open(output, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as stream:
        write_newc(stream, entries)


def console_node() -> CpioEntry:
    """``dev/console`` (character device 5:1), which the kernel opens before running /init."""
    return CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev_major=5, rdev_minor=1)
