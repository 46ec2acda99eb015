"""Read a file from an ext4 image inside another ext4 (or qcow2) image, without root.

A guest's disk is a file in dom0's root file system (``/var/lib/xen/images/<guest>.ext4``),
and dom0's root file system is a raw ext4 image or, after a boot with a writable overlay, a
qcow2 overlay on top of it. To check what a guest left on its disk (its shutdown marker) the
image is read offline: ``qemu-img convert`` turns a qcow2 overlay into a raw image, debugfs
(e2fsprogs) copies the guest's disk out of dom0's file system and the file out of the guest's.
No mount, no loop device, no root rights; the images are only read.

debugfs does not replay the journal: a file is seen only once the guest's file system was
written back (a clean unmount or read-only remount does that), which is what a test of a clean
shutdown wants. :func:`ext4_state` tells whether a file system was left clean.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import XenqemuError

Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]

QCOW2_MAGIC = b"QFI\xfb"
_MAX_DETAIL = 400


class ImageReadError(XenqemuError):
    """A file could not be read from an image; the message names the image, the path and why."""


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(cmd), check=False, capture_output=True)


def tool(name: str, package: str) -> str:
    """The path of a host program (also found in /usr/sbin and /sbin), or a clear error."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ImageReadError(f"{name} is missing: install it with 'apt-get install {package}'")


def image_format(header: bytes) -> str:
    """``qcow2`` for a qcow2 header, else ``raw``."""
    return "qcow2" if header[:4] == QCOW2_MAGIC else "raw"


def debugfs_errors(stderr: str) -> list[str]:
    """debugfs's error lines (its version banner is printed on every run and is not one)."""
    return [line.strip() for line in stderr.splitlines()
            if line.strip() and not line.startswith("debugfs ")]


def _check_path(path: str) -> None:
    if not path.startswith("/") or any(ch in path for ch in '"\n\r\0'):
        raise ImageReadError(f"{path!r}: give an absolute path without quotes or newlines")


def to_raw(image: Path, work: Path, run: Runner = _run) -> Path:
    """``image`` itself when raw, else a raw copy in ``work`` (sparse, via ``qemu-img convert``)."""
    try:
        with open(image, "rb") as stream:
            header = stream.read(4)
    except OSError as err:
        raise ImageReadError(f"cannot read {image}: {err.strerror}") from None
    if image_format(header) == "raw":
        return image
    raw = work / (image.name + ".raw")
    result = run([tool("qemu-img", "qemu-utils"), "convert", "-f", "qcow2", "-O", "raw",
                  str(image), str(raw)])
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-_MAX_DETAIL:]
        raise ImageReadError(f"qemu-img convert of {image} failed: {detail}")
    return raw


def dump_file(image: Path, path: str, dest: Path, run: Runner = _run, label: str = "") -> Path:
    """Copy ``path`` out of the ext4 ``image`` (called ``label`` in messages) into ``dest`` with debugfs."""
    _check_path(path)
    if dest.exists():
        dest.unlink()
    result = run([tool("debugfs", "e2fsprogs"), "-R", f'dump -p "{path}" "{dest}"', str(image)])
    errors = debugfs_errors(result.stderr.decode(errors="replace"))
    if result.returncode != 0 or errors or not dest.is_file():
        detail = "; ".join(errors)[:_MAX_DETAIL] or f"exit status {result.returncode}"
        raise ImageReadError(f"{path} cannot be read from {label or image}: {detail}")
    return dest


def read_nested_file(outer: Path, inner_image: str, path: str, work: Path | None = None,
                     run: Runner = _run) -> bytes:
    """The content of ``path`` in the ext4 image ``inner_image``, itself a file in ``outer``.

    ``outer`` is a raw ext4 image or a qcow2 image of one; ``work`` holds the temporary copies
    (default: a temporary folder, removed afterwards).
    """
    if work is None:
        with tempfile.TemporaryDirectory(prefix="xenref-imageread-") as tmp:
            return read_nested_file(outer, inner_image, path, Path(tmp), run)
    raw = to_raw(outer, work, run)
    inner = dump_file(raw, inner_image, work / "inner.ext4", run, label=str(outer))
    return dump_file(inner, path, work / "file", run, label=f"{inner_image} in {outer}").read_bytes()


@dataclass(frozen=True)
class Ext4State:
    """What ``dumpe2fs -h`` says about a file system's state."""

    state: str
    needs_recovery: bool

    @property
    def clean(self) -> bool:
        """Unmounted (or remounted read-only) cleanly, with nothing left in the journal."""
        return self.state == "clean" and not self.needs_recovery


def parse_dumpe2fs(text: str) -> Ext4State:
    """The state fields of ``dumpe2fs -h`` output."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "Filesystem state" not in fields:
        raise ImageReadError(f"dumpe2fs printed no file system state: {text[:_MAX_DETAIL]!r}")
    return Ext4State(fields["Filesystem state"],
                     "needs_recovery" in fields.get("Filesystem features", "").split())


def ext4_state(image: Path, run: Runner = _run) -> Ext4State:
    """The state of the ext4 file system in ``image`` (a raw image)."""
    result = run([tool("dumpe2fs", "e2fsprogs"), "-h", str(image)])
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-_MAX_DETAIL:]
        raise ImageReadError(f"dumpe2fs -h {image} failed: {detail}")
    return parse_dumpe2fs(result.stdout.decode(errors="replace"))


def nested_ext4_state(outer: Path, inner_image: str, work: Path | None = None,
                      run: Runner = _run) -> Ext4State:
    """The state of the ext4 image ``inner_image`` inside ``outer`` (raw or qcow2)."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="xenref-imageread-") as tmp:
            return nested_ext4_state(outer, inner_image, Path(tmp), run)
    raw = to_raw(outer, work, run)
    return ext4_state(dump_file(raw, inner_image, work / "inner.ext4", run, label=str(outer)), run)
