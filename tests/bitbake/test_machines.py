"""The per-machine boot classes under real BitBake, with the stand-in configuration of conftest.py.

The values per machine with the real oe-core and meta-virtualization are checked by
test_machines_tinfoil.py; these tests execute the classes' own code (the tasks' prefuncs that
write the boot-loader configs, the parse-time checks) on a small configuration that sets what an
oe-core machine configuration sets for the boot (MACHINE, OVERRIDES, TARGET_ARCH,
KERNEL_IMAGETYPE), so they run in seconds and without an oe-core checkout.
"""

from __future__ import annotations

from pathlib import Path

import bb.build
import pytest
import xenboot

# What oe-core's qemux86-64.conf and bitbake.conf give the classes (the overrides that select
# the x86-64 parts, the kernel's name), plus the image-live variables of an hddimg build.
X86_64 = """\
MACHINE = "qemux86-64"
TARGET_ARCH = "x86_64"
OVERRIDES = "x86-64:qemuall:qemux86-64:pn-${PN}"
KERNEL_IMAGETYPE = "bzImage"
MACHINE_FEATURES = "x86 pci"
WKS_SEARCH_PATH = "${TOPDIR}/files/wic"
ROOT_LIVE = "root=/dev/ram0"
INITRD_LIVE = "${DEPLOY_DIR_IMAGE}/core-image-minimal-initramfs-qemux86-64.cpio.gz"
"""
RECIPE = "inherit xen-ref-x86-boot\n"
LAYER = Path(__file__).resolve().parents[2]


def x86(project, local_conf: str = "", recipe: str = RECIPE):  # type: ignore[no-untyped-def]
    return project.parse("xen-image-minimal", recipe, X86_64 + local_conf)


def boot_values(d) -> dict[str, str]:  # type: ignore[no-untyped-def]
    names = ("QB_XEN_CMDLINE", "QB_XEN_DOM0_BOOTARGS", "QB_XEN_DOM0_INITRD", "KERNEL_IMAGETYPE",
             "XEN_REF_BOOT_TIMEOUT", "XEN_REF_BOOT_SERIAL", "ROOT_LIVE", "INITRD_LIVE")
    values = {name: d.getVar(name) or "" for name in names}
    values["INITRD"] = values.pop("INITRD_LIVE")
    return values


def test_wic_prefunc_writes_the_syslinux_config_xenboot_composes(project) -> None:  # type: ignore[no-untyped-def]
    d = x86(project, 'QB_XEN_DOM0_INITRD = "initrd.cpio.gz"\nQB_XEN_CMDLINE_EXTRA = "loglvl=all"\n')
    assert d.getVar("__SKIPPED") is None
    bb.build.exec_func("xen_ref_write_wic_boot_config", d)
    written = Path(d.getVar("XEN_REF_SYSLINUX_CFG")).read_text()
    assert written == xenboot.image_boot_config(boot_values(d), "syslinux")
    assert ("APPEND /xen.gz dom0_mem=512M,max:512M bootscrub=0 loglvl=all com1=115200,8n1 console=com1 "
            "--- /bzImage console=hvc0 earlyprintk=xen root=/dev/sda2 rw rootwait --- /initrd.cpio.gz") in written
    assert not Path(d.getVar("XEN_REF_GRUB_CFG")).exists()
    assert d.getVar("XEN_REF_WIC_BIOS_SOURCEPARAMS") == "initrd=initrd.cpio.gz"


@pytest.mark.parametrize("mode_conf", ['XEN_BOOT_MODE = "efi"\n', 'XEN_EFI_BOOT = "1"\n'])
def test_efi_mode_writes_grub_and_puts_xen_in_the_efi_partition(project, mode_conf: str) -> None:  # type: ignore[no-untyped-def]
    d = x86(project, mode_conf)
    assert d.getVar("XEN_BOOT_MODE") == "efi"
    bb.build.exec_func("xen_ref_write_wic_boot_config", d)
    written = Path(d.getVar("XEN_REF_GRUB_CFG")).read_text()
    assert written == xenboot.image_boot_config(boot_values(d), "grub")
    assert d.getVar("IMAGE_EFI_BOOT_FILES").split() == ["xen-qemux86-64.gz;xen.gz"]
    assert "ovmf:do_deploy" in d.getVarFlag("do_image_wic", "depends").split()
    assert d.getVar("WKS_FILE") == str(LAYER / "files" / "wic" / "xen-ref-x86-efi.wks.in")


