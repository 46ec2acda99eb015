"""xenreftarget.dom0less: the dom0less guest's ramdisk, dom0's init-dom0less unit, the boot files."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from xenboot import XenBoot, XenHostBoot, read_qemuboot, write_qemuboot
from xenreftarget import dom0less
from xenreftarget.units import parse_unit


def test_the_ramdisk_holds_a_busybox_init_with_a_login_on_the_virtual_uart(tmp_path: Path):
    if shutil.which("cpio") is None:
        pytest.skip("GNU cpio (the independent reader) is not installed")
    busybox = tmp_path / "pkgs/busybox-static/bin/busybox"
    busybox.parent.mkdir(parents=True)
    busybox.write_text("ELF")
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    ramdisk = dom0less.build_ramdisk({"busybox-static": busybox.parent.parent}, tmp_path / "work", deploy)
    assert ramdisk == deploy / dom0less.DOM0LESS_RAMDISK
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=gzip.decompress(ramdisk.read_bytes()),
                             capture_output=True, check=True).stdout.decode().split()
    assert {"dev/console", "etc/inittab", "etc/hostname"} <= set(listing)
    assert "sbin/init" in listing or "usr/sbin/init" in listing
    tree = tmp_path / "work/dom0less-guest"
    assert "ttyAMA0::respawn:/sbin/getty -L 115200 ttyAMA0" in (tree / "etc/inittab").read_text()
    assert (tree / "etc/hostname").read_text() == "dom0less-guest\n"


def test_init_dom0less_runs_once_after_xenstored_and_before_xendomains_and_the_login(tmp_path: Path):
    dom0less.install_dom0_support(tmp_path, "/usr/lib/xen-4.17/bin")
    unit = tmp_path / "usr/lib/systemd/system" / dom0less.UNIT
    parsed = parse_unit(unit.read_text())
    values = {key: value for section in parsed.values() for key, value in section}
    assert values["ExecStart"] == "/usr/lib/xen-4.17/bin/init-dom0less"
    assert "xenstored.service" in values["After"] and "xenstored.service" in values["Requires"]
    assert {"xendomains.service", "serial-getty@hvc0.service"} <= set(values["Before"].split())
    link = tmp_path / "etc/systemd/system/multi-user.target.wants" / dom0less.UNIT
    assert os.readlink(link) == f"/usr/lib/systemd/system/{dom0less.UNIT}"
    dom0less.install_dom0_support(tmp_path, "/usr/lib/xen-4.17/bin")  # twice is fine (rebuilds)


@pytest.mark.skipif(shutil.which("dtc") is None or shutil.which("qemu-system-aarch64") is None,
                    reason="needs dtc (device-tree-compiler) and qemu-system-aarch64")
def test_boot_variables_write_the_tree_and_a_qemuboot_conf_that_reads_back(tmp_path: Path):
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name, size in (("Image", 3 << 20), ("initrd.cpio.gz", 1 << 20), (dom0less.DOM0LESS_RAMDISK, 2 << 20)):
        (deploy / name).write_bytes(b"\0" * size)
    boot = XenHostBoot(memory_mb=1024, smp=2, xen=XenBoot(dom0_initrd="initrd.cpio.gz", dom0_mem="384M"))
    values = dom0less.boot_variables(boot, deploy, tmp_path / "work")
    assert (deploy / dom0less.DOM0LESS_DTB).is_file()
    source = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(deploy / dom0less.DOM0LESS_DTB)],
                            capture_output=True, text=True, check=True).stdout
    assert f"{dom0less.DOM0LESS_GUEST.name} {{" in source and 'xen,enhanced = "enabled";' in source
    assert "cpu@1 {" in source and "cpu@2 {" not in source, "the tree is the machine's with -smp 2"
    write_qemuboot(deploy / "t.qemuboot.conf", {**boot.variables(), **values})
    conf = read_qemuboot(deploy / "t.qemuboot.conf")
    assert conf.get("QB_DTB") == dom0less.DOM0LESS_DTB
    assert "guest-loader" not in conf.get("QB_OPT_APPEND")
    assert conf.get("QB_XEN_DOM0LESS") == "dom0less-guest"
    assert conf.get("QB_XEN_DOM0LESS_BOOTARGS_1") == dom0less.DOM0LESS_GUEST.bootargs


def test_boot_variables_refuse_a_machine_the_guest_does_not_fit(tmp_path: Path):
    from xenboot import BootConfigError

    deploy = tmp_path / "deploy"
    deploy.mkdir()
    boot = XenHostBoot(memory_mb=400, xen=XenBoot(dom0_mem="384M"))
    with pytest.raises(BootConfigError, match="need 488 MiB, the machine has 400 MiB"):
        dom0less.boot_variables(boot, deploy, tmp_path / "work", qemu="true")


@pytest.mark.skipif(shutil.which("dtc") is None or shutil.which("qemu-system-aarch64") is None,
                    reason="needs dtc (device-tree-compiler) and qemu-system-aarch64")
def test_the_no_dom0_boot_has_only_the_guest_and_no_dom0_settings(tmp_path: Path):
    from xenqemu.target import load_target

    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name in ("Image", dom0less.DOM0LESS_RAMDISK, "xen-qemuarm64"):
        (deploy / name).write_bytes(b"\0" * (1 << 20))
    boot = XenHostBoot(memory_mb=1024, smp=2, xen=XenBoot(dom0_mem="384M", cmdline_extra="dom0_max_vcpus=2"))
    values = dom0less.no_dom0_variables(boot, deploy, tmp_path / "work")
    source = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(deploy / dom0less.NO_DOM0_DTB)],
                            capture_output=True, text=True, check=True).stdout
    chosen = source[source.index("chosen {"):]
    assert chosen.count("module@") == 2 and "xen,domain" in chosen and "xen,enhanced" not in chosen
    assert "dom0_mem" not in values["QB_KERNEL_CMDLINE_APPEND"] and "dom0_max_vcpus" not in values["QB_KERNEL_CMDLINE_APPEND"]
    assert values["QB_KERNEL_CMDLINE_APPEND"].endswith("console=dtuart")
    assert values["QB_ROOTFS"] == "none" and values["QB_XEN_DOM0LESS_ONLY"] == "1"
    assert not any(k.startswith("QB_XEN_DOM0_") for k in values)
    conf = deploy / dom0less.NO_DOM0_QEMUBOOT_CONF
    write_qemuboot(conf, values)
    target = load_target(str(conf))
    assert target.rootfs is None and target.dtb == deploy / dom0less.NO_DOM0_DTB
    assert "loader,file=" in " ".join(target.extra_args)
