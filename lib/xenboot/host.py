"""A whole qemuboot.conf for a Xen host on QEMU's arm ``virt`` machine (qemuarm64).

What ``xen-image-minimal`` with ``classes/xen-ref-qemuboot.bbclass`` makes oe-core write, for
images that are not built by BitBake (the reference target): Xen as ``-kernel``, dom0 through
``guest-loader`` devices, virtio-mmio disk and network.  Other machines (qemuarm, qemux86-64 with
Xen's multiboot entry) get siblings of :class:`XenHostBoot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .contract import XenBoot
from .layout import ARM_VIRT_RAM_BASE, RamRegion

__all__ = ["XenHostBoot"]

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
        values = {
            "DEPLOY_DIR_IMAGE": ".",
            "IMAGE_LINK_NAME": self.image_link_name,
            "IMAGE_NAME": self.image_link_name,
            "MACHINE": self.machine,
            "TUNE_ARCH": "aarch64",
            "KERNEL_IMAGETYPE": self.xen.dom0_kernel,
            "SERIAL_CONSOLES": self.serial_consoles,
            "STAGING_BINDIR_NATIVE": self.qemu_bindir,
            "QB_SYSTEM_NAME": "qemu-system-aarch64",
            "QB_MACHINE": "-machine virt,gic-version=3,virtualization=on",
            "QB_CPU": f"-cpu {self.cpu}",
            "QB_CPU_KVM": "-cpu host -machine gic-version=3",
            "QB_SMP": f"-smp {self.smp}",
            "QB_MEM": f"-m {self.memory_mb}",
            "QB_DEFAULT_KERNEL": self.xen_binary,
            "QB_DEFAULT_FSTYPE": "ext4",
            "QB_KERNEL_ROOT": "/dev/vda rw",
            "QB_DRIVE_TYPE": "/dev/vd",
            "QB_KERNEL_CMDLINE_APPEND": self.xen.xen_cmdline(),
            "QB_OPT_APPEND": self.xen.opt_append(),
            "QB_ROOTFS_OPT": "-drive id=disk0,file=@ROOTFS@,if=none,format=raw "
                             "-device virtio-blk-device,drive=disk0",
            "QB_NETWORK_DEVICE": "-device virtio-net-device,netdev=net0,mac=@MAC@",
            "QB_TAP_OPT": "-netdev tap,id=net0,ifname=@TAP@,script=no,downscript=no",
            "QB_NO_PNI": "net.ifnames=0",
            # Xen hands virtio-mmio devices to dom0 as they are; PCI ones (runqemu's default RNG,
            # qemuarm64's GPU) are left out.
            "QB_RNG": "",
            "QB_GRAPHICS": "",
            "QB_SERIAL_OPT": "-serial mon:stdio",
            "QB_TCPSERIAL_OPT": "-serial tcp:127.0.0.1:@PORT@,nodelay=on",
        }
        values.update(self.xen.variables())
        return values
