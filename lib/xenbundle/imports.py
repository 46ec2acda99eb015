"""Importing third-party guest images: ``XEN_GUEST_SOURCE_TYPE`` of a bundle recipe.

A bundle recipe fetches a guest (``SRC_URI`` with a checksum) and names it with
``XEN_GUEST_SOURCE_FILE[<guest>]`` (in UNPACKDIR); the import makes the guest's
disk image ``<guest>.img`` from it (meta-virtualization's import types):

* ``rootfs_dir`` - a root filesystem, as a folder (the fetcher unpacked it) or as a
  tar archive (``;unpack=0``), becomes an ext4 image made with ``mkfs.ext4 -d``:
  no loop mount, no root, no fakeroot.  Owners, modes, times and device nodes come
  from the archive's headers and are written into the image with ``debugfs``; a
  folder has no trustworthy owners (the fetcher unpacked it as the build user), so
  everything in it becomes ``root:root`` with the modes it has.  The size is
  ``XEN_GUEST_IMAGE_SIZE`` (MiB) or, when unset, computed from the content
  (:func:`auto_size_mib`); a size too small for the content is an error saying
  how much is needed.
* ``qcow2`` - converted to a raw image with ``qemu-img`` (a backing file or an
  external data file, which would read files of the build host, is refused).
* ``ext4`` - an ext4 image (its superblock is checked), copied sparse.
* ``raw`` - a raw disk image, copied sparse.

The tools are called with explicit paths (:class:`ImportTools`; the class passes
the ones of the native sysroot).  The archive is unpacked with
:class:`~xenbundle.rootfs.RootfsWriter` into a scratch folder, so no member can
write outside it (absolute names, ``..`` and links in the way are refused).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

from .errors import BundleError, printable, snippet
from .recipeguests import imported_image_name
from .rootfs import RootfsWriter
from .settings import GuestRequest, ImportSource, Variables, guest_requests
from .sparse import copy_sparse

__all__ = [
    "ImportTools",
    "ImportedImage",
    "auto_size_mib",
    "import_entries",
    "import_guest_image",
]

MiB = 1 << 20
_BLOCK = 4096
_EXT_MAGIC_OFFSET = 1024 + 56
_HEADROOM = 16 * MiB
_TIME_FIELDS = ("mtime", "atime", "ctime", "crtime")
_TYPE_BITS = {"file": 0o100000, "dir": 0o040000, "char": 0o020000, "block": 0o060000,
              "fifo": 0o010000}


@dataclass(frozen=True)
class ImportTools:
    """Paths of the programs an import runs (the native sysroot's, in a build)."""

    mkfs_ext4: str = "mkfs.ext4"
    debugfs: str = "debugfs"
    qemu_img: str = "qemu-img"


@dataclass(frozen=True)
class ImportedImage:
    """The image an import made: its path and its size in bytes (apparent)."""

    path: str
    size_bytes: int


@dataclass(frozen=True)
class _Node:
    """One object of the root filesystem and the metadata it gets in the image."""

    path: str                      # absolute in the image, e.g. "/etc/passwd"
    kind: str                      # file, dir, symlink, hardlink, char, block, fifo
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime: int | None = None
    device: tuple[int, int] = (0, 0)


@dataclass
class _Tree:
    """A scratch folder holding the content, and the metadata the image gets."""

    root: str
    nodes: dict[str, _Node] = field(default_factory=dict)   # from the archive
    specials: list[_Node] = field(default_factory=list)     # made by debugfs


def _fail(label: str, message: str) -> BundleError:
    return BundleError([f"{label}: {message}"])


# ------------------------------------------------------------------ the archive

def _member_path(member: tarfile.TarInfo, label: str) -> str | None:
    """The member's absolute path in the image, None for the root folder itself."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name in ("", "."):
        return None
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "\n" in name or "\0" in name:
        raise _fail(label, f"the archive member '{snippet(member.name)}' has an absolute name, "
                           "'..' or a newline in its name: such an archive could write outside "
                           "the image; use a clean root filesystem archive")
    return "/" + "/".join(p for p in parts if p not in ("", "."))


def _link_target(member: tarfile.TarInfo, label: str) -> str:
    probe = tarfile.TarInfo(member.linkname)
    target = _member_path(probe, label)
    if target is None:
        raise _fail(label, f"the hard link '{snippet(member.name)}' points at the root folder")
    return target


def _stream_into(source: IO[bytes] | None) -> Callable[[int], None]:
    def fill(fd: int) -> None:
        if source is None:      # pragma: no cover - tarfile gives a stream for every file
            raise OSError(errno.EIO, "no data for an archive member")
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                return
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
    return fill


def _extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, writer: RootfsWriter,
                    tree: _Tree, label: str) -> None:
    path = _member_path(member, label)
    kinds = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
             tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}
    kind = "file" if member.isreg() else kinds.get(member.type)
    if kind is None:
        raise _fail(label, f"the archive member '{snippet(member.name)}' is of a type a root "
                           "filesystem image cannot hold")
    node = _Node(path or "/", kind, member.mode & 0o7777, member.uid, member.gid,
                 int(member.mtime), (member.devmajor, member.devminor))
    if path is not None and path in tree.nodes:
        raise _fail(label, f"the archive has '{snippet(member.name)}' twice: use an archive "
                           "with each path once")
    if path is None:
        tree.nodes["/"] = node
    elif kind == "dir":
        writer.folder(path)
    elif kind == "file":
        writer.write_file(path, _stream_into(archive.extractfile(member)), 0o644)
    elif kind == "symlink":
        writer.symlink(member.linkname, path)
    elif kind == "hardlink":
        writer.hardlink(_link_target(member, label), path)
    else:
        writer.folder(posixpath.dirname(path))
        tree.specials.append(node)
    if path is not None:
        tree.nodes[path] = node


def _unpack(archive_path: str, scratch: str, label: str) -> _Tree:
    tree = _Tree(scratch)
    os.mkdir(scratch, 0o755)
    writer = RootfsWriter(scratch)
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            for member in archive:
                _extract_member(archive, member, writer, tree, label)
    except BundleError as err:
        raise _fail(label, f"unpacking {printable(archive_path)}: " + "; ".join(err.problems)) \
            from err
    except (tarfile.TarError, EOFError, OSError) as err:
        raise _fail(label, f"cannot unpack {printable(archive_path)}: {err}: fetch an intact "
                           "archive (gzip, bzip2, xz or plain tar)") from err
    finally:
        writer.close()
    return tree


# ------------------------------------------------------------------ sizing

def _walk(root: str) -> Iterable[tuple[str, os.stat_result]]:
    """``(image path, lstat)`` of everything below ``root``, never following a link."""
    pending = [""]
    while pending:
        rel = pending.pop()
        for entry in sorted(os.scandir(os.path.join(root, rel.lstrip("/"))),
                            key=lambda e: e.name):
            path = f"{rel}/{entry.name}"
            st = entry.stat(follow_symlinks=False)
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                pending.append(path)


def _content(tree: _Tree) -> tuple[int, int]:
    """``(data bytes, objects)`` of the tree: blocks of file data, folders and long links."""
    data, objects, inodes = 0, len(tree.specials) + 1, set()
    for _path, st in _walk(tree.root):
        objects += 1
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in inodes:
            inodes.add((st.st_dev, st.st_ino))
            data += (st.st_size + _BLOCK - 1) // _BLOCK * _BLOCK
        elif stat.S_ISDIR(st.st_mode) or (stat.S_ISLNK(st.st_mode) and st.st_size > 59):
            data += _BLOCK
    return data, objects


def auto_size_mib(data_bytes: int, objects: int) -> int:
    """The image size (MiB) used when none is given: the content, a quarter more and 16 MiB.

    Never less than room for the objects' inodes at ext4's default 16 KiB per inode,
    with a quarter to spare.
    """
    by_data = data_bytes + data_bytes // 4 + objects * 256 + _HEADROOM
    by_inodes = (objects + objects // 4 + 1024) * 16384
    return (max(by_data, by_inodes) + MiB - 1) // MiB


# ------------------------------------------------------------------ mkfs + debugfs

def _run(command: list[str], label: str, what: str,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, errors="replace",
                              check=False, env=env)
    except OSError as err:
        raise _fail(label, f"cannot run {printable(command[0])} ({what}): {err.strerror or err}: "
                           "is the native tool built (the class depends on it)?") from err


def _quote(path: str) -> str:
    return '"' + path.replace('"', '""') + '"'


def _debugfs_script(tree: _Tree, epoch: int | None) -> list[str]:
    """debugfs commands giving every object its owner, mode and time, and making devices."""
    commands: list[str] = []
    for node in tree.specials:
        folder, name = posixpath.split(node.path)
        how = "p" if node.kind == "fifo" else f"{node.kind[0]} {node.device[0]} {node.device[1]}"
        commands += [f"cd {_quote(folder)}", f"mknod {_quote(name)} {how}", "cd /"]
    described = {**tree.nodes, **{n.path: n for n in tree.specials}}
    listed = [("/", None)] + list(_walk(tree.root)) + [(n.path, None) for n in tree.specials]
    for path, st in listed:
        # Not in the archive (or a folder source): root owns it.
        node = described.get(path) or _Node(path, "other", uid=0, gid=0)
        if node.kind == "hardlink":   # its inode is the linked file's
            continue
        quoted = _quote(path)
        commands += [f"sif {quoted} uid {node.uid}", f"sif {quoted} gid {node.gid}"]
        if node.kind in _TYPE_BITS:
            commands.append(f"sif {quoted} mode 0{_TYPE_BITS[node.kind] | node.mode:o}")
        mtime = node.mtime if node.mtime is not None else (
            epoch if epoch is not None else (int(st.st_mtime) if st else None))
        if mtime is not None:
            # Every time of the inode: the image does not depend on when it was made.
            commands += [f"sif {quoted} {field} @{mtime}" for field in _TIME_FIELDS]
    return commands


def _apply_metadata(tree: _Tree, image: str, tools: ImportTools, label: str,
                    env: dict[str, str]) -> None:
    script = image + ".debugfs"
    epoch = int(env["E2FSPROGS_FAKE_TIME"]) if "E2FSPROGS_FAKE_TIME" in env else None
    with open(script, "w", encoding="utf-8", errors="surrogateescape") as out:
        out.write("\n".join(_debugfs_script(tree, epoch)) + "\n")
    try:
        result = _run([tools.debugfs, "-w", "-f", script, image], label, "debugfs", env)
    finally:
        os.unlink(script)
    errors = [line for line in result.stderr.splitlines()
              if line.strip() and not line.startswith("debugfs ")]
    if result.returncode != 0 or errors:
        shown = "; ".join(snippet(e, 200) for e in errors[:5]) or f"exit status {result.returncode}"
        raise _fail(label, f"debugfs could not set owners and modes in the image: {shown}")


def _too_small(label: str, where: str, size_mib: int, data: int, objects: int) -> BundleError:
    return _fail(label, f"{where} = \"{size_mib}\" (MiB) is too small for the root filesystem "
                        f"({objects} objects, {data / MiB:.1f} MiB of data): set at least "
                        f"\"{auto_size_mib(data, objects)}\", or leave it unset to size the "
                        "image from its content")


def _tool_env(epoch: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if epoch is not None:
        env["E2FSPROGS_FAKE_TIME"] = str(epoch)
    return env


def _mkfs(tree: _Tree, image: str, source: ImportSource, tools: ImportTools, label: str,
          env: dict[str, str]) -> int:
    data, objects = _content(tree)
    size_mib = source.size_mib or auto_size_mib(data, objects)
    if source.size_mib and source.size_mib * MiB < data + objects * 256:
        raise _too_small(label, source.size_where, source.size_mib, data, objects)
    seed = str(uuid.UUID(bytes=hashlib.sha256(label.encode("utf-8", "replace")).digest()[:16]))
    inodes = max(size_mib * MiB // 16384, objects + objects // 4 + 64)
    result = _run([tools.mkfs_ext4, "-q", "-F", "-t", "ext4", "-b", str(_BLOCK), "-N", str(inodes),
                   "-U", seed, "-E", f"root_owner=0:0,hash_seed={seed}", "-d", tree.root, image,
                   f"{size_mib * 1024}K"], label, "mkfs.ext4", env)
    if result.returncode != 0:
        text = result.stderr + result.stdout
        if source.size_mib and ("Could not allocate" in text or "too big" in text
                                or "No space left" in text):
            raise _too_small(label, source.size_where, source.size_mib, data, objects)
        raise _fail(label, f"mkfs.ext4 failed: {snippet(text.strip(), 400)}")
    return size_mib * MiB


def _rootfs_dir(path: str, output: str, source: ImportSource, tools: ImportTools, label: str,
                epoch: int | None) -> int:
    scratch = output + ".tree"
    if os.path.lexists(scratch):
        shutil.rmtree(scratch)
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            tree = _Tree(path)
        elif os.path.isfile(path) and tarfile.is_tarfile(path):
            tree = _unpack(path, scratch, label)
        else:
            raise _fail(label, f"XEN_GUEST_SOURCE_FILE {printable(path)} is neither a folder nor "
                               "a tar archive: a rootfs_dir import takes an unpacked root "
                               "filesystem or its archive (SRC_URI with unpack=0)")
        env = _tool_env(epoch)
        size = _mkfs(tree, output, source, tools, label, env)
        _apply_metadata(tree, output, tools, label, env)
        return size
    finally:
        if os.path.lexists(scratch):
            shutil.rmtree(scratch)


# ------------------------------------------------------------------ images

def _qcow2(path: str, output: str, tools: ImportTools, label: str) -> int:
    info = _run([tools.qemu_img, "info", "--output=json", path], label, "qemu-img info")
    try:
        details = json.loads(info.stdout) if info.returncode == 0 else {}
    except ValueError:
        details = {}
    if details.get("format") != "qcow2":
        found = details.get("format") or snippet(info.stderr.strip(), 200) or "unreadable"
        raise _fail(label, f"{printable(path)} is not a qcow2 image ({found}): set "
                           "XEN_GUEST_SOURCE_TYPE to its real type (raw, ext4) or fetch the "
                           "right file")
    data_file = (details.get("format-specific") or {}).get("data", {}).get("data-file")
    if details.get("backing-filename") or data_file:
        raise _fail(label, f"{printable(path)} refers to another file (backing file or external "
                           "data file), which the conversion would read from the build host: "
                           "use a self-contained qcow2 image (qemu-img convert it first)")
    result = _run([tools.qemu_img, "convert", "-f", "qcow2", "-O", "raw", path, output],
                  label, "qemu-img convert")
    if result.returncode != 0:
        raise _fail(label, f"qemu-img convert failed: {snippet(result.stderr.strip(), 400)}")
    return os.path.getsize(output)


def _copy_image(path: str, output: str, source_type: str, label: str) -> int:
    if not os.path.isfile(path):
        raise _fail(label, f"XEN_GUEST_SOURCE_FILE {printable(path)} is not a file: a "
                           f"{source_type} import takes a disk image file")
    if source_type == "ext4":
        with open(path, "rb") as image:
            image.seek(_EXT_MAGIC_OFFSET)
            if image.read(2) != b"\x53\xef":
                raise _fail(label, f"{printable(path)} has no ext2/3/4 superblock: set "
                                   "XEN_GUEST_SOURCE_TYPE to its real type (raw, qcow2) or "
                                   "fetch the right file")
    copy_sparse(path, output)
    return os.path.getsize(output)


def _source_path(source: ImportSource, source_dir: str, label: str) -> str:
    path = os.path.normpath(os.path.join(source_dir, source.source_file))
    real_dir = os.path.realpath(source_dir)
    real = os.path.realpath(path)
    if not (real == real_dir or real.startswith(real_dir.rstrip("/") + "/")):
        raise _fail(label, f"XEN_GUEST_SOURCE_FILE \"{snippet(source.source_file)}\" leads to "
                           f"{printable(real)}, outside UNPACKDIR {printable(source_dir)}: import "
                           "only what the recipe fetched (SRC_URI)")
    if not os.path.lexists(path):
        raise _fail(label, f"XEN_GUEST_SOURCE_FILE \"{snippet(source.source_file)}\" is not in "
                           f"UNPACKDIR {printable(source_dir)}: add it to SRC_URI (for an "
                           "archive unpacked by the fetcher, name the folder it unpacks to, "
                           "e.g. with ;subdir=)")
    return path


def import_guest_image(source: ImportSource, source_dir: str, output: str, *, label: str,
                       tools: ImportTools | None = None, epoch: int | None = None) -> ImportedImage:
    """Make the disk image ``output`` of a guest from ``source`` (found in ``source_dir``).

    ``label`` names the guest in messages; ``epoch`` (``SOURCE_DATE_EPOCH``) fixes
    the file system's own timestamps.  An existing ``output`` is replaced.  Raises
    :class:`BundleError` naming the guest, the file and the fix.
    """
    tools = tools or ImportTools()
    path = _source_path(source, source_dir, label)
    if os.path.lexists(output):
        os.unlink(output)
    try:
        if source.source_type == "rootfs_dir":
            size = _rootfs_dir(path, output, source, tools, label, epoch)
        elif source.source_type == "qcow2":
            size = _qcow2(path, output, tools, label)
        else:
            size = _copy_image(path, output, source.source_type, label)
    except BaseException:
        if os.path.lexists(output):
            os.unlink(output)
        raise
    return ImportedImage(output, size)


def import_entries(variables: Variables, variable: str, source_dir: str, import_dir: str, *,
                   tools: ImportTools | None = None, epoch: int | None = None,
                   log: Callable[[str], None] = print) -> list[ImportedImage]:
    """Import the images of every entry of ``variable`` that has ``XEN_GUEST_SOURCE_TYPE``.

    Each becomes ``<import_dir>/<entry>.img``
    (:func:`~xenbundle.recipeguests.imported_image_name`).  Problems with the
    entries' values are raised first, together (:class:`BundleError`).
    """
    requests = guest_requests(variables, variable, imports_allowed=True)
    problems = list(requests.problems) + [p for r in requests.requests for p in r.problems]
    if problems:
        raise BundleError(problems)
    os.makedirs(import_dir, exist_ok=True)
    done = []
    for request in requests.requests:
        if request.source is None:
            continue
        done.append(_import_one(request, source_dir, import_dir, tools, epoch))
        log(f"xenbundle: imported {request.label} from {request.source.source_file} "
            f"({request.source.source_type}): {done[-1].size_bytes / MiB:.1f} MiB")
    return done


def _import_one(request: GuestRequest, source_dir: str, import_dir: str,
                tools: ImportTools | None, epoch: int | None) -> ImportedImage:
    assert request.source is not None
    output = os.path.join(import_dir, imported_image_name(request.entry.name))
    label = (f"{request.label}, XEN_GUEST_SOURCE_TYPE[{request.entry.name}] = "
             f"\"{request.source.source_type}\"")
    return import_guest_image(request.source, source_dir, output, label=label, tools=tools,
                              epoch=epoch)
