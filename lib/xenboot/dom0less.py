"""dom0less boot on Arm: the domains Xen itself starts from the device tree, and their modules.

Xen reads, under ``/chosen`` of the device tree it boots with, dom0's kernel and ramdisk
(``multiboot,kernel`` / ``multiboot,ramdisk`` module nodes) and one node per dom0less domain
(``compatible = "xen,domain"``) with its memory (KiB, two cells), vCPUs, ``xen,enhanced``
(PV interfaces and xenstore, so that dom0's ``xl`` can list and destroy it after
``init-dom0less`` ran), a virtual PL011 (its console, reached through Xen's console switching)
and its own kernel and ramdisk module nodes (Xen's ``docs/misc/arm/device-tree/booting.txt``).

Every module is a file that something places at a fixed address before Xen starts:

* under QEMU, generic ``-device loader,file=F,addr=A,force-raw=on`` devices.  QEMU's
  ``guest-loader`` cannot be used: it writes its nodes into the device tree QEMU generates, and
  that tree is not used when ``-dtb`` is given; so the machine's own tree is dumped
  (``-machine ...,dumpdtb=F``), the nodes are added to its source and it is compiled again
  (:mod:`xenboot.devicetree`);
* on a board, U-Boot's ``load`` commands, and ``fdt`` commands that add the same nodes
  (:mod:`xenboot.ubootscript`).

:func:`place_modules` lays every module out after dom0's (which keep the addresses of the
``QB_XEN_*`` contract), each 2 MiB aligned, and checks the whole layout against RAM.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .contract import DOM0_KERNEL_ADDR, XenBoot
from .errors import BootConfigError
from .layout import Module, RamRegion, align_up, check_layout

__all__ = [
    "DOM0LESS_BOOTARGS",
    "Dom0lessDomain",
    "Dom0lessLayout",
    "PlacedModule",
    "check_memory",
    "chosen_fragment",
    "place_modules",
]

#: A dom0less domain's default command line: its console is the virtual PL011, its root the ramdisk.
DOM0LESS_BOOTARGS = "console=ttyAMA0 rdinit=/sbin/init"
#: Xen's own allocations for a domain beyond its RAM (P2M pool, grant table), for the fit check.
DOMAIN_OVERHEAD_MIB = 8

_NODE_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9,._+-]{0,30}\Z")


@dataclass(frozen=True)
class Dom0lessDomain:
    """One domain Xen starts at boot; ``kernel``/``ramdisk`` name files of the deploy folder."""

    name: str
    kernel: str
    ramdisk: str
    memory_mib: int
    vcpus: int = 1
    bootargs: str = DOM0LESS_BOOTARGS
    enhanced: bool = True

    def __post_init__(self) -> None:
        key = f"dom0less domain '{self.name[:40]}'"
        if not _NODE_NAME.match(self.name):
            raise BootConfigError(f"{key}: the name is not a device-tree node name",
                                  "use letters, digits and ', . _ + -', at most 31", key=key)
        if self.memory_mib <= 0 or self.vcpus <= 0:
            raise BootConfigError(f"{key}: memory {self.memory_mib} MiB, {self.vcpus} vCPUs",
                                  "give it a positive memory size and vCPU count", key=key)
        if not self.kernel or not self.ramdisk:
            raise BootConfigError(f"{key}: kernel {self.kernel!r}, ramdisk {self.ramdisk!r}",
                                  "a dom0less domain boots a kernel with its root file system "
                                  "as ramdisk: name both files", key=key)
        if '"' in self.bootargs or "\\" in self.bootargs or "\n" in self.bootargs:
            raise BootConfigError(f"{key}: bootargs {self.bootargs[:80]!r} hold a quote, a backslash "
                                  "or a newline", "leave them out of the command line", key=key)


@dataclass(frozen=True)
class PlacedModule:
    """A file at an address: ``owner`` is ``dom0`` or a domain name, ``role`` kernel or ramdisk."""

    owner: str
    role: str
    file: str
    address: int
    size: int

    @property
    def compatible(self) -> tuple[str, str]:
        """The node's compatible strings (Xen's multiboot binding)."""
        return (f"multiboot,{self.role}", "multiboot,module")

    @property
    def node_name(self) -> str:
        """``module@49000000``."""
        return f"module@{self.address:x}"

    def module(self) -> Module:
        """As a layout :class:`~xenboot.layout.Module` (for :func:`~xenboot.layout.check_layout`)."""
        return Module(f"{self.owner} {self.role} {self.file}", self.address, self.size,
                      f"XEN_DOM0LESS ({self.owner} {self.role})")


@dataclass(frozen=True)
class Dom0lessLayout:
    """dom0's modules (its kernel first) and every dom0less domain with its kernel and ramdisk."""

    dom0: tuple[PlacedModule, ...]
    dom0_bootargs: str
    domains: tuple[tuple[Dom0lessDomain, PlacedModule, PlacedModule], ...]

    def modules(self) -> list[PlacedModule]:
        """Every placed file, dom0's first."""
        out = list(self.dom0)
        for _domain, kernel, ramdisk in self.domains:
            out += [kernel, ramdisk]
        return out


def _size_of(sizes: Mapping[str, int], file: str, owner: str) -> int:
    size = sizes.get(file)
    if size is None or size <= 0:
        raise BootConfigError(f"{owner}: the file {file!r} is missing or empty",
                              "build or deploy it before writing the boot configuration", key=owner)
    return size


