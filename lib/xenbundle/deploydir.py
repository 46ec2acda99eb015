"""What a name in the deploy directory really is, and reading it without surprises.

The deploy directory holds symlinks (``Image`` -> ``Image--6.6-...bin``), real files
and whatever a third party copied there.  Before anything is opened, a name is
looked at with ``lstat``/``stat`` (:func:`inspect`): only a regular file inside the
deploy directory, after following links, is usable.  A dangling link, a link
leaving the directory, a directory, a FIFO, a socket or a device is reported with
what it is.  :func:`read_regular_file` then opens the resolved file with
``O_NOFOLLOW | O_NONBLOCK`` and checks it again with ``fstat``, so that a name
swapped for a FIFO in between is never waited on.

Used by the bundle plan (configs and the files they name) and by the parse-time
wiring (which files BitBake may checksum).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from .errors import printable

__all__ = ["DeployFile", "inspect", "is_within", "read_regular_file"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def is_within(path: str, directory: str) -> bool:
    """True when absolute ``path`` is ``directory`` or below it (no file system access)."""
    path = path.rstrip("/") or "/"
    directory = directory.rstrip("/") or "/"
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


@dataclass(frozen=True)
class DeployFile:
    """The result of :func:`inspect`.

    ``state`` is ``"file"`` (usable: ``real`` is the regular file), ``"missing"``,
    ``"dangling"`` (``detail``: the link's target), ``"loop"``, ``"outside"``
    (``real``: where the links lead), ``"special"`` (``detail``: what it is,
    e.g. ``a FIFO (named pipe)``) or ``"error"`` (``detail``: the system's error,
    e.g. for a name too long).  Only an embedded NUL raises (``ValueError``).
    """

    path: str
    state: str
    real: str = ""
    detail: str = ""

    @property
    def usable(self) -> bool:
        """True for a regular file inside the deploy directory."""
        return self.state == "file"

    def problem(self, deploy_dir: str) -> str:
        """What is wrong, as a phrase following the file's name (``""`` when usable)."""
        if self.state == "missing":
            return f"does not exist in the deploy directory {deploy_dir}"
        if self.state == "dangling":
            return f"is a dangling symlink in {deploy_dir} (-> {printable(self.detail)})"
        if self.state == "loop":
            return "is a symlink loop"
        if self.state == "outside":
            return (f"resolves to {printable(self.real)}, outside the deploy directory "
                    f"{deploy_dir}")
        if self.state == "special":
            return f"is {self.detail}, not a regular file"
        if self.state == "error":
            return f"cannot be looked at ({self.detail})"
        return ""


def inspect(path: str, deploy_real: str) -> DeployFile:
    """Look at ``path`` without opening it; ``deploy_real`` is the deploy dir's real path."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return DeployFile(path, "missing")
    except OSError as err:
        return DeployFile(path, "error", detail=err.strerror or str(err))
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return DeployFile(path, "dangling", detail=os.readlink(path))
        except OSError as err:
            if err.errno == errno.ELOOP:
                return DeployFile(path, "loop")
            return DeployFile(path, "error", detail=err.strerror or str(err))
        real = os.path.realpath(path)
    else:
        real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    if not is_within(real, deploy_real):
        return DeployFile(path, "outside", real=real)
    if not stat.S_ISREG(st.st_mode):
        return DeployFile(path, "special", real=real, detail=_kind(st.st_mode))
    return DeployFile(path, "file", real=real)


def read_regular_file(real: str) -> bytes:
    """The contents of the regular file at ``real`` (a path without links).

    Opened with ``O_NOFOLLOW | O_NONBLOCK``: a link or FIFO put there since it was
    inspected raises ``OSError`` (``ELOOP``, or ``EINVAL`` "not a regular file")
    instead of being followed or waited on.
    """
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file", real)
        with open(fd, "rb", closefd=False) as f:   # one buffer of the file's size
            return f.read()
    finally:
        os.close(fd)
