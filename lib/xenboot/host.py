"""A whole qemuboot.conf for a Xen host on QEMU's arm ``virt`` machine (qemuarm64), or on x86-64.

What ``xen-image-minimal`` with ``classes/xen-ref-qemuboot.bbclass`` makes oe-core write, for
images that are not built by BitBake (the reference target): Xen as ``-kernel``, dom0 through
``guest-loader`` devices, virtio-mmio disk and network.  :class:`X86XenHostBoot` is the sibling
for qemux86-64 with Xen's multiboot entry (dom0 as QEMU multiboot modules).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .contract import DEPLOY_DIR_PLACEHOLDER, XenBoot, arch_defaults
from .errors import BootConfigError
from .layout import ARM_VIRT_RAM_BASE, RamRegion
from .multiboot import MultibootXen

__all__ = ["X86_TCG_CPU", "X86XenHostBoot", "XenHostBoot"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class XenHostBoot:
    """How QEMU boots one Xen host image; file names are relative to the deploy folder.

    The defaults are those of the layer's class on qemuarm64 (``QB_MEM = "-m 2048"``, the
    machine's 4 CPUs, the ``QB_XEN_*`` defaults of :class:`~xenboot.contract.XenBoot`).
    """

    machine: str = "qemuarm64"
    image_link_name: str = "xen-image-minimal-qemuarm64.rootfs"
    xen_binary: str = "xen-qemuarm64"
    memory_mb: int = 2048
    smp: int = 4
    cpu: str = "cortex-a57"
    serial_consoles: str = "115200;hvc0"
    #: stands in for qemu-helper-native's sysroot when the host's QEMU is used
    qemu_bindir: str = "/usr/bin"
    xen: XenBoot = field(default_factory=XenBoot)

    @property
    def ram(self) -> RamRegion:
        """Guest RAM of the ``virt`` machine with ``-m memory_mb``."""
        return RamRegion(ARM_VIRT_RAM_BASE, self.memory_mb * MiB, "QB_MEM")

    def check_layout(self, kernel_size: int, initrd_size: int = 0) -> None:
        """Raise :class:`~xenboot.errors.BootConfigError` if dom0's modules overlap or leave RAM."""
        self.xen.check_layout(self.ram, kernel_size, initrd_size)

    def variables(self) -> dict[str, str]:
        """The variables the image recipe would export into its qemuboot.conf."""
        return _host_variables(self, tune_arch="aarch64", bus="device", opt_append=self.xen.opt_append(),
                               machine_options={
                                   "QB_SYSTEM_NAME": "qemu-system-aarch64",
                                   "QB_MACHINE": "-machine virt,gic-version=3,virtualization=on",
                                   "QB_CPU_KVM": "-cpu host -machine gic-version=3"})


#: The CPU a Xen host on x86 gets under TCG: Xen's own CI's ``qemu64,+svm`` plus nested paging,
#: which Xen (built without shadow paging) needs for PVH and HVM guests. ``-cpu max`` is refused
#: by Debian's 6.1 kernel as a PV dom0 (a page fault in its first instructions, measured).
X86_TCG_CPU = "qemu64,+svm,+npt"