def test_live_prefunc_writes_configs_that_boot_dom0_from_the_live_initrd(project) -> None:  # type: ignore[no-untyped-def]
    d = x86(project)
    bb.build.exec_func("xen_ref_write_live_boot_configs", d)
    syslinux = Path(d.getVar("XEN_REF_LIVE_SYSLINUX_CFG")).read_text()
    grub = Path(d.getVar("XEN_REF_LIVE_GRUB_CFG")).read_text()
    assert syslinux == xenboot.image_boot_config(boot_values(d), "syslinux", live=True)
    assert grub == xenboot.image_boot_config(boot_values(d), "grub", live=True)
    assert syslinux.rstrip().endswith("root=/dev/ram0 LABEL=boot --- /initrd")
    assert "\tmodule2 /initrd\n" in grub


def test_wks_file_is_found_in_the_layers_wic_folder(project) -> None:  # type: ignore[no-untyped-def]
    d = x86(project)
    assert d.getVar("WKS_FILE") == str(LAYER / "files" / "wic" / "xen-ref-x86-bios.wks.in")
    # a file WKS_SEARCH_PATH finds (or a full path) is used as named
    (project.top / "files" / "wic").mkdir(parents=True)
    (project.top / "files" / "wic" / "mine.wks").write_text("part / --source rootfs\n")
    assert x86(project, 'XEN_REF_WKS_FILE = "mine.wks"\n').getVar("WKS_FILE") == "mine.wks"
    assert x86(project, 'XEN_REF_WKS_FILE = "/x/y.wks"\n').getVar("WKS_FILE") == "/x/y.wks"


@pytest.mark.parametrize("local_conf, reason", [
    ('XEN_BOOT_MODE = "hyperv-gen1"\n', 'XEN_BOOT_MODE = "hyperv-gen1"'),
    ('QB_XEN_DOM0_BOOTARGS = "console=hvc0 --- x"\n', "QB_XEN_DOM0_BOOTARGS"),
    ('XEN_REF_BOOT_TIMEOUT = "later"\n', "XEN_REF_BOOT_TIMEOUT"),
    ('XEN_BOOT_MODE = "efi"\nQB_XEN_CMDLINE_EXTRA = "dyndbg=\\"x\\""\n', "quote or backslash"),
    ('IMAGE_FSTYPES = "hddimg"\nMACHINE_FEATURES += "efi"\nEFI_PROVIDER = "systemd-boot"\n',
     'set EFI_PROVIDER = "grub-efi"'),
    ('IMAGE_FSTYPES = "iso"\nQB_XEN_DOM0_BOOTARGS = "a\\\\b"\n', "quote or backslash"),
])
def test_settings_that_cannot_boot_skip_the_image_with_the_reason(project, local_conf: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    skipped = x86(project, local_conf).getVar("__SKIPPED") or ""
    assert reason in skipped


@pytest.mark.parametrize("machine_conf, skipped", [
    ('MACHINE = "qemuarm"\nTARGET_ARCH = "arm"\nOVERRIDES = "arm:qemuall:qemuarm:pn-${PN}"\n', False),
    ('MACHINE = "qemux86"\nTARGET_ARCH = "i686"\nOVERRIDES = "x86:qemuall:qemux86:pn-${PN}"\n', True),
    ('MACHINE = "qemuriscv64"\nTARGET_ARCH = "riscv64"\nOVERRIDES = "riscv64:qemuall:qemuriscv64:pn-${PN}"\n',
     True),
])
def test_host_image_is_skipped_where_xen_does_not_build(project, machine_conf: str, skipped: bool) -> None:  # type: ignore[no-untyped-def]
    d = project.parse("xen-image-minimal", "inherit xen-ref-qemuboot\n", machine_conf)
    reason = d.getVar("__SKIPPED")
    if skipped:
        assert reason and d.getVar("TARGET_ARCH") in reason and "XEN_REF_XEN_ARCHS" in reason
    else:
        assert reason is None
    extended = project.parse("xen-image-minimal", "inherit xen-ref-qemuboot\n",
                             machine_conf + 'XEN_REF_XEN_ARCHS = "x86_64 aarch64 arm i686 riscv64"\n')
    assert extended.getVar("__SKIPPED") is None


def test_arm_machines_keep_oe_cores_wic_and_get_no_x86_boot(project) -> None:  # type: ignore[no-untyped-def]
    d = project.parse("xen-image-minimal", "inherit xen-ref-qemuboot\n",
                      'MACHINE = "qemuarm"\nTARGET_ARCH = "arm"\nKERNEL_IMAGETYPE = "zImage"\n'
                      'OVERRIDES = "arm:qemuall:qemuarm:pn-${PN}"\n')
    assert d.getVar("QB_XEN_CONSOLE") == xenboot.XEN_CONSOLE
    assert d.getVar("QB_OPT_APPEND").startswith('-device "guest-loader,addr=0x49000000,kernel=@DEPLOY_DIR_IMAGE@/zImage,')
    assert d.getVar("QB_MACHINE") == "-machine virt,highmem=off,gic-version=2,virtualization=on"
    assert d.getVar("WKS_FILE") is None and d.getVar("do_image_wic", False) is None
