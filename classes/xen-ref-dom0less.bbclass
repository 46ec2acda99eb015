# The boot files of dom0less guests (Arm): guests that Xen starts itself at
# boot from the device tree (xen-ref-bundle checks them while parsing and
# keeps them out of the xl bundling; docs/bundling.md, "dom0less guests").
#
# With at least one dom0less guest, the image writes next to its other
# output (IMGDEPLOYDIR, deployed to DEPLOY_DIR_IMAGE with the image):
#
#   QEMU machines (the image inherits oe-core's qemuboot): the machine's
#   device tree with the guests' /chosen nodes (XEN_REF_DOM0LESS_DTB) and, in
#   qemuboot.conf, QB_DTB, the QEMU loader devices that place every kernel and
#   ramdisk (in QB_OPT_APPEND, instead of dom0's guest-loader devices),
#   QB_XEN_DOM0LESS and QB_XEN_DOM0LESS_BOOTARGS_<n>: runqemu and xenqemu boot
#   it unchanged. A prefunc of oe-core's do_write_qemuboot_conf makes them:
#   the QB_* values it sets are what that task writes.
#   every machine: a U-Boot script for a board (XEN_REF_DOM0LESS_UBOOT_SCRIPT,
#   task do_xen_ref_dom0less_uboot) that loads the same files at the same
#   addresses and adds the same nodes. It is the script's text; turn it into
#   boot.scr with "mkimage -A arm64 -T script -C none -d <script> boot.scr".
#
# The sizes of the kernels and ramdisks are read in DEPLOY_DIR_IMAGE when the
# task runs. The work is done by xenboot.dom0lessboot (lib/xenboot); this
# class translates the datastore into calls and errors into bb.fatal.
# Without dom0less guests it adds no task, dependency or file.

inherit xen-ref-bundle xen-ref-qemuboot

# The merged device tree, a file name next to qemuboot.conf (QB_DTB).
XEN_REF_DOM0LESS_DTB ??= "${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}.dom0less.dtb"
# The U-Boot script's text, a file name in the deploy directory.
XEN_REF_DOM0LESS_UBOOT_SCRIPT ??= "${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}.dom0less-boot.cmd"
# The QEMU that dumps the machine's device tree (qemu-system-native, the QEMU
# runqemu boots with), and dtc (dtc-native).
XEN_REF_DOM0LESS_QEMU ??= "${STAGING_BINDIR_NATIVE}/${QB_SYSTEM_NAME}"
XEN_REF_DOM0LESS_DTC ??= "${STAGING_BINDIR_NATIVE}/dtc"
XEN_REF_DOM0LESS_WORKDIR = "${WORKDIR}/xen-ref-dom0less"

# The board of the U-Boot script (xenboot.dom0lessboot.uboot_board): the
# U-Boot "load" interface and partition that holds the files, Xen's file and
# load address, the board's device tree file and address, Xen's command line.
XEN_REF_UBOOT_LOAD_SOURCE ??= "mmc 0:1"
XEN_REF_UBOOT_XEN_FILE ??= "xen-${MACHINE}"
XEN_REF_UBOOT_XEN_ADDR ??= "0x40200000"
XEN_REF_UBOOT_FDT_FILE ??= "board.dtb"
XEN_REF_UBOOT_FDT_ADDR ??= "0x44000000"
XEN_REF_UBOOT_XEN_CMDLINE ??= "${QB_XEN_CMDLINE}"

def xen_ref_dom0less_host(d):
    """(XenBoot, RamRegion, dom0 MiB, domains) of the image; raises BundleError or BootConfigError."""
    import xenboot
    import xenboot.dom0less
    import xenbundle.dom0less
    contract = {key: d.getVar(key) for key in d.keys() if key.startswith("QB_XEN_") and ":" not in key}
    xen = xenboot.XenBoot.from_variables({key: value for key, value in contract.items() if value is not None})
    xen = xen or xenboot.arch_defaults(d.getVar("TARGET_ARCH") or "")
    ram_mib = xenbundle.dom0less.qemu_memory_mib(d.getVar("QB_MEM") or "")
    if not ram_mib:
        raise xenboot.BootConfigError("QB_MEM %r does not give the machine's RAM" % (d.getVar("QB_MEM") or ""),
                                      'write it like "-m 2048"', key="QB_MEM")
    ram = xenboot.RamRegion(xenboot.ARM_VIRT_RAM_BASE, ram_mib * 1024 * 1024, "QB_MEM")
    domains = [xenboot.dom0less.Dom0lessDomain(g.name, g.kernel, g.ramdisk, g.memory_mib, g.vcpus,
                                               g.bootargs, g.enhanced)
               for g in xen_ref_dom0less_guests(d)]
    return xen, ram, xenbundle.dom0less.xen_size_mib(xen.dom0_mem) or 0, domains