def place_modules(xen: XenBoot | None, domains: Sequence[Dom0lessDomain], sizes: Mapping[str, int],
                  ram: RamRegion, dom0_mib: int) -> Dom0lessLayout:
    """Lay out dom0's modules (at the contract's addresses) and each domain's after them.

    ``sizes`` maps each file name to its size.  ``xen`` None: no dom0 at all ("true dom0less":
    the domains' modules start at dom0's kernel address).  Raises :class:`BootConfigError` when
    two domains share a name, a module leaves RAM or overlaps another, or the domains' memory
    with dom0's (``dom0_mib``) does not fit in RAM.
    """
    names = [d.name for d in domains]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BootConfigError(f"dom0less domains named twice: {', '.join(twice)}",
                              "give every dom0less guest its own name", key="XEN_DOM0LESS")
    if xen is None:
        if not domains:
            raise BootConfigError("no dom0 and no dom0less domain", "give Xen at least one domain to start",
                                  key="XEN_DOM0LESS")
        check_memory(domains, ram, 0)
        return _place_domains(domains, sizes, ram, (), "", DOM0_KERNEL_ADDR)
    check_memory(domains, ram, dom0_mib)
    dom0 = [PlacedModule("dom0", "kernel", xen.dom0_kernel, xen.dom0_addr,
                         _size_of(sizes, xen.dom0_kernel, "dom0 kernel"))]
    if xen.dom0_initrd:
        dom0.append(PlacedModule("dom0", "ramdisk", xen.dom0_initrd, xen.dom0_initrd_addr,
                                 _size_of(sizes, xen.dom0_initrd, "dom0 initrd")))
    return _place_domains(domains, sizes, ram, tuple(dom0), xen.dom0_bootargs,
                          align_up(max(m.address + m.size for m in dom0)))


def _place_domains(domains: Sequence[Dom0lessDomain], sizes: Mapping[str, int], ram: RamRegion,
                   dom0: tuple[PlacedModule, ...], dom0_bootargs: str, cursor: int) -> Dom0lessLayout:
    placed = []
    for domain in domains:
        kernel = PlacedModule(domain.name, "kernel", domain.kernel, cursor,
                              _size_of(sizes, domain.kernel, f"dom0less domain '{domain.name}' kernel"))
        cursor = align_up(kernel.address + kernel.size)
        ramdisk = PlacedModule(domain.name, "ramdisk", domain.ramdisk, cursor,
                               _size_of(sizes, domain.ramdisk, f"dom0less domain '{domain.name}' ramdisk"))
        cursor = align_up(ramdisk.address + ramdisk.size)
        placed.append((domain, kernel, ramdisk))
    layout = Dom0lessLayout(dom0, dom0_bootargs, tuple(placed))
    check_layout([m.module() for m in layout.modules()], ram)
    return layout


def check_memory(domains: Sequence[Dom0lessDomain], ram: RamRegion, dom0_mib: int) -> None:
    """Raise :class:`BootConfigError` when dom0's and the domains' memory do not fit in ``ram``."""
    total_mib = ram.size // (1024 * 1024)
    wanted = dom0_mib + sum(d.memory_mib + DOMAIN_OVERHEAD_MIB for d in domains)
    if wanted > total_mib:
        listing = ", ".join(f"{d.name} {d.memory_mib} MiB" for d in domains)
        raise BootConfigError(
            f"dom0 ({dom0_mib} MiB) and the dom0less domains ({listing}, {DOMAIN_OVERHEAD_MIB} MiB "
            f"of Xen's overhead each) need {wanted} MiB, the machine has {total_mib} MiB",
            f"lower XEN_GUEST_MEMORY of a dom0less guest or dom0's memory, or raise {ram.setting}",
            key=ram.setting)


def _cells(value: int) -> str:
    return f"0x{value >> 32:x} 0x{value & 0xFFFFFFFF:x}"


def _module_node(module: PlacedModule, indent: str, bootargs: str | None) -> list[str]:
    compatible = ", ".join(f'"{c}"' for c in module.compatible)
    lines = [f"{indent}{module.node_name} {{",
             f"{indent}\tcompatible = {compatible};",
             f"{indent}\treg = <{_cells(module.address)} {_cells(module.size)}>;"]
    if bootargs is not None:
        lines.append(f'{indent}\tbootargs = "{bootargs}";')
    return lines + [f"{indent}}};"]


def chosen_fragment(layout: Dom0lessLayout) -> str:
    """The ``/ { chosen { ... }; };`` source that dtc merges into the machine's tree."""
    lines = ["/ {", "\tchosen {", "\t\t#address-cells = <0x2>;", "\t\t#size-cells = <0x2>;"]
    for index, module in enumerate(layout.dom0):
        lines += _module_node(module, "\t\t", layout.dom0_bootargs if index == 0 else None)
    for domain, kernel, ramdisk in layout.domains:
        lines += [f"\t\t{domain.name} {{",
                  '\t\t\tcompatible = "xen,domain";',
                  "\t\t\t#address-cells = <0x2>;",
                  "\t\t\t#size-cells = <0x2>;",
                  f"\t\t\tmemory = <{_cells(domain.memory_mib * 1024)}>;",
                  f"\t\t\tcpus = <0x{domain.vcpus:x}>;",
                  "\t\t\tvpl011;"]
        if domain.enhanced:
            lines.append('\t\t\txen,enhanced = "enabled";')
        lines += _module_node(kernel, "\t\t\t", domain.bootargs)
        lines += _module_node(ramdisk, "\t\t\t", None)
        lines.append("\t\t};")
    return "\n".join(lines + ["\t};", "};", ""])
