# Boot-loader configuration of a Xen host image on x86-64: Xen is the
# multiboot kernel; dom0's kernel and (optional) initrd are its modules.
# Xen's and dom0's command lines are the QB_XEN_* variables of
# xen-ref-qemuboot, the same ones runqemu uses on Arm.
#
#   wic, XEN_BOOT_MODE = "bios" (default): files/wic/xen-ref-x86-bios.wks.in, a
#       legacy BIOS disk; syslinux's mboot.c32 starts Xen. meta-virtualization's
#       bootimg-biosxen wic plugin installs xen.gz and mboot.c32.
#   wic, XEN_BOOT_MODE = "efi": files/wic/xen-ref-x86-efi.wks.in, a GPT disk with an
#       EFI system partition; GRUB's multiboot2 starts Xen.
#   hddimg, iso (image-live): syslinux's mboot.c32, and GRUB's multiboot2 on
#       machines with the "efi" feature; dom0 runs the live initrd, which
#       mounts rootfs.img from the boot medium.
#
# The config texts are written by xenboot.multiboot (lib/xenboot); this class
# passes variables. docs/machines.md describes the flows. xen-image-minimal
# inherits it on x86-64 (XEN_REF_BOOT_CLASSES); other x86-64 images can
# inherit it too.

inherit xen-ref-qemuboot

# meta-virtualization's selector (master): "bios" or "efi"; XEN_EFI_BOOT = "1"
# means "efi". Its "hyperv-gen1" is not offered.
XEN_EFI_BOOT ??= ""
XEN_BOOT_MODE ??= "${@'efi' if d.getVar('XEN_EFI_BOOT') == '1' else 'bios'}"
# Seconds the boot menu waits (0: boot at once).
XEN_REF_BOOT_TIMEOUT ??= "1"
# The boot loader's serial console: UART (0 = COM1) and speed; "" for none.
XEN_REF_BOOT_SERIAL ??= "0 115200"
# The kickstart file: a name in WKS_SEARCH_PATH or in a layer's files/wic/ folder,
# or a full path. (Set this, not WKS_FILE, which the class sets from it.)
XEN_REF_WKS_FILE ??= "xen-ref-x86-${XEN_BOOT_MODE}.wks.in"
# Xen as meta-virtualization's xen recipe deploys it (gzip'ed multiboot image).
XEN_REF_XEN_IMAGE ??= "xen-${MACHINE}.gz"

XEN_REF_BOOT_CONFIG_DIR = "${WORKDIR}/xen-ref-boot"
XEN_REF_SYSLINUX_CFG = "${XEN_REF_BOOT_CONFIG_DIR}/syslinux.cfg"
XEN_REF_GRUB_CFG = "${XEN_REF_BOOT_CONFIG_DIR}/grub.cfg"
XEN_REF_LIVE_SYSLINUX_CFG = "${XEN_REF_BOOT_CONFIG_DIR}/live-syslinux.cfg"
XEN_REF_LIVE_GRUB_CFG = "${XEN_REF_BOOT_CONFIG_DIR}/live-grub.cfg"
# The dom0 initrd in the boot partition, under its file name.
XEN_REF_BOOT_INITRD = "${@os.path.basename(d.getVar('QB_XEN_DOM0_INITRD') or '')}"
# Arguments of the BIOS partition's plugin (used by the kickstart file).
XEN_REF_WIC_BIOS_SOURCEPARAMS = "${@'initrd=' + d.getVar('XEN_REF_BOOT_INITRD') if d.getVar('XEN_REF_BOOT_INITRD') else ''}"

def xen_ref_wks_file(d):
    """XEN_REF_WKS_FILE as WKS_FILE: a name WKS_SEARCH_PATH does not find is
    looked up in the layers' files/wic/ folders (this layer keeps its kickstart
    files there: wrynose searches files/wic/ and its sanity check rejects a layer
    with a top-level wic/ folder; scarthgap searches only wic/)."""
    name = d.getVar("XEN_REF_WKS_FILE") or ""
    if not name or os.path.isabs(name) or bb.utils.which(d.getVar("WKS_SEARCH_PATH") or "", name):
        return name
    return bb.utils.which(d.getVar("BBPATH") or "", os.path.join("files", "wic", name)) or name

WKS_FILE = "${@xen_ref_wks_file(d)}"

def xen_ref_efi_boot_files(d):
    """IMAGE_EFI_BOOT_FILES entries ("deployed;in the partition") of an EFI disk."""
    if d.getVar("XEN_BOOT_MODE") != "efi":
        return ""
    files = ["%s;xen.gz" % d.getVar("XEN_REF_XEN_IMAGE")]
    initrd = d.getVar("XEN_REF_BOOT_INITRD")
    if initrd:
        files.append("%s;%s" % (d.getVar("QB_XEN_DOM0_INITRD"), initrd))
    return " ".join(files)

# The EFI partition gets Xen (and the dom0 initrd) next to the kernel.
IMAGE_EFI_BOOT_FILES:append = " ${@xen_ref_efi_boot_files(d)}"

# Firmware for "runqemu ... ovmf" with an EFI disk on QEMU machines.
XEN_REF_EFI_FIRMWARE ??= ""
XEN_REF_EFI_FIRMWARE:qemuall ??= "ovmf:do_deploy"

