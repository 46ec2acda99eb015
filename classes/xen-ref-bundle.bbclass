# Bundle Xen guests into a host (dom0) image's root filesystem.
#
# A do_rootfs post-process step copies each guest's kernel, ramdisk, device
# tree and disks from DEPLOY_DIR_IMAGE to /var/lib/xen/images/ and installs
# its xl config in /etc/xen/ (optionally linked into /etc/xen/auto/). The work
# is done by the xenbundle Python package (lib/xenbundle); this class only
# translates the datastore into a call and errors into bb.fatal.
#
# Guests come from (see docs/bundling.md):
#   XEN_BUNDLED_GUESTS   "rootfs:kernel ..." files in DEPLOY_DIR_IMAGE, one
#                        generated xl config each
#   xen-guest-bundle*.cfg xl configs in DEPLOY_DIR_IMAGE (third-party ones,
#                        and those deployed by images that inherit
#                        xen-ref-guest with XEN_GUEST_AUTO_BUNDLE enabled)
#
# The host never writes into DEPLOY_DIR_IMAGE.

inherit xen-ref-common

# "rootfs:kernel" pairs, file names in DEPLOY_DIR_IMAGE.
XEN_BUNDLED_GUESTS ??= ""
# Image recipes whose output is bundled (for example auto-bundled guests):
# the host's do_rootfs waits for their do_image_complete.
XEN_GUEST_IMAGES ??= ""
# Domain names to start at boot (links in /etc/xen/auto/).
XEN_GUEST_AUTOSTART ??= ""
# XEN_BUNDLED_GUESTS rootfs names (or recipe names) that look like the output
# of an image recipe, "<recipe>${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}.<fstype>",
# but are NOT built by BitBake: no dependency is added for them and they are
# checksummed like any other third-party file.
XEN_GUEST_EXTERNAL ??= ""
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

    autostart = (d.getVar("XEN_GUEST_AUTOSTART") or "").split()
    try:
        result = xenbundle.bundle_guests(
            d.getVar("IMAGE_ROOTFS"),
            d.getVar("DEPLOY_DIR_IMAGE"),
            d.getVar("XEN_BUNDLED_GUESTS") or "",
            settings=lambda domain: xen_ref_guest_settings(d, domain),
            autostart=autostart,
            log=bb.note,
        )
    except xenbundle.BundleError as err:
        bb.fatal(str(err))

    if not result.guests:
        bb.note("xen-ref-bundle: no guests to bundle (XEN_BUNDLED_GUESTS is empty and "
                "DEPLOY_DIR_IMAGE has no xen-guest-bundle*.cfg)")
    for guest in result.guests:
        bb.note("xen-ref-bundle: guest '%s' from %s -> /%s: %d MiB apparent, %d MiB allocated"
                % (guest.name, guest.origin, guest.config,
                   guest.apparent_bytes // (1024 * 1024), guest.allocated_bytes // (1024 * 1024)))
}
xen_ref_bundle_guests[vardeps] += "XEN_BUNDLED_GUESTS XEN_GUEST_AUTOSTART"

def xen_ref_image_output_recipe(d, filename):
    """The image recipe that deploys ``filename``, if it follows oe-core's naming.

    oe-core names image outputs "<recipe><IMAGE_MACHINE_SUFFIX><IMAGE_NAME_SUFFIX>.<type>"
    (the link) and "...<IMAGE_VERSION_SUFFIX>.<type>" (the file), for example
    "xen-guest-image-minimal-qemuarm64.rootfs.ext4"; <type> is an image type
    with optional conversions (ext4, ext4.qcow2, wic.zst, tar.bz2, ...).
    Returns None for other names.
    """
    import re
    suffix = (d.getVar("IMAGE_MACHINE_SUFFIX") or "") + (d.getVar("IMAGE_NAME_SUFFIX") or "")
    if not suffix:
        return None
    types = r"(?:ext[234]|wic|btrfs|f2fs|squashfs[a-z0-9-]*|erofs[a-z0-9-]*|cramfs|jffs2|ubifs|ubi|cpio|tar|hddimg|iso|img)"
    match = re.match(r"^([A-Za-z0-9][A-Za-z0-9+._-]*?)" + re.escape(suffix) + r"(?:-[0-9]+)?\." + types
                     + r"(?:\.[A-Za-z0-9]+)*$", os.path.basename(filename))
    return match.group(1) if match else None

def xen_ref_bundled_entries(d):
    """(rootfs, kernel) pairs of XEN_BUNDLED_GUESTS, leniently split for parse-time use.

    Malformed entries are left out here; the do_rootfs step reports them.
    """
    entries = []
    for entry in (d.getVar("XEN_BUNDLED_GUESTS") or "").split():
        rootfs, sep, kernel = entry.partition(":")
        if sep and rootfs and kernel:
            entries.append((rootfs, kernel))
    return entries

def xen_ref_built_guest_recipes(d):
    """Guest image recipes the host must wait for, sorted.

    XEN_GUEST_IMAGES, the recipes with XEN_GUEST_AUTO_BUNDLE:pn-<recipe> set
    to a true value, and the recipes that XEN_BUNDLED_GUESTS rootfs names
    point at (see xen_ref_image_output_recipe); minus XEN_GUEST_EXTERNAL.
    """
    external = set((d.getVar("XEN_GUEST_EXTERNAL") or "").split())
    recipes = set((d.getVar("XEN_GUEST_IMAGES") or "").split())
    # Auto-bundling switched on for a recipe from configuration, the usual
    # way (XEN_GUEST_AUTO_BUNDLE:pn-<recipe> = "1"), names that recipe.
    prefix = "XEN_GUEST_AUTO_BUNDLE:pn-"
    for key in d.keys():
        if key.startswith(prefix) and xen_ref_is_true(d.getVar(key)):
            recipes.add(key[len(prefix):].split(":")[0])
    for rootfs, _kernel in xen_ref_bundled_entries(d):
        recipe = xen_ref_image_output_recipe(d, rootfs)
        if recipe and rootfs not in external and recipe not in external:
            recipes.add(recipe)
    return sorted(recipes)

def xen_ref_is_built_file(d, filename, recipes):
    """True if ``filename`` in DEPLOY_DIR_IMAGE comes from a task do_rootfs depends on."""
    name = os.path.basename(filename)
    kernel = d.getVar("KERNEL_IMAGETYPE") or ""
    if kernel and (name == kernel or name.startswith(kernel + "-")):
        return True
    recipe = xen_ref_image_output_recipe(d, name)
    if recipe in recipes:
        return True
    suffix = (d.getVar("IMAGE_MACHINE_SUFFIX") or "") + (d.getVar("IMAGE_NAME_SUFFIX") or "")
    return any(name == "xen-guest-bundle-%s%s.cfg" % (r, suffix) for r in recipes)

def xen_ref_config_inputs(cfg, deploy_dir):
    """Files in ``deploy_dir`` that the xl config ``cfg`` refers to (best effort).

    Used at parse time only, to checksum third-party inputs; a config that
    does not validate yields nothing here and fails the do_rootfs step instead.
    """
    import glob
    import tempfile
    import xenbundle
    # The plan needs a root directory to plan into; an empty one is enough
    # (planning writes nothing).
    with tempfile.TemporaryDirectory(prefix="xen-ref-plan-") as empty_root:
        try:
            plan = xenbundle.plan_bundle(empty_root, deploy_dir, "",
                                         config_glob=glob.escape(os.path.basename(cfg)))
        except (ValueError, OSError):
            return []
    return plan.inputs()

def xen_ref_third_party_inputs(d):
    """Deploy-dir files that bundling reads but no task of do_rootfs' dependencies writes.

    Returns "path:True|False" entries for do_rootfs[file-checksums], sorted.
    """
    import glob
    deploy = d.getVar("DEPLOY_DIR_IMAGE")
    recipes = set(xen_ref_built_guest_recipes(d))
    paths = set()
    for rootfs, kernel in xen_ref_bundled_entries(d):
        for name in (rootfs, kernel):
            if not xen_ref_is_built_file(d, name, recipes) and not os.path.isabs(name):
                paths.add(os.path.join(deploy, name))
    for cfg in sorted(glob.glob(os.path.join(glob.escape(deploy), "xen-guest-bundle*.cfg"))):
        if xen_ref_is_built_file(d, cfg, recipes):
            continue
        paths.add(cfg)
        bb.parse.mark_dependency(d, cfg)
        for source in xen_ref_config_inputs(cfg, deploy):
            if not xen_ref_is_built_file(d, source, recipes):
                paths.add(source)
    return ["%s:%s" % (path, os.path.exists(path)) for path in sorted(paths)]

# Task dependencies and checksums are derived from variables, so they are
# set while parsing.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    recipes = xen_ref_built_guest_recipes(d)
    depends = ["%s:do_image_complete" % recipe for recipe in recipes]
    # Guests usually boot the kernel the host deploys.
    depends.append("virtual/kernel:do_deploy")
    d.appendVarFlag("do_rootfs", "depends", " " + " ".join(depends))

    # Third-party inputs are checksummed; the list is computed while parsing,
    # so the parse cache of this recipe must be invalidated whenever a file
    # appears in or disappears from DEPLOY_DIR_IMAGE (directory mtime) or a
    # third-party config changes (its mtime): mark_dependency does both.
    bb.parse.mark_dependency(d, d.getVar("DEPLOY_DIR_IMAGE"))
    inputs = xen_ref_third_party_inputs(d)
    if inputs:
        d.appendVarFlag("do_rootfs", "file-checksums", " " + " ".join(inputs))

    d.appendVarFlag("do_rootfs", "vardeps", " XEN_BUNDLED_GUESTS XEN_GUEST_IMAGES XEN_GUEST_AUTOSTART "
                    "XEN_GUEST_EXTERNAL " + xen_ref_settings_vardeps(d))
}
