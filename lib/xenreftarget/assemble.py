"""Assemble the reference target's root file systems and initrd from unpacked Debian packages.

Nothing here needs root rights, loop mounts or a chroot: packages are unpacked with
``dpkg-deb -x``, trees are laid out in plain folders (merged-/usr, like current Debian and Yocto),
ext4 images are made with ``mkfs.ext4 -d`` and the initrd is written by :mod:`xenreftarget.cpio`.
Kernel module dependency order comes from the host's ``depmod``/``modprobe`` run on the unpacked
kernel (kmod reads foreign-architecture modules fine).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import initscripts
from .cpio import console_node, write_initramfs
from .errors import ReferenceTargetError
from .packages import extract_deb

#: Modules the initrd loads so that dom0 (virtio-blk) and guests (xen-blkfront) find an ext4 root.
INITRD_MODULES: tuple[str, ...] = ("virtio_mmio", "virtio_blk", "crc32c_generic", "ext4",
                         "xen-blkfront", "xen-netfront")
#: Paths (relative, after merging /usr; ``*`` matches within one path segment) left out of the
#: root file systems: documentation, boot files, Debian's sysvinit scripts and defaults (systemd
#: and our units start Xen), Python parts of Xen's tools (no Python in dom0), udev's hardware
#: database sources (the compiled database is not built; udev works without it).
_EXCLUDED_PREFIXES: tuple[str, ...] = (
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
    "usr/share/bug", "usr/share/bash-completion", "usr/share/python3", "usr/share/initramfs-tools",
    "usr/share/i18n", "usr/share/zsh", "usr/lib/*-linux-gnu*/gconv", "usr/lib/xen-*/lib/python",
    "usr/lib/*-linux-gnu*/audit", "boot", "etc/init.d", "etc/default", "usr/share/xen-utils-common",
    "usr/lib/udev/hwdb.d",
)


class AssembleError(ReferenceTargetError):
    """A step of the assembly failed; the message names the step and the file."""


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), check=False, text=True, capture_output=True)
    if result.returncode != 0:
        raise AssembleError(f"{' '.join(cmd)} failed: {(result.stderr or result.stdout).strip()}")
    return result


def merged_usr_path(rel: str) -> str:
    """Map a package path onto the merged-/usr layout: ``bin/x`` -> ``usr/bin/x``, ``lib/...``..."""
    rel = rel[2:] if rel.startswith("./") else rel.lstrip("/")
    first, _, rest = rel.partition("/")
    if first in ("bin", "sbin", "lib", "lib64"):
        return f"usr/{first}" + (f"/{rest}" if rest else "")
    return rel


def is_excluded(rel: str) -> bool:
    """Whether a (merged) path belongs to the parts left out of the images (see above)."""
    parts = rel.split("/")
    for prefix in _EXCLUDED_PREFIXES:
        pattern = prefix.split("/")
        if len(parts) >= len(pattern) and all(
                fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, pattern)):
            return True
    return False


def parse_show_depends(output: str, modules_dir: str) -> list[str]:
    """Module paths relative to ``modules_dir`` from ``modprobe --show-depends`` output.

    ``builtin`` lines (code compiled into the kernel) are dropped.
    """
    paths = []
    prefix = modules_dir.rstrip("/") + "/"
    for line in output.splitlines():
        match = re.match(r"insmod\s+(\S+)", line.strip())
        if not match:
            continue
        path = os.path.normpath(match.group(1))
        norm_prefix = os.path.normpath(prefix) + "/"
        if not path.startswith(norm_prefix):
            raise AssembleError(f"modprobe named {path}, outside {modules_dir}")
        paths.append(path[len(norm_prefix):])
    return paths


def unique(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, first occurrence kept."""
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def package_file(unpacked: Path, rel: str) -> Path:
    """``rel`` (e.g. ``bin/busybox``) in an unpacked package, at its place or below ``usr/``.

    Since trixie Debian's packages ship their files below ``/usr`` only (``usr/bin/busybox``,
    ``usr/lib/modules``); bookworm's still use ``/bin`` and ``/lib``. Returns the path that
    exists, or the unmerged one when neither does (the caller's error names it).
    """
    for candidate in (unpacked / rel, unpacked / "usr" / rel):
        if candidate.exists():
            return candidate
    return unpacked / rel