def xen_ref_boot_values(d):
    """The variables xenboot.image_boot_config reads (named one by one, so
    that BitBake sees them as dependencies of the tasks that call this)."""
    return {
        "QB_XEN_CMDLINE": d.getVar("QB_XEN_CMDLINE") or "",
        "QB_XEN_DOM0_BOOTARGS": d.getVar("QB_XEN_DOM0_BOOTARGS") or "",
        "QB_XEN_DOM0_INITRD": d.getVar("QB_XEN_DOM0_INITRD") or "",
        "KERNEL_IMAGETYPE": d.getVar("KERNEL_IMAGETYPE") or "",
        "XEN_REF_BOOT_TIMEOUT": d.getVar("XEN_REF_BOOT_TIMEOUT") or "",
        "XEN_REF_BOOT_SERIAL": d.getVar("XEN_REF_BOOT_SERIAL") or "",
        "ROOT_LIVE": d.getVar("ROOT_LIVE") or "",
        # image-live sets INITRD from INITRD_LIVE inside do_bootimg, after the
        # prefunc that writes the configs has run (set_live_vm_vars).
        "INITRD": d.getVar("INITRD") or d.getVar("INITRD_LIVE") or "",
    }

def xen_ref_boot_config(d, loader, live):
    """The syslinux.cfg or grub.cfg text; BootConfigError names the variable."""
    import xenboot
    return xenboot.image_boot_config(xen_ref_boot_values(d), loader, live=live)

def xen_ref_write_boot_config(d, loader, path, live):
    import xenboot
    try:
        text = xen_ref_boot_config(d, loader, live)
    except xenboot.BootConfigError as err:
        bb.fatal("xen-ref-x86-boot: %s" % err)
    bb.utils.mkdirhier(os.path.dirname(path))
    with open(path, "w") as out:
        out.write(text)

# The kickstart file names the config as bootloader --configfile.
python xen_ref_write_wic_boot_config() {
    if d.getVar("XEN_BOOT_MODE") == "efi":
        xen_ref_write_boot_config(d, "grub", d.getVar("XEN_REF_GRUB_CFG"), False)
    else:
        xen_ref_write_boot_config(d, "syslinux", d.getVar("XEN_REF_SYSLINUX_CFG"), False)
}
xen_ref_write_wic_boot_config[doc] = "Writes the syslinux.cfg or grub.cfg of the wic disk (Xen with dom0 as its module)."
do_image_wic[prefuncs] += "xen_ref_write_wic_boot_config"
do_image_wic[depends] += "xen:do_deploy ${@d.getVar('XEN_REF_EFI_FIRMWARE') if d.getVar('XEN_BOOT_MODE') == 'efi' else ''}"

# hddimg and iso: image-live writes its configs (build_syslinux_cfg,
# build_efi_cfg) for a Linux kernel; the populate steps, which run after it,
# install Xen's instead, with mboot.c32 and Xen.
python xen_ref_write_live_boot_configs() {
    xen_ref_write_boot_config(d, "syslinux", d.getVar("XEN_REF_LIVE_SYSLINUX_CFG"), True)
    xen_ref_write_boot_config(d, "grub", d.getVar("XEN_REF_LIVE_GRUB_CFG"), True)
}
xen_ref_write_live_boot_configs[doc] = "Writes the syslinux.cfg and grub.cfg of hddimg/iso images (Xen with dom0 as its module)."
do_bootimg[prefuncs] += "xen_ref_write_live_boot_configs"
do_bootimg[depends] += "xen:do_deploy"

syslinux_populate:append() {
    install -m 0644 ${XEN_REF_LIVE_SYSLINUX_CFG} ${DEST}${BOOTDIR}/${CFGNAME}
    install -m 0444 ${STAGING_DATADIR}/syslinux/mboot.c32 ${DEST}${BOOTDIR}/mboot.c32
    install -m 0444 ${STAGING_DATADIR}/syslinux/libcom32.c32 ${DEST}${BOOTDIR}/libcom32.c32
    install -m 0644 ${DEPLOY_DIR_IMAGE}/${XEN_REF_XEN_IMAGE} ${DEST}/xen.gz
}

efi_populate:append() {
    install -m 0644 ${XEN_REF_LIVE_GRUB_CFG} ${DEST}${EFIDIR}/grub.cfg
    install -m 0644 ${DEPLOY_DIR_IMAGE}/${XEN_REF_XEN_IMAGE} ${DEST}/xen.gz
}

# The iso's EFI image holds copies of the kernel and initrd only.
efi_iso_populate:append() {
    cp $iso_dir/xen.gz ${EFIIMGDIR}
}

# Wrong settings stop the parse of the image with the reason, instead of a
# disk that does not boot.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    import xenboot
    mode = d.getVar("XEN_BOOT_MODE")
    if mode not in ("bios", "efi"):
        raise bb.parse.SkipRecipe("XEN_BOOT_MODE = \"%s\": meta-xen-ref boots Xen on x86-64 from a BIOS "
                                  "(\"bios\") or EFI (\"efi\") disk; set one of them" % mode)
    live = bb.utils.contains_any("IMAGE_FSTYPES", "live iso hddimg", True, False, d)
    efi_live = live and bb.utils.contains("MACHINE_FEATURES", "efi", True, False, d)
    if efi_live and d.getVar("EFI_PROVIDER") != "grub-efi":
        raise bb.parse.SkipRecipe("EFI_PROVIDER = \"%s\": on EFI, the hddimg/iso images start Xen with "
                                  "GRUB's multiboot2; set EFI_PROVIDER = \"grub-efi\"" % d.getVar("EFI_PROVIDER"))
    try:
        xen_ref_boot_config(d, "grub" if mode == "efi" else "syslinux", False)
        if live:
            xen_ref_boot_config(d, "syslinux", True)
            xen_ref_boot_config(d, "grub", True)
    except xenboot.BootConfigError as err:
        raise bb.parse.SkipRecipe("the x86 boot-loader configuration cannot be written: %s" % err)
}
