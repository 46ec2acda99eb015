# Package a set of Xen guests, so that host images install them with
# IMAGE_INSTALL (one guest set, several hosts, versioned like any package).
#
#   inherit xen-ref-guest-bundle
#   XEN_GUEST_BUNDLES = "xen-guest-image-minimal:autostart my-appliance:external"
#   XEN_GUEST_MEMORY[xen-guest-image-minimal] = "1024"
#
# Entries and varflags are those of BUNDLED_XEN_GUESTS in a host image
# (meta-virtualization's xen-guest-bundle interface, checked the same way by
# xenbundle), plus the import of third-party images:
#
#   SRC_URI = "https://.../rootfs.tar.gz;unpack=0;sha256sum=..."
#   XEN_GUEST_BUNDLES = "vendor:autostart:external"
#   XEN_GUEST_SOURCE_TYPE[vendor] = "rootfs_dir"      # rootfs_dir qcow2 ext4 raw
#   XEN_GUEST_SOURCE_FILE[vendor] = "rootfs.tar.gz"   # in UNPACKDIR
#   XEN_GUEST_IMAGE_SIZE[vendor] = "256"              # MiB; default: from content
#
# do_compile imports (xenbundle.imports: mkfs.ext4 -d and debugfs from
# e2fsprogs-native, qemu-img from qemu-system-native; no root, no loop
# mount), do_install writes the bundle (xenbundle.bundletree) to
# ${datadir}/xen-guest-bundles/${PN}: manifest, images/, configs/ and
# checksums. A host image inheriting xen-ref-bundle verifies and merges it
# into /var/lib/xen/images and /etc/xen, and removes the staging folder.
# See docs/bundling.md.

inherit xen-ref-common

# Guests, "recipe[:autostart][:external] ...".
XEN_GUEST_BUNDLES ??= ""
# Where the imported images are made.
XEN_REF_IMPORT_DIR = "${B}/imports"
# The bundle inside the package.
XEN_REF_BUNDLE_PATH = "${datadir}/xen-guest-bundles/${PN}"

# No sources of its own: fetched guests are in UNPACKDIR.
S = "${@xen_ref_unpack_dir(d)}"

# Guest images and kernels belong to one machine; nothing here is compiled.
PACKAGE_ARCH = "${MACHINE_ARCH}"
INHIBIT_DEFAULT_DEPS = "1"
INHIBIT_PACKAGE_STRIP = "1"
INHIBIT_PACKAGE_DEBUG_SPLIT = "1"
EXCLUDE_FROM_SHLIBS = "1"

FILES:${PN} += "${XEN_REF_BUNDLE_PATH}"
# File system images and kernels hold whatever paths their own builds wrote
# into them; they are data to this package, not code it built.
# nooelint: oelint.vars.insaneskip
INSANE_SKIP:${PN} += "buildpaths"

do_configure[noexec] = "1"

python do_compile() {
    import xenbundle
    import xenbundle.imports

    tools = xenbundle.imports.ImportTools(
        mkfs_ext4=os.path.join(d.getVar("STAGING_SBINDIR_NATIVE"), "mkfs.ext4"),
        debugfs=os.path.join(d.getVar("STAGING_SBINDIR_NATIVE"), "debugfs"),
        qemu_img=os.path.join(d.getVar("STAGING_BINDIR_NATIVE"), "qemu-img"))
    epoch = d.getVar("SOURCE_DATE_EPOCH")
    try:
        xenbundle.imports.import_entries(
            xen_ref_variables(d), "XEN_GUEST_BUNDLES", xen_ref_unpack_dir(d),
            d.getVar("XEN_REF_IMPORT_DIR"), tools=tools,
            epoch=int(epoch) if epoch and epoch.isdigit() else None, log=bb.note)
    except xenbundle.BundleError as err:
        bb.fatal(str(err))
}
do_compile[cleandirs] = "${XEN_REF_IMPORT_DIR}"
do_compile[vardeps] += "XEN_REF_IMPORT_DIR"

# The Xen version the bundle's configs are checked for: XEN_REF_XEN_VERSION,
# else PREFERRED_VERSION_xen-tools, else 4.17 (see xen-ref-guest). A bundle
# does not depend on xen-tools; the host checks the configs again for the Xen
# its image installs when it merges the bundle.
XEN_REF_XEN_VERSION ??= ""

python do_install() {
    import xenbundle
    import xenbundle.bundletree
    import xenbundle.xenversion

    tree = d.getVar("D") + d.getVar("XEN_REF_BUNDLE_PATH")
    try:
        xen_version, _source = xenbundle.xenversion.build_xen_version(
            explicit=d.getVar("XEN_REF_XEN_VERSION") or "",
            preferred=d.getVar("PREFERRED_VERSION_xen-tools") or "")
        xenbundle.bundletree.build_bundle_tree(
            tree, d.getVar("DEPLOY_DIR_IMAGE"),
            xen_ref_recipe_guests(d, "XEN_GUEST_BUNDLES", True), log=bb.note,
            xen_version=xen_version)
    except xenbundle.BundleError as err:
        bb.fatal(str(err))
}
do_install[vardeps] += "XEN_REF_IMPORT_DIR XEN_REF_BUNDLE_PATH XEN_REF_XEN_VERSION PREFERRED_VERSION_xen-tools"

# Task dependencies and checksums are derived from variables, so they are
# set while parsing.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    import xenbundle.wiring

    variables = xen_ref_variables(d)
    recipes = xenbundle.wiring.entry_recipes(variables, "XEN_GUEST_BUNDLES")
    depends = ["%s:do_image_complete" % recipe for recipe in recipes]
    if xenbundle.wiring.uses_shared_kernel(variables, "XEN_GUEST_BUNDLES"):
        depends.append("virtual/kernel:do_deploy")
    if depends:
        d.appendVarFlag("do_install", "depends", " " + " ".join(depends))
    tools = xenbundle.wiring.import_task_depends(variables, "XEN_GUEST_BUNDLES")
    if tools:
        d.appendVarFlag("do_compile", "depends", " " + " ".join(tools))

    # Deploy-dir files of external guests are checksummed; see xen-ref-bundle.
    bb.parse.mark_dependency(d, d.getVar("DEPLOY_DIR_IMAGE"))
    inputs = xen_ref_entry_inputs(d, "XEN_GUEST_BUNDLES", recipes)
    for config in inputs.configs:
        bb.parse.mark_dependency(d, config)
    if inputs.files:
        d.appendVarFlag("do_install", "file-checksums", " " + " ".join(inputs.file_checksums()))

    deps = " " + xen_ref_entry_vardeps(d, "XEN_GUEST_BUNDLES")
    d.appendVarFlag("do_compile", "vardeps", deps)
    d.appendVarFlag("do_install", "vardeps", deps)
}
