"""The ``QB_XEN_*`` contract: how a Xen host image boots under QEMU, with one set of defaults.

``classes/xen-ref-qemuboot.bbclass`` sets these variables (its ``?=`` defaults are the constants
below; ``tests/bitbake`` parses the class with BitBake and checks that they agree), oe-core writes
them into ``<image>.qemuboot.conf``, and the harness and scripts read them back with
:meth:`XenBoot.from_variables`.  The reference target writes the same variables through
:meth:`XenBoot.variables`.  The table is in ``docs/bundling.md`` ("qemuboot.conf contract").

With QEMU's ``guest-loader`` the Xen binary is QEMU's ``-kernel`` and ``-append`` is Xen's
command line.  runqemu puts ``root=``, ``ip=``, ``mem=`` and one ``console=`` per
``SERIAL_CONSOLES`` entry in front of ``QB_KERNEL_CMDLINE_APPEND``; Xen ignores what it does not
know but the last ``console=`` wins, so Xen's command line ends with Xen's console
(``QB_XEN_CONSOLE``).

The defaults differ per architecture in two places only: Xen's console (the device-tree UART on
Arm, the first 16550 on x86) and dom0's root (the virtio-mmio disk that QEMU's Arm ``virt``
machine hands to dom0, the second partition of an x86 disk image).  :func:`arch_defaults` gives
the whole set for an architecture; the class's per-architecture defaults are checked against it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import BootConfigError
from .layout import Module, RamRegion, check_layout
from .loaders import GuestLoader

__all__ = [
    "ARCH_DOM0_KERNEL",
    "DEPLOY_DIR_PLACEHOLDER",
    "DOM0_BOOTARGS",
    "DOM0_INITRD_ADDR",
    "DOM0_KERNEL",
    "DOM0_KERNEL_ADDR",
    "DOM0_MEM",
    "X86_DOM0_BOOTARGS",
    "X86_XEN_CONSOLE",
    "XEN_BASE_OPTIONS",
    "XEN_CONSOLE",
    "XenBoot",
    "arch_defaults",
    "xen_cmdline",
]

#: Guest-physical address of dom0's kernel: above the device tree QEMU puts at RAM + 128 MiB.
DOM0_KERNEL_ADDR = 0x49000000
#: dom0's initrd: 48 MiB above the kernel, room for a large uncompressed Image.
DOM0_INITRD_ADDR = 0x4C000000
#: dom0's command line; root is the virtio-mmio disk of ``QB_ROOTFS_OPT``.
DOM0_BOOTARGS = "console=hvc0 root=/dev/vda rw rootwait"
#: Memory Xen gives dom0 (Xen's size syntax).
DOM0_MEM = "512M"
#: dom0 kernel file in the deploy folder (the class uses ``${KERNEL_IMAGETYPE}``, Image on arm64).
DOM0_KERNEL = "Image"
#: Xen options always set (scrubbing free memory at boot costs seconds under TCG).
XEN_BASE_OPTIONS = ("bootscrub=0",)
#: Xen's console on Arm (the UART the device tree's stdout-path names); ends the command line.
XEN_CONSOLE = "console=dtuart"
#: Xen's console on x86: the first 16550 UART, set up before it is chosen (``console=`` last).
X86_XEN_CONSOLE = "com1=115200,8n1 console=com1"
#: dom0's command line on x86 disk images: its root is the second partition (after /boot).
X86_DOM0_BOOTARGS = "console=hvc0 earlyprintk=xen root=/dev/sda2 rw rootwait"
#: dom0's kernel file per ``TARGET_ARCH`` (oe-core's ``KERNEL_IMAGETYPE`` of the QEMU machines).
ARCH_DOM0_KERNEL = {"aarch64": "Image", "arm": "zImage", "x86_64": "bzImage"}
#: What runqemu replaces by the folder holding qemuboot.conf.
DEPLOY_DIR_PLACEHOLDER = "@DEPLOY_DIR_IMAGE@"

_XEN_SIZE = re.compile(r"\d+[KMGT]?", re.IGNORECASE)


def xen_cmdline(dom0_mem: str = DOM0_MEM, extra: str = "", console: str = XEN_CONSOLE) -> str:
    """Xen's command line: dom0's memory, the base options, ``extra``, Xen's console last."""
    words = [f"dom0_mem={dom0_mem},max:{dom0_mem}", *XEN_BASE_OPTIONS, *extra.split(), *console.split()]
    return " ".join(words)


