"""The dom0less boot files of one Xen host image, from the files in its deploy folder.

One home for what both the layer's classes (``classes/xen-ref-dom0less.bbclass``, at image
build time) and the reference target (:mod:`xenreftarget.dom0less`) do with a set of dom0less
domains: take the sizes of the kernels and ramdisks in the deploy folder, lay the modules out
(:func:`xenboot.dom0less.place_modules`), dump the QEMU machine's device tree, add the
``/chosen`` nodes, compile it (:mod:`xenboot.devicetree`), and give the qemuboot.conf values that
boot it (``QB_DTB``, the loader devices in ``QB_OPT_APPEND``, ``QB_XEN_DOM0LESS...``).  The
U-Boot script for a board is made from the same layout (:mod:`xenboot.ubootscript`).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .contract import XenBoot
from .devicetree import (
    compile_dts,
    decompile_dtb,
    dump_machine_dtb,
    merged_source,
    qemuboot_variables,
)
from .dom0less import Dom0lessDomain, Dom0lessLayout, check_memory, place_modules
from .errors import BootConfigError
from .layout import RamRegion
from .ubootscript import UbootBoard, uboot_script

__all__ = ["UBOOT_KEYS", "Dom0lessBoot", "QemuTools", "deploy_file_sizes", "deployed_layout", "machine_arguments",
           "qemu_dom0less_boot", "uboot_board", "without_guest_loaders", "write_uboot_script"]

#: The board settings :func:`uboot_board` reads (a board's files, where Xen and its tree go).
UBOOT_KEYS = ("XEN_REF_UBOOT_LOAD_SOURCE", "XEN_REF_UBOOT_XEN_FILE", "XEN_REF_UBOOT_XEN_ADDR",
              "XEN_REF_UBOOT_FDT_FILE", "XEN_REF_UBOOT_FDT_ADDR", "XEN_REF_UBOOT_XEN_CMDLINE")
#: The qemuboot.conf variables that give the QEMU machine's shape (the dumped tree must match it).
MACHINE_KEYS = ("QB_MACHINE", "QB_CPU", "QB_SMP", "QB_MEM")


@dataclass(frozen=True)
class QemuTools:
    """The programs that make the tree: QEMU for the machine (dumps its tree) and dtc."""

    qemu: str = "qemu-system-aarch64"
    dtc: str = "dtc"


@dataclass(frozen=True)
class Dom0lessBoot:
    """What :func:`qemu_dom0less_boot` made: the checked layout and the qemuboot.conf values."""

    layout: Dom0lessLayout
    variables: dict[str, str]


def machine_arguments(values: Mapping[str, str]) -> list[str]:
    """QEMU's machine options from ``QB_MACHINE``, ``QB_CPU``, ``QB_SMP`` and ``QB_MEM``."""
    return [word for key in MACHINE_KEYS for word in shlex.split(values.get(key) or "")]


def _needed_files(xen: XenBoot | None, domains: Sequence[Dom0lessDomain]) -> list[tuple[str, str]]:
    needed = []
    if xen is not None:
        needed.append((xen.dom0_kernel, "dom0 kernel (QB_XEN_DOM0_KERNEL)"))
        if xen.dom0_initrd:
            needed.append((xen.dom0_initrd, "dom0 initrd (QB_XEN_DOM0_INITRD)"))
    for domain in domains:
        needed += [(domain.kernel, f"dom0less guest '{domain.name}' kernel"),
                   (domain.ramdisk, f"dom0less guest '{domain.name}' ramdisk")]
    return needed


def deploy_file_sizes(deploy: Path, needed: Iterable[tuple[str, str]]) -> dict[str, int]:
    """The size of each ``(file name, what it is)`` in ``deploy`` (links followed).

    Raises :class:`BootConfigError` naming the first file that is missing, not a regular file or
    empty, what it is for, and the fix.
    """
    sizes: dict[str, int] = {}
    for name, what in needed:
        path = deploy / name
        try:
            size = path.stat().st_size if path.is_file() else -1
        except OSError:
            size = -1
        if size <= 0:
            state = "is empty" if size == 0 else "is missing (or not a regular file)"
            raise BootConfigError(
                f"{what} {state}",
                "build or deploy it there before the boot files are written (a guest image needs a "
                "cpio image type, e.g. IMAGE_FSTYPES += \"cpio.gz\"), or name the deployed file "
                "(XEN_GUEST_RAMDISK / XEN_GUEST_KERNEL)", path=path)
        sizes[name] = size
    return sizes


def deployed_layout(xen: XenBoot | None, domains: Sequence[Dom0lessDomain], deploy: Path, ram: RamRegion,
                    dom0_mib: int) -> Dom0lessLayout:
    """The checked layout of dom0's and the domains' modules, sized by their files in ``deploy``.

    The memory check comes first (it needs no file); then every file must be in ``deploy``
    (:func:`deploy_file_sizes`); then :func:`~xenboot.dom0less.place_modules`.
    """
    check_memory(domains, ram, dom0_mib if xen is not None else 0)
    sizes = deploy_file_sizes(deploy, _needed_files(xen, domains))
    return place_modules(xen, domains, sizes, ram, dom0_mib)


