"""The reference target per Debian architecture: its Yocto machine, file names, boot and guests.

``arm64`` is laid out like ``DEPLOY_DIR_IMAGE`` for ``MACHINE = "qemuarm64"`` (Xen as QEMU's
kernel, dom0 from ``guest-loader``), ``amd64`` like that of ``qemux86-64`` (Xen's multiboot entry
with dom0's kernel and initrd as QEMU multiboot modules). Each architecture's build is published
in its own folder of the cache (:func:`xenreftarget.build.distro_dir`), so building one never
replaces the other's target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

from xenboot import X86_XEN_CONSOLE, X86XenHostBoot, XenBoot, XenHostBoot

from .packages import PackageError

__all__ = ["MACHINES", "GuestSpec", "ReferenceMachine", "machine_for"]

HostBoot = Union[XenHostBoot, X86XenHostBoot]

#: dom0's command line (its root is the virtio disk of QB_ROOTFS_OPT on both architectures).
DOM0_BOOTARGS = "console=hvc0 root=/dev/vda rw quiet"
#: Xen's options besides dom0's memory and the console.
XEN_EXTRA = "dom0_max_vcpus=2 loglvl=warning guest_loglvl=warning"


@dataclass(frozen=True)
class GuestSpec:
    """One guest of the reference target and the bundling form that brings it into dom0."""

    form: str            #: "XEN_BUNDLED_GUESTS", "deploy-config", "auto-bundle" (or a compatguests form)
    name: str            #: domain name
    disk: str            #: the guest's root file system in the deploy folder
    config: str = ""     #: config file in the deploy folder (forms 2 and 3)
    autostart: bool = False  #: named in XEN_GUEST_AUTOSTART: xendomains starts it at boot
    #: xl's ``type``: None leaves xl's default (``pvh``, the only type on Arm)
    type: str | None = None


def _guests(machine: str, types: Mapping[str, str] | None = None) -> tuple[GuestSpec, ...]:
    """One guest per bundling form, each with its own disk and domain name, one autostarted.

    ``types`` maps a form (``autostart`` for the autostarted guest) to xl's guest type.
    """
    kinds = types or {}
    return (
        # The bundler names an entry's domain after its rootfs file.
        GuestSpec("XEN_BUNDLED_GUESTS", f"xen-guest-image-minimal-{machine}",
                  f"xen-guest-image-minimal-{machine}.rootfs.ext4", type=kinds.get("XEN_BUNDLED_GUESTS")),
        GuestSpec("deploy-config", "thirdparty-guest", "thirdparty-guest.ext4",
                  "xen-guest-bundle-thirdparty-guest.cfg", type=kinds.get("deploy-config")),
        GuestSpec("auto-bundle", "xen-guest-image-auto",
                  f"xen-guest-image-auto-{machine}.rootfs.ext4",
                  f"xen-guest-bundle-xen-guest-image-auto-{machine}.rootfs.cfg", type=kinds.get("auto-bundle")),
        GuestSpec("XEN_BUNDLED_GUESTS", f"xen-guest-image-autostart-{machine}",
                  f"xen-guest-image-autostart-{machine}.rootfs.ext4", autostart=True,
                  type=kinds.get("autostart")),
    )


@dataclass(frozen=True)
class ReferenceMachine:
    """Everything of the reference target that depends on the architecture."""

    arch: str                      #: Debian architecture
    machine: str                   #: the Yocto MACHINE whose deploy folder it imitates
    kernel: str                    #: dom0's and the guests' kernel file (KERNEL_IMAGETYPE)
    boot: HostBoot                 #: how QEMU boots it (written into qemuboot.conf by xenboot)
    guests: tuple[GuestSpec, ...]
    #: modules the initrd and dom0 load besides the common ones (the PCI transport on x86)
    extra_modules: tuple[str, ...] = ()
    #: also bundles meta-virtualization's forms (:mod:`xenreftarget.compatguests`)
    compat_guests: bool = True
    #: also boots a dom0less domain beside dom0 (:mod:`xenreftarget.dom0less`; Arm only)
    dom0less: bool = True
    #: dom0's ``poweroff`` ends QEMU, which the main job's final step checks (not on qemux86-64:
    #: docs/reference-target.md, "Known limit: poweroff")
    poweroff_ends_qemu: bool = True

    @property
    def xen_binary(self) -> str:
        """Xen as QEMU's ``-kernel`` (on x86 the uncompressed multiboot ELF)."""
        return f"xen-{self.machine}"

    @property
    def initrd(self) -> str:
        """The initrd of dom0 and the guests."""
        return f"xen-ref-initramfs-{self.machine}.cpio.gz"

    @property
    def host_image_link_name(self) -> str:
        """``IMAGE_LINK_NAME`` of the host image."""
        return f"xen-image-minimal-{self.machine}.rootfs"

    @property
    def host_rootfs(self) -> str:
        """dom0's root file system."""
        return f"{self.host_image_link_name}.ext4"

    @property
    def qemuboot_conf(self) -> str:
        """The name the project's contract uses for the host's qemuboot.conf."""
        return f"xen-image-minimal-{self.machine}.qemuboot.conf"

    @property
    def qemuboot_conf_link(self) -> str:
        """The name oe-core writes (``${IMAGE_LINK_NAME}.qemuboot.conf``), a link to the former."""
        return f"{self.host_image_link_name}.qemuboot.conf"


