SUMMARY = "Xen guest (domU) reference image"
DESCRIPTION = "A minimal Xen guest that boots the same kernel as the host \
               image, with a login on the hvc0 Xen console. Deploys ext4, \
               ext4.qcow2 and tar.zst images and, with XEN_GUEST_AUTO_BUNDLE, \
               an xl config that xen-image-minimal bundles."
HOMEPAGE = "https://xenproject.org/"
LICENSE = "MIT"

inherit core-image xen-ref-distro-check xen-ref-guest

REQUIRED_DISTRO_FEATURES = "xen systemd"

IMAGE_INSTALL = "packagegroup-core-boot xen-ref-hvc0-getty ${CORE_IMAGE_EXTRA_INSTALL}"

# ext4: the root disk of bundled and auto-bundled configs; ext4.qcow2 for
# QEMU/xl users; tar.zst for containers and custom disks (zstd is the
# default compression of current releases and available in scarthgap).
IMAGE_FSTYPES = "ext4 ext4.qcow2 tar.zst"
# On x86-64 also a disk with a boot loader (the machine's WKS_FILE): an HVM
# guest boots its own disk through the firmware, without a kernel from dom0.
IMAGE_FSTYPES:append:x86-64 = " wic"
