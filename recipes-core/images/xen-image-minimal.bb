SUMMARY = "Xen host (dom0) reference image"
DESCRIPTION = "A minimal systemd-based Xen dom0: the xl toolstack with \
               xenstored and xenconsoled, bridge xenbr0 over the wired network \
               with DHCP, SSH, a login on the hvc0 console, and the guests \
               chosen with XEN_BUNDLED_GUESTS, deployed as xen-guest-bundle*.cfg \
               or auto-bundled by guest images, installed in /var/lib/xen/images \
               and /etc/xen."
HOMEPAGE = "https://xenproject.org/"
LICENSE = "MIT"

inherit core-image xen-ref-distro-check xen-ref-bundle xen-ref-qemuboot

REQUIRED_DISTRO_FEATURES = "xen systemd"

IMAGE_FEATURES += "ssh-server-openssh"

# Backend drivers that linux-yocto builds as modules with meta-virtualization's
# Xen configuration (xen-tools' modules-load.d/xen.conf loads them at boot).
XEN_KERNEL_MODULES ?= "kernel-module-xen-blkback kernel-module-xen-gntalloc kernel-module-xen-gntdev \
                       kernel-module-xen-netback kernel-module-xen-wdt"

IMAGE_INSTALL = "packagegroup-core-boot packagegroup-xen-ref-dom0 ${XEN_KERNEL_MODULES} ${CORE_IMAGE_EXTRA_INSTALL}"

# The hypervisor is not part of the root filesystem, but the image is only
# usable (and qemuboot.conf only correct) once it is deployed.
do_image_complete[depends] += "xen:do_deploy"