@dataclass(frozen=True)
class XenBoot:
    """The ``QB_XEN_*`` variables of one image (file names are relative to the deploy folder)."""

    dom0_kernel: str = DOM0_KERNEL                 #: QB_XEN_DOM0_KERNEL
    dom0_addr: int = DOM0_KERNEL_ADDR              #: QB_XEN_DOM0_ADDR
    dom0_bootargs: str = DOM0_BOOTARGS             #: QB_XEN_DOM0_BOOTARGS (plain text)
    dom0_initrd: str = ""                          #: QB_XEN_DOM0_INITRD (empty: none)
    dom0_initrd_addr: int = DOM0_INITRD_ADDR       #: QB_XEN_DOM0_INITRD_ADDR
    dom0_mem: str = DOM0_MEM                       #: QB_XEN_DOM0_MEM
    cmdline_extra: str = ""                        #: QB_XEN_CMDLINE_EXTRA
    console: str = XEN_CONSOLE                     #: QB_XEN_CONSOLE

    def __post_init__(self) -> None:
        if not _XEN_SIZE.fullmatch(self.dom0_mem):
            raise BootConfigError(f"dom0 memory {self.dom0_mem!r} is not a Xen size",
                                  "write it like 512M or 1G", key="QB_XEN_DOM0_MEM")
        if not (self.console.split() or [""])[-1].startswith("console="):
            raise BootConfigError(f"Xen's console {self.console!r} does not end with a console= option",
                                  f"end it with the console Xen writes to, like {XEN_CONSOLE!r} on Arm "
                                  f"or {X86_XEN_CONSOLE!r} on x86", key="QB_XEN_CONSOLE")

    def xen_cmdline(self) -> str:
        """``QB_XEN_CMDLINE``."""
        return xen_cmdline(self.dom0_mem, self.cmdline_extra, self.console)

    def loaders(self, deploy_dir: str = DEPLOY_DIR_PLACEHOLDER) -> list[GuestLoader]:
        """dom0's guest-loader devices: the kernel with its bootargs, then the initrd if any."""
        kernel = GuestLoader(self.dom0_addr, f"{deploy_dir}/{self.dom0_kernel}", "kernel",
                             self.dom0_bootargs, "dom0 kernel", "QB_XEN_DOM0_ADDR")
        if not self.dom0_initrd:
            return [kernel]
        initrd = GuestLoader(self.dom0_initrd_addr, f"{deploy_dir}/{self.dom0_initrd}", "initrd", None,
                             "dom0 initrd", "QB_XEN_DOM0_INITRD_ADDR")
        return [kernel, initrd]

    def opt_append(self) -> str:
        """The guest-loader part of ``QB_OPT_APPEND``, as runqemu's ``shlex`` split reads it.

        The kernel's device is double-quoted (its bootargs hold blanks), like the class writes it.
        """
        words = []
        for loader in self.loaders():
            device = loader.device()
            if any(c in device for c in " \t\"\\'$`"):
                device = '"' + device.replace("\\", "\\\\").replace('"', '\\"') + '"'
            words.append(f"-device {device}")
        return " ".join(words)

    def variables(self) -> dict[str, str]:
        """Every ``QB_XEN_*`` variable as the class sets it."""
        loaders = self.loaders()
        return {
            "QB_XEN_CMDLINE": self.xen_cmdline(),
            "QB_XEN_CMDLINE_EXTRA": self.cmdline_extra,
            "QB_XEN_CONSOLE": self.console,
            "QB_XEN_DOM0_MEM": self.dom0_mem,
            "QB_XEN_DOM0_KERNEL": self.dom0_kernel,
            "QB_XEN_DOM0_ADDR": f"{self.dom0_addr:#x}",
            "QB_XEN_DOM0_BOOTARGS": self.dom0_bootargs,
            "QB_XEN_DOM0_INITRD": self.dom0_initrd,
            "QB_XEN_DOM0_INITRD_ADDR": f"{self.dom0_initrd_addr:#x}",
            "QB_XEN_GUEST_LOADER": loaders[0].device(),
        }

    def modules(self, kernel_size: int, initrd_size: int = 0) -> list[Module]:
        """dom0's kernel (and initrd) as layout modules of the given sizes."""
        loaders = self.loaders()
        sizes = [kernel_size, initrd_size]
        return [loader.module(size) for loader, size in zip(loaders, sizes)]

    def check_layout(self, ram: RamRegion, kernel_size: int, initrd_size: int = 0) -> None:
        """Raise :class:`BootConfigError` if dom0's kernel and initrd overlap or leave RAM."""
        check_layout(self.modules(kernel_size, initrd_size), ram)

    @classmethod
    def from_variables(cls, values: Mapping[str, str], *, path: str | None = None,
                       line_of: Mapping[str, int] | None = None) -> XenBoot | None:
        """The contract read from ``values`` (a qemuboot.conf or a datastore); None without it.

        A missing variable takes its default; a variable that does not parse raises
        :class:`BootConfigError` naming it (and its line, when ``line_of`` knows it).
        """
        if not any(key.startswith("QB_XEN_") for key in values):
            return None
        lines = line_of or {}

        def text(key: str, default: str) -> str:
            value = values.get(key)
            return default if value is None else value.strip()

        def address(key: str, default: int) -> int:
            raw = text(key, "")
            try:
                return int(raw, 0) if raw else default
            except ValueError:
                raise BootConfigError(f"{raw!r} is not an address", "write it like 0x49000000",
                                      path=path, key=key, line=lines.get(key)) from None

        try:
            return cls(dom0_kernel=text("QB_XEN_DOM0_KERNEL", DOM0_KERNEL),
                       dom0_addr=address("QB_XEN_DOM0_ADDR", DOM0_KERNEL_ADDR),
                       dom0_bootargs=text("QB_XEN_DOM0_BOOTARGS", DOM0_BOOTARGS),
                       dom0_initrd=text("QB_XEN_DOM0_INITRD", ""),
                       dom0_initrd_addr=address("QB_XEN_DOM0_INITRD_ADDR", DOM0_INITRD_ADDR),
                       dom0_mem=text("QB_XEN_DOM0_MEM", DOM0_MEM),
                       cmdline_extra=text("QB_XEN_CMDLINE_EXTRA", ""),
                       console=text("QB_XEN_CONSOLE", XEN_CONSOLE))
        except BootConfigError as err:
            if err.path is not None or path is None:
                raise
            raise BootConfigError(err.problem, err.fix, path=path, key=err.key,
                                  line=lines.get(err.key or "")) from None


def arch_defaults(target_arch: str) -> XenBoot:
    """The contract's defaults for an oe-core ``TARGET_ARCH`` (``aarch64``, ``arm``, ``x86_64``).

    Raises :class:`BootConfigError` for an architecture Xen does not run on.
    """
    if target_arch not in ARCH_DOM0_KERNEL:
        raise BootConfigError(f"Xen does not run on {target_arch!r}",
                              f"build for one of {', '.join(sorted(ARCH_DOM0_KERNEL))}", key="TARGET_ARCH")
    if target_arch == "x86_64":
        return XenBoot(dom0_kernel=ARCH_DOM0_KERNEL[target_arch], dom0_bootargs=X86_DOM0_BOOTARGS,
                       console=X86_XEN_CONSOLE)
    return XenBoot(dom0_kernel=ARCH_DOM0_KERNEL[target_arch])