def without_guest_loaders(opt_append: str) -> list[str]:
    """``QB_OPT_APPEND``'s words without its ``-device guest-loader,...`` pairs.

    With ``-dtb`` QEMU's guest-loader devices describe nothing (they write into the tree QEMU
    generates, which is then unused): the loader devices replace them, other options stay.
    """
    words = shlex.split(opt_append or "")
    kept: list[str] = []
    index = 0
    while index < len(words):
        if words[index] == "-device" and words[index + 1:index + 2] and \
                words[index + 1].startswith("guest-loader"):
            index += 2
            continue
        kept.append(words[index])
        index += 1
    return kept


def _install(built: Path, destination: Path) -> None:
    """Put ``built`` at ``destination`` whole (a copy next to it, then a rename)."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".partial")
        shutil.copyfile(built, partial)
        os.replace(partial, destination)
    except OSError as err:
        raise BootConfigError(f"{destination} could not be written: {err.strerror}",
                              "check that the folder is writable and has space", path=destination) from None


def qemu_dom0less_boot(xen: XenBoot | None, domains: Sequence[Dom0lessDomain], *, deploy: Path,
                       machine: Mapping[str, str], ram: RamRegion, dom0_mib: int, work: Path,
                       dtb: Path, tools: QemuTools = QemuTools()) -> Dom0lessBoot:
    """Write the dom0less device tree to ``dtb``; the layout and the qemuboot.conf values that boot it.

    ``deploy`` holds the kernels and ramdisks (their sizes are read there); ``machine`` holds the
    image's ``QB_MACHINE``, ``QB_CPU``, ``QB_SMP``, ``QB_MEM`` and ``QB_OPT_APPEND`` (its
    guest-loader devices are replaced by loader devices, other options are kept).  ``xen`` None:
    no dom0.  ``work`` is scratch space.  Raises :class:`BootConfigError`.
    """
    layout = deployed_layout(xen, domains, deploy, ram, dom0_mib)
    work.mkdir(parents=True, exist_ok=True)
    dumped = dump_machine_dtb(tools.qemu, machine_arguments(machine), work / "machine.dtb")
    built = compile_dts(merged_source(decompile_dtb(dumped, tools.dtc), layout), work / dtb.name, tools.dtc)
    _install(built, dtb)
    variables = qemuboot_variables(layout, dtb.name)
    kept = without_guest_loaders(machine.get("QB_OPT_APPEND") or "")
    variables["QB_OPT_APPEND"] = " ".join([*(shlex.quote(w) for w in kept), variables["QB_OPT_APPEND"]])
    return Dom0lessBoot(layout, variables)


def uboot_board(values: Mapping[str, str]) -> UbootBoard:
    """The board of the ``XEN_REF_UBOOT_*`` settings (:data:`UBOOT_KEYS`); unset or empty: the default.

    Raises :class:`BootConfigError` naming a setting whose address does not parse.
    """
    default = UbootBoard()

    def text(key: str, fallback: str) -> str:
        # blanks collapsed: a composed command line ("${A} ${B}" with B empty) reads as Xen splits it
        return " ".join((values.get(key) or "").split()) or fallback

    def address(key: str, fallback: int) -> int:
        value = text(key, "")
        try:
            return int(value, 0) if value else fallback
        except ValueError:
            raise BootConfigError(f"{value[:40]!r} is not an address", "write it like 0x40200000", key=key) from None

    return UbootBoard(load_source=text("XEN_REF_UBOOT_LOAD_SOURCE", default.load_source),
                      xen_file=text("XEN_REF_UBOOT_XEN_FILE", default.xen_file),
                      xen_addr=address("XEN_REF_UBOOT_XEN_ADDR", default.xen_addr),
                      xen_size=default.xen_size,
                      fdt_file=text("XEN_REF_UBOOT_FDT_FILE", default.fdt_file),
                      fdt_addr=address("XEN_REF_UBOOT_FDT_ADDR", default.fdt_addr),
                      fdt_room=default.fdt_room,
                      xen_cmdline=text("XEN_REF_UBOOT_XEN_CMDLINE", default.xen_cmdline))


def write_uboot_script(layout: Dom0lessLayout, board: UbootBoard, ram: RamRegion, output: Path,
                       work: Path) -> str:
    """Write the U-Boot script of ``layout`` (:func:`~xenboot.ubootscript.uboot_script`) to ``output``.

    Returns its text; raises :class:`BootConfigError` (layout on the board, or a write that failed).
    """
    text = uboot_script(layout, board, ram)
    work.mkdir(parents=True, exist_ok=True)
    built = work / output.name
    built.write_text(text)
    _install(built, output)
    return text
