"""dom0less boot files under real BitBake: xen-ref-dom0less.bbclass makes a host image with a
dom0less guest write the merged device tree and the qemuboot.conf values that boot it (its
prefunc, run before oe-core's own do_write_qemuboot_conf), and a U-Boot script for boards.

QEMU dumps the machine's tree and dtc compiles it for real; the folder named by
STAGING_BINDIR_NATIVE holds links to the host's qemu-system-aarch64 and dtc, a STAND-IN for the
native sysroot that qemu-system-native and dtc-native populate in a bitbake build.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import bb
import bb.build
import bb.data
import pytest
import xenboot
from test_qemuboot_contract import oecore_meta
from xenref_bbtest import HOST, make_kernel

RAMDISK = "tiny-qemuarm64.rootfs.cpio.gz"
# The image's tasks around the class's: do_rootfs (xenref_bbtest.HOST) and do_image.
IMAGE = HOST + "inherit xen-ref-dom0less\naddtask image after rootfs\n"
# oe-core's qemuboot, inherited after the recipe's classes as image.bbclass does (IMAGE_CLASSES).
QEMU_IMAGE = IMAGE + "inherit qemuboot\n"
OECORE_CONF = 'DATETIME = "20261129000000"\nBASE_WORKDIR = "${TMPDIR}/work"\nBUILD_SYS = "x86_64-linux"\n'
GUEST_CONF = f"""\
BUNDLED_XEN_GUESTS = "tiny:dom0less:external"
XEN_GUEST_RAMDISK[tiny] = "{RAMDISK}"
XEN_GUEST_MEMORY[tiny] = "64"
XEN_GUEST_VCPUS[tiny] = "2"
XEN_GUEST_DOM0LESS_BOOTARGS[tiny] = "console=ttyAMA0 rdinit=/bin/sh tiny=1"
QB_MEM = "-m 1024"
QB_XEN_DOM0_MEM = "384M"
QB_SMP = "-smp 2"
QB_SYSTEM_NAME = "qemu-system-aarch64"
STAGING_BINDIR_NATIVE = "${{TOPDIR}}/native-sysroot-bin"
"""

pytestmark = pytest.mark.skipif(shutil.which("dtc") is None or shutil.which("qemu-system-aarch64") is None,
                                reason="needs dtc and qemu-system-aarch64 (scripts/setup-host installs both)")


@pytest.fixture
def deploy(project):
    dep = project.deploy
    make_kernel(dep, data=b"\x00ARM64 kernel" * 300000)  # 3.9 MB
    real = "tiny-qemuarm64.rootfs-20261129.cpio.gz"
    (dep / real).write_bytes(b"\x1f\x8b" + b"r" * 70000)
    (dep / RAMDISK).symlink_to(real)
    native = project.top / "native-sysroot-bin"
    native.mkdir()
    for tool in ("qemu-system-aarch64", "dtc"):
        (native / tool).symlink_to(shutil.which(tool))
    return dep


def run_task(d, task: str):  # type: ignore[no-untyped-def]
    """Run ``task`` as bb.build.exec_task runs it: its prefuncs, the task and its postfuncs with
    bb.build.exec_func, in one copy of the recipe's datastore (returned).  (exec_task itself
    redirects stdin/stdout, which pytest's capture does not allow.)"""
    local = bb.data.createCopy(d)
    funcs = (local.getVarFlag(task, "prefuncs", expand=True) or "").split() + [task] \
        + (local.getVarFlag(task, "postfuncs", expand=True) or "").split()
    for func in funcs:
        bb.build.exec_func(func, local)
    return local


def decompiled(dtb: Path) -> str:
    return subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtb)], capture_output=True, text=True,
                          check=True).stdout


def loader_addresses(opt_append: str) -> dict[str, int]:
    out = {}
    for word in shlex.split(opt_append):
        props = dict(p.split("=", 1) for p in word.split(",")[1:] if "=" in p)
        if word.startswith("loader,"):
            out[os.path.basename(props["file"]) + ("@2" if os.path.basename(props["file"]) in out else "")] = \
                int(props["addr"], 0)
    return out


