SUMMARY = "Bridge xenbr0 for Xen guests, configured by systemd-networkd"
DESCRIPTION = "Creates the bridge xenbr0, adds the wired uplink to it, gets \
               the bridge's address by DHCP and leaves the Xen backend \
               interfaces (vif*) to Xen's hotplug scripts, which add them to \
               the bridge named in each guest's vif setting."
HOMEPAGE = "https://xenproject.org/"
LICENSE = "MIT"

# Nothing to fetch: the files are generated in do_install.
SRC_URI = ""

inherit features_check allarch

REQUIRED_DISTRO_FEATURES = "systemd"

# systemd-networkd Name= patterns of the interfaces put into the bridge.
XEN_REF_BRIDGE_UPLINK ??= "eth0 en*"

# The files are generated here (no SRC_URI) because their content is a
# setting; networkd uses the first .network file (in name order) that
# matches an interface, and "10-" sorts before systemd's 80-wired.network.
do_install() {
    install -d ${D}${sysconfdir}/systemd/network
    netdir=${D}${sysconfdir}/systemd/network
    printf '[NetDev]\nName=xenbr0\nKind=bridge\n' > $netdir/10-xen-ref-xenbr0.netdev
    printf '[Match]\nName=xenbr0\n\n[Network]\nDHCP=yes\n' > $netdir/10-xen-ref-xenbr0.network
    printf '# The wired uplink is a port of xenbr0; the address is on the bridge.\n[Match]\nName=%s\n\n[Network]\nBridge=xenbr0\n' \
        "${XEN_REF_BRIDGE_UPLINK}" > $netdir/10-xen-ref-uplink.network
    printf '# Guest backend interfaces: the vif-bridge hotplug script adds them to the\n# bridge of the guest vif setting; networkd must leave them alone.\n[Match]\nName=vif*\n\n[Link]\nUnmanaged=yes\n' \
        > $netdir/10-xen-ref-vif.network
    chmod 0644 $netdir/*
}

RDEPENDS:${PN} = "systemd"
