SUMMARY = "Xen dom0 user space for the meta-xen-ref host image"
DESCRIPTION = "The xl toolstack, xenstored, xenconsoled, the hotplug scripts \
               for block and network backends, xendomains (autostart of \
               /etc/xen/auto), the xenbr0 bridge configuration and a getty \
               on the hvc0 Xen console."
HOMEPAGE = "https://xenproject.org/"
LICENSE = "MIT"

inherit packagegroup features_check

REQUIRED_DISTRO_FEATURES = "xen systemd"

# meta-virtualization's xen-tools ships the xenbr0 systemd-networkd files
# itself (xen-tools-net-conf, from its virt_networking class) in the releases
# that have that class; installing ours as well would configure the bridge
# twice. Set to "" to configure the network yourself.
XEN_REF_DOM0_NETWORK_PACKAGE ??= "${@'' if bb.utils.which(d.getVar('BBPATH'), 'classes/virt_networking.bbclass') else 'xen-ref-dom0-network'}"

# virtual-xenstored: whichever xenstored the distro prefers (xen-tools-xenstored
# by default). xen-tools-console has xenconsoled; xen-tools-xencommons the
# systemd units that start xenstored, xenconsoled and xen-init-dom0.
RDEPENDS:${PN} = "\
    ${XEN_REF_DOM0_NETWORK_PACKAGE} \
    virtual-xenstored \
    xen-ref-hvc0-getty \
    xen-tools \
    xen-tools-console \
    xen-tools-scripts-block \
    xen-tools-scripts-network \
    xen-tools-xencommons \
    xen-tools-xendomains \
    xen-tools-xl \
"

# Built in on many kernels: recommended, so a missing module package is fine.
RRECOMMENDS:${PN} = "kernel-module-bridge kernel-module-loop"
