# Bundle Xen guests into a host (dom0) image's root filesystem.
#
# A do_rootfs post-process step copies each guest's kernel, ramdisk, device
# tree and disks to /var/lib/xen/images/ and installs its xl config in
# /etc/xen/ (optionally linked into /etc/xen/auto/). The work is done by the
# xenbundle Python package (lib/xenbundle); this class only translates the
# datastore into a call and errors into bb.fatal.
#
# Guests come from (see docs/bundling.md):
#   BUNDLED_XEN_GUESTS   "recipe[:autostart][:external] ..." guest image
#                        recipes (meta-virtualization's interface), with the
#                        XEN_GUEST_*[recipe] varflags
#   XEN_BUNDLED_GUESTS   "rootfs:kernel ..." files in DEPLOY_DIR_IMAGE, one
#                        generated xl config each
#   xen-guest-bundle*.cfg xl configs in DEPLOY_DIR_IMAGE (third-party ones,
#                        and those deployed by images that inherit
#                        xen-ref-guest with XEN_GUEST_AUTO_BUNDLE enabled)
#   bundle packages      installed with IMAGE_INSTALL: made by
#                        xen-ref-guest-bundle or by meta-virtualization's
#                        xen-guest-bundle; merged from XEN_REF_BUNDLES_DIR,
#                        which is then removed from the image
#
# The host never writes into DEPLOY_DIR_IMAGE.

inherit xen-ref-common

# Guest image recipes, "recipe[:autostart][:external]" (meta-virtualization's
# syntax): do_rootfs waits for <recipe>:do_image_complete unless external.
BUNDLED_XEN_GUESTS ??= ""
# "rootfs:kernel" pairs, file names in DEPLOY_DIR_IMAGE.
XEN_BUNDLED_GUESTS ??= ""
# Image recipes whose output is bundled (for example auto-bundled guests):
# the host's do_rootfs waits for their do_image_complete.
XEN_GUEST_IMAGES ??= ""
# Domain names to start at boot (links in /etc/xen/auto/).
XEN_GUEST_AUTOSTART ??= ""
# Domain names of XEN_BUNDLED_GUESTS entries that Xen starts itself at boot
# from the device tree (dom0less, Arm only): the entry is RAMDISK:KERNEL, no xl
# config is bundled. BUNDLED_XEN_GUESTS entries use the tag ":dom0less" and
# XEN_GUEST_RAMDISK[recipe]. (docs/bundling.md, "dom0less guests")
XEN_GUEST_DOM0LESS ??= ""
# A dom0less guest's kernel command line, and whether Xen gives it its PV
# interfaces and xenstore ("1": dom0's xl lists and destroys it); varflags per
# guest.
XEN_GUEST_DOM0LESS_BOOTARGS ??= "console=ttyAMA0 rdinit=/sbin/init"
XEN_GUEST_DOM0LESS_ENHANCED ??= "1"
# XEN_BUNDLED_GUESTS rootfs names (or recipe names) that look like the output
# of an image recipe, "<recipe>${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}.<fstype>",
# but are NOT built by BitBake: no dependency is added for them and they are
# checksummed like any other third-party file. Also applies to the recipes of
# BUNDLED_XEN_GUESTS (like their ":external" tag).
XEN_GUEST_EXTERNAL ??= ""
# The Xen version whose xl grammar the guest configs are checked with ("4.19"):
# configs using xl syntax of a later Xen (a disk's grant_usage=, a setting such
# as trap_unmapped_accesses) stop the build instead of failing at "xl create".
# Empty (the default): the PV of the xen-tools-xl package in pkgdata, read when
# do_rootfs runs -- the xl this image installs (packagegroup-xen-ref-dom0), so
# do_rootfs already depends on its do_packagedata and its signature changes
# with the Xen version; else PREFERRED_VERSION_xen-tools (for an image without
# meta-virtualization's xen-tools-xl); else 4.17, the oldest supported Xen.
# Set it when the image's xl comes from elsewhere. (docs/bundling.md)
XEN_REF_XEN_VERSION ??= ""

