SUMMARY = "The xen-guest-image-minimal guest as an installable bundle"
DESCRIPTION = "Packages the xen-guest-image-minimal guest (its ext4 image, \
               the kernel it boots and a generated xl config) so that any \
               host image inheriting xen-ref-bundle installs it with \
               IMAGE_INSTALL and starts it at boot. A template for your own \
               guest bundles; see docs/bundling.md."
HOMEPAGE = "https://xenproject.org/"
LICENSE = "MIT"

# Nothing to fetch: the guest comes from its image recipe's deploy directory.
SRC_URI = ""

inherit xen-ref-guest-bundle features_check

# What the guest image (and the host that runs it) requires.
REQUIRED_DISTRO_FEATURES = "xen systemd"

# Install with IMAGE_INSTALL:append:pn-xen-image-minimal = " xen-ref-guest-bundle-minimal"
# (a pn- override: the guest image must not install its own bundle).
XEN_GUEST_BUNDLES = "xen-guest-image-minimal:autostart"
XEN_GUEST_MEMORY[xen-guest-image-minimal] = "256"