@dataclass
class KernelTree:
    """The unpacked kernel package: its root folder, release string and modules base.

    ``base`` is the folder holding ``lib/modules`` (what ``depmod -b`` and ``modprobe -d``
    take): the package root on bookworm, its ``usr`` folder on trixie (merged /usr).
    """

    root: Path
    release: str
    base: Path | None = None

    @property
    def modules_base(self) -> Path:
        """The folder whose ``lib/modules/<release>`` holds the modules."""
        return self.base or self.root

    @property
    def modules_dir(self) -> Path:
        """``lib/modules/<release>`` inside the unpacked package."""
        return self.modules_base / "lib" / "modules" / self.release

    @property
    def image(self) -> Path:
        """The kernel binary (Debian's arm64 ``vmlinuz`` is an uncompressed Image, amd64's a bzImage)."""
        return self.root / "boot" / f"vmlinuz-{self.release}"

    def load_order(self, names: Sequence[str]) -> list[str]:
        """Module files (relative to :attr:`modules_dir`) that load ``names``, dependencies first."""
        order: list[str] = []
        for name in names:
            result = subprocess.run(
                ["modprobe", "-d", str(self.modules_base), "-S", self.release, "--show-depends", name],
                check=False, text=True, capture_output=True)
            if result.returncode != 0:
                raise AssembleError(
                    f"kernel {self.release} has no module {name}: {result.stderr.strip()}")
            order.extend(parse_show_depends(result.stdout, str(self.modules_dir)))
        return unique(order)


def unpack_kernel(deb: Path, dest: Path) -> KernelTree:
    """Unpack the kernel package and create its module index with the host's ``depmod``."""
    extract_deb(deb, dest)
    base = package_file(dest, "lib/modules").parent.parent
    modules = base / "lib" / "modules"
    releases = sorted(p.name for p in modules.iterdir() if p.is_dir()) if modules.is_dir() else []
    if len(releases) != 1:
        raise AssembleError(f"{deb.name}: expected one kernel release in lib/modules or "
                            f"usr/lib/modules, found {releases}")
    tree = KernelTree(dest, releases[0], base)
    _run(["depmod", "-b", str(base), tree.release])
    if not tree.image.is_file():
        raise AssembleError(f"{deb.name}: no boot/vmlinuz-{tree.release}")
    return tree


def is_usrmerge_alias(src: Path, unpacked: Path) -> bool:
    """Whether ``src`` is a top-level ``bin -> usr/bin`` style link (base-files ships them since trixie).

    :func:`base_layout` makes those links itself; copying them would replace the tree's
    ``usr/bin`` folder with a link to itself.
    """
    rel = src.relative_to(unpacked).as_posix()
    return "/" not in rel and merged_usr_path(rel) != rel and \
        os.path.normpath(os.readlink(src)).lstrip("/") == merged_usr_path(rel)


def install_package_tree(package: str, unpacked: Path, root: Path) -> None:
    """Copy one unpacked package into ``root`` (merged /usr, documentation left out)."""
    for dirpath, dirnames, filenames in os.walk(unpacked):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            src = Path(dirpath) / name
            rel = merged_usr_path(src.relative_to(unpacked).as_posix())
            if is_excluded(rel):
                continue
            dst = root / rel
            if src.is_symlink() and is_usrmerge_alias(src, unpacked):
                continue
            if src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.is_symlink() or dst.exists():
                    dst.unlink()
                os.symlink(os.readlink(src), dst)
            elif src.is_dir():
                if not dst.is_symlink():
                    dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


def base_layout(root: Path) -> None:
    """The folders and merged-/usr links shared by dom0 and guests (before packages are unpacked)."""
    for folder in ("usr/bin", "usr/sbin", "usr/lib", "etc/init.d", "etc/xen-ref", "dev", "proc",
                   "sys", "run", "tmp", "root", "home", "mnt", "var/log", "var/lib",
                   "usr/share/udhcpc"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "root", 0o700)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                         ("var/run", "../run"), ("var/lock", "../run/lock"), ("var/tmp", "../tmp")):
        path = root / link
        if not path.is_symlink():
            os.symlink(target, path)


def base_config(root: Path, hostname: str = "qemuarm64", init: str = "busybox init",
                origin: str = "Debian bookworm arm64") -> None:
    """The configuration files shared by dom0 and guests (after packages, so that they win).

    ``origin`` names the packages' distribution in ``/etc/issue``.
    """
    files = {
        # root has an empty password, as in the Yocto image with debug-tweaks/empty-root-password.
        "etc/passwd": "root::0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\ntty:x:5:\ndisk:x:6:\n",
        "etc/hostname": f"{hostname}\n",
        "etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n",
        "etc/shells": "/bin/sh\n/bin/bash\n",
        # The prompt a Yocto image shows, root@<host>:~#, which oe-core's QemuRunner waits for.
        # The static busybox cannot look accounts up (getpwuid fails), so \\u is empty and \\w
        # never abbreviates $HOME: the prompt spells out root and compares $PWD with $HOME itself.
        "etc/profile": ("export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
                        "export PS1='root@\\h:$(if [ \"$PWD\" = \"$HOME\" ]; then echo \"~\"; "
                        "else echo \"$PWD\"; fi)\\$ '\n"),
        "etc/issue": f"meta-xen-ref reference target ({hostname}, {origin}) \\n \\l\n\n",
        "etc/fstab": f"# the root file system is mounted by the initrd; the rest by {init}\n",
        "etc/resolv.conf": "",
    }
    for rel, text in files.items():
        path = root / rel
        if path.is_symlink():
            path.unlink()
        path.write_text(text)
    script = root / initscripts.UDHCPC_SCRIPT.lstrip("/")
    script.write_text(initscripts.udhcpc_script())
    script.chmod(0o755)