def _arm64() -> ReferenceMachine:
    machine = "qemuarm64"
    boot = XenHostBoot(
        machine=machine, image_link_name=f"xen-image-minimal-{machine}.rootfs", xen_binary=f"xen-{machine}",
        memory_mb=1024, smp=2,
        xen=XenBoot(dom0_kernel="Image", dom0_initrd=f"xen-ref-initramfs-{machine}.cpio.gz", dom0_mem="384M",
                    dom0_bootargs=DOM0_BOOTARGS, cmdline_extra=XEN_EXTRA))
    return ReferenceMachine("arm64", machine, "Image", boot, _guests(machine))


def _amd64() -> ReferenceMachine:
    machine = "qemux86-64"
    boot = X86XenHostBoot(
        machine=machine, image_link_name=f"xen-image-minimal-{machine}.rootfs", xen_binary=f"xen-{machine}",
        memory_mb=1024, smp=2,
        xen=XenBoot(dom0_kernel="bzImage", dom0_initrd=f"xen-ref-initramfs-{machine}.cpio.gz", dom0_mem="384M",
                    dom0_bootargs=DOM0_BOOTARGS, cmdline_extra=XEN_EXTRA, console=X86_XEN_CONSOLE))
    # Debian's amd64 kernel boots as PVH and as PV guest: both kinds. One PVH guest only: under
    # TCG a PVH guest runs on QEMU's emulated SVM and NPT, and one PVH boot in four triple-faulted
    # at its start (2026-11-29; docs/reference-target.md), which PV guests do not depend on.
    types = {"XEN_BUNDLED_GUESTS": "pv", "deploy-config": "pv", "auto-bundle": "pvh", "autostart": "pv"}
    # Xen on x86 boots no domain from the device tree (dom0less is Arm's); the compat forms'
    # guests are built with the arm64 names and kernel (compatguests), so they stay on arm64.
    return ReferenceMachine("amd64", machine, "bzImage", boot, _guests(machine, types),
                            extra_modules=("virtio_pci",), compat_guests=False, dom0less=False,
                            poweroff_ends_qemu=False)


#: The reference machines by Debian architecture.
MACHINES: Mapping[str, ReferenceMachine] = {"arm64": _arm64(), "amd64": _amd64()}


def machine_for(arch: str) -> ReferenceMachine:
    """The reference machine of a Debian architecture; others fail naming the known ones."""
    try:
        return MACHINES[arch]
    except KeyError:
        raise PackageError(f"no reference machine for the Debian architecture {arch!r} "
                           f"(known: {', '.join(MACHINES)}); pass --arch with one of them") from None
