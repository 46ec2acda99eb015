"""Target descriptions: what to boot and how, read from a ``qemuboot.conf`` or a YAML file.

A :class:`Target` is the harness's neutral description of a Xen host image: the QEMU binary,
machine/CPU/memory, the Xen binary given to ``-kernel`` and its command line, the dom0 kernel
(loaded with ``-device guest-loader``), the root filesystem, network and extra devices.
:func:`load_target` reads either

* an oe-core ``qemuboot.conf``, read by :func:`xenboot.read_qemuboot` exactly as ``runqemu``
  reads it when given the file (interpolation, upper-cased names, ``.``/``../`` paths, the images
  in the file's folder); the kernel is ``DEPLOY_DIR_IMAGE/basename(QB_DEFAULT_KERNEL)`` (falling
  back to ``KERNEL_IMAGETYPE``) and the root filesystem ``<IMAGE_LINK_NAME or
  IMAGE_NAME>.<QB_DEFAULT_FSTYPE>``; or
* a small YAML file (see ``docs/harness.md``) whose paths are relative to the YAML file; its
  defaults are those of the ``QB_XEN_*`` contract (:mod:`xenboot.contract`).

Every file is read as bytes and decoded as UTF-8; every problem (a directory, bad bytes, a
duplicate key, a value of the wrong type, modules that overlap or leave RAM) raises
:class:`TargetError` naming the file, the key (and line where known) and the fix.  Nothing here
starts QEMU; :mod:`xenqemu.cmdline` turns a target into an argv.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xenboot
from xenboot import BootConfigError, GuestLoader, XenBoot

from .errors import XenqemuError

__all__ = [
    "DEFAULT_DOM0_KERNEL_ADDR",
    "Dom0Boot",
    "Target",
    "TargetError",
    "check_modules_fit",
    "load_target",
    "parse_memory",
    "read_target_text",
    "split_args",
]

#: Load address of the dom0 kernel for ``-device guest-loader`` (the ``QB_XEN_DOM0_ADDR`` default).
DEFAULT_DOM0_KERNEL_ADDR = xenboot.DOM0_KERNEL_ADDR
#: RAM base of QEMU's arm ``virt`` machine.
VIRT_RAM_BASE = xenboot.ARM_VIRT_RAM_BASE

# Slirp MAC prefix used by runqemu; the last byte is 02 for the first instance.
SLIRP_MAC = "52:54:00:12:35:02"


class TargetError(XenqemuError, ValueError):
    """A target description is wrong; ``str(err)`` names the file, the key and the fix."""

    def __init__(self, path: os.PathLike[str] | str, key: str | None, problem: str, fix: str,
                 line: int | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.line = line
        self.problem = problem
        self.fix = fix
        where = self.path + (f":{line}" if line else "")
        what = f"key '{key}': " if key else ""
        super().__init__(f"{where}: {what}{problem}. Fix: {fix}")

    @classmethod
    def from_boot(cls, err: BootConfigError, path: os.PathLike[str] | str, key: str | None = None,
                  line: int | None = None) -> TargetError:
        """The same facts as a boot-configuration error, about ``path`` (unless it names a file)."""
        return cls(err.path or path, err.key or key, err.problem, err.fix, err.line or line)


@dataclass(frozen=True)
class Dom0Boot:
    """The dom0 kernel handed to Xen through QEMU's ``guest-loader`` device."""

    kernel: Path
    bootargs: str = xenboot.DOM0_BOOTARGS
    initrd: Path | None = None
    kernel_addr: int = DEFAULT_DOM0_KERNEL_ADDR
    #: None = the contract's default (``QB_XEN_DOM0_INITRD_ADDR``).
    initrd_addr: int | None = None

    def resolved_initrd_addr(self) -> int:
        """Where the initrd goes: the configured address or the contract's default."""
        return xenboot.DOM0_INITRD_ADDR if self.initrd_addr is None else self.initrd_addr

    def loaders(self) -> list[GuestLoader]:
        """The guest-loader devices: the kernel with its bootargs, then the initrd if any."""
        found = [GuestLoader(self.kernel_addr, str(self.kernel), "kernel", self.bootargs,
                             "dom0 kernel", "dom0.kernel_addr")]
        if self.initrd is not None:
            found.append(GuestLoader(self.resolved_initrd_addr(), str(self.initrd), "initrd", None,
                                     "dom0 initrd", "dom0.initrd_addr"))
        return found


