"""xenboot: how a Xen host boots (plain Python, standard library only: no BitBake, no pexpect).

The one home of the qemuboot.conf contract, used by the harness (:mod:`xenqemu.target`), the
reference-target builder (:mod:`xenreftarget`), ``scripts/oe`` and the layer's classes
(``addpylib ${LAYERDIR}/lib xenboot``):

* :mod:`xenboot.qemuboot`: read a qemuboot.conf the way runqemu reads it, write it the way
  qemuboot.bbclass writes it;
* :mod:`xenboot.contract`: the ``QB_XEN_*`` variables with their one set of defaults;
* :mod:`xenboot.host`: a whole qemuboot.conf for a Xen host on qemuarm64 or (multiboot) qemux86-64;
* :mod:`xenboot.multiboot`: Xen on x86 as a multiboot kernel with dom0 as its module: syslinux
  (mboot.c32) and GRUB (multiboot2) configs, QEMU's multiboot arguments;
* :mod:`xenboot.loaders`: QEMU ``guest-loader`` devices, composed and parsed back;
* :mod:`xenboot.layout`: load-address checks (modules inside RAM, no overlaps);
* :mod:`xenboot.qemuopts`: QEMU's option syntax (commas doubled inside values).
* :mod:`xenboot.dom0less`: domains Xen starts from the device tree (Arm): their ``/chosen`` nodes
  and the checked layout of every boot module; :mod:`xenboot.devicetree`: the machine's dumped
  tree extended with dtc, QEMU loader devices and the qemuboot.conf values;
  :mod:`xenboot.ubootscript`: the same for a board, as a U-Boot script.

Every problem raises :class:`BootConfigError` (a ``ValueError``) naming the file, line and key,
and the fix.
"""

from .contract import (
    ARCH_DOM0_KERNEL,
    DEPLOY_DIR_PLACEHOLDER,
    DOM0_BOOTARGS,
    DOM0_INITRD_ADDR,
    DOM0_KERNEL,
    DOM0_KERNEL_ADDR,
    DOM0_MEM,
    X86_DOM0_BOOTARGS,
    X86_XEN_CONSOLE,
    XEN_CONSOLE,
    XenBoot,
    arch_defaults,
    xen_cmdline,
)
from .errors import BootConfigError
from .host import X86_TCG_CPU, X86XenHostBoot, XenHostBoot
from .layout import ARM_VIRT_RAM_BASE, Module, RamRegion, align_up, check_layout
from .loaders import GuestLoader, guest_loaders_in
from .multiboot import (
    MultibootXen,
    SerialPort,
    grub_config,
    image_boot_config,
    live_bootargs,
    multiboot_modules,
    syslinux_config,
)
from .qemuboot import (
    QemubootConf,
    read_qemuboot,
    read_text,
    render_qemuboot,
    write_qemuboot,
)

__all__ = [
    "ARCH_DOM0_KERNEL",
    "ARM_VIRT_RAM_BASE",
    "DEPLOY_DIR_PLACEHOLDER",
    "DOM0_BOOTARGS",
    "DOM0_INITRD_ADDR",
    "DOM0_KERNEL",
    "DOM0_KERNEL_ADDR",
    "DOM0_MEM",
    "X86_DOM0_BOOTARGS",
    "X86_TCG_CPU",
    "X86_XEN_CONSOLE",
    "XEN_CONSOLE",
    "BootConfigError",
    "GuestLoader",
    "Module",
    "MultibootXen",
    "QemubootConf",
    "RamRegion",
    "SerialPort",
    "X86XenHostBoot",
    "XenBoot",
    "XenHostBoot",
    "align_up",
    "arch_defaults",
    "check_layout",
    "grub_config",
    "guest_loaders_in",
    "image_boot_config",
    "live_bootargs",
    "multiboot_modules",
    "read_qemuboot",
    "read_text",
    "render_qemuboot",
    "syslinux_config",
    "write_qemuboot",
    "xen_cmdline",
]