@dataclass(frozen=True)
class X86XenHostBoot:
    """How QEMU boots a Xen host on x86-64 without a disk boot loader (qemux86-64).

    QEMU's own multiboot loader starts Xen (``-kernel``: the uncompressed ELF, ``-append``: Xen's
    command line) with dom0's kernel and command line, then its initrd, as multiboot modules
    (``-initrd "kernel args,initrd"``, in ``QB_OPT_APPEND`` so that runqemu passes it too), the way
    Xen's CI boots x86 under QEMU. Disk and network are virtio PCI devices, which Xen hands to dom0.
    """

    machine: str = "qemux86-64"
    image_link_name: str = "xen-image-minimal-qemux86-64.rootfs"
    xen_binary: str = "xen-qemux86-64"
    memory_mb: int = 2048
    smp: int = 2
    cpu: str = X86_TCG_CPU
    serial_consoles: str = "115200;hvc0"
    qemu_bindir: str = "/usr/bin"
    xen: XenBoot = field(default_factory=lambda: arch_defaults("x86_64"))

    def multiboot(self, deploy_dir: str = DEPLOY_DIR_PLACEHOLDER) -> MultibootXen:
        """Xen and dom0's modules as QEMU's multiboot loader takes them."""
        initrd = f"{deploy_dir}/{self.xen.dom0_initrd}" if self.xen.dom0_initrd else ""
        return MultibootXen(f"{deploy_dir}/{self.xen_binary}", self.xen.xen_cmdline(),
                            f"{deploy_dir}/{self.xen.dom0_kernel}", self.xen.dom0_bootargs, initrd)

    def check_layout(self, kernel_size: int, initrd_size: int = 0) -> None:
        """Raise :class:`~xenboot.errors.BootConfigError` if dom0's modules cannot fit in RAM.

        QEMU places multiboot modules itself (after Xen, page-aligned), so only the total counts.
        """
        if kernel_size + initrd_size >= self.memory_mb * MiB // 2:
            raise BootConfigError(f"dom0's kernel and initrd ({(kernel_size + initrd_size) // MiB} MiB) "
                                  f"take half or more of {self.memory_mb} MiB",
                                  "give QEMU more memory or dom0 a smaller initrd", key="QB_MEM")

    def opt_append(self) -> str:
        """``QB_OPT_APPEND``: the ``-initrd`` multiboot modules, double-quoted (they hold blanks)."""
        modules = self.multiboot().qemu_args()[-1]
        return '-initrd "' + modules.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def variables(self) -> dict[str, str]:
        """The variables the image recipe would export into its qemuboot.conf."""
        values = _host_variables(self, tune_arch="x86_64", bus="pci", opt_append=self.opt_append(),
                                 machine_options={"QB_SYSTEM_NAME": "qemu-system-x86_64",
                                                  "QB_MACHINE": "-machine q35", "QB_CPU_KVM": "-cpu host"})
        # guest-loader is Arm's; on x86 dom0 comes from the multiboot modules above.
        values["QB_XEN_GUEST_LOADER"] = ""
        return values


def _host_variables(host: XenHostBoot | X86XenHostBoot, *, tune_arch: str, bus: str, opt_append: str,
                    machine_options: dict[str, str]) -> dict[str, str]:
    """The qemuboot.conf variables both architectures share; ``bus`` is virtio's transport
    (``device``: virtio-mmio, which Xen on Arm hands to dom0 as it is; ``pci`` on x86)."""
    values = {
        "DEPLOY_DIR_IMAGE": ".",
        "IMAGE_LINK_NAME": host.image_link_name,
        "IMAGE_NAME": host.image_link_name,
        "MACHINE": host.machine,
        "TUNE_ARCH": tune_arch,
        "KERNEL_IMAGETYPE": host.xen.dom0_kernel,
        "SERIAL_CONSOLES": host.serial_consoles,
        "STAGING_BINDIR_NATIVE": host.qemu_bindir,
        "QB_CPU": f"-cpu {host.cpu}",
        "QB_SMP": f"-smp {host.smp}",
        "QB_MEM": f"-m {host.memory_mb}",
        "QB_DEFAULT_KERNEL": host.xen_binary,
        "QB_DEFAULT_FSTYPE": "ext4",
        "QB_KERNEL_ROOT": "/dev/vda rw",
        "QB_DRIVE_TYPE": "/dev/vd",
        "QB_KERNEL_CMDLINE_APPEND": host.xen.xen_cmdline(),
        "QB_OPT_APPEND": opt_append,
        "QB_ROOTFS_OPT": f"-drive id=disk0,file=@ROOTFS@,if=none,format=raw -device virtio-blk-{bus},drive=disk0",
        "QB_NETWORK_DEVICE": f"-device virtio-net-{bus},netdev=net0,mac=@MAC@",
        "QB_TAP_OPT": "-netdev tap,id=net0,ifname=@TAP@,script=no,downscript=no",
        "QB_NO_PNI": "net.ifnames=0",
        # runqemu's default RNG and qemuarm64's GPU are PCI devices, which Xen on Arm leaves out
        "QB_RNG": "",
        "QB_GRAPHICS": "",
        "QB_SERIAL_OPT": "-serial mon:stdio",
        "QB_TCPSERIAL_OPT": "-serial tcp:127.0.0.1:@PORT@,nodelay=on",
        **machine_options,
    }
    values.update(host.xen.variables())
    return values
