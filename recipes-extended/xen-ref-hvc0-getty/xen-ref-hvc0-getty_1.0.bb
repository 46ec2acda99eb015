SUMMARY = "Login prompt on the Xen console hvc0"
DESCRIPTION = "Enables systemd's serial-getty@hvc0.service, so that dom0 and \
               the guests offer a login on the Xen console. SERIAL_CONSOLES \
               is a machine setting used when systemd-serialgetty is built, \
               so an image cannot add hvc0 through it, and systemd's getty \
               generator is not enabled in every release."
HOMEPAGE = "https://xenproject.org/"
LICENSE = "MIT"

# Nothing to fetch: the package is one symlink made in do_install.
SRC_URI = ""

inherit features_check allarch

REQUIRED_DISTRO_FEATURES = "systemd"

# A vendor "wants" link (in the unit directory, not /etc): it cannot collide
# with the /etc link that systemd-serialgetty creates when SERIAL_CONSOLES
# lists hvc0; both only ask for the same unit.
do_install() {
    install -d ${D}${systemd_system_unitdir}/getty.target.wants
    ln -sf ../serial-getty@.service ${D}${systemd_system_unitdir}/getty.target.wants/serial-getty@hvc0.service
}

FILES:${PN} += "${systemd_system_unitdir}/getty.target.wants"

# serial-getty@.service comes from systemd-serialgetty when systemd's getty
# generator is disabled (scarthgap) and from systemd otherwise.
RDEPENDS:${PN} = "systemd systemd-serialgetty"
