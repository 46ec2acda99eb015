SUMMARY = "Alpine Linux minirootfs as an autostarting Xen guest bundle"
DESCRIPTION = "Imports Alpine Linux's minirootfs archive as the disk of a \
               Xen guest named alpine (an ext4 image made with mkfs.ext4 -d, \
               owners and modes taken from the archive), generates its xl \
               config and packages both for host images to install with \
               IMAGE_INSTALL. The guest boots the host build's kernel."
HOMEPAGE = "https://alpinelinux.org/"
# The packages of the minirootfs: alpine-baselayout, apk-tools, busybox and
# scanelf (GPL-2.0-only), musl (MIT; musl-utils also BSD-2-Clause and
# GPL-2.0-or-later), openssl (Apache-2.0), zlib (Zlib), ca-certificates
# (MPL-2.0 and MIT). The archive's lib/apk/db/installed lists them.
LICENSE = "GPL-2.0-only & GPL-2.0-or-later & MIT & BSD-2-Clause & Apache-2.0 & Zlib & MPL-2.0"
# The archive carries no license texts of its own.
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/GPL-2.0-only;md5=801f80980d171dd6425610833a22dbe6 \
                    file://${COMMON_LICENSE_DIR}/GPL-2.0-or-later;md5=fed54355545ffd980b814dab4a3b312c \
                    file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/BSD-2-Clause;md5=cb641bc04cda31daea161b1bc15da69f \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10 \
                    file://${COMMON_LICENSE_DIR}/Zlib;md5=87f239f408daca8a157858e192597633 \
                    file://${COMMON_LICENSE_DIR}/MPL-2.0;md5=815ca599c9df247a0c7f619bab123dad"

inherit xen-ref-guest-bundle features_check

REQUIRED_DISTRO_FEATURES = "xen"
# Alpine publishes this minirootfs for these two of our architectures.
COMPATIBLE_HOST = "(aarch64|x86_64).*-linux"

ALPINE_RELEASES = "https://dl-cdn.alpinelinux.org/alpine/v${@'.'.join(d.getVar('PV').split('.')[:2])}/releases"
ALPINE_ARCHIVE = "alpine-minirootfs-${PV}-${TARGET_ARCH}.tar.gz"

# unpack=0: the archive itself is imported, so that owners, modes and device
# nodes come from its headers (an unpacked folder has the build user's).
SRC_URI = "${ALPINE_RELEASES}/aarch64/${ALPINE_ARCHIVE};unpack=0;name=aarch64"
SRC_URI:x86-64 = "${ALPINE_RELEASES}/x86_64/${ALPINE_ARCHIVE};unpack=0;name=x86_64"
SRC_URI[aarch64.sha256sum] = "f219bb9d65febed9046951b19f2b893b331315740af32c47e39b38fcca4be543"
SRC_URI[x86_64.sha256sum] = "42d0e6d8de5521e7bf92e075e032b5690c1d948fa9775efa32a51a38b25460fb"

# Install with IMAGE_INSTALL:append:pn-xen-image-minimal = " xen-ref-alpine-bundle".
XEN_GUEST_BUNDLES = "alpine:autostart:external"
XEN_GUEST_SOURCE_TYPE[alpine] = "rootfs_dir"
XEN_GUEST_SOURCE_FILE[alpine] = "${ALPINE_ARCHIVE}"
XEN_GUEST_MEMORY[alpine] = "256"
# The minirootfs is made for containers: its /sbin/init is not set up to boot
# a system, so the guest runs a shell on its console.
XEN_GUEST_EXTRA[alpine] = "root=/dev/xvda rw console=hvc0 init=/bin/sh"
