"""Writing into the host rootfs: one small audited primitive, and undoing exactly it.

Every directory, file and symlink the bundler puts into the rootfs is made by
:class:`RootfsWriter`, and only like this:

* **Folders** are walked component by component from a descriptor of the rootfs,
  each opened relative to its parent with ``O_DIRECTORY | O_NOFOLLOW`` (``openat``):
  a symlink anywhere on the way is refused, never followed; a missing folder is
  made with ``mkdir`` (which never replaces anything).
* **Files** are created in their destination folder under a fresh random
  temporary name (:data:`TEMPORARY_NAME_LENGTH` characters, whatever the final
  name) with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so an existing name -- file or
  link -- is never opened; the content is written through that descriptor, and
  the file gets its final name with ``link(2)``, which fails when the name exists
  (``rename(2)`` would silently replace it, and Python has no ``renameat2``), then
  the temporary name is removed.  On a file system without hard links the final
  name is checked to be free and the file renamed.
* **Symlinks** are made with ``symlink(2)``, which never replaces either; **hard
  links** (to a regular file this writer reaches the same way) with ``link(2)``.
* **Removal** (:meth:`RootfsWriter.remove_tree`, for the bundle staging folder)
  walks the same way and unlinks entries through folder descriptors opened with
  ``O_NOFOLLOW``: a symlink is removed as a link, never followed.

Each object is recorded (folder descriptor, name, device and inode) only after
it was created, and :meth:`RootfsWriter.rollback` removes exactly those, newest
first, each only if its name still holds the object this run made; it never
follows a link and never raises.

The plan checks name lengths up front with :func:`length_problem` and resolves
destinations chroot-style with :func:`resolve_in_root`, so that the writer's
refusals are a second line of defence, not the usual way to learn about a link.
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
from dataclasses import dataclass
from typing import Callable

from .errors import BundleError, printable

__all__ = [
    "DIR_MODE",
    "TEMPORARY_NAME_LENGTH",
    "RootfsWriter",
    "length_problem",
    "name_limits",
    "resolve_in_root",
]

DIR_MODE = 0o755
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# link(2) is refused by file systems without hard links (vfat, some FUSE ones).
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV)
#: ext4's limits, which the host image's file system has whatever the build folder's are.
IMAGE_NAME_MAX = 255
IMAGE_PATH_MAX = 4096


def _temporary_name() -> str:
    return f".xenbundle-{secrets.token_hex(8)}.tmp"


TEMPORARY_NAME_LENGTH = len(_temporary_name())


# ---------------------------------------------------------------- checks for the plan

def name_limits(rootfs: str) -> tuple[int, int]:
    """``(NAME_MAX, PATH_MAX)`` in bytes for names made under ``rootfs``.

    The smaller of the build folder's file system limits and the image's (ext4).
    """
    def limit(name: str, image: int) -> int:
        try:
            value = os.pathconf(rootfs, name)
        except (OSError, ValueError):
            return image
        return image if value <= 0 else min(value, image)
    return limit("PC_NAME_MAX", IMAGE_NAME_MAX), limit("PC_PATH_MAX", IMAGE_PATH_MAX)


def length_problem(rootfs: str, path: str, limits: tuple[int, int]) -> str | None:
    """Why absolute in-rootfs ``path`` cannot be created under ``rootfs`` (too long), or None.

    Every component and the temporary name must fit NAME_MAX, the whole host path
    (with its terminating NUL) PATH_MAX.
    """
    name_max, path_max = limits
    for part in path.split("/"):
        size = len(os.fsencode(part))
        if size > name_max:
            return (f"its name component '{printable(part[:40])}...' is {size} bytes, more than "
                    f"NAME_MAX ({name_max} bytes) of the file system: use a shorter name")
    if TEMPORARY_NAME_LENGTH > name_max:   # pragma: no cover - no real file system is that small
        return f"the temporary name needs {TEMPORARY_NAME_LENGTH} bytes, NAME_MAX is {name_max}"
    size = len(os.fsencode(rootfs.rstrip("/") + path)) + 1
    if size > path_max:
        return (f"its path in the build folder is {size} bytes, more than PATH_MAX ({path_max} "
                "bytes): use a shorter file name or a shorter build folder (TMPDIR)")
    return None


def resolve_in_root(root: str, path: str, max_links: int = 40) -> str:
    """Resolve absolute ``path`` inside ``root`` the way a chroot would.

    Symlinks found in ``root`` are followed with absolute targets taken relative to
    ``root``; a relative target that climbs above the root, or a symlink loop,
    raises ``ValueError``.  Components that do not exist are kept as they are.
    Returns the resolved absolute path (inside the root).  Only reads links.
    """
    if not path.startswith("/"):
        raise ValueError(f"{printable(path)!r} is not an absolute path")
    resolved: list[str] = []
    pending = path.split("/")
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise ValueError(f"{printable(path)!r} climbs above the root")
            resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        if os.path.islink(host):
            links += 1
            if links > max_links:
                raise ValueError(f"too many symlinks resolving {printable(path)!r} (a loop?)")
            target = os.readlink(host)
            if target.startswith("/"):
                resolved = []
            elif _climbs_above(resolved, target):
                raise ValueError(f"symlink /{'/'.join(resolved + [part])} -> {printable(target)} "
                                 "points outside the rootfs")
            pending = target.split("/") + pending
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


def _climbs_above(base: list[str], relative: str) -> bool:
    depth = len(base)
    for part in relative.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


# ---------------------------------------------------------------------- the writer

@dataclass(frozen=True)
class _Created:
    dir_fd: int
    name: str
    shown: str          # the in-rootfs path, for messages
    device: int
    inode: int
    is_dir: bool


_MAX_DEPTH = 64


def _remove_entry(parent: int, name: str, shown: str, depth: int) -> None:
    """Remove ``name`` in folder ``parent``: a folder with its content, anything else unlinked."""
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    if depth > _MAX_DEPTH:
        raise BundleError([(f"{printable(shown)} is nested more than {_MAX_DEPTH} folders "
                            "deep: refusing to remove it; remove it from the rootfs by hand")])
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        for child in os.listdir(fd):
            _remove_entry(fd, child, f"{shown}/{child}", depth + 1)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _refuse(shown: str, why: str) -> BundleError:
    return BundleError([(f"{shown} {why}: refusing to write through or replace it (the "
                         "bundler only writes below real folders and never replaces anything); "
                         "remove it from the rootfs")])


class RootfsWriter:
    """Creates folders, files and symlinks in a rootfs and can remove exactly those again.

    Paths are absolute paths inside the rootfs (``/var/lib/xen/images/Image``).
    Methods raise ``OSError`` for system errors and :class:`BundleError` when a
    path goes through a symlink or an existing name would be replaced.  Call
    :meth:`close` (after any rollback) to release the folder descriptors.
    """

    def __init__(self, rootfs: str) -> None:
        self.rootfs = os.path.realpath(rootfs)
        self._root_fd = os.open(self.rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: dict[str, int] = {"": self._root_fd}
        self._created: list[_Created] = []

    def close(self) -> None:
        """Close every folder descriptor (the rollback needs them: roll back first)."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    @property
    def created(self) -> list[str]:
        """The in-rootfs paths this writer created and did not remove, oldest first."""
        return [entry.shown for entry in self._created]

    # --- folders
    def folder(self, path: str) -> int:
        """A descriptor of folder ``path``, made (with its parents) where missing."""
        fd = self._root_fd
        walked = ""
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise ValueError(f"{printable(path)}: '..' is not allowed")
            walked += "/" + part
            cached = self._dirs.get(walked)
            if cached is None:
                cached = self._child_folder(fd, part, walked)
                self._dirs[walked] = cached
            fd = cached
        return fd

    def _child_folder(self, parent: int, name: str, shown: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            pass
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._not_a_folder(parent, name, shown) from err
            raise
        os.mkdir(name, DIR_MODE, dir_fd=parent)
        made = os.stat(name, dir_fd=parent, follow_symlinks=False)
        self._record(parent, name, shown, made)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _refuse(shown, "was replaced while bundling") from err
            raise
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (made.st_dev, made.st_ino):
            os.close(fd)
            raise _refuse(shown, "was replaced while bundling")
        return fd

    def _not_a_folder(self, parent: int, name: str, shown: str) -> BundleError:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=parent)
            return _refuse(shown, f"is a symlink (-> {printable(target)}), not a folder")
        return _refuse(shown, "is not a folder")

    # --- files and links
    def write_file(self, path: str, fill: Callable[[int], object],
                   mode: int | None = None) -> os.stat_result:
        """Create file ``path`` with the content ``fill(fd)`` writes; returns its ``fstat``.

        ``mode`` (if given) is set before the file gets its name.
        """
        folder, name = posixpath.split(path)
        dir_fd = self.folder(folder)
        temporary, fd = self._create_temporary(dir_fd, folder)
        try:
            fill(fd)
            if mode is not None:
                os.fchmod(fd, mode)
            written = os.fstat(fd)
        finally:
            os.close(fd)
        self._publish(dir_fd, temporary, name, path, written)
        return written

    def _create_temporary(self, dir_fd: int, folder: str) -> tuple[str, int]:
        for _ in range(100):
            name = _temporary_name()
            try:
                fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                continue        # somebody else's file or link: not ours to touch
            self._record(dir_fd, name, posixpath.join(folder, name), os.fstat(fd))
            return name, fd
        raise OSError(errno.EEXIST, "no free temporary name after 100 tries", folder)

    def _publish(self, dir_fd: int, temporary: str, name: str, shown: str,
                 written: os.stat_result) -> None:
        try:
            os.link(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError as err:
            raise _refuse(shown, "appeared in the rootfs while bundling") from err
        except OSError as err:
            if err.errno not in _NO_HARD_LINKS:
                raise
            if self._exists(dir_fd, name):
                raise _refuse(shown, "appeared in the rootfs while bundling") from err
            os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            self._forget(dir_fd, temporary)
            self._record(dir_fd, name, shown, written)
            return
        self._record(dir_fd, name, shown, written)
        os.unlink(temporary, dir_fd=dir_fd)
        self._forget(dir_fd, temporary)

    def hardlink(self, existing: str, path: str) -> None:
        """Create ``path`` as a hard link to the regular file ``existing`` (both in-rootfs)."""
        source_folder, source_name = posixpath.split(existing)
        source_fd = self.folder(source_folder)
        st = os.stat(source_name, dir_fd=source_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(existing, "is not a regular file to link to")
        folder, name = posixpath.split(path)
        dir_fd = self.folder(folder)
        try:
            os.link(source_name, name, src_dir_fd=source_fd, dst_dir_fd=dir_fd,
                    follow_symlinks=False)
        except FileExistsError as err:
            raise _refuse(path, "already exists in the rootfs") from err
        self._record(dir_fd, name, path, st)

    def symlink(self, target: str, path: str) -> None:
        """Create symlink ``path`` -> ``target``; an existing name is refused."""
        folder, name = posixpath.split(path)
        dir_fd = self.folder(folder)
        try:
            os.symlink(target, name, dir_fd=dir_fd)
        except FileExistsError as err:
            raise _refuse(path, "already exists in the rootfs") from err
        self._record(dir_fd, name, path, os.stat(name, dir_fd=dir_fd, follow_symlinks=False))

    @staticmethod
    def _exists(dir_fd: int, name: str) -> bool:
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    # --- removal
    def _existing_folder(self, path: str) -> int | None:
        """A descriptor of the existing folder ``path`` (never made), or None if missing."""
        fd = self._root_fd
        walked = ""
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise ValueError(f"{printable(path)}: '..' is not allowed")
            walked += "/" + part
            cached = self._dirs.get(walked)
            if cached is None:
                try:
                    cached = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    return None
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._not_a_folder(fd, part, walked) from err
                    raise
                self._dirs[walked] = cached
            fd = cached
        return fd

    def remove_tree(self, path: str) -> None:
        """Remove ``path`` and, if it is a folder, everything below it; never follow a link.

        A missing ``path`` is fine; a symlink on the way to it is refused.  What is
        removed is not recorded: :meth:`rollback` cannot bring it back.
        """
        path = posixpath.normpath(path)
        folder, name = posixpath.split(path)
        if not name or name in (".", ".."):
            raise ValueError(f"{printable(path)}: refusing to remove the rootfs itself")
        parent = self._existing_folder(folder)
        if parent is None:
            return
        for cached in [p for p in self._dirs if p == path or p.startswith(path + "/")]:
            os.close(self._dirs.pop(cached))
        try:
            _remove_entry(parent, name, path, 0)
        except FileNotFoundError:
            if self._exists(parent, name):
                raise

    def _record(self, dir_fd: int, name: str, shown: str, st: os.stat_result) -> None:
        self._created.append(_Created(dir_fd, name, shown, st.st_dev, st.st_ino,
                                      stat.S_ISDIR(st.st_mode)))

    def _forget(self, dir_fd: int, name: str) -> None:
        for index in range(len(self._created) - 1, -1, -1):
            entry = self._created[index]
            if entry.dir_fd == dir_fd and entry.name == name:
                del self._created[index]
                return

    def rollback(self) -> list[str]:
        """Remove everything created, newest first; returns what could not be removed.

        A name that no longer holds the object this writer made is left alone.
        """
        leftovers: list[str] = []
        for entry in reversed(self._created):
            try:
                st = os.stat(entry.name, dir_fd=entry.dir_fd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) != (entry.device, entry.inode):
                    leftovers.append(f"{entry.shown} (replaced by something else, left alone)")
                elif entry.is_dir:
                    os.rmdir(entry.name, dir_fd=entry.dir_fd)
                else:
                    os.unlink(entry.name, dir_fd=entry.dir_fd)
            except FileNotFoundError:
                continue
            except OSError as err:
                leftovers.append(f"{entry.shown} ({err.strerror or err})")
        self._created.clear()
        return leftovers
