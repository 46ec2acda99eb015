SUMMARY = "Xen dom0 user space for the meta-xen-ref host image"
DESCRIPTION = "The xl toolstack, xenstored, xenconsoled, the hotplug scripts for \
block and network backends, xendomains (autostart of /etc/xen/auto), the xenbr0 \
bridge configuration and a getty on the hvc0 Xen console."
HOMEPAGE = "https://xenproject.org/"
LICENSE = "MIT"

inherit packagegroup features_check

REQUIRED_DISTRO_FEATURES = "xen systemd"

# meta-virtualization's xen-tools ships the xenbr0 systemd-networkd files
# itself (xen-tools-net-conf, from its virt_networking class) in the releases
# that have that class; installing ours as well would configure the bridge
# twice. Set to "" to configure the network yourself.
XEN_REF_DOM0_NETWORK_PACKAGE ??= "${@'' if bb.utils.which(d.getVar('BBPATH'), 'classes/virt_networking.bbclass') else 'xen-ref-dom0-network'}"

RDEPENDS:${PN} = " \
    xen-tools \
    xen-tools-xl \
    xen-tools-console \
    virtual-xenstored \
    xen-tools-xencommons \
    xen-tools-xendomains \
    xen-tools-scripts-block \
    xen-tools-scripts-network \
    xen-ref-hvc0-getty \
    ${XEN_REF_DOM0_NETWORK_PACKAGE} \
"

# Built in on many kernels: recommended, so a missing module package is fine.
RRECOMMENDS:${PN} = "kernel-module-bridge kernel-module-loop"