@pytest.mark.oecore
def test_qemu_image_writes_the_tree_and_the_qemuboot_values_that_boot_it(project, deploy, bblog) -> None:  # type: ignore[no-untyped-def]
    d = project.parse("xen-image-minimal", QEMU_IMAGE, OECORE_CONF + GUEST_CONF, extra_bbpath=str(oecore_meta()))
    assert "xen_ref_dom0less_qemu_boot" in d.getVarFlag("do_write_qemuboot_conf", "prefuncs").split()
    depends = d.getVarFlag("do_write_qemuboot_conf", "depends").split()
    assert {"qemu-system-native:do_populate_sysroot", "dtc-native:do_populate_sysroot"} <= set(depends)
    assert "XEN_GUEST_DOM0LESS_BOOTARGS[tiny]" in d.getVarFlag("do_write_qemuboot_conf", "vardeps").split()
    os.makedirs(d.getVar("IMGDEPLOYDIR"))
    run_task(d, "do_write_qemuboot_conf")

    imgdeploy = Path(d.getVar("IMGDEPLOYDIR"))
    conf = xenboot.read_qemuboot(imgdeploy / f"{d.getVar('IMAGE_LINK_NAME')}.qemuboot.conf")
    assert conf.get("QB_DTB") == "xen-image-minimal-qemuarm64.dom0less.dtb"
    assert conf.get("QB_XEN_DOM0LESS") == "tiny"
    assert conf.get("QB_XEN_DOM0LESS_BOOTARGS_1") == "console=ttyAMA0 rdinit=/bin/sh tiny=1"
    assert xenboot.devicetree.dom0less_domains_in(dict(conf.written)) == [
        ("tiny", "console=ttyAMA0 rdinit=/bin/sh tiny=1")]
    assert "guest-loader" not in conf.get("QB_OPT_APPEND")
    addresses = loader_addresses(conf.get("QB_OPT_APPEND"))
    assert addresses == {"Image": 0x49000000, "Image@2": 0x49400000, RAMDISK: 0x49800000}
    assert conf.get("QB_XEN_DOM0_KERNEL") == "Image", "the dom0 contract stays in qemuboot.conf"

    source = decompiled(imgdeploy / conf.get("QB_DTB"))
    node = source[source.index("tiny {"):]
    assert 'compatible = "xen,domain";' in node
    assert "memory = <0x00 0x10000>;" in node and "cpus = <0x02>;" in node  # 64 MiB in KiB, 2 vCPUs
    assert 'bootargs = "console=ttyAMA0 rdinit=/bin/sh tiny=1";' in node
    assert "reg = <0x00 0x49400000 0x00 0x3b8260>;" in node  # the kernel link's target: 3900000 bytes
    assert "reg = <0x00 0x49800000 0x00 0x11172>;" in node  # the ramdisk link's target: 70002 bytes
    assert "cpu@1 {" in source and "cpu@2 {" not in source, "the machine's tree with QB_SMP"
    assert "xen-ref-dom0less: 'tiny': kernel Image at 0x49400000" in bblog.text()


@pytest.mark.oecore
def test_an_image_without_dom0less_guests_is_unchanged(project, deploy) -> None:  # type: ignore[no-untyped-def]
    d = project.parse("xen-image-minimal", QEMU_IMAGE, OECORE_CONF + 'QB_SYSTEM_NAME = "qemu-system-aarch64"\n',
                      extra_bbpath=str(oecore_meta()))
    assert "xen_ref_dom0less_qemu_boot" not in (d.getVarFlag("do_write_qemuboot_conf", "prefuncs") or "")
    depends = (d.getVarFlag("do_write_qemuboot_conf", "depends") or "").split()
    assert not any(dep.startswith(("dtc-native", "qemu-system-native")) for dep in depends)
    assert not d.getVarFlag("do_xen_ref_dom0less_uboot", "task")
    os.makedirs(d.getVar("IMGDEPLOYDIR"))
    run_task(d, "do_write_qemuboot_conf")
    imgdeploy = Path(d.getVar("IMGDEPLOYDIR"))
    assert sorted(p.suffix for p in imgdeploy.iterdir()) == [".conf", ".conf"]  # the conf and its link
    conf = xenboot.read_qemuboot(imgdeploy / f"{d.getVar('IMAGE_LINK_NAME')}.qemuboot.conf")
    written = dict(conf.written)
    assert "QB_DTB" not in written and not [key for key in written if key.startswith("QB_XEN_DOM0LESS")]
    assert conf.get("QB_OPT_APPEND").startswith('-device "guest-loader,addr=0x49000000,')


