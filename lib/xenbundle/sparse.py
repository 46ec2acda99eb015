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

__all__ = ["SourceError", "allocated_bytes", "copy_sparse", "copy_sparse_to_fd", "data_ranges"]

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


def _write_nonzero(src: int, dst: int, start: int, end: int, src_name: str) -> None:
    pos = start
    while pos < end:
        want = min(_CHUNK, end - pos)
        buf = _pread(src, want, pos, src_name)
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


class SourceError(OSError):
    """Reading the source of a copy failed (as opposed to writing its destination)."""


def _open_source(src: str) -> tuple[int, os.stat_result]:
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise SourceError(err.errno, err.strerror, src) from err
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SourceError(errno.EINVAL, "not a regular file", src)
    return fd, st


def _pread(fd: int, size: int, offset: int, src: str) -> bytes:
    try:
        return os.pread(fd, size, offset)
    except OSError as err:
        raise SourceError(err.errno, err.strerror, src) from err


def copy_sparse_to_fd(src: str, dst_fd: int) -> int:
    """Copy file ``src`` into the open, empty file ``dst_fd`` keeping holes.

    ``dst_fd``'s permission bits become ``src``'s.  Returns the bytes of data
    written.  ``src`` is opened without following a link and must be a regular
    file (it is not opened blocking, so a FIFO put in its place is refused, not
    waited on).  Errors reading ``src`` raise :class:`SourceError`, errors writing
    ``dst_fd`` a plain ``OSError``; ``dst_fd`` may then be partly written.
    """
    sfd, st = _open_source(src)
    try:
        size = st.st_size
        try:
            ranges = list(data_ranges(sfd, size))
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise SourceError(err.errno, err.strerror, src) from err
            ranges = [(0, size)]   # no hole reporting: scan everything for zeros
        written = 0
        for start, end in ranges:
            _write_nonzero(sfd, dst_fd, start, end, src)
            written += end - start
        os.ftruncate(dst_fd, size)
        os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
    finally:
        os.close(sfd)
    return written


def copy_sparse(src: str, dst: str) -> int:
    """Copy file ``src`` to path ``dst`` (created or truncated) with :func:`copy_sparse_to_fd`.

    A convenience for callers outside a rootfs; the bundler itself copies into a
    descriptor made by :class:`xenbundle.rootfs.RootfsWriter`.
    """
    dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        return copy_sparse_to_fd(src, dfd)
    finally:
        os.close(dfd)