# Where bundle packages install their guests (meta-virtualization's layout).
XEN_REF_BUNDLES_DIR = "${datadir}/xen-guest-bundles"
# Free space (KiB) left in the host root filesystem on top of its contents.
# The bundled guests are already in IMAGE_ROOTFS when do_image sizes the
# filesystem, so they are counted (at their apparent size, times
# IMAGE_OVERHEAD_FACTOR); this is only headroom for dom0 itself.
XEN_HOST_ROOTFS_HEADROOM ??= "65536"

IMAGE_ROOTFS_EXTRA_SPACE = "${XEN_HOST_ROOTFS_HEADROOM}"

ROOTFS_POSTPROCESS_COMMAND += "xen_ref_bundle_guests"

xen_ref_bundle_guests[doc] = "Installs the bundled Xen guests into IMAGE_ROOTFS (/var/lib/xen/images, /etc/xen)."

python xen_ref_bundle_guests() {
    import xenbundle
    import xenbundle.dom0less
    import xenbundle.xenversion

    autostart = (d.getVar("XEN_GUEST_AUTOSTART") or "").split()
    try:
        dom0less = xen_ref_dom0less_guests(d)
        for guest in dom0less:
            bb.note("xen-ref-bundle: dom0less guest '%s' (%s): kernel %s, ramdisk %s, %d MiB, %d vCPUs, "
                    "not bundled as an xl guest" % (guest.name, guest.origin, guest.kernel, guest.ramdisk,
                                                    guest.memory_mib, guest.vcpus))
        xen_version, source = xenbundle.xenversion.build_xen_version(
            explicit=d.getVar("XEN_REF_XEN_VERSION") or "",
            pkgdata_dir=d.getVar("PKGDATA_DIR") or "",
            preferred=d.getVar("PREFERRED_VERSION_xen-tools") or "")
        bb.note("xen-ref-bundle: checking the guest configs for Xen %s (%s)" % (xen_version, source))
        result = xenbundle.bundle_guests(
            d.getVar("IMAGE_ROOTFS"),
            d.getVar("DEPLOY_DIR_IMAGE"),
            xenbundle.dom0less.xl_bundled_guests(d.getVar("XEN_BUNDLED_GUESTS") or "", dom0less),
            settings=lambda domain: xen_ref_guest_settings(d, domain),
            autostart=autostart,
            log=bb.note,
            xen_version=xen_version,
            recipe_guests=xen_ref_recipe_guests(d, "BUNDLED_XEN_GUESTS", False),
            bundles_dir=d.getVar("XEN_REF_BUNDLES_DIR"),
        )
    except xenbundle.BundleError as err:
        bb.fatal(str(err))

    if not result.guests:
        bb.note("xen-ref-bundle: no guests to bundle (BUNDLED_XEN_GUESTS and XEN_BUNDLED_GUESTS "
                "are empty, DEPLOY_DIR_IMAGE has no xen-guest-bundle*.cfg and no bundle package "
                "is installed)")
    for guest in result.guests:
        bb.note("xen-ref-bundle: guest '%s' from %s -> /%s: %d MiB apparent, %d MiB allocated"
                % (guest.name, guest.origin, guest.config,
                   guest.apparent_bytes // (1024 * 1024), guest.allocated_bytes // (1024 * 1024)))
}
xen_ref_bundle_guests[vardeps] += "XEN_BUNDLED_GUESTS XEN_GUEST_AUTOSTART BUNDLED_XEN_GUESTS XEN_REF_BUNDLES_DIR XEN_GUEST_DOM0LESS"
# The Xen version's variables (the xen-tools-xl pkgdata is covered by the task
# dependency, see XEN_REF_XEN_VERSION above).
do_rootfs[vardeps] += "XEN_REF_XEN_VERSION PREFERRED_VERSION_xen-tools"

def xen_ref_dom0less_guests(d):
    """The checked dom0less guests (xenbundle.dom0less.dom0less_guests); raises xenbundle.BundleError."""
    import xenbundle.dom0less
    return xenbundle.dom0less.dom0less_guests(
        xen_ref_variables(d), target_arch=d.getVar("TARGET_ARCH") or "",
        kernel_imagetype=d.getVar("KERNEL_IMAGETYPE") or "Image",
        ram_mib=xenbundle.dom0less.qemu_memory_mib(d.getVar("QB_MEM") or ""),
        dom0_mib=xenbundle.dom0less.xen_size_mib(d.getVar("QB_XEN_DOM0_MEM") or ""))

def xen_ref_built_guest_recipes(d):
    """Guest image recipes the host must wait for (xenbundle.wiring.built_guest_recipes)."""
    import xenbundle.wiring
    prefix = xenbundle.wiring.AUTO_BUNDLE_OVERRIDE_PREFIX
    return xenbundle.wiring.built_guest_recipes(
        d.getVar("XEN_BUNDLED_GUESTS") or "",
        guest_images=(d.getVar("XEN_GUEST_IMAGES") or "").split(),
        auto_bundle_overrides={key: d.getVar(key) for key in d.keys() if key.startswith(prefix)},
        external=(d.getVar("XEN_GUEST_EXTERNAL") or "").split(),
        image_suffix=xen_ref_image_suffix(d),
        entry_recipes=xenbundle.wiring.entry_recipes(xen_ref_variables(d), "BUNDLED_XEN_GUESTS"))

# Task dependencies and checksums are derived from variables, so they are
# set while parsing.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    import xenbundle
    import xenbundle.wiring

    if bb.data.inherits_class("xen-guest-cross-install", d):
        raise bb.parse.SkipRecipe(
            "inherits both xen-ref-bundle and meta-virtualization's xen-guest-cross-install: "
            "both would bundle the guests of BUNDLED_XEN_GUESTS and the installed bundle "
            "packages. xen-ref-bundle reads the same variables: remove "
            "'inherit xen-guest-cross-install'")

    # dom0less guests are checked while parsing: a non-Arm machine, a missing ramdisk, a disk or
    # memory that cannot fit stops here, not hours later in do_rootfs.
    try:
        xen_ref_dom0less_guests(d)
    except xenbundle.BundleError as err:
        bb.fatal("xen-ref-bundle: %s" % err)

    recipes = xen_ref_built_guest_recipes(d)
    d.appendVarFlag("do_rootfs", "depends", " " + " ".join(xenbundle.wiring.rootfs_task_depends(recipes)))

    # Third-party inputs are checksummed; the list is computed while parsing,
    # so the parse cache of this recipe must be invalidated whenever a file
    # appears in or disappears from DEPLOY_DIR_IMAGE (directory mtime) or a
    # third-party config changes (its mtime): mark_dependency does both.
    deploy = d.getVar("DEPLOY_DIR_IMAGE")
    bb.parse.mark_dependency(d, deploy)
    inputs = xenbundle.wiring.third_party_inputs(
        deploy, d.getVar("XEN_BUNDLED_GUESTS") or "", recipes,
        image_suffix=xen_ref_image_suffix(d), kernel_imagetype=d.getVar("KERNEL_IMAGETYPE") or "")
    entries = xen_ref_entry_inputs(d, "BUNDLED_XEN_GUESTS", recipes)
    for config in inputs.configs + entries.configs:
        bb.parse.mark_dependency(d, config)
    files = sorted(set(inputs.file_checksums() + entries.file_checksums()))
    if files:
        d.appendVarFlag("do_rootfs", "file-checksums", " " + " ".join(files))

    d.appendVarFlag("do_rootfs", "vardeps", " XEN_BUNDLED_GUESTS XEN_GUEST_IMAGES XEN_GUEST_AUTOSTART "
                    "XEN_GUEST_EXTERNAL XEN_REF_BUNDLES_DIR " + xen_ref_entry_vardeps(d, "BUNDLED_XEN_GUESTS"))
}
