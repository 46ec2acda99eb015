"""Hole-preserving file copies.

Guest disk images are mostly holes: a 2 GiB ext4 image may hold a few MiB of data.
:func:`copy_sparse` copies only the data (found with ``SEEK_DATA``/``SEEK_HOLE``)
and also leaves out all-zero blocks inside data regions, like
``cp --sparse=always``; where the file system cannot report holes it falls back
to reading the whole file and skipping zero blocks.  Python's ``shutil.copyfile``
uses ``sendfile`` and fills every hole, which is why this module exists.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

__all__ = ["allocated_bytes", "copy_sparse", "data_ranges"]

_CHUNK = 1 << 20          # read size
_BLOCK = 4096             # zero-detection granularity (file system block size)
_ZERO_CHUNK = bytes(_CHUNK)
_ZERO_BLOCK = bytes(_BLOCK)


def allocated_bytes(path: str) -> int:
    """Bytes the file at ``path`` really occupies on disk (``st_blocks`` * 512)."""
    return os.stat(path).st_blocks * 512


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the data regions of an open file, using SEEK_DATA/SEEK_HOLE.

    Raises ``OSError`` (EINVAL/ENOTSUP) where the file system does not support them.
    """
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:   # only a hole is left
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end <= start:
            return
        yield start, end
        pos = end


def _write_nonzero(src: int, dst: int, start: int, end: int) -> None:
    pos = start
    while pos < end:
        want = min(_CHUNK, end - pos)
        buf = os.pread(src, want, pos)
        if not buf:
            return
        n = len(buf)
        if buf != (_ZERO_CHUNK if n == _CHUNK else bytes(n)):
            view = memoryview(buf)
            # Write runs of non-zero blocks; zero blocks stay holes.
            block = 0
            while block < n:
                if view[block:block + _BLOCK] == _ZERO_BLOCK[: min(_BLOCK, n - block)]:
                    block += _BLOCK
                    continue
                run_end = block + _BLOCK
                while run_end < n and view[run_end:run_end + _BLOCK] != _ZERO_BLOCK[: min(_BLOCK, n - run_end)]:
                    run_end += _BLOCK
                run_end = min(run_end, n)
                _pwrite_all(dst, view[block:run_end], pos + block)
                block = run_end
        pos += n


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data = data[written:]
        offset += written


def copy_sparse(src: str, dst: str) -> int:
    """Copy file ``src`` to ``dst`` keeping holes; ``dst``'s permission bits are ``src``'s.

    ``dst`` is created or truncated.  Returns the bytes of data written.  Raises
    ``OSError`` on failure (``dst`` may then be partly written; callers copy to a
    temporary name and rename).
    """
    with open(src, "rb") as fsrc:
        sfd = fsrc.fileno()
        st = os.fstat(sfd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file: {src}")
        size = st.st_size
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written = 0
            try:
                ranges = list(data_ranges(sfd, size))
            except OSError as err:
                if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                ranges = [(0, size)]   # no hole reporting: scan everything for zeros
            for start, end in ranges:
                _write_nonzero(sfd, dfd, start, end)
                written += end - start
            os.ftruncate(dfd, size)
            os.fchmod(dfd, stat.S_IMODE(st.st_mode))
        finally:
            os.close(dfd)
    return written