def base_tree(root: Path, hostname: str = "qemuarm64", origin: str = "Debian bookworm arm64") -> None:
    """A busybox-init root file system's skeleton: folders, links, accounts, init files."""
    base_layout(root)
    base_config(root, hostname, origin=origin)
    (root / "etc/inittab").write_text(initscripts.inittab())


def install_busybox(busybox_unpacked: Path, root: Path, init: bool = True) -> None:
    """Install the static busybox and the links needed before ``busybox --install`` runs.

    With ``init`` busybox is also ``/sbin/init``; without, only ``sh`` and ``login`` link to it.
    """
    binary = package_file(busybox_unpacked, "bin/busybox")
    if not binary.is_file():
        raise AssembleError(f"{busybox_unpacked}: no bin/busybox or usr/bin/busybox")
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, root / "usr/bin/busybox")
    links = [("usr/bin/sh", "busybox"), ("usr/bin/login", "busybox")]
    if init:
        links.append(("usr/sbin/init", "../bin/busybox"))
    for rel, target in links:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        os.symlink(target, path)


def write_executable(path: Path, text: str) -> None:
    """Write a script and make it executable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def install_modules(kernel: KernelTree, names: Sequence[str], root: Path) -> list[str]:
    """Copy the modules for ``names`` (with dependencies) into ``root`` and index them there.

    Returns the load order (paths relative to ``lib/modules/<release>``).
    """
    order = kernel.load_order(names)
    dest_dir = root / "usr/lib/modules" / kernel.release
    for rel in order:
        dest = dest_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel.modules_dir / rel, dest)
    for index in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (kernel.modules_dir / index).is_file():
            shutil.copy2(kernel.modules_dir / index, dest_dir / index)
    _run(["depmod", "-b", str(root / "usr"), kernel.release])
    return order


def guest_tree(packages: Mapping[str, Path], root: Path, origin: str = "Debian bookworm arm64",
               hostname: str = "qemuarm64") -> None:
    """Lay out a guest's root file system: busybox (sh, getty, login, udhcpc, wget) only."""
    base_tree(root, hostname, origin=origin)
    install_busybox(packages["busybox-static"], root)
    write_executable(root / "etc/init.d/rcS", initscripts.guest_rcs())
    write_executable(root / "etc/init.d/rcK", initscripts.guest_rck())


def initrd_tree(packages: Mapping[str, Path], kernel: KernelTree, root: Path,
                extra_modules: Sequence[str] = ()) -> list[str]:
    """Lay out the initrd: busybox, the storage modules (and ``extra_modules``, such as the PCI
    transport on x86), ``/init``. Returns the module order."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "dev").mkdir(parents=True, exist_ok=True)
    shutil.copy2(package_file(packages["busybox-static"], "bin/busybox"), root / "bin" / "busybox")
    order = kernel.load_order((*extra_modules, *INITRD_MODULES))
    for rel in order:
        dest = root / "lib/modules" / kernel.release / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel.modules_dir / rel, dest)
    write_executable(root / "init", initscripts.initrd_init(order))
    return order


def write_initrd(tree: Path, output: Path) -> None:
    """Pack the initrd tree (plus ``/dev/console``) as a gzip'd newc cpio."""
    write_initramfs(tree, output, extra=[console_node()])


def apparent_size(root: Path) -> int:
    """Bytes the files below ``root`` occupy when every file is rounded up to 4 KiB blocks."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        total += 4096 * (len(dirnames) + 1)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += (path.lstat().st_size + 4095) // 4096 * 4096
    return total


def make_ext4(tree: Path, image: Path, label: str, size_bytes: int | None = None,
              headroom_bytes: int = 48 << 20) -> int:
    """Create an ext4 image of ``tree`` with ``mkfs.ext4 -d``; returns its size in bytes.

    Without ``size_bytes`` the image gets the tree's size plus a quarter plus ``headroom_bytes``
    (the image file is sparse, so unused space costs nothing on disk).
    """
    if size_bytes is None:
        content = apparent_size(tree)
        size_bytes = content + content // 4 + headroom_bytes
    size_kib = (size_bytes + 1023) // 1024
    size_kib = (size_kib + 4095) // 4096 * 4096
    if image.exists():
        image.unlink()
    mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
    _run([mkfs, "-q", "-F", "-t", "ext4", "-b", "4096", "-L", label, "-E", "root_owner=0:0",
          "-d", str(tree), str(image), f"{size_kib}K"])
    return size_kib * 1024


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy a disk image keeping its holes (``cp --sparse=always``)."""
    _run(["cp", "--sparse=always", str(src), str(dst)])
