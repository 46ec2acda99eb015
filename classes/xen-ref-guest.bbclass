# Xen guest (domU) image: optionally deploy an xl config for itself so that a
# host image with xen-ref-bundle bundles it ("auto-bundling").
#
# With XEN_GUEST_AUTO_BUNDLE enabled ("1", "yes", "true", ...), the task
# do_xen_guest_bundle_config writes
#     ${IMGDEPLOYDIR}/xen-guest-bundle-${IMAGE_LINK_NAME}.cfg
# between do_image and do_image_complete. The name is deterministic (no
# timestamp) and the file is part of do_image_complete's sstate output, so it
# is replaced on every rebuild and removed from DEPLOY_DIR_IMAGE again when
# auto-bundling is switched off. The config boots ${KERNEL_IMAGETYPE} from
# the deploy directory with the image's ext4 as root disk.
#
# The host only waits for this image if it is listed in the host's
# XEN_GUEST_IMAGES (see docs/bundling.md).

inherit xen-ref-common

XEN_GUEST_AUTO_BUNDLE ??= "0"
# The Xen version the generated config is checked for (see xen-ref-bundle):
# XEN_REF_XEN_VERSION, else PREFERRED_VERSION_xen-tools, else 4.17. A guest
# does not depend on xen-tools, so the xen-tools-xl pkgdata is not read here;
# the host checks the config again for the Xen its image installs.
XEN_REF_XEN_VERSION ??= ""
# Domain name of this guest; unique per image by default.
XEN_GUEST_NAME ??= "${IMAGE_BASENAME}"

python do_xen_guest_bundle_config() {
    import xenbundle
    import xenbundle.guests
    import xenbundle.wiring
    import xenbundle.xenversion

    link_name = d.getVar("IMAGE_LINK_NAME")
    if not link_name:
        bb.fatal("XEN_GUEST_AUTO_BUNDLE needs IMAGE_LINK_NAME (the stable name of the "
                 "deployed images) but it is empty; do not clear IMAGE_LINK_NAME for %s"
                 % d.getVar("PN"))
    cfg = os.path.join(d.getVar("IMGDEPLOYDIR"), xenbundle.guests.bundle_config_name(link_name))

    value = d.getVar("XEN_GUEST_AUTO_BUNDLE") or ""
    try:
        enabled = xenbundle.wiring.parse_yes_no(value)
    except ValueError:
        bb.fatal("XEN_GUEST_AUTO_BUNDLE = \"%s\" is not a yes/no value; use \"1\" to deploy "
                 "the guest config or \"0\" not to" % value)
    if not enabled:
        # IMGDEPLOYDIR survives a rerun of this task alone: drop an old config.
        if os.path.lexists(cfg):
            os.remove(cfg)
        return

    if "ext4" not in (d.getVar("IMAGE_FSTYPES") or "").split():
        bb.fatal("XEN_GUEST_AUTO_BUNDLE: the guest config uses the ext4 image as root disk, "
                 "but IMAGE_FSTYPES of %s has no \"ext4\"; add it (IMAGE_FSTYPES:append = \" ext4\")"
                 % d.getVar("PN"))

    domain = d.getVar("XEN_GUEST_NAME") or ""
    try:
        xen_version, _source = xenbundle.xenversion.build_xen_version(
            explicit=d.getVar("XEN_REF_XEN_VERSION") or "",
            preferred=d.getVar("PREFERRED_VERSION_xen-tools") or "")
        settings = xen_ref_guest_settings(d, domain)
        text = xenbundle.guests.auto_bundle_config(
            settings, "%s.ext4" % link_name, d.getVar("KERNEL_IMAGETYPE"),
            xen_version=xen_version)
    except xenbundle.BundleError as err:
        bb.fatal(str(err))
    except ValueError as err:
        bb.fatal("XEN_GUEST_NAME or XEN_GUEST_* of %s: %s" % (d.getVar("PN"), err))

    partial = cfg + ".tmp"
    with open(partial, "w") as out:
        out.write(text)
    os.replace(partial, cfg)
    bb.note("xen-ref-guest: deployed %s for domain '%s'" % (os.path.basename(cfg), domain))
}
do_xen_guest_bundle_config[vardeps] += "XEN_GUEST_AUTO_BUNDLE XEN_GUEST_NAME IMAGE_LINK_NAME KERNEL_IMAGETYPE IMAGE_FSTYPES"
do_xen_guest_bundle_config[doc] = "Deploys the xl config of this guest (XEN_GUEST_AUTO_BUNDLE) for bundling by a host image."
do_xen_guest_bundle_config[dirs] = "${IMGDEPLOYDIR}"
addtask xen_guest_bundle_config after do_image before do_image_complete

# The per-domain varflags to hash are only known once the recipe is parsed.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    d.appendVarFlag("do_xen_guest_bundle_config", "vardeps", " " + xen_ref_settings_vardeps(d))
}