def test_the_uboot_task_writes_the_board_script(project, deploy) -> None:  # type: ignore[no-untyped-def]
    d = project.parse("xen-image-minimal", IMAGE, GUEST_CONF + 'XEN_REF_UBOOT_LOAD_SOURCE = "usb 0:1"\n'
                      'XEN_REF_UBOOT_FDT_FILE = "my-board.dtb"\n')
    assert d.getVarFlag("do_xen_ref_dom0less_uboot", "task")
    assert "do_rootfs" in d.getVarFlag("do_xen_ref_dom0less_uboot", "deps")
    assert "do_xen_ref_dom0less_uboot" in d.getVarFlag("do_image", "deps")
    assert "virtual/kernel:do_deploy" in d.getVarFlag("do_xen_ref_dom0less_uboot", "depends").split()
    os.makedirs(d.getVar("IMGDEPLOYDIR"))
    run_task(d, "do_xen_ref_dom0less_uboot")
    script = (Path(d.getVar("IMGDEPLOYDIR")) / "xen-image-minimal-qemuarm64.dom0less-boot.cmd").read_text()
    assert "load usb 0:1 0x40200000 xen-qemuarm64 || exit" in script
    assert "load usb 0:1 0x44000000 my-board.dtb || exit" in script
    assert f"load usb 0:1 0x49800000 {RAMDISK} || exit" in script
    assert "fdt set /chosen/tiny memory <0x0 0x10000>" in script
    assert 'fdt set /chosen/tiny/module@49400000 bootargs "console=ttyAMA0 rdinit=/bin/sh tiny=1"' in script
    assert 'fdt set /chosen xen,xen-bootargs "dom0_mem=384M,max:384M bootscrub=0 console=dtuart"' in script
    assert script.rstrip().endswith("booti 0x40200000 - 0x44000000")


@pytest.mark.parametrize("function", ["xen_ref_dom0less_qemu_boot", "do_xen_ref_dom0less_uboot"])
def test_a_ramdisk_missing_at_task_time_stops_naming_the_file_and_the_fix(project, deploy, bblog,
                                                                          function: str) -> None:
    d = project.parse("xen-image-minimal", IMAGE, GUEST_CONF)
    (deploy / RAMDISK).unlink()
    os.makedirs(d.getVar("IMGDEPLOYDIR"))
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func(function, d)
    errors = bblog.text(logging.ERROR)
    assert f"xen-ref-dom0less: {deploy / RAMDISK}: dom0less guest 'tiny' ramdisk is missing" in errors, errors
    assert re.search(r'Fix: build or deploy it there .*IMAGE_FSTYPES \+= "cpio.gz".*XEN_GUEST_RAMDISK', errors)
    assert not list(Path(d.getVar("IMGDEPLOYDIR")).iterdir()), "nothing is written"
    assert d.getVar("QB_DTB") is None


def test_a_guest_that_does_not_fit_the_board_layout_stops_the_uboot_task(project, deploy, bblog) -> None:  # type: ignore[no-untyped-def]
    d = project.parse("xen-image-minimal", IMAGE, GUEST_CONF + 'XEN_REF_UBOOT_XEN_ADDR = "0x49000000"\n')
    os.makedirs(d.getVar("IMGDEPLOYDIR"))
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_xen_ref_dom0less_uboot", d)
    errors = bblog.text(logging.ERROR)
    assert "xen-ref-dom0less: " in errors and "Xen xen-qemuarm64 (8.0 MiB at 0x49000000" in errors, errors
    assert "overlaps" in errors
