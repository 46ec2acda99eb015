SUMMARY = "Xen host (dom0) reference image"
DESCRIPTION = "A minimal systemd-based Xen dom0: the xl toolstack with \
               xenstored and xenconsoled, bridge xenbr0 over the wired network \
               with DHCP, SSH, a login on the hvc0 console, and the guests \
               chosen with XEN_BUNDLED_GUESTS, deployed as xen-guest-bundle*.cfg \
               or auto-bundled by guest images, installed in /var/lib/xen/images \
               and /etc/xen."
HOMEPAGE = "https://xenproject.org/"
LICENSE = "MIT"

# xen-ref-dom0less: the boot files of dom0less guests (the merged device tree
# and its qemuboot.conf values, a U-Boot script), only when there are some.
inherit core-image xen-ref-distro-check xen-ref-bundle xen-ref-qemuboot xen-ref-dom0less

# How the host boots: runqemu settings and Xen's command lines (xen-ref-qemuboot);
# on x86-64 also the boot-loader configuration of its disk (xen-ref-x86-boot).
# Set XEN_REF_BOOT_CLASSES:x86-64 = "" if your BSP starts Xen itself.
XEN_REF_BOOT_CLASSES ??= ""
XEN_REF_BOOT_CLASSES:x86-64 ??= "xen-ref-x86-boot"
# Empty except on x86-64; deferred, so that a bbappend can still change it.
inherit_defer ${XEN_REF_BOOT_CLASSES}

REQUIRED_DISTRO_FEATURES = "xen systemd"

IMAGE_FEATURES += "ssh-server-openssh"

# Backend drivers that linux-yocto builds as modules with meta-virtualization's
# Xen configuration (xen-tools' modules-load.d/xen.conf loads them at boot),
# and the x86-only ones below.
XEN_KERNEL_MODULES ?= "kernel-module-xen-blkback kernel-module-xen-gntalloc kernel-module-xen-gntdev \
                       kernel-module-xen-netback kernel-module-xen-wdt \
                       ${@bb.utils.contains('MACHINE_FEATURES', 'pci', d.getVar('XEN_PCIBACK_MODULE'), '', d)} \
                       ${@bb.utils.contains('MACHINE_FEATURES', 'acpi', d.getVar('XEN_ACPI_PROCESSOR_MODULE'), '', d)} \
                       ${XEN_HVM_NETWORK_MODULE}"
# x86 only (meta-virtualization's names): PCI passthrough to guests (Linux's
# PCI backend depends on X86), Xen's CPU power management from ACPI, and tun
# for the emulated network cards of HVM guests.
XEN_PCIBACK_MODULE = ""
XEN_PCIBACK_MODULE:x86-64 = "kernel-module-xen-pciback"
XEN_ACPI_PROCESSOR_MODULE = ""
XEN_ACPI_PROCESSOR_MODULE:x86-64 = "kernel-module-xen-acpi-processor"
XEN_HVM_NETWORK_MODULE = ""
XEN_HVM_NETWORK_MODULE:x86-64 = "kernel-module-tun"
# What HVM guests (x86 only: Arm has no HVM guests) need from dom0: QEMU, the
# device model that emulates their hardware (xen-tools runs it as
# qemu-system-i386), and the firmware they start with, hvmloader and SeaBIOS
# (xen-tools only recommends them).
XEN_HVM_PACKAGES = ""
XEN_HVM_PACKAGES:x86-64 = "qemu xen-tools-hvmloader seabios"

IMAGE_INSTALL = "packagegroup-core-boot packagegroup-xen-ref-dom0 ${XEN_KERNEL_MODULES} ${XEN_HVM_PACKAGES} \
                 ${CORE_IMAGE_EXTRA_INSTALL}"

# The hypervisor is not part of the root filesystem, but the image is only
# usable (and qemuboot.conf only correct) once it is deployed.
do_image_complete[depends] += "xen:do_deploy"