def xen_ref_dom0less_vardeps(d):
    """Signature dependencies of the boot files: the guests' variables and their varflags."""
    import xenbundle.settings
    reserved = (d.getVar("XEN_REF_RESERVED_FLAGS") or "").split()
    names = ["XEN_BUNDLED_GUESTS", "XEN_GUEST_DOM0LESS", "XEN_GUEST_DOM0LESS_BOOTARGS",
             "XEN_GUEST_DOM0LESS_ENHANCED", "XEN_GUEST_RAMDISK", "XEN_GUEST_KERNEL", "XEN_GUEST_NAME"]
    return " ".join(xenbundle.settings.vardeps(xen_ref_variables(d), names, reserved)) + " " + \
        xen_ref_entry_vardeps(d, "BUNDLED_XEN_GUESTS")

xen_ref_dom0less_qemu_boot[doc] = "Writes the dom0less device tree and sets the QB_* values do_write_qemuboot_conf writes."

python xen_ref_dom0less_qemu_boot() {
    from pathlib import Path
    import xenboot
    import xenboot.dom0lessboot
    import xenbundle

    try:
        xen, ram, dom0_mib, domains = xen_ref_dom0less_host(d)
        machine = {key: d.getVar(key) or "" for key in xenboot.dom0lessboot.MACHINE_KEYS + ("QB_OPT_APPEND",)}
        tools = xenboot.dom0lessboot.QemuTools(qemu=d.getVar("XEN_REF_DOM0LESS_QEMU"),
                                               dtc=d.getVar("XEN_REF_DOM0LESS_DTC"))
        made = xenboot.dom0lessboot.qemu_dom0less_boot(
            xen, domains, deploy=Path(d.getVar("DEPLOY_DIR_IMAGE")), machine=machine, ram=ram, dom0_mib=dom0_mib,
            work=Path(d.getVar("XEN_REF_DOM0LESS_WORKDIR")),
            dtb=Path(d.getVar("IMGDEPLOYDIR"), d.getVar("XEN_REF_DOM0LESS_DTB")), tools=tools)
    except (xenboot.BootConfigError, xenbundle.BundleError) as err:
        bb.fatal("xen-ref-dom0less: %s" % err)
    for key, value in sorted(made.variables.items()):
        d.setVar(key, value)
    for domain, kernel, ramdisk in made.layout.domains:
        bb.note("xen-ref-dom0less: '%s': kernel %s at %#x, ramdisk %s at %#x (%s)"
                % (domain.name, kernel.file, kernel.address, ramdisk.file, ramdisk.address,
                   d.getVar("XEN_REF_DOM0LESS_DTB")))
}

do_xen_ref_dom0less_uboot[doc] = "Writes the U-Boot script that boots Xen with the dom0less guests on a board."

python do_xen_ref_dom0less_uboot() {
    from pathlib import Path
    import xenboot
    import xenboot.dom0lessboot
    import xenbundle

    output = Path(d.getVar("IMGDEPLOYDIR"), d.getVar("XEN_REF_DOM0LESS_UBOOT_SCRIPT"))
    try:
        xen, ram, dom0_mib, domains = xen_ref_dom0less_host(d)
        layout = xenboot.dom0lessboot.deployed_layout(xen, domains, Path(d.getVar("DEPLOY_DIR_IMAGE")), ram,
                                                      dom0_mib)
        board = xenboot.dom0lessboot.uboot_board({key: d.getVar(key) or ""
                                                  for key in xenboot.dom0lessboot.UBOOT_KEYS})
        xenboot.dom0lessboot.write_uboot_script(layout, board, ram, output,
                                                Path(d.getVar("XEN_REF_DOM0LESS_WORKDIR")))
    except (xenboot.BootConfigError, xenbundle.BundleError) as err:
        bb.fatal("xen-ref-dom0less: %s" % err)
    bb.note("xen-ref-dom0less: U-Boot script %s (mkimage -A arm64 -T script -C none -d %s boot.scr)"
            % (output, output.name))
}

# The task and the dependencies exist only when there are dom0less guests;
# the guests were already checked (xen-ref-bundle's parse-time check).
# nooelint: oelint.task.noanonpython
python __anonymous() {
    import xenboot.dom0lessboot
    import xenbundle

    try:
        guests = xen_ref_dom0less_guests(d)
    except xenbundle.BundleError:
        return
    if not guests:
        return
    vardeps = " " + xen_ref_dom0less_vardeps(d)
    # the kernels' and ramdisks' sizes: the kernel is deployed, the guest images are built
    # before do_rootfs (xen-ref-bundle)
    bb.build.addtask("do_xen_ref_dom0less_uboot", "do_image", "do_rootfs", d)
    d.appendVarFlag("do_xen_ref_dom0less_uboot", "depends", " virtual/kernel:do_deploy")
    d.appendVarFlag("do_xen_ref_dom0less_uboot", "vardeps",
                    " XEN_REF_DOM0LESS_UBOOT_SCRIPT " + " ".join(xenboot.dom0lessboot.UBOOT_KEYS) + vardeps)
    if bb.data.inherits_class("qemuboot", d):
        d.appendVarFlag("do_write_qemuboot_conf", "prefuncs", " xen_ref_dom0less_qemu_boot")
        d.appendVarFlag("do_write_qemuboot_conf", "depends",
                        " qemu-system-native:do_populate_sysroot dtc-native:do_populate_sysroot")
        d.appendVarFlag("do_write_qemuboot_conf", "vardeps",
                        " xen_ref_dom0less_qemu_boot XEN_REF_DOM0LESS_DTB" + vardeps)
}