@dataclass
class Target:
    """Everything needed to build the QEMU command line for one host image.

    ``machine_args``/``cpu_args``/``smp_args``/``extra_args``/``rng_args``/``network_device_args``
    are argv fragments (already split).  ``rootfs_args`` is a template containing ``@ROOTFS@``
    (from ``QB_ROOTFS_OPT``) or empty for the harness's own virtio-mmio drive.
    """

    source: Path
    kind: str  # "qemuboot" or "yaml"
    name: str
    qemu_binary: str = "qemu-system-aarch64"
    machine_args: list[str] = field(default_factory=lambda: ["-machine", "virt,virtualization=on,gic-version=3"])
    cpu_args: list[str] = field(default_factory=lambda: ["-cpu", "cortex-a57"])
    smp_args: list[str] = field(default_factory=lambda: ["-smp", "2"])
    memory_mib: int = 1024
    kernel: Path | None = None
    kernel_cmdline: str = ""
    dtb: Path | None = None
    bios: Path | None = None
    dom0: Dom0Boot | None = None
    rootfs: Path | None = None
    rootfs_format: str = "raw"
    rootfs_args: list[str] = field(default_factory=list)
    network: bool = True
    network_device_args: list[str] = field(
        default_factory=lambda: ["-device", "virtio-net-device,netdev=net0,mac=" + SLIRP_MAC])
    netdev_id: str = "net0"
    rng_args: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    serial_consoles: list[str] = field(default_factory=list)
    is_xen: bool = True
    #: The ``QB_XEN_*`` contract of a qemuboot.conf that has it (None otherwise).
    xen_contract: XenBoot | None = None
    #: Human-readable notes about where the harness deliberately differs from runqemu.
    notes: list[str] = field(default_factory=list)
    #: The raw variables read from the file (upper-case keys for qemuboot.conf).
    variables: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """All image files the target refers to (for checks and for cache keys)."""
        out = [p for p in (self.kernel, self.dtb, self.bios, self.rootfs) if p is not None]
        if self.dom0 is not None:
            out.append(self.dom0.kernel)
            if self.dom0.initrd is not None:
                out.append(self.dom0.initrd)
        return out


# --------------------------------------------------------------------------------------------
# helpers shared with the YAML reader


def parse_memory(value: Any, path: os.PathLike[str] | str, key: str, line: int | None = None) -> int:
    """Parse a memory size into MiB.

    Accepts what runqemu accepts for ``QB_MEM`` (``-m 512``, ``512``, ``512M``, ``-m 512m``) and
    also ``1G``/``1.5G`` and plain integers (MiB).  Anything else raises :class:`TargetError`.
    """
    text = str(value).strip()
    m = re.fullmatch(r"(?:-m\s+)?(\d+(?:\.\d+)?)\s*([MmGg]?)(?:i?[Bb])?", text)
    if not m:
        raise TargetError(path, key, f"bad memory value {text!r}",
                          "write a size in MiB such as '1024', '-m 1024', '1024M' or '1G'", line)
    number, unit = float(m.group(1)), m.group(2).upper()
    mib = number * 1024 if unit == "G" else number
    if mib != int(mib) or mib < 64:
        raise TargetError(path, key, f"bad memory value {text!r} ({mib:g} MiB)",
                          "give a whole number of MiB, at least 64 (Xen plus dom0 need ~512)", line)
    return int(mib)


def split_args(value: str, path: os.PathLike[str] | str, key: str, line: int | None) -> list[str]:
    """``value`` split like a shell (as runqemu does); unbalanced quotes are a TargetError."""
    try:
        return shlex.split(value)
    except ValueError as err:
        raise TargetError(path, key, f"cannot split {value!r} into arguments ({err})",
                          "balance the quotes in the value", line) from None


def read_target_text(path: Path, what: str) -> str:
    """The file's text (bytes decoded as UTF-8); a directory, a missing or binary file is a TargetError."""
    try:
        return xenboot.read_text(path, what, f"pass a <image>.qemuboot.conf or a target .yaml file, not {path}")
    except BootConfigError as err:
        raise TargetError.from_boot(err, path) from None


def check_modules_fit(loaders: Sequence[GuestLoader], memory_mib: int, path: Path,
                      ram_setting: str, line_of: dict[str, int] | None = None) -> None:
    """Raise :class:`TargetError` if the guest-loader modules overlap or do not fit in RAM."""
    modules = []
    for loader in loaders:
        size = loader.file_size()
        if size is not None:
            modules.append(loader.module(size))
    ram = xenboot.RamRegion(VIRT_RAM_BASE, memory_mib * 1024 * 1024, ram_setting)
    try:
        xenboot.check_layout(modules, ram, path=str(path), line_of=line_of)
    except BootConfigError as err:
        raise TargetError.from_boot(err, path) from None


# --------------------------------------------------------------------------------------------


def load_target(path: os.PathLike[str] | str) -> Target:
    """Load a target from a ``*.qemuboot.conf`` (INI) or a ``*.yaml``/``*.yml`` file.

    The kind is chosen by the file name; a file with another name is sniffed (``[config_bsp]``
    means qemuboot.conf).
    """
    from .targetconf import load_qemuboot  # the readers build on this module's model
    from .targetyaml import load_yaml_target

    p = Path(path)
    name = p.name.lower()
    if name.endswith((".yaml", ".yml")):
        return load_yaml_target(p)
    if name.endswith(".conf"):
        return load_qemuboot(p)
    head = read_target_text(p, "target file")[:4096]
    if "[config_bsp]" in head:
        return load_qemuboot(p)
    return load_yaml_target(p)
